//! The node's durable state: blocks, forward links, rosters, chain indexes and heads, in typed
//! column families of a key-value backend (RocksDB on disk, or an in-memory twin for tests).
//!
//! Every state change is one atomic, synced [`Batch`]. Nothing is written unless the protocol
//! rules accept it: a chain is created from a valid genesis, a block is appended only after
//! [`SkipChain::check_successor`](chainiac_protocol::skipchain::SkipChain::check_successor) and
//! with a level-0 forward link that verifies with its source roster. Everything read back is
//! checked against its hash or checksum, so a corrupted disk is reported, never served.

mod agreement;
mod anchors;
mod backend;
mod builds;
mod chains;
mod changes;
mod digest;
mod guard;
mod memory;
mod rocks;
mod timelines;
mod usage;

pub use backend::{Batch, Column, KeyValue};
pub use chains::{ChainHead, Store};
pub use digest::HeadsDigest;
pub use memory::MemoryBackend;
pub use rocks::RocksBackend;
pub use timelines::{CheckpointBudget, TIMELINE_CHECKPOINT_INTERVAL};
pub use usage::{StorageUsage, storage_cost};

/// Version of the on-disk layout, stored under `meta/schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database engine failed (disk full, permissions, corruption it detected).
    #[error("database error at {path}: {message}")]
    Backend { path: String, message: String },
    /// The directory holds a database that is not a chainiac store.
    #[error("{path} holds a database that is not a chainiac store; choose another data directory")]
    Foreign { path: String },
    /// The store was written by a newer chainiac.
    #[error(
        "the store at {path} has schema version {found}, newer than this chainiac supports ({supported}); upgrade chainiac"
    )]
    SchemaTooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    /// A value read back does not match its hash or checksum.
    #[error(
        "corrupt {what} in the store ({detail}); restore the data directory from a backup or resync the node"
    )]
    Corrupt { what: &'static str, detail: String },
    /// A chain the store does not hold.
    #[error("unknown chain {0}")]
    UnknownChain(chainiac_protocol::Hash),
    /// A chain that already exists.
    #[error("chain {0} already exists")]
    ChainExists(chainiac_protocol::Hash),
    /// This node's admission policy does not admit the chain's creator; nothing was written.
    #[error("this node does not keep the chain: {0}")]
    NotAdmitted(String),
    /// The protocol rules refused the change; nothing was written.
    #[error(transparent)]
    Rejected(#[from] chainiac_protocol::Error),
}

/// Result type of the store.
pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests;
