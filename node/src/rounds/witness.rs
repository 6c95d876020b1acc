//! The witness side of signing rounds: validate a proposed block against the store, commit, and
//! answer the challenge with nonces that are then gone.
//!
//! The equivocation guard: a witness never releases response shares for two different blocks
//! at one position (chain, index, link level). The position is recorded in the store, in one
//! synced write, before a share leaves the node, so the guard survives restarts and crashes.
//! Committing is refused only where a share for another block was already released: a round
//! that failed before its challenge does not lock the position.
//!
//! A locked position must not stall its chain when the round that locked it failed (its leader
//! crashed, or too many witnesses timed out): with the level-0 record the witness keeps the
//! block itself, and refuses a competing block by showing it (`Refusal::Locked`), so that the
//! next leader completes that block first instead of competing with it.
//!
//! Round state is bound to the peer that asked for it: nonces are kept under (asker, round id),
//! a round id an asker already uses is refused (never overwritten), and a challenge is answered
//! only for the asker that sent the commit. Another roster member that saw a round's id cannot
//! consume, replace or answer its nonces.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chainiac_protocol::Hash;
use chainiac_protocol::agreement::{Position, SignedCertificate};
use chainiac_protocol::cosi::{
    Challenge, Commitment, ResponseShare, Roster, SigningNonces, commit,
};
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::skipchain::{LinkRequest, SkipBlock, TrustedBlock};

use chainiac_net::wire::{Request, Response};
use libp2p::PeerId;

use crate::config::Identity;
use crate::store::Store;

/// Most rounds a witness keeps nonces for at once (bounds memory a leader can make it use).
pub const MAX_PENDING_ROUNDS: usize = 4096;
/// Of those, the rounds only askers that are members of the signing roster may take, so that
/// peers outside it (any peer can ask to commit to a decided block) cannot crowd out the
/// roster's leaders.
pub const MEMBERS_RESERVE: usize = 1024;
/// Most pending rounds of one asker.
pub const MAX_PENDING_PER_ASKER: usize = 256;
/// How long nonces wait for their challenge.
pub const ROUND_TTL: Duration = Duration::from_secs(60);
/// Most pending rounds that keep their whole proposed block (at most 1 MiB each, the request
/// bound) to record it with the guard; beyond, only the hash is recorded.
pub const MAX_KEPT_PROPOSALS: usize = 64;
/// Most chains a witness remembers a pending decision for (a decision is shown again if
/// forgotten).
pub const MAX_DECISIONS: usize = 4096;

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
    /// The witness already signed another block at this position.
    #[error("already signed another block at index {index} of this chain")]
    Equivocation { index: u64 },
    /// The witness already signed `block` at this position and shows it: a leader can get the
    /// position filled by completing that block.
    #[error("already signed block {} at index {} of this chain; complete it first", .block.hash(), .block.index())]
    Locked { block: Box<SkipBlock> },
    /// A challenge for a round this witness has no nonces for (from this asker).
    #[error("unknown or expired signing round")]
    UnknownRound,
    /// A commit for a round id this asker already used: nonces are never replaced.
    #[error("signing round id already in use by this leader; a round id is never reused")]
    RepeatedRound,
    /// The block is not known to be decided at its position: a witness signs a link into a
    /// block only once shown its commit certificate (`Decided`).
    #[error(
        "block {index} ({block}) is not decided at its position as far as this witness knows; send its commit certificate first"
    )]
    Undecided { index: u64, block: Hash },
}

/// Who asked a witness for a round. Rounds are kept per asker, so that one peer cannot answer,
/// replay or overwrite the round of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asker {
    /// This node's own leader (requests that never crossed the network).
    OwnNode,
    /// A peer over the network (authenticated by the connection).
    Peer(PeerId),
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
    /// The roster signing (kept: a genesis roster is in no store yet).
    roster: Roster,
    chain_id: Hash,
    index: u64,
    level: u32,
    block: Hash,
    /// The encoded block, kept for level 0 (see [`MAX_KEPT_PROPOSALS`]).
    proposal: Option<Vec<u8>>,
    created: Instant,
}

/// What a witness committed to: its commitment, with the roster and message of the round (an
/// interior node of an aggregation tree needs them to aggregate its subtree).
#[derive(Debug)]
pub struct Committed {
    /// The witness's commitment.
    pub commitment: Commitment,
    /// The roster signing the link.
    pub roster: Roster,
    /// The message signed (the link's message).
    pub message: Hash,
    /// The witness's index in the roster.
    pub index: usize,
}

