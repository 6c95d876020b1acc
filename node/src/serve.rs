//! Serving peers: the one dispatcher every request from the network goes through (the event
//! loop and the tests alike). It limits each peer's rate, answers reads from the store, and
//! hands signing requests to the witness and tree rounds, syncing first when a proposal depends
//! on blocks this node lacks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chainiac_net::wire::{
    HeadInfo, LinkedBlock, MAX_ANCHORS, MAX_BLOCKS_ANSWER_BYTES, MAX_BLOCKS_PER_REQUEST, MAX_HEADS,
    Request, Response,
};
use chainiac_net::{NetHandle, Reply, peer_id_of};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Challenge, ResponseShare};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::ReleaseManifest;
use chainiac_protocol::skipchain::SkipBlock;
use libp2p::PeerId;

use crate::agreement::{Agreements, Received};
use crate::artifacts::{ArtifactError, ArtifactStore};
use crate::metrics::Metrics;
use crate::peer_limits::{PeerLimits, PeerSlot};
use crate::roster_changes::RosterChanges;
use crate::rounds::{
    Asker, BoxFuture, Committed, Refusal, SubtreeHost, SubtreeRounds, Witness, WitnessTransport,
};
use crate::rules::{chain_kind, dependencies, timeline_at, timeline_roster};
use crate::store::{Store, StoreError};
use crate::sync::Syncer;
use crate::verifier::Verifier;

/// Memory for `Blocks` answers being built or written out, in MiB: each takes its budget's
/// share, so at most ten exist at once whatever peers ask.
pub const BLOCKS_ANSWERS_MIB: u32 = 256;
/// One `Blocks` answer's share: its byte budget and encoding overhead.
const BLOCKS_ANSWER_MIB: u32 = (MAX_BLOCKS_ANSWER_BYTES >> 20) as u32 + 1;
/// Longest a witness syncs from a leader before it answers the leader's commit.
const COMMIT_SYNC_DEADLINE: Duration = Duration::from_secs(20);
/// How long a `Blocks` request waits for memory before it is refused.
const BLOCKS_MEMORY_WAIT: Duration = Duration::from_secs(5);

/// Rewrites this node's answers before they leave: the seam through which tests make a node
/// Byzantine (wrong shares, equivocation, replays) without a flag in the witness itself.
pub trait AnswerHook: Send + Sync + 'static {
    /// The answer to send to `peer` for `request` instead of `answer`.
    fn rewrite(&self, peer: PeerId, request: &Request, answer: Response) -> Response;
}

/// Per chain, the position of the latest block another leader asked this node to sign, and
/// when: a node does not propose a competing block there while that round may still be running
/// (two leaders' rounds at one position can split the witnesses' guards).
#[derive(Debug, Default)]
pub struct ProposalsSeen {
    seen: Mutex<HashMap<Hash, (u64, Instant)>>,
}

impl ProposalsSeen {
    fn record(&self, chain_id: Hash, index: u64) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(chain_id, (index, Instant::now()));
    }

    /// Whether another leader asked this node, less than `within` ago, to sign a block at
    /// `index` of `chain_id` (its round may still be running).
    pub fn in_flight(&self, chain_id: &Hash, index: u64, within: Duration) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(chain_id)
            .is_some_and(|(seen, at)| *seen == index && at.elapsed() < within)
    }
}

/// What the dispatcher serves from.
#[derive(Clone)]
pub struct ServeParts {
    /// The node's store.
    pub store: Store,
    /// The network, to reach children in tree rounds.
    pub net: NetHandle,
    /// The node's witness.
    pub witness: Arc<Witness>,
    /// Its artifacts.
    pub artifacts: ArtifactStore,
    /// Its build verifier, if it is one.
    pub verifier: Option<Arc<Verifier>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Sync, for a witness that lacks blocks a proposal depends on.
    pub syncer: Arc<Syncer>,
    /// Timeline roster changes waiting for approvals.
    pub roster_changes: Arc<RosterChanges>,
    /// Agreement on the next block of each chain.
    pub agreements: Arc<Agreements>,
    /// Test seam: rewrites answers before they leave.
    pub hook: Option<Arc<dyn AnswerHook>>,
}

