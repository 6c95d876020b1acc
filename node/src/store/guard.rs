//! The equivocation guard's records: for each position (chain, index, link level) where this
//! node released a response share, the block it signed there (and, at level 0, the block
//! itself). Kept in the meta column under `signed/ ‖ chain id ‖ index ‖ level`, checksummed,
//! written in one synced batch before a share leaves the node.

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Decode;
use chainiac_protocol::skipchain::SkipBlock;

use super::chains::{checksummed, hash_from, verify_checksum};
use super::{Batch, Column, Store, StoreError, StoreResult};

/// Prefix of the equivocation guard's entries in [`Column::Meta`].
const SIGNED_PREFIX: &[u8] = b"signed/";

/// Most guard entries looked at for pruning per recorded share.
const SIGNED_PRUNE_SCAN: usize = 64;

fn signed_chain_prefix(chain_id: &Hash) -> Vec<u8> {
    let mut key = SIGNED_PREFIX.to_vec();
    key.extend_from_slice(chain_id.as_bytes());
    key
}

/// `signed/ ‖ chain id ‖ index (u64 big-endian) ‖ level (u32 big-endian)`: ordered by index
/// within a chain, so settled positions come first in a prefix scan.
fn signed_key(chain_id: &Hash, index: u64, level: u32) -> Vec<u8> {
    let mut key = signed_chain_prefix(chain_id);
    key.extend_from_slice(&index.to_be_bytes());
    key.extend_from_slice(&level.to_be_bytes());
    key
}

impl Store {
    /// The block this node released a response share for at position (`chain_id`, `index`,
    /// link `level`), if it recorded one (see [`Store::record_signed`]).
    pub fn signed_block(
        &self,
        chain_id: &Hash,
        index: u64,
        level: u32,
    ) -> StoreResult<Option<Hash>> {
        let Some(record) = self.signed_record(chain_id, index, level)? else {
            return Ok(None);
        };
        Ok(Some(hash_from(
            "signed position",
            record.get(..32).unwrap_or(&record),
        )?))
    }

    /// The checked value of a guard record: `block hash ‖ encoded block` (the block only when
    /// it was kept).
    fn signed_record(
        &self,
        chain_id: &Hash,
        index: u64,
        level: u32,
    ) -> StoreResult<Option<Vec<u8>>> {
        let Some(mut stored) = self
            .kv
            .get(Column::Meta, &signed_key(chain_id, index, level))?
        else {
            return Ok(None);
        };
        verify_checksum("signed position", &stored)?;
        Ok(Some(stored.split_off(32)))
    }

    /// The whole block this node released a level-0 response share for at `index` of
    /// `chain_id`, if it kept it (see [`Store::record_signed`]): what a leader needs to
    /// complete that block instead of competing with it.
    pub fn signed_proposal(&self, chain_id: &Hash, index: u64) -> StoreResult<Option<SkipBlock>> {
        let Some(value) = self.signed_record(chain_id, index, 0)? else {
            return Ok(None);
        };
        let Some(body) = value.get(32..).filter(|body| !body.is_empty()) else {
            return Ok(None);
        };
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "signed proposal",
            detail,
        };
        let block = SkipBlock::from_bytes(body).map_err(|e| corrupt(e.to_string()))?;
        if block.hash().0 != value[..32] || block.chain_id() != *chain_id || block.index() != index
        {
            return Err(corrupt("the kept block is not the one recorded".into()));
        }
        Ok(Some(block))
    }

    /// The equivocation guard: records, durably (one synced write), that this node releases a
    /// response share for `block` at position (`chain_id`, `index`, link `level`). Must be
    /// called, and succeed, before the share leaves the node.
    ///
    /// Returns the block already recorded at that position if it is another one; nothing is
    /// written then and the share must not be released. Recording the same block again is a
    /// no-op. Entries at or below the chain's head are settled by the chain itself and are
    /// pruned in the same write. `body`, the encoded block, is kept with the record when given
    /// (see [`Store::signed_proposal`]).
    pub fn record_signed(
        &self,
        chain_id: &Hash,
        index: u64,
        level: u32,
        block: &Hash,
        body: Option<&[u8]>,
    ) -> StoreResult<Option<Hash>> {
        let _guard = self.lock();
        match self.signed_block(chain_id, index, level)? {
            Some(recorded) if recorded == *block => return Ok(None),
            Some(recorded) => return Ok(Some(recorded)),
            None => {}
        }
        let mut batch = Batch::new();
        if let Some(head) = self.head(chain_id)? {
            self.delete_settled(
                &mut batch,
                &signed_chain_prefix(chain_id),
                head.index,
                SIGNED_PRUNE_SCAN,
            )?;
        }
        batch.put(
            Column::Meta,
            signed_key(chain_id, index, level),
            checksummed(&[&block.as_bytes()[..], body.unwrap_or_default()].concat()),
        );
        self.kv.write(batch)?;
        Ok(None)
    }
}
