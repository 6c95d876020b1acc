//! The chainiac node: a daemon that stores, verifies, serves and gossips skipchains, witnesses
//! the chains whose rosters name it, leads appends, rebuilds releases as a build verifier,
//! leads timeline epochs and anchors them. Each module is one service or one part of the node's
//! state; the rules they apply are in `chainiac_protocol`, the network in `chainiac_net`.

pub mod admission;
pub mod agreement;
pub mod anchoring;
pub mod antientropy;
pub mod api;
pub mod append;
pub mod artifact_garbage;
pub mod artifacts;
pub mod builder;
pub mod config;
pub mod epochs;
pub mod explorer;
pub mod gossip;
pub mod metrics;
pub mod node;
pub mod peer_limits;
pub mod replicate;
pub mod roster_changes;
pub mod rounds;
pub mod rules;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod sync;
pub mod verifier;

/// The fuzzing engine of `fuzz/` (the round-logic target runs in this crate's unit tests).
#[cfg(test)]
#[path = "../../fuzz/engine.rs"]
mod fuzz_engine;
