//! The in-memory twin of the RocksDB backend, for unit tests and simulations.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::backend::prefix_successor;
use super::{Batch, Column, KeyValue, StoreResult};

/// Every column's entries in one ordered map, keyed by (column, key).
type Entries = BTreeMap<(Column, Vec<u8>), Vec<u8>>;

/// Column families as ordered maps behind one lock, so batches are atomic.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    columns: Mutex<Entries>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyValue for MemoryBackend {
    fn get(&self, column: Column, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(columns.get(&(column, key.to_vec())).cloned())
    }

    fn write(&self, batch: Batch) -> StoreResult<()> {
        let mut columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
        for (column, key) in batch.deletes {
            columns.remove(&(column, key));
        }
        for (column, key, value) in batch.puts {
            columns.insert((column, key), value);
        }
        Ok(())
    }

    fn scan_from(
        &self,
        column: Column,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
        let start = if from > prefix { from } else { prefix };
        Ok(columns
            .range((column, start.to_vec())..)
            .take_while(|((c, key), _)| *c == column && key.starts_with(prefix))
            .take(limit)
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }

    fn scan_prefix_reverse(
        &self,
        column: Column,
        prefix: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let columns = self.columns.lock().unwrap_or_else(PoisonError::into_inner);
        let start = (column, prefix.to_vec());
        let matching = |((c, key), _): &(&(Column, Vec<u8>), &Vec<u8>)| {
            *c == column && key.starts_with(prefix)
        };
        let entries: Vec<_> = match prefix_successor(prefix) {
            Some(end) => columns
                .range(start..(column, end))
                .rev()
                .take_while(matching)
                .take(limit)
                .collect(),
            None => columns
                .range(start..)
                .take_while(matching)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .take(limit)
                .collect(),
        };
        Ok(entries
            .into_iter()
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }
}