/// A witness: this node's key, its store, and the rounds in progress.
pub struct Witness {
    identity: Arc<Identity>,
    store: Store,
    rules: Arc<dyn PayloadRules>,
    pending: Mutex<HashMap<(Asker, Hash), PendingRound>>,
    /// Per chain, the block decided at the position after this node's head, once shown its
    /// commit certificate (only that position's links are signed next).
    decisions: Mutex<BTreeMap<Hash, (u64, Hash)>>,
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
    pub fn new(identity: Arc<Identity>, store: Store, rules: Arc<dyn PayloadRules>) -> Self {
        Self {
            identity,
            store,
            rules,
            pending: Mutex::default(),
            decisions: Mutex::default(),
        }
    }

    /// Remembers that `block` is decided at (`chain_id`, `index`): this node's own agreement
    /// decided it, or [`Witness::accept_decision`] checked its certificate.
    pub fn record_decision(&self, chain_id: Hash, index: u64, block: Hash) {
        let mut decisions = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if decisions.len() >= MAX_DECISIONS && !decisions.contains_key(&chain_id) {
            decisions.pop_first();
        }
        decisions.insert(chain_id, (index, block));
    }

    /// The block decided at (`chain_id`, `index`), if this witness knows.
    pub fn decision(&self, chain_id: Hash, index: u64) -> Option<Hash> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&chain_id)
            .filter(|(decided, _)| *decided == index)
            .map(|(_, block)| *block)
    }

    /// Checks `certificate`, a commit certificate for `block` by the roster of the block
    /// before it (which this node must hold), and remembers the decision.
    pub fn accept_decision(
        &self,
        block: &SkipBlock,
        certificate: &SignedCertificate,
    ) -> Result<(), Refusal> {
        let chain_id = block.chain_id();
        let index = block.index();
        let invalid = |reason: String| Refusal::Invalid(reason);
        if index == 0 {
            return Err(invalid("a genesis is not decided by agreement".into()));
        }
        if certificate.statement.block != block.hash() {
            return Err(invalid("the certificate is for another block".into()));
        }
        let head = self
            .store
            .head(&chain_id)
            .map_err(|e| invalid(e.to_string()))?;
        if head.is_some_and(|head| head.index >= index) {
            return Err(invalid(format!(
                "block {index} is already logged here; a decision is needed only for the next block"
            )));
        }
        let previous = self
            .store
            .block_at(&chain_id, index - 1)
            .map_err(|e| invalid(e.to_string()))?;
        let Some(previous) = previous else {
            let head = self
                .store
                .head(&chain_id)
                .map_err(|e| invalid(e.to_string()))?;
            return Err(Refusal::Behind {
                head: head.map(|head| head.index),
                proposed: index,
            });
        };
        if block.back_links().first() != Some(&previous.hash()) {
            return Err(invalid(format!(
                "block {index} does not follow block {} of this chain",
                index - 1
            )));
        }
        let roster = self
            .store
            .roster_of(&previous)
            .map_err(|e| invalid(e.to_string()))?;
        certificate
            .verify_decision(&Position { chain_id, index }, &roster)
            .map_err(|e| invalid(format!("invalid commit certificate: {e}")))?;
        self.record_decision(chain_id, index, block.hash());
        Ok(())
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
        asker: Asker,
        round: Hash,
        block: &SkipBlock,
        level: u32,
    ) -> Result<Commitment, Refusal> {
        self.commit_round(asker, round, block, level)
            .map(|committed| committed.commitment)
    }

    /// [`Witness::commit`], also returning the round's roster, message and this witness's
    /// index in the roster.
    pub fn commit_round(
        &self,
        asker: Asker,
        round: Hash,
        block: &SkipBlock,
        level: u32,
    ) -> Result<Committed, Refusal> {
        let chain_id = block.chain_id();
        let (request, roster) = if block.index() == 0 {
            self.genesis_request(block, level)?
        } else {
            self.link_request(block, level)?
        };
        let key = self.identity.public().key;
        let Some(index) = roster.index_of(&key) else {
            return Err(Refusal::NotAWitness);
        };
        // A decided block was checked by the honest members that voted for it, against the
        // chain as it was then; checking time- or head-dependent rules again here could refuse
        // a decision for ever (a timeline entry near its time bound, a policy that changed
        // since). An undecided block is checked only to tell the asker the precise rule.
        if block.index() == 0 || self.decision(chain_id, block.index()) != Some(block.hash()) {
            self.rules
                .check(&self.store, block)
                .map_err(Refusal::Invalid)?;
        }
        if block.index() > 0 && self.decision(chain_id, block.index()) != Some(block.hash()) {
            return Err(Refusal::Undecided {
                index: block.index(),
                block: block.hash(),
            });
        }
        let signed = self
            .store
            .signed_block(&chain_id, block.index(), level)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        if signed.is_some_and(|signed| signed != block.hash()) {
            return Err(match self.store.signed_proposal(&chain_id, block.index()) {
                Ok(Some(locked)) => Refusal::Locked {
                    block: Box::new(locked),
                },
                _ => Refusal::Equivocation {
                    index: block.index(),
                },
            });
        }
        let (nonces, commitment) = commit(
            self.identity.secret(),
            request.message.as_bytes(),
            &mut rand::rng(),
        );
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, round| round.created.elapsed() < ROUND_TTL);
        if pending.contains_key(&(asker, round)) {
            return Err(Refusal::RepeatedRound);
        }
        let member = match asker {
            Asker::OwnNode => true,
            Asker::Peer(peer) => {
                chainiac_net::key_of_peer(&peer).is_some_and(|key| roster.index_of(&key).is_some())
            }
        };
        let cap = if member {
            MAX_PENDING_ROUNDS
        } else {
            MAX_PENDING_ROUNDS - MEMBERS_RESERVE
        };
        if pending.len() >= cap {
            return Err(Refusal::Invalid(
                "too many signing rounds in progress; try again".into(),
            ));
        }
        if pending.keys().filter(|(a, _)| *a == asker).count() >= MAX_PENDING_PER_ASKER {
            return Err(Refusal::Invalid(
                "too many signing rounds in progress from this peer; finish or abandon some".into(),
            ));
        }
        let keep = level == 0
            && pending.values().filter(|r| r.proposal.is_some()).count() < MAX_KEPT_PROPOSALS;
        pending.insert(
            (asker, round),
            PendingRound {
                nonces,
                message: request.message,
                roster: roster.clone(),
                chain_id,
                index: block.index(),
                level,
                block: block.hash(),
                proposal: keep.then(|| block.to_bytes()),
                created: Instant::now(),
            },
        );
        Ok(Committed {
            commitment,
            message: request.message,
            roster,
            index,
        })
    }

    /// The link request of a proposed block after the head, with the roster that signs it.
    fn link_request(
        &self,
        block: &SkipBlock,
        level: u32,
    ) -> Result<(LinkRequest, Roster), Refusal> {
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
            .into_iter()
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
        Ok((request, roster))
    }

    /// The certificate request of a proposed genesis, signed by the genesis roster. A chain
    /// this node already holds is not certified again under another genesis (it cannot be:
    /// the chain id is the genesis hash), and the same genesis may be certified again.
    fn genesis_request(
        &self,
        genesis: &SkipBlock,
        level: u32,
    ) -> Result<(LinkRequest, Roster), Refusal> {
        if level != 0 {
            return Err(Refusal::Invalid(
                "a genesis certificate is signed at level 0".into(),
            ));
        }
        let trusted =
            TrustedBlock::genesis(genesis.clone()).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let request =
            LinkRequest::for_genesis(genesis).map_err(|e| Refusal::Invalid(e.to_string()))?;
        Ok((request, trusted.roster().clone()))
    }

    /// Forgets the nonces of `asker`'s `round` (a round this witness will not answer).
    pub fn abandon(&self, asker: Asker, round: &Hash) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(asker, *round));
    }

    /// Step 2: answers the challenge of `round`, consuming its nonces. The position is recorded
    /// durably before the share is returned; a position already signed for another block is
    /// refused. Only the asker that sent the commit gets an answer.
    pub fn respond(
        &self,
        asker: Asker,
        round: Hash,
        challenge: &Challenge,
    ) -> Result<ResponseShare, Refusal> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(asker, round));
        let pending = pending.ok_or(Refusal::UnknownRound)?;
        let share = pending
            .nonces
            .respond(
                self.identity.secret(),
                &pending.roster,
                pending.message.as_bytes(),
                challenge,
            )
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        // The guard: durable before the share is released.
        match self.store.record_signed(
            &pending.chain_id,
            pending.index,
            pending.level,
            &pending.block,
            pending.proposal.as_deref(),
        ) {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(Refusal::Equivocation {
                    index: pending.index,
                });
            }
            Err(error) => {
                return Err(Refusal::Invalid(format!(
                    "cannot record the signed position: {error}"
                )));
            }
        }
        Ok(share)
    }
}

