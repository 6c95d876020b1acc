//! The RocksDB backend: one column family per [`Column`], synced atomic batches.

use std::path::{Path, PathBuf};

use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use super::backend::prefix_successor;
use super::{Batch, Column, KeyValue, SCHEMA_VERSION, StoreError, StoreResult};

const SCHEMA_KEY: &[u8] = b"schema_version";

/// A RocksDB database holding a chainiac store.
pub struct RocksBackend {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.path)
            .finish()
    }
}

impl RocksBackend {
    /// Opens the store at `path`, creating it if the directory is empty. Refuses a database
    /// that is not a chainiac store or that a newer chainiac wrote.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let display = path.display().to_string();
        let backend_error = |error: rocksdb::Error| StoreError::Backend {
            path: display.clone(),
            message: error.to_string(),
        };
        let exists = path.join("CURRENT").exists();
        if exists {
            let families = DB::list_cf(&Options::default(), path).map_err(backend_error)?;
            if !families.iter().any(|name| name == Column::Meta.name()) {
                return Err(StoreError::Foreign { path: display });
            }
        }
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = Column::ALL
            .iter()
            .map(|column| ColumnFamilyDescriptor::new(column.name(), Options::default()));
        let db = DB::open_cf_descriptors(&options, path, families).map_err(backend_error)?;
        let backend = Self {
            db,
            path: path.to_path_buf(),
        };
        backend.check_schema(exists)?;
        Ok(backend)
    }

    fn check_schema(&self, existed: bool) -> StoreResult<()> {
        let display = self.path.display().to_string();
        match self.get(Column::Meta, SCHEMA_KEY)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_le_bytes)
                    .map_err(|_| StoreError::Foreign {
                        path: display.clone(),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::SchemaTooNew {
                        path: display,
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
            None if existed && !self.scan_prefix(Column::Blocks, &[], 1)?.is_empty() => {
                Err(StoreError::Foreign { path: display })
            }
            None => {
                let mut batch = Batch::new();
                batch.put(Column::Meta, SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes());
                self.write(batch)
            }
        }
    }

    fn family(&self, column: Column) -> StoreResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(column.name())
            .ok_or_else(|| StoreError::Backend {
                path: self.path.display().to_string(),
                message: format!("column family {} is missing", column.name()),
            })
    }

    fn write_with(&self, batch: &Batch, sync: bool) -> StoreResult<()> {
        let mut rocks_batch = WriteBatch::default();
        for (column, key) in &batch.deletes {
            rocks_batch.delete_cf(self.family(*column)?, key);
        }
        for (column, key, value) in &batch.puts {
            rocks_batch.put_cf(self.family(*column)?, key, value);
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db
            .write_opt(rocks_batch, &options)
            .map_err(|e| self.error(&e))
    }

    fn error(&self, error: &rocksdb::Error) -> StoreError {
        StoreError::Backend {
            path: self.path.display().to_string(),
            message: error.to_string(),
        }
    }
}

impl KeyValue for RocksBackend {
    fn get(&self, column: Column, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        self.db
            .get_cf(self.family(column)?, key)
            .map_err(|e| self.error(&e))
    }

    fn write(&self, batch: Batch) -> StoreResult<()> {
        self.write_with(&batch, true)
    }

    fn write_relaxed(&self, batch: Batch) -> StoreResult<()> {
        self.write_with(&batch, false)
    }

    fn persist(&self) -> StoreResult<()> {
        self.db.flush_wal(true).map_err(|e| self.error(&e))
    }

    fn scan_from(
        &self,
        column: Column,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let start = if from > prefix { from } else { prefix };
        let iterator = self.db.iterator_cf(
            self.family(column)?,
            IteratorMode::From(start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iterator {
            let (key, value) = item.map_err(|e| self.error(&e))?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }

    fn scan_prefix_reverse(
        &self,
        column: Column,
        prefix: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        // Seeks to the last key at or before the prefix's successor (which itself may exist
        // and is skipped), then walks back while keys start with the prefix.
        let successor = prefix_successor(prefix);
        let mode = match &successor {
            Some(key) => IteratorMode::From(key, Direction::Reverse),
            None => IteratorMode::End,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.family(column)?, mode) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(|e| self.error(&e))?;
            if !key.starts_with(prefix) {
                if successor.as_deref() == Some(key.as_ref()) {
                    continue;
                }
                break;
            }
            out.push((key.into_vec(), value.into_vec()));
        }
        Ok(out)
    }
}
