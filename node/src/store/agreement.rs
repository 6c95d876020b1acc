//! What this node, as a roster member, promised at each undecided chain position it takes part
//! in ([`DurableRecord`]: its votes, lock and proposal): written in one synced batch before any
//! vote or announcement leaves the node, so that a restarted member never contradicts itself.
//! Kept in the meta column under `agreement/ ‖ chain id ‖ index (u64 big-endian)`, checksummed;
//! records at or below the chain's head are settled by the chain and pruned.

use chainiac_protocol::Hash;
use chainiac_protocol::agreement::DurableRecord;
use chainiac_protocol::encoding::{Decode, Encode};

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

impl Store {
    /// What this node persisted about position (`chain_id`, `index`), if anything.
    pub fn agreement_record(
        &self,
        chain_id: &Hash,
        index: u64,
    ) -> StoreResult<Option<DurableRecord>> {
        let Some(stored) = self
            .kv
            .get(Column::Meta, &record_key(chain_id, index))?
        else {
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
    ) -> StoreResult<()> {
        let _guard = self.lock();
        let mut batch = Batch::new();
        if let Some(head) = self.head(chain_id)? {
            let prefix = chain_prefix(chain_id);
            for (key, _) in self
                .kv
                .scan_prefix(Column::Meta, &prefix, AGREEMENT_PRUNE_SCAN)?
            {
                let settled = key
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                    .is_some_and(|bytes| u64::from_be_bytes(bytes) <= head.index);
                if !settled {
                    break;
                }
                batch.delete(Column::Meta, key);
            }
        }
        batch.put(
            Column::Meta,
            record_key(chain_id, index),
            checksummed(&record.to_bytes()),
        );
        self.kv.write(batch)?;
        Ok(())
    }
}
