//! The order in which chain heads changed, and the timeline chains held here: an epoch's leader
//! reads the chains that moved since its timeline last recorded them, not every head in the
//! store, and the epoch service lists timelines without reading every chain's genesis.
//!
//! Every head write also writes `head-change/ ‖ seq ‖ chain id` (seq a u64 big-endian counter
//! of head writes) and drops the chain's previous entry, so the index holds one entry per chain,
//! at its latest change. Per timeline, a cursor says up to which change everything is recorded
//! in that timeline's tree; timeline trees only move forward, so the cursor stays true.

use chainiac_protocol::Hash;
use chainiac_protocol::project::ChainGenesis;

use super::backend::{Batch, Column};
use super::chains::{Store, hash_from};
use super::{StoreError, StoreResult};

/// `head-change/` ‖ seq (u64 big-endian) ‖ chain id -> nothing.
const CHANGE_PREFIX: &[u8] = b"head-change/";
/// `head-change-of/` ‖ chain id -> seq (u64 little-endian) of the chain's entry.
const CHANGE_OF_PREFIX: &[u8] = b"head-change-of/";
/// The seq of the last head write (seqs start at 1).
const LAST_CHANGE_KEY: &[u8] = b"head-change-last";
/// Present once every head is in the index (stores from before the index get it at open).
const INDEXED_KEY: &[u8] = b"head-changes-indexed";
/// `timeline-chain/` ‖ chain id -> epoch seconds (u64 little-endian).
const TIMELINE_PREFIX: &[u8] = b"timeline-chain/";
/// `timeline-cursor/` ‖ timeline chain id -> seq (u64 little-endian).
const CURSOR_PREFIX: &[u8] = b"timeline-cursor/";

fn key(prefix: &[u8], id: &Hash) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

fn change_key(seq: u64, chain_id: &Hash) -> Vec<u8> {
    let mut key = CHANGE_PREFIX.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key.extend_from_slice(chain_id.as_bytes());
    key
}

fn counter(value: Option<Vec<u8>>, what: &'static str) -> StoreResult<u64> {
    match value {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| StoreError::Corrupt {
                what,
                detail: format!("{} bytes where a counter has 8", bytes.len()),
            }),
    }
}

impl Store {
    /// Adds to `batch` the change of `chain_id`'s head (called under the write lock, with the
    /// head write), and records a new timeline chain.
    pub(super) fn index_head_change(
        &self,
        batch: &mut Batch,
        chain_id: &Hash,
        genesis: Option<&ChainGenesis>,
    ) -> StoreResult<()> {
        let seq = counter(
            self.kv.get(Column::Meta, LAST_CHANGE_KEY)?,
            "head change counter",
        )? + 1;
        let of = key(CHANGE_OF_PREFIX, chain_id);
        if let Some(previous) = self.kv.get(Column::Meta, &of)? {
            let previous = counter(Some(previous), "head change of a chain")?;
            batch.delete(Column::Meta, change_key(previous, chain_id));
        }
        batch.put(Column::Meta, change_key(seq, chain_id), Vec::new());
        batch.put(Column::Meta, of, seq.to_le_bytes());
        batch.put(Column::Meta, LAST_CHANGE_KEY, seq.to_le_bytes());
        if let Some(ChainGenesis::Timeline { epoch_seconds, .. }) = genesis {
            batch.put(
                Column::Meta,
                key(TIMELINE_PREFIX, chain_id),
                epoch_seconds.to_le_bytes(),
            );
        }
        Ok(())
    }

    /// Up to `limit` chains whose head changed after change `after` (0: from the first), each
    /// once, at its latest change, in the order of those changes: `(seq, chain id)`.
    pub fn head_changes_after(&self, after: u64, limit: usize) -> StoreResult<Vec<(u64, Hash)>> {
        let from = change_key(after.saturating_add(1), &Hash::default());
        self.kv
            .scan_from(Column::Meta, CHANGE_PREFIX, &from, limit)?
            .into_iter()
            .map(|(key, _)| {
                let rest = &key[CHANGE_PREFIX.len()..];
                let (seq, chain_id) = rest.split_at(8.min(rest.len()));
                let seq = <[u8; 8]>::try_from(seq)
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        what: "head change key",
                        detail: format!("{} bytes", key.len()),
                    })?;
                Ok((seq, hash_from("head change key", chain_id)?))
            })
            .collect()
    }

    /// The timeline chains held here, with their epoch length in seconds.
    pub fn timeline_chains(&self) -> StoreResult<Vec<(Hash, u64)>> {
        self.kv
            .scan_prefix(Column::Meta, TIMELINE_PREFIX, usize::MAX)?
            .into_iter()
            .map(|(key, value)| {
                Ok((
                    hash_from("timeline chain key", &key[TIMELINE_PREFIX.len()..])?,
                    counter(Some(value), "timeline epoch")?,
                ))
            })
            .collect()
    }

    /// The change up to which every head change is recorded in `timeline`'s tree (as far as
    /// this node's leaders found; 0 for none).
    pub fn timeline_cursor(&self, timeline: &Hash) -> StoreResult<u64> {
        counter(
            self.kv.get(Column::Meta, &key(CURSOR_PREFIX, timeline))?,
            "timeline cursor",
        )
    }

    /// Moves `timeline`'s cursor forward to `seq` (never back).
    pub fn advance_timeline_cursor(&self, timeline: &Hash, seq: u64) -> StoreResult<()> {
        let _guard = self.lock();
        if seq <= self.timeline_cursor(timeline)? {
            return Ok(());
        }
        let mut batch = Batch::new();
        batch.put(
            Column::Meta,
            key(CURSOR_PREFIX, timeline),
            seq.to_le_bytes(),
        );
        self.kv.write_relaxed(batch)
    }

    /// Indexes every head once, for a store written before the index existed.
    pub(super) fn index_heads_once(&self) -> StoreResult<()> {
        if self.kv.get(Column::Meta, INDEXED_KEY)?.is_some() {
            return Ok(());
        }
        let _guard = self.lock();
        let heads = self.chains(usize::MAX)?;
        if !heads.is_empty() {
            tracing::info!(
                chains = heads.len(),
                "indexing the chain heads (once, after an upgrade)"
            );
        }
        let mut last = counter(
            self.kv.get(Column::Meta, LAST_CHANGE_KEY)?,
            "head change counter",
        )?;
        let mut batch = Batch::new();
        for head in heads {
            let of = key(CHANGE_OF_PREFIX, &head.chain_id);
            if self.kv.get(Column::Meta, &of)?.is_none() {
                last += 1;
                batch.put(Column::Meta, change_key(last, &head.chain_id), Vec::new());
                batch.put(Column::Meta, of, last.to_le_bytes());
            }
            if let Some(ChainGenesis::Timeline { epoch_seconds, .. }) =
                self.chain_genesis(&head.chain_id)?
            {
                batch.put(
                    Column::Meta,
                    key(TIMELINE_PREFIX, &head.chain_id),
                    epoch_seconds.to_le_bytes(),
                );
            }
        }
        batch.put(Column::Meta, LAST_CHANGE_KEY, last.to_le_bytes());
        batch.put(Column::Meta, INDEXED_KEY, [1u8]);
        self.kv.write(batch)
    }
}
