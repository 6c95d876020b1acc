//! Anchoring of a timeline in an external chain (Ethereum): what is anchored, the calldata of the
//! transaction that anchors it, and the proof kept of where it was anchored. Sending and
//! checking transactions is the `chainiac-anchor` crate's business; these are the formats.
//!
//! A proof carries its own evidence ([`AnchorEvidence`]): the Ethereum block header, the
//! transaction and its receipt with their Merkle-Patricia proofs against the header's roots,
//! and the anchoring account vouched for by a roster member. Checking it offline needs no
//! Ethereum node; online only the canonical hash of one block number is asked.

use crate::encoding::{Decode, Encode, Reader, Writer};
use crate::hash::domain;
use crate::keys::{KeySignature, SecretKey};
use crate::{Error, Hash, Result};

/// Calldata prefix of an anchoring transaction (16 bytes).
pub const CALLDATA_TAG: &[u8; 16] = b"chainiac anchor1";

/// Format byte of a proof recorded before proofs carried evidence (read, never written).
const FORMAT_WITHOUT_EVIDENCE: u8 = 1;
/// Format byte of a proof with its [`AnchorEvidence`].
const FORMAT_WITH_EVIDENCE: u8 = 2;

/// Longest text field of an anchor proof (a `0x`-prefixed 32-byte hash has 66 characters).
const MAX_TEXT: usize = 130;
/// Largest block header, transaction or receipt encoding in a proof. A header is about 600
/// bytes today; the anchoring transaction about 200 and its receipt under 1 KiB.
pub const MAX_EVIDENCE_ITEM: usize = 4096;
/// Most Merkle-Patricia nodes in one proof: a block's transaction trie is 4 or 5 levels deep.
pub const MAX_PROOF_NODES: usize = 16;

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

/// A roster member's statement that `address` is the Ethereum account it anchors from on
/// chain `chain_id`, sending its anchoring transactions to `recipient`: the account itself
/// (the anchor is in the calldata) or a contract that logs the calldata as an event. The
/// sender and recipient of an anchoring transaction must match such a statement by a member
/// of the timeline's roster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorAccount {
    /// The Ethereum address (20 bytes).
    pub address: [u8; 20],
    /// Where its anchoring transactions go: `address` itself, or the event contract.
    pub recipient: [u8; 20],
    /// The member's key and its signature over [`AnchorAccount::digest`].
    pub vouched: KeySignature,
}

impl AnchorAccount {
    /// The digest a member signs: [`domain::ANCHOR_ACCOUNT`] over
    /// `chain id (u64 BE) ‖ address ‖ recipient`.
    pub fn digest(chain_id: u64, address: &[u8; 20], recipient: &[u8; 20]) -> Hash {
        Hash::of(
            domain::ANCHOR_ACCOUNT,
            &[&chain_id.to_be_bytes(), address, recipient],
        )
    }

    /// `member` vouches for `address` sending to `recipient` on `chain_id`.
    pub fn vouch(
        member: &SecretKey,
        chain_id: u64,
        address: [u8; 20],
        recipient: [u8; 20],
    ) -> Self {
        Self {
            address,
            recipient,
            vouched: KeySignature::sign(member, &Self::digest(chain_id, &address, &recipient)),
        }
    }

    /// Checks the member's signature for `chain_id`.
    pub fn verify(&self, chain_id: u64) -> Result<()> {
        self.vouched
            .verify(&Self::digest(chain_id, &self.address, &self.recipient))
    }

    /// Whether the anchor is carried by an event of a contract (else by the calldata of a
    /// transaction to the account itself).
    pub fn through_contract(&self) -> bool {
        self.recipient != self.address
    }
}

