//! Skipchains: blocks with deterministic heights and back links, forward links signed
//! collectively by the roster of their source block, and skip proofs that take a client from
//! any block it trusts to any later block with O(log n) links.

mod block;
mod chain;
mod link;
mod params;
mod proof;

pub use block::{BlockRoster, MAX_PAYLOAD_LEN, SkipBlock};
pub use chain::{ChainSource, LinkRequest, SkipChain};
pub use link::ForwardLink;
pub use params::{ChainParams, MAX_BASE, MAX_HEIGHT};
pub use proof::{MAX_PROOF_STEPS, ProofStep, SkipProof, TrustedBlock};

#[cfg(test)]
mod tests;
