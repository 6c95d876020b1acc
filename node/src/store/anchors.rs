//! Anchor proofs of timeline blocks, in the meta column: `anchor/ ‖ timeline chain id ‖
//! index (u64 big-endian)`, so a prefix scan lists a timeline's anchors oldest first.

use chainiac_protocol::Hash;
use chainiac_protocol::anchor::AnchorProof;
use chainiac_protocol::encoding::{Decode, Encode};

use super::{Batch, Column, Store, StoreError, StoreResult};

/// Key prefix of anchor proofs in the meta column: `anchor/` ‖ timeline chain id ‖ index (BE).
const ANCHOR_PREFIX: &[u8] = b"anchor/";

fn anchor_key(timeline: &Hash, index: u64) -> Vec<u8> {
    let mut key = ANCHOR_PREFIX.to_vec();
    key.extend_from_slice(timeline.as_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

impl Store {
    /// Records (or replaces, after a reorganisation) the anchor proof of timeline block `index`.
    pub fn put_anchor(&self, timeline: &Hash, index: u64, proof: &AnchorProof) -> StoreResult<()> {
        let mut batch = Batch::new();
        batch.put(Column::Meta, anchor_key(timeline, index), proof.to_bytes());
        self.kv.write(batch)
    }

    /// The anchor proofs of `timeline`, newest first, at most `limit`.
    pub fn anchors(&self, timeline: &Hash, limit: usize) -> StoreResult<Vec<AnchorProof>> {
        let mut prefix = ANCHOR_PREFIX.to_vec();
        prefix.extend_from_slice(timeline.as_bytes());
        // Only the newest `limit` are read (peers' requests and /anchors ask for the newest
        // 64; a timeline anchored every ten minutes gathers some 50,000 proofs a year).
        let raw = self.kv.scan_prefix_reverse(Column::Meta, &prefix, limit)?;
        let proofs = raw
            .into_iter()
            .map(|(_, value)| {
                AnchorProof::from_bytes(&value).map_err(|e| StoreError::Corrupt {
                    what: "anchor proof",
                    detail: e.to_string(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(proofs)
    }
}