impl std::fmt::Debug for ServeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeParts")
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

/// The request dispatcher.
pub struct Dispatcher {
    parts: ServeParts,
    subtrees: SubtreeRounds,
    proposals: ProposalsSeen,
    limits: PeerLimits,
    /// MiB of `Blocks` answers being built or written (see [`BLOCKS_ANSWERS_MIB`]).
    blocks_memory: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("subtrees", &self.subtrees)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher over `parts`.
    pub fn new(parts: ServeParts) -> Self {
        Self {
            parts,
            subtrees: SubtreeRounds::new(),
            proposals: ProposalsSeen::default(),
            limits: PeerLimits::default(),
            blocks_memory: Arc::new(tokio::sync::Semaphore::new(BLOCKS_ANSWERS_MIB as usize)),
        }
    }

    /// Proposals of other leaders this node was asked to sign.
    pub fn proposals(&self) -> &ProposalsSeen {
        &self.proposals
    }

    fn counted(&self, response: Response) -> Response {
        if matches!(response, Response::Refused(_)) {
            self.parts.metrics.requests_refused.inc();
        } else {
            self.parts.metrics.requests_served.inc();
        }
        response
    }

    /// Takes in a request of `peer` within its limits (rate and requests in flight), before it
    /// is decoded; the refusal to send otherwise.
    pub fn admit(&self, peer: PeerId) -> Result<PeerSlot, Reply> {
        self.limits
            .admit(peer)
            .map_err(|refusal| Reply::of(&self.counted(Response::Refused(refusal.to_string()))))
    }

    /// Decodes a request `peer` sent as `bytes` on a blocking thread (charging the time to the
    /// peer), answers it, and encodes the answer. A `Blocks` answer holds its share of the
    /// memory for such answers until it is written out.
    pub async fn answer_bytes(
        self: &Arc<Self>,
        slot: PeerSlot,
        peer: PeerId,
        bytes: Vec<u8>,
    ) -> Reply {
        let request = match slot.decode(move || Request::from_bytes(&bytes)).await {
            Ok(Ok(request)) => request,
            Ok(Err(error)) => {
                return Reply::of(
                    &self.counted(Response::Refused(format!("malformed request: {error}"))),
                );
            }
            Err(refusal) => {
                return Reply::of(&self.counted(Response::Refused(refusal.to_string())));
            }
        };
        let memory = if matches!(request, Request::Blocks { .. }) {
            // One peer's answers are built and written two at a time (answers it does not
            // read stay held until the request times out), so that no peer can take the whole
            // budget from the others; its further requests wait their turn.
            let deadline = tokio::time::Instant::now() + BLOCKS_MEMORY_WAIT;
            let turn = tokio::time::timeout_at(deadline, slot.blocks_turn()).await;
            let share = self
                .blocks_memory
                .clone()
                .acquire_many_owned(BLOCKS_ANSWER_MIB);
            match (turn, tokio::time::timeout_at(deadline, share).await) {
                (Ok(Some(turn)), Ok(Ok(share))) => Some((turn, share)),
                _ => {
                    return Reply::of(&self.counted(Response::Refused(
                        "node busy serving blocks; retry later".into(),
                    )));
                }
            }
        } else {
            None
        };
        let answer = self.answer(peer, request).await;
        drop(slot);
        let bytes = tokio::task::spawn_blocking(move || answer.to_bytes())
            .await
            .unwrap_or_else(|_| Response::Refused("internal error".into()).to_bytes());
        Reply {
            bytes,
            hold: memory.map(|held| Box::new(held) as Box<dyn std::any::Any + Send>),
        }
    }

