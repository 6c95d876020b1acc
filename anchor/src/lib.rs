//! Anchoring of the chainiac timeline in an external chain. Each anchoring epoch one node writes
//! the latest timeline block's hash in one Ethereum transaction (whatever the number of
//! projects) and keeps an [`AnchorProof`]; anyone can check that proof against an Ethereum node
//! of their choice, with a minimum number of confirmations.
//!
//! The Ethereum backend speaks JSON-RPC over HTTP to a node that holds the sending account
//! unlocked (`eth_sendTransaction`: anvil or a local geth with its account manager). It never
//! anchors one timeline block twice: every attempt for a block reuses the nonce chosen for it, so
//! at most one of them can be mined.

mod anvil;
mod ethereum;
mod rpc;

pub use anvil::{AnvilNotFound, anvil_binary};
pub use chainiac_protocol::anchor::{AnchorProof, AnchorRequest, CALLDATA_TAG, anchor_calldata};
pub use ethereum::{EthereumAnchor, EthereumConfig};
pub use rpc::RpcError;

/// What can go wrong while anchoring or checking an anchor.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The Ethereum node cannot be reached or answered an error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The proof does not match the chain (changed hash, block, chain id, or reorganised away).
    #[error("anchor proof refused: {0}")]
    Refused(String),
    /// The transaction is mined but not yet deep enough.
    #[error("anchor has {confirmations} confirmations, {required} required; wait and check again")]
    NotConfirmed { confirmations: u64, required: u64 },
    /// Anchoring is turned off.
    #[error("anchoring is off")]
    Disabled,
}

/// The state of a verified anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// Blocks on top of (and including) the anchoring block.
    pub confirmations: u64,
}

/// An external chain the timeline can be anchored in.
pub trait Anchor: Send + Sync {
    /// Writes `request` in one transaction and waits until it is mined.
    fn anchor(&self, request: &AnchorRequest) -> Result<AnchorProof, AnchorError>;

    /// Checks `proof` against the external chain: the transaction exists in the block the proof
    /// names, carries the timeline block, and has at least `min_confirmations`.
    fn verify(
        &self,
        proof: &AnchorProof,
        min_confirmations: u64,
    ) -> Result<Confirmation, AnchorError>;

    /// Re-checks a proof after time has passed: the same proof if it still holds, a new one if
    /// its transaction was mined again in another block after a reorganisation, `None` if the
    /// transaction is gone (the caller anchors again).
    fn refresh(&self, proof: &AnchorProof) -> Result<Option<AnchorProof>, AnchorError>;
}

/// Anchoring turned off (the default): nothing is written, and every check says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAnchor;

impl Anchor for NoAnchor {
    fn anchor(&self, _: &AnchorRequest) -> Result<AnchorProof, AnchorError> {
        Err(AnchorError::Disabled)
    }

    fn verify(&self, _: &AnchorProof, _: u64) -> Result<Confirmation, AnchorError> {
        Err(AnchorError::Disabled)
    }

    fn refresh(&self, _: &AnchorProof) -> Result<Option<AnchorProof>, AnchorError> {
        Err(AnchorError::Disabled)
    }
}
