//! The key-value interface both backends implement, and the atomic write batch.

use super::StoreResult;

/// The column families. Their names are part of the on-disk format and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// block hash -> encoded block
    Blocks,
    /// chain id ‖ index (u64 big-endian) -> block hash
    ChainIndex,
    /// from-block hash ‖ level (u32 big-endian) -> checksum ‖ encoded forward link; and
    /// chain id -> checksum ‖ encoded genesis certificate (a self-link of the genesis)
    ForwardLinks,
    /// chain id -> checksum ‖ index (u64 little-endian) ‖ head hash
    Heads,
    /// roster hash -> encoded roster
    Rosters,
    /// name -> value (schema version, signed positions of the equivocation guard, chains per
    /// creator key, ...)
    Meta,
}

impl Column {
    /// Every column, in a fixed order.
    pub const ALL: [Column; 6] = [
        Column::Blocks,
        Column::ChainIndex,
        Column::ForwardLinks,
        Column::Heads,
        Column::Rosters,
        Column::Meta,
    ];

    /// The column family's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Column::Blocks => "blocks",
            Column::ChainIndex => "chain_index",
            Column::ForwardLinks => "forward_links",
            Column::Heads => "heads",
            Column::Rosters => "rosters",
            Column::Meta => "meta",
        }
    }
}

/// Writes to apply together, all or nothing: the deletes first, then the puts.
#[must_use = "a batch does nothing until it is written"]
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(super) puts: Vec<(Column, Vec<u8>, Vec<u8>)>,
    pub(super) deletes: Vec<(Column, Vec<u8>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write of `value` under `key` in `column`.
    pub fn put(&mut self, column: Column, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.puts.push((column, key.into(), value.into()));
    }

    /// Adds a deletion of `key` in `column` (applied before the batch's puts).
    pub fn delete(&mut self, column: Column, key: impl Into<Vec<u8>>) {
        self.deletes.push((column, key.into()));
    }

    /// Whether the batch has no writes.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// A key-value store with column families, atomic synced batches and prefix scans.
pub trait KeyValue: Send + Sync + 'static {
    /// The value under `key`, if any.
    fn get(&self, column: Column, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;

    /// Applies `batch` atomically; returns once it is durable.
    fn write(&self, batch: Batch) -> StoreResult<()>;

    /// Applies `batch` atomically without waiting for the disk: the write survives the process
    /// being killed, and after an operating-system crash or power loss the store comes back
    /// with a prefix of such writes. [`KeyValue::persist`] makes every write so far durable.
    fn write_relaxed(&self, batch: Batch) -> StoreResult<()> {
        self.write(batch)
    }

    /// Makes every write so far durable.
    fn persist(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order.
    fn scan_prefix(
        &self,
        column: Column,
        prefix: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan_from(column, prefix, prefix, limit)
    }

    /// Up to `limit` entries whose key starts with `prefix`, last key first: the newest of
    /// keys that end in a big-endian counter, without reading the older ones.
    fn scan_prefix_reverse(
        &self,
        column: Column,
        prefix: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Up to `limit` entries whose key starts with `prefix` and is at least `from`, in key
    /// order.
    fn scan_from(
        &self,
        column: Column,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>>;
}

/// The smallest key greater than every key that starts with `prefix`, if there is one (there
/// is none for an empty prefix or one of only `0xff` bytes).
pub(super) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&byte| byte != 0xff)?;
    let mut successor = prefix[..=last].to_vec();
    successor[last] += 1;
    Some(successor)
}