    /// Answers `peer`'s decoded request: reads and challenges on a blocking thread; commits
    /// (which may first sync from the leader) and tree rounds here.
    pub async fn answer(self: &Arc<Self>, peer: PeerId, request: Request) -> Response {
        let hook_request = self.parts.hook.as_ref().map(|_| request.clone());
        let answer = match request {
            Request::Commit {
                round,
                block,
                level,
            } => match self.commit_own(peer, round, Arc::new(*block), level).await {
                Ok(committed) => Response::Committed(committed.commitment),
                Err(refusal) => refusal.into(),
            },
            Request::TreeCommit {
                round,
                block,
                level,
                layout,
                budget_ms,
            } => {
                let host = TreeHost {
                    dispatcher: self.clone(),
                    peer,
                };
                self.subtrees
                    .commit(&host, round, *block, level, layout, budget_ms)
                    .await
            }
            Request::TreeRespond {
                round,
                challenge,
                budget_ms,
            } => {
                let host = TreeHost {
                    dispatcher: self.clone(),
                    peer,
                };
                self.subtrees
                    .respond(&host, round, challenge, budget_ms)
                    .await
            }
            request @ Request::Respond { .. } => {
                let witness = self.parts.witness.clone();
                tokio::task::spawn_blocking(move || witness.answer(Asker::Peer(peer), request))
                    .await
                    .unwrap_or_else(|_| Response::Refused("internal error".into()))
            }
            Request::Agreement {
                chain_id,
                index,
                message,
                block,
            } => self.agreement(peer, chain_id, index, message, block).await,
            Request::Candidate { block } => {
                let agreements = self.parts.agreements.clone();
                let chain_id = block.chain_id();
                let index = block.index();
                let behind = self
                    .parts
                    .store
                    .head(&chain_id)
                    .ok()
                    .flatten()
                    .is_none_or(|head| head.index + 1 < index);
                if behind {
                    let _ = self.sync_from(peer, chain_id).await;
                }
                tokio::task::spawn_blocking(move || agreements.receive_candidate(peer, *block))
                    .await
                    .unwrap_or_else(|_| Err("internal error".into()))
                    .map_or_else(Response::Refused, |()| Response::Noted)
            }
            Request::Decided { block, certificate } => {
                let accept = |witness: Arc<Witness>, block: SkipBlock, certificate| {
                    tokio::task::spawn_blocking(move || {
                        witness.accept_decision(&block, &certificate)
                    })
                };
                let mut accepted = accept(
                    self.parts.witness.clone(),
                    (*block).clone(),
                    certificate.clone(),
                )
                .await;
                if let Ok(Err(Refusal::Behind { .. })) = accepted {
                    if let Err(error) = self.sync_from(peer, block.chain_id()).await {
                        return Response::Refused(format!(
                            "this node is behind and could not sync from the sender: {error}"
                        ));
                    }
                    accepted = accept(self.parts.witness.clone(), *block, certificate).await;
                }
                match accepted {
                    Ok(Ok(())) => Response::Noted,
                    Ok(Err(refusal)) => refusal.into(),
                    Err(_) => Response::Refused("internal error".into()),
                }
            }
            request => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.answer_blocking(request))
                    .await
                    .unwrap_or_else(|_| Response::Refused("internal error".into()))
            }
        };
        let answer = match (&self.parts.hook, hook_request) {
            (Some(hook), Some(request)) => hook.rewrite(peer, &request, answer),
            _ => answer,
        };
        self.counted(answer)
    }

    /// Syncs `chain_id` from `peer`, bounded: a peer that drips blocks slowly must not hold a
    /// request (and its slot) for longer than a round could wait for it.
    async fn sync_from(&self, peer: PeerId, chain_id: Hash) -> Result<(), String> {
        match tokio::time::timeout(
            COMMIT_SYNC_DEADLINE,
            self.parts.syncer.sync_chain(peer, chain_id),
        )
        .await
        {
            Ok(result) => result.map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "not done within {} s",
                COMMIT_SYNC_DEADLINE.as_secs()
            )),
        }
    }

    /// An agreement message from `peer`: handed to the agreement service, after syncing the
    /// chain from the sender if the position is ahead of this node's head.
    async fn agreement(
        &self,
        peer: PeerId,
        chain_id: Hash,
        index: u64,
        message: chainiac_protocol::agreement::SignedMessage,
        block: Option<Box<SkipBlock>>,
    ) -> Response {
        let receive = |message, block: Option<Box<SkipBlock>>| {
            let agreements = self.parts.agreements.clone();
            tokio::task::spawn_blocking(move || {
                agreements.receive(peer, chain_id, index, &message, block.map(|b| *b))
            })
        };
        let mut received = receive(message.clone(), block.clone()).await;
        if let Ok(Ok(Received::Behind)) = received {
            if let Err(error) = self.sync_from(peer, chain_id).await {
                return Response::Refused(format!(
                    "this node is behind and could not sync from the sender: {error}"
                ));
            }
            received = receive(message, block).await;
        }
        match received {
            Ok(Ok(Received::Noted)) => Response::Noted,
            Ok(Ok(Received::Behind)) => {
                Response::Refused("this node is behind; it is syncing".into())
            }
            Ok(Err(reason)) => Response::Refused(reason),
            Err(_) => Response::Refused("internal error".into()),
        }
    }

    /// This node's witness commits for a round led by (or forwarded from) `peer`, syncing from
    /// it first if the block is beyond this node's head or depends on blocks it lacks.
    async fn commit_own(
        self: &Arc<Self>,
        peer: PeerId,
        round: Hash,
        block: Arc<SkipBlock>,
        level: u32,
    ) -> Result<Committed, Refusal> {
        // Only other nodes' proposals come here: this node's own witness is answered directly.
        self.proposals.record(block.chain_id(), block.index());
        let store = self.parts.store.clone();
        let needed = {
            let block = block.clone();
            tokio::task::spawn_blocking(move || dependencies(&store, &block))
                .await
                .unwrap_or_default()
        };
        for chain in needed {
            if let Err(error) = self.sync_from(peer, chain).await {
                return Err(Refusal::Invalid(format!(
                    "this witness lacks blocks of chain {chain} the proposal depends on and could not sync them from the leader: {error}"
                )));
            }
        }
        let commit = |witness: Arc<Witness>, block: Arc<SkipBlock>| {
            tokio::task::spawn_blocking(move || {
                witness.commit_round(Asker::Peer(peer), round, &block, level)
            })
        };
        let mut result = commit(self.parts.witness.clone(), block.clone()).await;
        if let Ok(Err(Refusal::Behind { .. })) = result {
            if let Err(error) = self.sync_from(peer, block.chain_id()).await {
                return Err(Refusal::Invalid(format!(
                    "witness is behind and could not sync from the leader: {error}"
                )));
            }
            result = commit(self.parts.witness.clone(), block).await;
        }
        result.unwrap_or_else(|_| Err(Refusal::Invalid("internal error".into())))
    }

    /// The answers that only read the store (and a challenge, which writes the guard).
    fn answer_blocking(&self, request: Request) -> Response {
        let refuse = |error: &dyn std::fmt::Display| Response::Refused(error.to_string());
        let store = &self.parts.store;
        match request {
            Request::Heads => match store.chains(MAX_HEADS) {
                Ok(heads) => Response::Heads(
                    heads
                        .into_iter()
                        .map(|h| HeadInfo {
                            chain_id: h.chain_id,
                            index: h.index,
                            hash: h.hash,
                        })
                        .collect(),
                ),
                Err(error) => refuse(&error),
            },
            Request::Blocks {
                chain_id,
                from,
                count,
            } => match blocks_answer(store, &chain_id, from, count, MAX_BLOCKS_ANSWER_BYTES) {
                Ok(blocks) => Response::Blocks(blocks),
                Err(error) => refuse(&error),
            },
            Request::Proof { chain_id, from, to } => match store.skip_proof(&chain_id, from, to) {
                Ok(proof) => Response::Proof(Box::new(proof)),
                Err(error) => refuse(&error),
            },
            Request::Head { chain_id } => match store.head(&chain_id) {
                Ok(head) => Response::Head(head.map(|h| HeadInfo {
                    chain_id: h.chain_id,
                    index: h.index,
                    hash: h.hash,
                })),
                Err(error) => refuse(&error),
            },
            Request::TimelineInclusion {
                timeline,
                index,
                chain_id,
            } => match self.timeline_inclusion(&timeline, index, &chain_id) {
                Ok(response) => response,
                Err(reason) => refuse(&reason),
            },
            Request::Attest {
                manifest,
                signatures,
            } => self.answer_attest(*manifest, signatures),
            Request::Anchors { timeline } => match store.anchors(&timeline, MAX_ANCHORS) {
                Ok(anchors) => Response::Anchors(anchors),
                Err(error) => refuse(&error),
            },
            Request::ArtifactSlice { hash, start, len } => {
                match self.parts.artifacts.slice(&hash, start, len) {
                    Ok((size, data)) => Response::Slice { size, data },
                    Err(error @ ArtifactError::Io { .. }) => {
                        tracing::warn!(%error, "cannot serve an artifact");
                        refuse(&"artifact unavailable on this node")
                    }
                    Err(error) => refuse(&error),
                }
            }
            Request::HeadsSummary => match store.heads_digest() {
                Ok(digest) => Response::HeadsSummary {
                    root: digest.root(),
                    chains: digest.chains(),
                },
                Err(error) => refuse(&error),
            },
            Request::HeadsBuckets => match store.heads_digest() {
                Ok(digest) => Response::HeadsBuckets(digest.buckets().to_vec()),
                Err(error) => refuse(&error),
            },
            Request::HeadsInBucket { bucket } => match store.heads_in_bucket(bucket, MAX_HEADS) {
                Ok(heads) => Response::Heads(
                    heads
                        .into_iter()
                        .map(|h| HeadInfo {
                            chain_id: h.chain_id,
                            index: h.index,
                            hash: h.hash,
                        })
                        .collect(),
                ),
                Err(error) => refuse(&error),
            },
            Request::ApproveRoster {
                timeline,
                roster,
                approval,
            } => {
                let recorded = timeline_roster(store, &timeline).and_then(|current| {
                    self.parts
                        .roster_changes
                        .record(timeline, &current, *roster, *approval)
                });
                match recorded {
                    Ok(count) => Response::Approvals(u32::try_from(count).unwrap_or(u32::MAX)),
                    Err(reason) => refuse(&reason),
                }
            }
            Request::Agreement { .. } | Request::Candidate { .. } | Request::Decided { .. } => {
                Response::Refused("agreement requests are answered by the agreement service".into())
            }
            Request::Commit { .. }
            | Request::Respond { .. }
            | Request::TreeCommit { .. }
            | Request::TreeRespond { .. } => {
                Response::Refused("signing requests are answered by the round services".into())
            }
        }
    }

    /// This node's answer to a request for its attestation of `manifest`.
    pub fn answer_attest(
        &self,
        manifest: ReleaseManifest,
        signatures: Vec<chainiac_protocol::keys::KeySignature>,
    ) -> Response {
        match &self.parts.verifier {
            None => Response::Refused("this node is not a build verifier".into()),
            Some(verifier) => match verifier.request(manifest, signatures) {
                Ok(attestation) => Response::Attestation(attestation.map(Box::new)),
                Err(reason) => Response::Refused(reason),
            },
        }
    }

    fn timeline_inclusion(
        &self,
        timeline: &Hash,
        index: u64,
        chain_id: &Hash,
    ) -> Result<Response, String> {
        let store = &self.parts.store;
        let genesis = chain_kind(store, timeline).map_err(|e| e.to_string())?;
        if !matches!(genesis, Some(ChainGenesis::Timeline { .. })) {
            return Err(format!(
                "{timeline} is not a timeline chain this node holds"
            ));
        }
        // The tree is built in memory: only up to the size this node keeps for the creator.
        let declared =
            timeline_at(store, timeline, index)?.ok_or("the timeline genesis lists no chain")?;
        self.parts.syncer.admission().admit_timeline_tree(
            genesis.and_then(|genesis| genesis.creator()).as_ref(),
            declared.commit.chain_count,
        )?;
        let (entry, proof) = store
            .timeline_tree(timeline, index)?
            .prove(chain_id)
            .ok_or_else(|| format!("chain {chain_id} is not in timeline block {index}"))?;
        let head_index = store
            .block(&entry.head)
            .map_err(|e| e.to_string())?
            .ok_or("the head the timeline names is not stored here")?
            .index();
        Ok(Response::Inclusion {
            entry,
            proof,
            head_index,
        })
    }
}

