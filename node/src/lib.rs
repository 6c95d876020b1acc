//! The chainiac node: configuration and identity, durable storage, the libp2p network, the
//! witness and leader sides of signing rounds, sync, and the HTTP API.

pub mod api;
pub mod artifacts;
pub mod builder;
pub mod client;
pub mod config;
pub mod epochs;
pub mod leader;
pub mod metrics;
pub mod net;
pub mod node;
pub mod rules;
pub mod runtime;
pub mod store;
pub mod tree;
pub mod verifier;
pub mod wire;
pub mod witness;
