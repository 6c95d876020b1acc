//! Talking to chainiac nodes without running one.
//!
//! * [`types`]: the JSON bodies of a node's HTTP API, shared by the server and its clients;
//! * [`http`]: a small blocking client for that API, with failover between nodes;
//! * [`keyfile`]: secret key files (nodes, developers, roots, verifiers) and the public roster
//!   entry a node shares.
//!
//! The publisher's workflow built on these is `chainiac_cli::publisher`.

pub mod http;
pub mod keyfile;
pub mod types;

pub use keyfile::{ApiToken, Identity, IdentityError, PublicIdentity};