/// What an interior node of a tree round uses: its own witness, and the network to reach its
/// children, for a request from `peer`.
struct TreeHost {
    dispatcher: Arc<Dispatcher>,
    peer: PeerId,
}

impl WitnessTransport for TreeHost {
    fn call(
        &self,
        witness: PublicKey,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, String>> {
        Box::pin(async move {
            let peer = peer_id_of(&witness).map_err(|e| e.to_string())?;
            self.dispatcher
                .parts
                .net
                .request(peer, request)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl SubtreeHost for TreeHost {
    fn commit_own(
        &self,
        round: Hash,
        block: Arc<SkipBlock>,
        level: u32,
    ) -> BoxFuture<'_, Result<Committed, String>> {
        Box::pin(async move {
            self.dispatcher
                .commit_own(self.peer, round, block, level)
                .await
                .map_err(|refusal| refusal.to_string())
        })
    }

    fn respond_own(
        &self,
        round: Hash,
        challenge: Challenge,
    ) -> BoxFuture<'_, Result<ResponseShare, String>> {
        let witness = self.dispatcher.parts.witness.clone();
        let asker = Asker::Peer(self.peer);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || witness.respond(asker, round, &challenge))
                .await
                .map_err(|_| "internal error".to_string())?
                .map_err(|refusal| refusal.to_string())
        })
    }

