//! The publisher's library: what a developer (or a CI job) does with a project, through the
//! HTTP API of any node. The `chainiac` command is built on it; with `default-features =
//! false` this crate builds without the node (no RocksDB).

pub mod publisher;