impl Witness {
    /// This witness's answer to a signing request of `asker` (a `Commit` or a `Respond`; the
    /// node answers everything else).
    pub fn answer(&self, asker: Asker, request: Request) -> Response {
        match request {
            Request::Commit {
                round,
                block,
                level,
            } => match self.commit(asker, round, &block, level) {
                Ok(commitment) => Response::Committed(commitment),
                Err(refusal) => refusal.into(),
            },
            Request::Respond { round, challenge } => match self.respond(asker, round, &challenge) {
                Ok(share) => Response::Responded(share),
                Err(refusal) => refusal.into(),
            },
            _ => Response::Refused("a witness answers signing requests only".into()),
        }
    }
}

/// A witness refusal on the wire: a lock shows its block, everything else is text.
impl From<Refusal> for Response {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Locked { block } => Response::Locked(block),
            other => Response::Refused(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use chainiac_protocol::cosi::{Aggregator, Contribution, RosterMember};
    use chainiac_protocol::skipchain::ChainParams;

    use super::*;

    /// A chain whose roster is `identity` alone, and two different candidates for block 1.
    fn chain(identity: &Identity, store: &Store) -> (SkipBlock, SkipBlock) {
        let roster =
            Roster::with_default_threshold(vec![RosterMember::from_secret(identity.secret())])
                .expect("roster");
        let genesis = SkipBlock::genesis(
            ChainParams::new(2, 8).expect("params"),
            roster.clone(),
            b"guard".to_vec(),
        )
        .expect("genesis");
        let certificate = LinkRequest::for_genesis(&genesis)
            .expect("genesis")
            .sign_locally(
                genesis.chain_id(),
                &roster,
                &[identity.secret()],
                &mut rand::rng(),
            )
            .expect("certificate");
        store.create_chain(&genesis, &certificate).expect("create");
        let candidate = |payload: &[u8]| {
            SkipBlock::successor(&genesis, &roster, None, payload.to_vec(), |_| {
                Some(genesis.hash())
            })
            .expect("successor")
        };
        (candidate(b"a"), candidate(b"b"))
    }

    fn witness(identity: &Arc<Identity>, store: &Store) -> Witness {
        Witness::new(identity.clone(), store.clone(), Arc::new(AnyPayload))
    }

    /// What the node's agreement does once `block` is decided (a witness signs links only
    /// into decided blocks; these tests are about the guard beneath that rule).
    fn decide(witness: &Witness, block: &SkipBlock) {
        witness.record_decision(block.chain_id(), block.index(), block.hash());
    }

    fn round(name: &str) -> Hash {
        Hash::of("test round", &[name.as_bytes()])
    }

    /// Commits to `block` at level 0 and answers the challenge of a round where this witness
    /// is the only participant.
    fn sign(witness: &Witness, name: &str, block: &SkipBlock) -> Result<ResponseShare, Refusal> {
        decide(witness, block);
        let committed = witness.commit_round(Asker::OwnNode, round(name), block, 0)?;
        let mut aggregator = Aggregator::new(&committed.roster, committed.message.as_bytes());
        aggregator
            .add_commitment(&Contribution::single(
                &committed.roster,
                committed.index,
                &committed.commitment,
            ))
            .expect("commitment");
        let challenge = aggregator.challenge().expect("challenge");
        witness.respond(Asker::OwnNode, round(name), &challenge)
    }

    #[test]
    fn peers_outside_the_roster_cannot_crowd_out_its_leaders() {
        let identity = Arc::new(Identity::generate());
        let store = Store::in_memory();
        let (a, _) = chain(&identity, &store);
        let witness = witness(&identity, &store);
        decide(&witness, &a);
        let stranger = Asker::Peer(PeerId::random());
        for i in 0..MAX_PENDING_PER_ASKER {
            witness
                .commit(stranger, round(&format!("stranger {i}")), &a, 0)
                .expect("within its quota");
        }
        let refused = witness.commit(stranger, round("one more"), &a, 0);
        assert!(
            matches!(&refused, Err(Refusal::Invalid(r)) if r.contains("from this peer")),
            "{refused:?}"
        );
        // Many strangers together fill what is not reserved for the roster.
        let open = MAX_PENDING_ROUNDS - MEMBERS_RESERVE;
        let mut taken = MAX_PENDING_PER_ASKER;
        while taken < open {
            let peer = Asker::Peer(PeerId::random());
            for i in 0..MAX_PENDING_PER_ASKER.min(open - taken) {
                witness
                    .commit(peer, round(&format!("{taken} {i}")), &a, 0)
                    .expect("room left");
            }
            taken += MAX_PENDING_PER_ASKER.min(open - taken);
        }
        let refused = witness.commit(Asker::Peer(PeerId::random()), round("late"), &a, 0);
        assert!(
            matches!(&refused, Err(Refusal::Invalid(r)) if r.contains("try again")),
            "{refused:?}"
        );
        // A member of the signing roster still gets its round.
        let member =
            Asker::Peer(chainiac_net::peer_id_of(&identity.public().key).expect("an Ed25519 key"));
        witness
            .commit(member, round("the roster's leader"), &a, 0)
            .expect("the reserve");
    }

    #[test]
    fn round_state_is_bound_to_the_asker_that_committed() {
        let identity = Arc::new(Identity::generate());
        let store = Store::in_memory();
        let (a, _) = chain(&identity, &store);
        let witness = witness(&identity, &store);
        let leader = Asker::Peer(PeerId::random());
        let replayer = Asker::Peer(PeerId::random());
        let id = round("honest");
        decide(&witness, &a);
        let committed = witness.commit_round(leader, id, &a, 0).expect("commit");
        // Another peer replaying the leader's Commit gets a round of its own: the leader's
        // nonces are not replaced.
        witness
            .commit(replayer, id, &a, 0)
            .expect("the replayer's own round");
        // The leader reusing its own round id is refused, not overwritten.
        assert_eq!(
            witness.commit(leader, id, &a, 0).err(),
            Some(Refusal::RepeatedRound)
        );
        let mut aggregator = Aggregator::new(&committed.roster, committed.message.as_bytes());
        aggregator
            .add_commitment(&Contribution::single(
                &committed.roster,
                committed.index,
                &committed.commitment,
            ))
            .expect("commitment");
        let challenge = aggregator.challenge().expect("challenge");
        // A peer that never committed cannot consume the leader's nonces.
        assert_eq!(
            witness
                .respond(Asker::Peer(PeerId::random()), id, &challenge)
                .err(),
            Some(Refusal::UnknownRound)
        );
        // The leader's challenge is answered with the nonces of its commitment.
        let share = witness.respond(leader, id, &challenge).expect("share");
        aggregator.add_response(&share).expect("the share verifies");
        let signature = aggregator.finish().expect("signature");
        assert!(
            committed
                .roster
                .verify(committed.message.as_bytes(), &signature)
                .is_ok()
        );
        assert_eq!(
            witness.respond(leader, id, &challenge).err(),
            Some(Refusal::UnknownRound),
            "nonces answer once"
        );
    }

    #[test]
    fn a_failed_commit_phase_does_not_lock_the_position() {
        let identity = Arc::new(Identity::generate());
        let store = Store::in_memory();
        let (a, b) = chain(&identity, &store);
        let witness = witness(&identity, &store);
        // Commit to a, never challenged: committing to b at the same position is still fine.
        decide(&witness, &a);
        witness
            .commit(Asker::OwnNode, round("a"), &a, 0)
            .expect("commit a");
        witness.abandon(Asker::OwnNode, &round("a"));
        sign(&witness, "b", &b).expect("b is signed");
        assert_eq!(
            store.signed_block(&a.chain_id(), 1, 0).expect("read"),
            Some(b.hash())
        );
        // Now a is refused at commit, showing the block signed there.
        decide(&witness, &a);
        assert_eq!(
            witness.commit(Asker::OwnNode, round("a2"), &a, 0).err(),
            Some(Refusal::Locked {
                block: Box::new(b.clone())
            })
        );
        // The same block again (a restarted round) is fine.
        sign(&witness, "b2", &b).expect("b again");
    }

    #[test]
    fn respond_is_refused_for_another_block_after_a_share_was_released() {
        let identity = Arc::new(Identity::generate());
        let store = Store::in_memory();
        let (a, b) = chain(&identity, &store);
        let witness = witness(&identity, &store);
        // Commit to both (nothing released yet), then answer a: b's answer is refused.
        decide(&witness, &b);
        let committed_b = witness
            .commit_round(Asker::OwnNode, round("b"), &b, 0)
            .expect("commit b");
        sign(&witness, "a", &a).expect("a is signed");
        let mut aggregator = Aggregator::new(&committed_b.roster, committed_b.message.as_bytes());
        aggregator
            .add_commitment(&Contribution::single(
                &committed_b.roster,
                committed_b.index,
                &committed_b.commitment,
            ))
            .expect("commitment");
        let challenge = aggregator.challenge().expect("challenge");
        assert_eq!(
            witness
                .respond(Asker::OwnNode, round("b"), &challenge)
                .err(),
            Some(Refusal::Equivocation { index: 1 })
        );
        assert_eq!(
            store.signed_block(&a.chain_id(), 1, 0).expect("read"),
            Some(a.hash())
        );
    }

    #[test]
    fn settled_positions_are_pruned() {
        let identity = Arc::new(Identity::generate());
        let store = Store::in_memory();
        let (a, _) = chain(&identity, &store);
        let chain_id = a.chain_id();
        let witness = witness(&identity, &store);
        // Block 1 is signed (recorded), stored with its link, then block 2 is signed.
        let signature = {
            decide(&witness, &a);
            let committed = witness
                .commit_round(Asker::OwnNode, round("link"), &a, 0)
                .expect("commit");
            let mut aggregator = Aggregator::new(&committed.roster, committed.message.as_bytes());
            aggregator
                .add_commitment(&Contribution::single(
                    &committed.roster,
                    committed.index,
                    &committed.commitment,
                ))
                .expect("commitment");
            let challenge = aggregator.challenge().expect("challenge");
            let share = witness
                .respond(Asker::OwnNode, round("link"), &challenge)
                .expect("share");
            aggregator.add_response(&share).expect("share");
            aggregator.finish().expect("signature")
        };
        let request = store.link_requests(&a).expect("requests")[0].clone();
        let link = chainiac_protocol::skipchain::ForwardLink {
            chain_id,
            from: request.from,
            to: request.to,
            level: 0,
            signature,
        };
        store.append(&a, &[link]).expect("append");
        let roster = store.roster_of(&a).expect("roster");
        let next = SkipBlock::successor(&a, &roster, None, b"2".to_vec(), |index| {
            store
                .block_at(&chain_id, index)
                .ok()
                .flatten()
                .map(|b| b.hash())
        })
        .expect("block 2");
        sign(&witness, "next", &next).expect("block 2 signed");
        assert_eq!(store.signed_block(&chain_id, 1, 0).expect("read"), None);
        assert_eq!(
            store.signed_block(&chain_id, 2, 0).expect("read"),
            Some(next.hash())
        );
    }

    #[test]
    fn the_guard_survives_reopening_the_rocksdb_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let identity = Arc::new(Identity::generate());
        let (a, b) = {
            let store = Store::open(&path).expect("open");
            let (a, b) = chain(&identity, &store);
            sign(&witness(&identity, &store), "a", &a).expect("a is signed");
            (a, b)
        };
        let store = Store::open(&path).expect("reopen");
        let witness = witness(&identity, &store);
        decide(&witness, &b);
        assert_eq!(
            witness.commit(Asker::OwnNode, round("b"), &b, 0).err(),
            Some(Refusal::Locked {
                block: Box::new(a.clone())
            })
        );
        assert_eq!(
            store.signed_proposal(&a.chain_id(), 1).expect("read"),
            Some(a.clone())
        );
        sign(&witness, "a again", &a).expect("the same block is still fine");
    }

    #[test]
    fn without_a_kept_block_a_lock_is_refused_by_index() {
        let identity = Arc::new(Identity::generate());
        let store = Store::in_memory();
        let (a, b) = chain(&identity, &store);
        let witness = witness(&identity, &store);
        // Fill the rounds that keep their block, then sign a: only its hash is recorded.
        decide(&witness, &b);
        for i in 0..MAX_KEPT_PROPOSALS {
            witness
                .commit(Asker::OwnNode, round(&format!("filler {i}")), &b, 0)
                .expect("commit");
        }
        sign(&witness, "a", &a).expect("a is signed");
        assert_eq!(store.signed_proposal(&a.chain_id(), 1).expect("read"), None);
        decide(&witness, &b);
        assert_eq!(
            witness.commit(Asker::OwnNode, round("b"), &b, 0).err(),
            Some(Refusal::Equivocation { index: 1 })
        );
    }
}