    fn abandon_own(&self, round: Hash) {
        self.dispatcher
            .parts
            .witness
            .abandon(Asker::Peer(self.peer), &round);
    }

    fn sent_by(&self, key: &PublicKey) -> bool {
        peer_id_of(key).is_ok_and(|peer| peer == self.peer)
    }

    fn asker(&self) -> Asker {
        Asker::Peer(self.peer)
    }
}

/// The linked blocks of a `Blocks` answer: from `from`, at most `count` (and the protocol's
/// most), stopping before the block that would take the answer past `budget` bytes (but always
/// carrying the first, which fits any answer).
fn blocks_answer(
    store: &Store,
    chain_id: &Hash,
    from: u64,
    count: u32,
    budget: usize,
) -> Result<Vec<LinkedBlock>, StoreError> {
    let mut blocks = Vec::new();
    let mut bytes = 0usize;
    for index in from..from.saturating_add(u64::from(count.min(MAX_BLOCKS_PER_REQUEST))) {
        let Some(block) = store.linked_block(chain_id, index)? else {
            break;
        };
        let size = block.to_bytes().len();
        if !blocks.is_empty() && bytes.saturating_add(size) > budget {
            break;
        }
        bytes = bytes.saturating_add(size);
        blocks.push(block);
    }
    Ok(blocks)
}