/// The Ethereum evidence of an anchor, checkable without trusting any Ethereum node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorEvidence {
    /// The block header, RLP: its Keccak-256 is the block hash.
    pub header: Vec<u8>,
    /// Position of the transaction in the block.
    pub transaction_index: u64,
    /// The transaction, EIP-2718 encoding: its Keccak-256 is the transaction hash.
    pub transaction: Vec<u8>,
    /// Merkle-Patricia proof of `transaction` at key `rlp(transaction_index)` under the
    /// header's transactions root, root node first.
    pub transaction_proof: Vec<Vec<u8>>,
    /// The transaction's receipt, EIP-2718 encoding.
    pub receipt: Vec<u8>,
    /// Merkle-Patricia proof of `receipt` under the header's receipts root, root node first.
    pub receipt_proof: Vec<Vec<u8>>,
    /// The sending account, vouched for by a roster member.
    pub account: AnchorAccount,
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
    /// What the anchor cost, in wei (gas used × effective gas price, as the anchoring node's
    /// Ethereum endpoint reported it; informational, not part of what is verified).
    pub cost_wei: u128,
    /// The self-contained evidence; `None` in proofs recorded before it existed, which only
    /// an Ethereum node can confirm.
    pub evidence: Option<AnchorEvidence>,
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

impl Encode for AnchorAccount {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .fixed(&self.address)
            .fixed(&self.recipient)
            .value(&self.vouched);
    }
}

impl Decode for AnchorAccount {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            address: reader.array("anchor account address")?,
            recipient: reader.array("anchor recipient")?,
            vouched: KeySignature::decode_from(reader)?,
        })
    }
}

fn write_nodes(writer: &mut Writer, nodes: &[Vec<u8>]) {
    writer.count(nodes.len());
    for node in nodes {
        writer.bytes(node);
    }
}

fn read_nodes(reader: &mut Reader<'_>, what: &'static str) -> Result<Vec<Vec<u8>>> {
    let count = reader.count(MAX_PROOF_NODES, what)?;
    (0..count)
        .map(|_| Ok(reader.bytes(MAX_EVIDENCE_ITEM, what)?.to_vec()))
        .collect()
}

impl Encode for AnchorEvidence {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .bytes(&self.header)
            .u64(self.transaction_index)
            .bytes(&self.transaction);
        write_nodes(writer, &self.transaction_proof);
        writer.bytes(&self.receipt);
        write_nodes(writer, &self.receipt_proof);
        writer.value(&self.account);
    }
}

impl Decode for AnchorEvidence {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            header: reader.bytes(MAX_EVIDENCE_ITEM, "block header")?.to_vec(),
            transaction_index: reader.u64("transaction index")?,
            transaction: reader.bytes(MAX_EVIDENCE_ITEM, "transaction")?.to_vec(),
            transaction_proof: read_nodes(reader, "transaction proof")?,
            receipt: reader.bytes(MAX_EVIDENCE_ITEM, "receipt")?.to_vec(),
            receipt_proof: read_nodes(reader, "receipt proof")?,
            account: AnchorAccount::decode_from(reader)?,
        })
    }
}

impl Encode for AnchorProof {
    fn encode_to(&self, writer: &mut Writer) {
        let format = if self.evidence.is_some() {
            FORMAT_WITH_EVIDENCE
        } else {
            FORMAT_WITHOUT_EVIDENCE
        };
        writer
            .u8(format)
            .u64(self.chain_id)
            .str(&self.transaction)
            .u64(self.block_number)
            .str(&self.block_hash)
            .str(&self.timeline)
            .u64(self.timeline_index)
            .str(&self.timeline_block);
        if let Some(evidence) = &self.evidence {
            let cost = self.cost_wei.to_be_bytes();
            writer.fixed(&cost).value(evidence);
        }
    }
}

