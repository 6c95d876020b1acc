//! The witness side of signing rounds: validate a proposed block against the store, commit, and
//! answer the challenge with nonces that are then gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Challenge, Commitment, ResponseShare, SigningNonces, commit};
use chainiac_protocol::skipchain::SkipBlock;

use crate::config::Identity;
use crate::store::Store;

/// Most rounds a witness keeps nonces for at once (bounds memory a leader can make it use).
pub const MAX_PENDING_ROUNDS: usize = 4096;
/// How long nonces wait for their challenge.
pub const ROUND_TTL: Duration = Duration::from_secs(60);

/// Why a witness refuses to take part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The witness's chain is behind the proposal; it will sync and can sign later.
    #[error("witness is behind: its head is {head:?}, the proposal is block {proposed}")]
    Behind { head: Option<u64>, proposed: u64 },
    /// The proposal breaks a rule.
    #[error("invalid proposal: {0}")]
    Invalid(String),
    /// This node is not in the roster that signs the link.
    #[error("this node is not a witness of the roster that signs this link")]
    NotAWitness,
    /// The witness already committed to another block at this position.
    #[error("already committed to another block at index {index} of this chain")]
    Equivocation { index: u64 },
    /// A challenge for a round this witness has no nonces for.
    #[error("unknown or expired signing round")]
    UnknownRound,
}

/// Application rules for block payloads (releases, policies, timeline entries...), checked by
/// witnesses before they commit. The node issue logs opaque payloads; later issues plug rules in.
pub trait PayloadRules: Send + Sync + 'static {
    /// Accepts or refuses `block` as the next block of its chain.
    fn check(&self, store: &Store, block: &SkipBlock) -> Result<(), String>;
}

/// Accepts every payload (chains whose payloads need no checks).
#[derive(Debug, Default, Clone, Copy)]
pub struct AnyPayload;

impl PayloadRules for AnyPayload {
    fn check(&self, _: &Store, _: &SkipBlock) -> Result<(), String> {
        Ok(())
    }
}

struct PendingRound {
    nonces: SigningNonces,
    message: Hash,
    roster: Hash,
    /// (chain, index, level) and the block: recorded when the share is released.
    position: (Hash, u64, u32),
    block: Hash,
    created: Instant,
}

/// A witness: this node's key, its store, and the rounds in progress.
pub struct Witness {
    identity: Arc<Identity>,
    store: Store,
    rules: Arc<dyn PayloadRules>,
    pending: Mutex<HashMap<Hash, PendingRound>>,
    /// (chain, index, level) -> the block this witness released a response share for: it never
    /// signs two blocks at one position. Committing alone locks nothing, so a round that failed
    /// before its challenge does not block the position.
    committed: Mutex<HashMap<(Hash, u64, u32), Hash>>,
    /// Test hook: answer challenges with wrong shares.
    faulty: bool,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.identity.public().key)
            .finish()
    }
}

impl Witness {
    /// A witness with `identity` over `store`.
    pub fn new(
        identity: Arc<Identity>,
        store: Store,
        rules: Arc<dyn PayloadRules>,
        faulty: bool,
    ) -> Self {
        Self {
            identity,
            store,
            rules,
            pending: Mutex::default(),
            committed: Mutex::default(),
            faulty,
        }
    }

    /// Checks `block`'s payload with this witness's payload rules (what a leader does before
    /// starting a round, to give the submitter the precise rule that failed).
    pub fn check_rules(&self, block: &SkipBlock) -> Result<(), String> {
        self.rules.check(&self.store, block)
    }

    /// Step 1: checks that `block` is a valid next block of its chain (as this node's store
    /// sees it), that this node is in the roster signing the link at `level`, and commits.
    pub fn commit(
        &self,
        round: Hash,
        block: &SkipBlock,
        level: u32,
    ) -> Result<Commitment, Refusal> {
        let chain_id = block.chain_id();
        let head = self
            .store
            .head(&chain_id)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        match head {
            Some(head) if head.index + 1 < block.index() => {
                return Err(Refusal::Behind {
                    head: Some(head.index),
                    proposed: block.index(),
                });
            }
            None => {
                return Err(Refusal::Behind {
                    head: None,
                    proposed: block.index(),
                });
            }
            _ => {}
        }
        let requests = self
            .store
            .link_requests(block)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        let request = requests
            .iter()
            .find(|request| request.level == level)
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "block {} has no link at level {level}",
                    block.index()
                ))
            })?;
        let source = self
            .store
            .block_at(&chain_id, request.from_index)
            .map_err(|e| Refusal::Invalid(e.to_string()))?
            .ok_or_else(|| {
                Refusal::Invalid(format!("source block {} is missing", request.from_index))
            })?;
        let roster = self
            .store
            .roster_of(&source)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        let key = self.identity.public().key;
        if roster.index_of(&key).is_none() {
            return Err(Refusal::NotAWitness);
        }
        self.rules
            .check(&self.store, block)
            .map_err(Refusal::Invalid)?;
        {
            let mut committed = self
                .committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if committed
                .get(&(chain_id, block.index(), level))
                .is_some_and(|signed| *signed != block.hash())
            {
                return Err(Refusal::Equivocation {
                    index: block.index(),
                });
            }
            if committed.len() > 4 * MAX_PENDING_ROUNDS {
                // Positions at or below the head are settled by the store itself.
                committed.retain(|(chain, index, _), _| {
                    self.store
                        .head(chain)
                        .ok()
                        .flatten()
                        .is_none_or(|head| *index > head.index)
                });
            }
        }
        let (nonces, commitment) = commit(
            self.identity.secret(),
            request.message.as_bytes(),
            &mut rand::rng(),
        );
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, round| round.created.elapsed() < ROUND_TTL);
        if pending.len() >= MAX_PENDING_ROUNDS {
            return Err(Refusal::Invalid(
                "too many signing rounds in progress; try again".into(),
            ));
        }
        pending.insert(
            round,
            PendingRound {
                nonces,
                message: request.message,
                roster: roster.hash(),
                position: (chain_id, block.index(), level),
                block: block.hash(),
                created: Instant::now(),
            },
        );
        Ok(commitment)
    }

    /// Step 2: answers the challenge of `round`, consuming its nonces.
    pub fn respond(&self, round: Hash, challenge: &Challenge) -> Result<ResponseShare, Refusal> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&round);
        let pending = pending.ok_or(Refusal::UnknownRound)?;
        {
            let mut committed = self
                .committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let signed = committed.entry(pending.position).or_insert(pending.block);
            if *signed != pending.block {
                return Err(Refusal::Equivocation {
                    index: pending.position.1,
                });
            }
        }
        let roster = self
            .store
            .roster(&pending.roster)
            .map_err(|e| Refusal::Invalid(e.to_string()))?
            .ok_or(Refusal::UnknownRound)?;
        let mut share = pending
            .nonces
            .respond(
                self.identity.secret(),
                &roster,
                pending.message.as_bytes(),
                challenge,
            )
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        if self.faulty {
            share.s[0] ^= 1;
        }
        Ok(share)
    }
}
