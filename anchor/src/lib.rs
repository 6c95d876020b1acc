//! Anchoring of the chainiac timeline in an external chain. Each anchoring epoch one node writes
//! the latest timeline block's hash in one Ethereum transaction (whatever the number of
//! projects) and keeps an [`AnchorProof`] with its self-contained evidence: the block header,
//! the transaction and its receipt with Merkle-Patricia proofs, and the sending account
//! vouched for by a roster member. Anyone checks that evidence offline ([`verify_evidence`])
//! and asks any Ethereum node only whether the block is canonical and how deep.
//!
//! The node signs its transactions itself ([`load_key`]: an encrypted keystore or a 0600 key
//! file) and sends them raw over `http://` or `https://` ([`Endpoint`]); EIP-1559 fees stay
//! under a ceiling and a daily cap ([`FeePolicy`]); a stuck transaction is replaced with the
//! same nonce, so a timeline block is never anchored twice.

mod anvil;
mod capped_http;
mod contract;
mod endpoint;
mod ethereum;
mod evidence;
mod fees;
mod journal;
mod key;
pub mod synthetic;
mod transaction;

use std::future::Future;
use std::pin::Pin;

pub use anvil::{ANVIL_DEV_KEY, AnvilNotFound, anvil_binary, fund_from_dev_account};
pub use capped_http::MAX_RESPONSE_BYTES;
pub use chainiac_protocol::anchor::{
    AnchorAccount, AnchorEvidence, AnchorProof, AnchorRequest, CALLDATA_TAG, anchor_calldata,
};
pub use contract::{CONTRACT_RUNTIME, contract_creation_code, deploy_contract};
pub use endpoint::{DEFAULT_REQUEST_TIMEOUT, Endpoint, EndpointOptions, RpcError, display_url};
pub use ethereum::{EthereumAnchor, EthereumConfig, Voucher};
pub use evidence::{EvidenceError, VerifiedAnchor, build_evidence, trie_proof, verify_evidence};
pub use fees::{FeePolicy, FeeRefusal, Fees, GWEI, gwei};
pub use journal::JournalError;
pub use key::{KeyError, create_key, load_key, read_password_file};

/// A boxed future, so that [`Anchor`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What can go wrong while anchoring or checking an anchor.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The Ethereum node cannot be reached or answered an error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The proof does not hold (changed, forged, reorganised away) or the chain refused.
    #[error("anchor proof refused: {0}")]
    Refused(String),
    /// The transaction is mined but not yet deep enough.
    #[error("anchor has {confirmations} confirmations, {required} required; wait and check again")]
    NotConfirmed { confirmations: u64, required: u64 },
    /// The fee policy keeps the transaction from being sent now.
    #[error(transparent)]
    Fees(FeeRefusal),
    /// The journal of sent transactions cannot be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The anchoring key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// This backend has no key to send with.
    #[error(
        "anchoring needs the node's own Ethereum key: create one with `chainiac anchor key` and set anchor.key_file"
    )]
    NoKey,
    /// Anchoring is turned off.
    #[error("anchoring is off")]
    Disabled,
}

/// The state of a verified anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    /// Blocks on top of (and including) the anchoring block, the fewest any endpoint reports.
    pub confirmations: u64,
    /// What the evidence established.
    pub verified: VerifiedAnchor,
}

/// The anchoring account: what it holds and spends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountStatus {
    /// The address, `0x` hex.
    pub address: String,
    /// Its balance, wei.
    pub balance_wei: u128,
    /// Spent or reserved in the last 24 hours, wei.
    pub spent_today_wei: u128,
    /// The daily cap, wei.
    pub daily_cap_wei: u128,
    /// The fee ceiling, wei per gas.
    pub max_fee_per_gas: u128,
}

/// An external chain the timeline can be anchored in.
pub trait Anchor: Send + Sync {
    /// Writes `request` in one transaction and waits until it is mined.
    fn anchor<'a>(
        &'a self,
        request: &'a AnchorRequest,
    ) -> BoxFuture<'a, Result<AnchorProof, AnchorError>>;

    /// Checks `proof`: its evidence offline, then that its block is canonical on every
    /// configured endpoint with at least `min_confirmations`.
    fn verify<'a>(
        &'a self,
        proof: &'a AnchorProof,
        min_confirmations: u64,
    ) -> BoxFuture<'a, Result<Confirmation, AnchorError>>;

    /// Re-checks a proof after time has passed: the same proof if it still holds, a new one if
    /// its transaction was mined again in another block after a reorganisation (or the proof
    /// predates evidence), `None` if the transaction is gone (the caller anchors again).
    fn refresh<'a>(
        &'a self,
        proof: &'a AnchorProof,
    ) -> BoxFuture<'a, Result<Option<AnchorProof>, AnchorError>>;

    /// Anchors a proof's timeline block again after its transaction left the chain (a
    /// reorganisation), without ever having two transactions of that block mined.
    fn reanchor<'a>(
        &'a self,
        proof: &'a AnchorProof,
    ) -> BoxFuture<'a, Result<AnchorProof, AnchorError>>;

    /// The anchoring account's balance and spending, if this backend sends.
    fn status(&self) -> BoxFuture<'_, Result<Option<AccountStatus>, AnchorError>>;
}

/// Anchoring turned off (the default): nothing is written, and every check says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAnchor;

impl Anchor for NoAnchor {
    fn anchor<'a>(
        &'a self,
        _: &'a AnchorRequest,
    ) -> BoxFuture<'a, Result<AnchorProof, AnchorError>> {
        Box::pin(async { Err(AnchorError::Disabled) })
    }

    fn verify<'a>(
        &'a self,
        _: &'a AnchorProof,
        _: u64,
    ) -> BoxFuture<'a, Result<Confirmation, AnchorError>> {
        Box::pin(async { Err(AnchorError::Disabled) })
    }

    fn refresh<'a>(
        &'a self,
        _: &'a AnchorProof,
    ) -> BoxFuture<'a, Result<Option<AnchorProof>, AnchorError>> {
        Box::pin(async { Err(AnchorError::Disabled) })
    }

    fn reanchor<'a>(
        &'a self,
        _: &'a AnchorProof,
    ) -> BoxFuture<'a, Result<AnchorProof, AnchorError>> {
        Box::pin(async { Err(AnchorError::Disabled) })
    }

    fn status(&self) -> BoxFuture<'_, Result<Option<AccountStatus>, AnchorError>> {
        Box::pin(async { Ok(None) })
    }
}
