//! Anchoring of a timeline in an external chain (Ethereum): what is anchored, the calldata of the
//! transaction that anchors it, and the proof kept of where it was anchored. Sending and
//! checking transactions is the `chainiac-anchor` crate's business; these are the formats.

use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::{Hash, Result};

/// Calldata prefix of an anchoring transaction (16 bytes).
pub const CALLDATA_TAG: &[u8; 16] = b"chainiac anchor1";

/// A timeline block to anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnchorRequest {
    /// The timeline chain.
    pub timeline: Hash,
    /// Index of the timeline block.
    pub index: u64,
    /// Hash of the timeline block.
    pub block: Hash,
}

/// The calldata of the transaction anchoring `request`:
/// `"chainiac anchor1" ‖ timeline chain id (32) ‖ index (u64 big-endian) ‖ block hash (32)`.
pub fn anchor_calldata(request: &AnchorRequest) -> Vec<u8> {
    let mut data = Vec::with_capacity(88);
    data.extend_from_slice(CALLDATA_TAG);
    data.extend_from_slice(request.timeline.as_bytes());
    data.extend_from_slice(&request.index.to_be_bytes());
    data.extend_from_slice(request.block.as_bytes());
    data
}

/// Where a timeline block was anchored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorProof {
    /// EIP-155 chain id of the Ethereum network.
    pub chain_id: u64,
    /// Transaction hash, `0x`-prefixed hex.
    pub transaction: String,
    /// Number of the block that includes it.
    pub block_number: u64,
    /// Hash of that block, `0x`-prefixed hex.
    pub block_hash: String,
    /// The timeline chain, hex.
    pub timeline: String,
    /// The anchored timeline block's index.
    pub timeline_index: u64,
    /// The anchored timeline block's hash, hex.
    pub timeline_block: String,
}

impl AnchorProof {
    /// The request this proof answers.
    pub fn request(&self) -> Result<AnchorRequest, String> {
        Ok(AnchorRequest {
            timeline: Hash::from_hex(&self.timeline).map_err(|e| format!("timeline: {e}"))?,
            index: self.timeline_index,
            block: Hash::from_hex(&self.timeline_block)
                .map_err(|e| format!("timeline block: {e}"))?,
        })
    }
}

/// Longest text field of an anchor proof (a `0x`-prefixed 32-byte hash has 66 characters).
const MAX_TEXT: usize = 130;

impl Encode for AnchorProof {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .u64(self.chain_id)
            .str(&self.transaction)
            .u64(self.block_number)
            .str(&self.block_hash)
            .str(&self.timeline)
            .u64(self.timeline_index)
            .str(&self.timeline_block);
    }
}

impl Decode for AnchorProof {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("anchor proof")?;
        Ok(Self {
            chain_id: reader.u64("chain id")?,
            transaction: reader.string(MAX_TEXT, "transaction hash")?,
            block_number: reader.u64("block number")?,
            block_hash: reader.string(MAX_TEXT, "block hash")?,
            timeline: reader.string(MAX_TEXT, "timeline")?,
            timeline_index: reader.u64("timeline index")?,
            timeline_block: reader.string(MAX_TEXT, "timeline block")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calldata_layout_and_proof_round_trip() {
        let request = AnchorRequest {
            timeline: Hash([1; 32]),
            index: 258,
            block: Hash([2; 32]),
        };
        let data = anchor_calldata(&request);
        assert_eq!(data.len(), 88);
        assert_eq!(&data[..16], b"chainiac anchor1");
        assert_eq!(&data[48..56], &[0, 0, 0, 0, 0, 0, 1, 2]);
        let proof = AnchorProof {
            chain_id: 31337,
            transaction: format!("0x{}", "ab".repeat(32)),
            block_number: 7,
            block_hash: format!("0x{}", "cd".repeat(32)),
            timeline: Hash([1; 32]).to_hex(),
            timeline_index: 258,
            timeline_block: Hash([2; 32]).to_hex(),
        };
        assert_eq!(
            AnchorProof::from_bytes(&proof.to_bytes()).ok(),
            Some(proof.clone())
        );
        assert_eq!(proof.request(), Ok(request));
    }
}
