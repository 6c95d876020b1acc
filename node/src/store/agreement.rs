//! What this node, as a roster member, promised at each undecided chain position it takes part
//! in ([`DurableRecord`]: its votes, lock and proposal): written in one synced batch before any
//! vote or announcement leaves the node, so that a restarted member never contradicts itself.
//! Kept in the meta column under `agreement/ ‖ chain id ‖ index (u64 big-endian)`, checksummed,
//! with the blocks it names under the same key followed by the block hash; records at or below
//! the chain's head are settled by the chain and pruned.

use chainiac_protocol::Hash;
use chainiac_protocol::agreement::DurableRecord;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::skipchain::SkipBlock;

use super::chains::{checksummed, verify_checksum};
use super::{Batch, Column, Store, StoreError, StoreResult};

const AGREEMENT_PREFIX: &[u8] = b"agreement/";

/// Most records looked at for pruning per write.
const AGREEMENT_PRUNE_SCAN: usize = 64;

fn chain_prefix(chain_id: &Hash) -> Vec<u8> {
    let mut key = AGREEMENT_PREFIX.to_vec();
    key.extend_from_slice(chain_id.as_bytes());
    key
}

fn record_key(chain_id: &Hash, index: u64) -> Vec<u8> {
    let mut key = chain_prefix(chain_id);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Most blocks kept per position (those the member's votes, lock and proposal name).
const MAX_AGREEMENT_BLOCKS: usize = 16;

impl Store {
    /// The blocks this node persisted for position (`chain_id`, `index`) with its record: the
    /// blocks its votes, lock, proposal or decision name, so that it can still propose or log
    /// them after a restart.
    pub fn agreement_blocks(&self, chain_id: &Hash, index: u64) -> StoreResult<Vec<SkipBlock>> {
        let prefix = record_key(chain_id, index);
        let mut blocks = Vec::new();
        for (key, value) in self
            .kv
            .scan_prefix(Column::Meta, &prefix, MAX_AGREEMENT_BLOCKS + 1)?
        {
            if key.len() != prefix.len() + 32 {
                continue;
            }
            let corrupt = |detail: String| StoreError::Corrupt {
                what: "agreement block",
                detail,
            };
            let body = verify_checksum("agreement block", &value)?;
            let block = SkipBlock::from_bytes(body).map_err(|e| corrupt(e.to_string()))?;
            if block.hash().as_bytes()[..] != key[prefix.len()..] {
                return Err(corrupt("the block is not the one its key names".into()));
            }
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// What this node persisted about position (`chain_id`, `index`), if anything.
    pub fn agreement_record(
        &self,
        chain_id: &Hash,
        index: u64,
    ) -> StoreResult<Option<DurableRecord>> {
        let Some(stored) = self.kv.get(Column::Meta, &record_key(chain_id, index))? else {
            return Ok(None);
        };
        let body = verify_checksum("agreement record", &stored)?;
        DurableRecord::from_bytes(body)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                what: "agreement record",
                detail: error.to_string(),
            })
    }

    /// Writes `record` for position (`chain_id`, `index`) durably (one synced write), pruning
    /// records of positions the chain has settled. Must succeed before the votes it holds leave
    /// the node.
    pub fn record_agreement(
        &self,
        chain_id: &Hash,
        index: u64,
        record: &DurableRecord,
        blocks: &[&SkipBlock],
    ) -> StoreResult<()> {
        let _guard = self.lock();
        let mut batch = Batch::new();
        if let Some(head) = self.head(chain_id)? {
            self.delete_settled(
                &mut batch,
                &chain_prefix(chain_id),
                head.index,
                AGREEMENT_PRUNE_SCAN,
            )?;
        }
        batch.put(
            Column::Meta,
            record_key(chain_id, index),
            checksummed(&record.to_bytes()),
        );
        for block in blocks {
            let mut key = record_key(chain_id, index);
            key.extend_from_slice(block.hash().as_bytes());
            batch.put(Column::Meta, key, checksummed(&block.to_bytes()));
        }
        self.kv.write(batch)?;
        Ok(())
    }
}