impl Decode for AnchorProof {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let format = reader.u8("anchor proof")?;
        if format != FORMAT_WITHOUT_EVIDENCE && format != FORMAT_WITH_EVIDENCE {
            return Err(Error::UnknownVersion {
                what: "anchor proof",
                found: format,
            });
        }
        let mut proof = Self {
            chain_id: reader.u64("chain id")?,
            transaction: reader.string(MAX_TEXT, "transaction hash")?,
            block_number: reader.u64("block number")?,
            block_hash: reader.string(MAX_TEXT, "block hash")?,
            timeline: reader.string(MAX_TEXT, "timeline")?,
            timeline_index: reader.u64("timeline index")?,
            timeline_block: reader.string(MAX_TEXT, "timeline block")?,
            cost_wei: 0,
            evidence: None,
        };
        if format == FORMAT_WITH_EVIDENCE {
            proof.cost_wei = u128::from_be_bytes(reader.array("anchor cost")?);
            proof.evidence = Some(AnchorEvidence::decode_from(reader)?);
        }
        Ok(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> AnchorRequest {
        AnchorRequest {
            timeline: Hash([1; 32]),
            index: 258,
            block: Hash([2; 32]),
        }
    }

    fn proof(evidence: Option<AnchorEvidence>) -> AnchorProof {
        AnchorProof {
            chain_id: 31337,
            transaction: format!("0x{}", "ab".repeat(32)),
            block_number: 7,
            block_hash: format!("0x{}", "cd".repeat(32)),
            timeline: Hash([1; 32]).to_hex(),
            timeline_index: 258,
            timeline_block: Hash([2; 32]).to_hex(),
            cost_wei: if evidence.is_some() { 24_310 * 7 } else { 0 },
            evidence,
        }
    }

    fn evidence(member: &SecretKey) -> AnchorEvidence {
        AnchorEvidence {
            header: vec![0xf9; 600],
            transaction_index: 3,
            transaction: vec![2; 200],
            transaction_proof: vec![vec![0xf8; 532], vec![0xe2; 40]],
            receipt: vec![2; 300],
            receipt_proof: vec![vec![0xf8; 100]],
            account: AnchorAccount::vouch(member, 31337, [0x11; 20], [0x11; 20]),
        }
    }

    #[test]
    fn calldata_layout_and_proof_round_trip() {
        let data = anchor_calldata(&request());
        assert_eq!(data.len(), 88);
        assert_eq!(&data[..16], b"chainiac anchor1");
        assert_eq!(&data[48..56], &[0, 0, 0, 0, 0, 0, 1, 2]);
        let old = proof(None);
        assert_eq!(old.to_bytes()[0], FORMAT_WITHOUT_EVIDENCE);
        assert_eq!(
            AnchorProof::from_bytes(&old.to_bytes()).ok(),
            Some(old.clone())
        );
        assert_eq!(old.request(), Ok(request()));
        let member = SecretKey::from_seed(&[7; 32]);
        let new = proof(Some(evidence(&member)));
        assert_eq!(new.to_bytes()[0], FORMAT_WITH_EVIDENCE);
        assert_eq!(AnchorProof::from_bytes(&new.to_bytes()).ok(), Some(new));
    }

    #[test]
    fn account_vouching_is_bound_to_chain_address_and_member() {
        let member = SecretKey::from_seed(&[7; 32]);
        let account = AnchorAccount::vouch(&member, 1, [0x11; 20], [0x11; 20]);
        assert!(account.verify(1).is_ok());
        assert!(!account.through_contract());
        let mut redirected = account.clone();
        redirected.recipient[0] ^= 1;
        assert!(redirected.verify(1).is_err(), "another recipient");
        assert!(account.verify(31337).is_err(), "another chain");
        let mut moved = account.clone();
        moved.address[0] ^= 1;
        assert!(moved.verify(1).is_err(), "another address");
        let mut other = account;
        other.vouched.signer = SecretKey::from_seed(&[8; 32]).public_key();
        assert!(other.verify(1).is_err(), "another member");
    }

    #[test]
    fn oversized_and_unknown_proofs_are_refused() {
        let member = SecretKey::from_seed(&[7; 32]);
        let mut big = evidence(&member);
        big.transaction_proof = vec![vec![1; 10]; MAX_PROOF_NODES + 1];
        assert!(AnchorProof::from_bytes(&proof(Some(big)).to_bytes()).is_err());
        let mut huge = evidence(&member);
        huge.header = vec![1; MAX_EVIDENCE_ITEM + 1];
        assert!(AnchorProof::from_bytes(&proof(Some(huge)).to_bytes()).is_err());
        let mut unknown = proof(None).to_bytes();
        unknown[0] = 3;
        assert!(AnchorProof::from_bytes(&unknown).is_err());
    }

    proptest! {
        #[test]
        fn any_prefix_of_a_proof_fails_cleanly(cut in 0usize..2000) {
            let member = SecretKey::from_seed(&[7; 32]);
            let bytes = proof(Some(evidence(&member))).to_bytes();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(AnchorProof::from_bytes(&bytes[..cut]).is_err());
        }
    }
}
