//! A running node's services wired together: the store, the network, the witness, and the
//! services built on them (sync, gossip, serving peers, leading appends, mirroring, build
//! verification, anchoring). Each service holds the narrow handles it needs; [`NodeCore`] owns
//! them and routes the network's events, with a bound on the tasks they may start.

use std::sync::Arc;
use std::time::Duration;

use chainiac_net::wire::{LinkedBlock, Request, Response};
use chainiac_net::{NetEvent, NetHandle, Reply};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::ChainParams;
use libp2p::PeerId;
use tokio::sync::{Semaphore, mpsc};

use crate::admission::Admission;
use crate::agreement::{Agreements, Conduct, Decision};
use crate::anchoring::Anchoring;
use crate::append::{AppendParts, Appender, NodeError};
use crate::artifacts::ArtifactStore;
use crate::config::Identity;
use crate::gossip::{Gossip, GossipHook};
use crate::metrics::Metrics;
use crate::replicate::Replicator;
use crate::roster_changes::{PendingRosterChange, RosterChanges};
use crate::rounds::{RoundConfig, Witness};
use crate::rules::timeline_roster;
use crate::serve::{AnswerHook, Dispatcher, ServeParts};
use crate::store::{ChainHead, Store, StoreError};
use crate::sync::{SyncError, Syncer};
use crate::verifier::Verifier;

/// Most requests from peers answered at once; more are refused as busy until some finish.
pub const MAX_REQUEST_TASKS: usize = 512;
/// Most gossip messages validated at once; more are ignored (not relayed by this node; peers
/// that miss a block learn it by sync).
pub const MAX_GOSSIP_TASKS: usize = 256;

/// What a node is made of, before its services are wired.
pub struct NodeParts {
    /// The node's identity.
    pub identity: Arc<Identity>,
    /// Its store.
    pub store: Store,
    /// Its witness.
    pub witness: Witness,
    /// The network task.
    pub net: NetHandle,
    /// Signing-round timeouts and shape.
    pub rounds: RoundConfig,
    /// Release artifacts this node stores and serves.
    pub artifacts: ArtifactStore,
    /// Ethereum anchoring of the timelines this node leads (off when `None`).
    pub anchoring: Option<Anchoring>,
    /// Build verification (off when `None`).
    pub verifier: Option<Arc<Verifier>>,
    /// Test seam: rewrites this node's answers to peers.
    pub answer_hook: Option<Arc<dyn AnswerHook>>,
    /// Test seam: drops gossip messages before validation.
    pub gossip_hook: Option<Arc<dyn GossipHook>>,
    /// Whose new chains this node stores (and cosigns).
    pub admission: Admission,
    /// Its metrics (the network may have registered its own in them already).
    pub metrics: Metrics,
    /// How it behaves in agreement (Byzantine only in tests).
    pub conduct: Conduct,
}

impl std::fmt::Debug for NodeParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeParts")
            .field("key", &self.identity.public().key)
            .field("rounds", &self.rounds)
            .finish()
    }
}

/// A running node's services.
pub struct NodeCore {
    identity: Arc<Identity>,
    store: Store,
    net: NetHandle,
    metrics: Arc<Metrics>,
    artifacts: ArtifactStore,
    witness: Arc<Witness>,
    rounds: RoundConfig,
    anchoring: Option<Anchoring>,
    verifier: Option<Arc<Verifier>>,
    syncer: Arc<Syncer>,
    gossip: Arc<Gossip>,
    appender: Appender,
    agreements: Arc<Agreements>,
    /// Decisions for the notary (taken once by [`NodeCore::run_agreement`]).
    decisions: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Decision>>>,
    dispatcher: Arc<Dispatcher>,
    roster_changes: Arc<RosterChanges>,
    request_tasks: Arc<Semaphore>,
    gossip_tasks: Arc<Semaphore>,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("key", &self.key())
            .finish()
    }
}

impl NodeCore {
    /// Wires the services of a node.
    pub fn new(parts: NodeParts) -> Self {
        let NodeParts {
            identity,
            store,
            witness,
            net,
            rounds,
            artifacts,
            anchoring,
            verifier,
            answer_hook,
            gossip_hook,
            admission,
            metrics,
            conduct,
        } = parts;
        let metrics = Arc::new(metrics);
        let witness = Arc::new(witness);
        let replicator = Arc::new(Replicator::new(
            store.clone(),
            artifacts.clone(),
            net.clone(),
            metrics.clone(),
        ));
        let syncer = Arc::new(Syncer::new(
            store.clone(),
            net.clone(),
            metrics.clone(),
            replicator.clone(),
            admission,
        ));
        let gossip = Arc::new(Gossip::new(
            store.clone(),
            net.clone(),
            metrics.clone(),
            syncer.clone(),
            gossip_hook,
        ));
        let (agreements, decisions) = Agreements::new(
            identity.clone(),
            store.clone(),
            net.clone(),
            witness.clone(),
            rounds.timing(),
            rounds.commit_timeout + rounds.respond_timeout + rounds.view_base,
            conduct,
        );
        let agreements = Arc::new(agreements);
        let appender = Appender::new(AppendParts {
            key: identity.public().key,
            store: store.clone(),
            net: net.clone(),
            witness: witness.clone(),
            rounds,
            artifacts: artifacts.clone(),
            verifier: verifier.clone(),
            metrics: metrics.clone(),
            gossip: gossip.clone(),
            agreements: agreements.clone(),
            replicator,
        });
        let roster_changes = Arc::new(RosterChanges::default());
        let dispatcher = Arc::new(Dispatcher::new(ServeParts {
            store: store.clone(),
            net: net.clone(),
            witness: witness.clone(),
            artifacts: artifacts.clone(),
            verifier: verifier.clone(),
            metrics: metrics.clone(),
            syncer: syncer.clone(),
            roster_changes: roster_changes.clone(),
            agreements: agreements.clone(),
            hook: answer_hook,
        }));
        Self {
            identity,
            store,
            net,
            metrics,
            artifacts,
            witness,
            rounds,
            anchoring,
            verifier,
            syncer,
            gossip,
            appender,
            agreements,
            decisions: std::sync::Mutex::new(Some(decisions)),
            dispatcher,
            roster_changes,
            request_tasks: Arc::new(Semaphore::new(MAX_REQUEST_TASKS)),
            gossip_tasks: Arc::new(Semaphore::new(MAX_GOSSIP_TASKS)),
        }
    }

    /// The node's public key (its witness key and libp2p identity).
    pub fn key(&self) -> PublicKey {
        self.identity.public().key
    }

    /// The node's identity.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// Its store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The network task.
    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    /// Its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Its artifacts.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Its witness.
    pub fn witness(&self) -> &Witness {
        &self.witness
    }

    /// Its round settings.
    pub fn rounds(&self) -> &RoundConfig {
        &self.rounds
    }

    /// Its agreement service.
    pub fn agreements(&self) -> &Arc<Agreements> {
        &self.agreements
    }

    /// Runs agreement until the node stops: keeps the machines' time, and logs each decided
    /// block (its forward links signed, stored, gossiped). The member that led the deciding
    /// view logs it at once; the others wait a view's base time and log it if it is still
    /// missing, so that a leader crashing after the decision does not leave the position
    /// unlogged.
    pub async fn run_agreement(self: Arc<Self>) {
        let decisions = self
            .decisions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut decisions) = decisions else {
            return;
        };
        let patience = self.agreements.patience();
        // One attempt per position at a time: a decision handed over again while an attempt
        // runs is dropped.
        let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<(Hash, u64)>>> =
            Arc::default();
        let notary = async {
            // The attempts that first wait out the leader: a stopping node drops them with
            // this task (the leader or another member logs the block), instead of holding the
            // node, and its store, open for the whole patience.
            let mut standing_by = tokio::task::JoinSet::new();
            while let Some(decision) = decisions.recv().await {
                while standing_by.try_join_next().is_some() {}
                let position = (decision.block.chain_id(), decision.block.index());
                if !in_flight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(position)
                {
                    continue;
                }
                let core = self.clone();
                let in_flight = in_flight.clone();
                let led = decision.led;
                let attempt = async move {
                    if !led {
                        tokio::time::sleep(patience).await;
                    }
                    let block = decision.block.clone();
                    if let Err(error) = core.appender.notarize(&decision).await {
                        tracing::warn!(chain = %block.chain_id(), index = block.index(), %error, "could not log a decided block; another member may");
                    }
                    in_flight
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&position);
                };
                if led {
                    // Logged at once; a stopping node waits for it (no one else would log it
                    // before the patience passes).
                    tokio::spawn(attempt);
                } else {
                    standing_by.spawn(attempt);
                }
            }
        };
        // Both run in this task, so that aborting it stops the timer too.
        tokio::select! {
            () = self.agreements.clone().run() => {}
            () = notary => {}
        }
    }

    /// Its sync service.
    pub fn syncer(&self) -> &Arc<Syncer> {
        &self.syncer
    }

    /// Its anchoring, if on.
    pub fn anchoring(&self) -> Option<&Anchoring> {
        self.anchoring.as_ref()
    }

    /// Its build verifier, if it is one.
    pub fn verifier(&self) -> Option<&Arc<Verifier>> {
        self.verifier.as_ref()
    }

    /// Answers a request from `peer` the way the network's requests are answered (the one
    /// dispatcher: rate limit, reads, signing).
    pub async fn answer(&self, peer: PeerId, request: Request) -> Response {
        self.dispatcher.answer(peer, request).await
    }

    /// Whether another leader asked this node, less than `within` ago, to sign a block at
    /// `index` of `chain_id` (its round may still be running).
    pub fn proposal_in_flight(&self, chain_id: &Hash, index: u64, within: Duration) -> bool {
        self.dispatcher
            .proposals()
            .in_flight(chain_id, index, within)
    }

    /// Creates a chain with `members` as its roster and gossips its genesis.
    pub async fn create_chain(
        &self,
        members: Vec<RosterMember>,
        threshold: Option<u32>,
        params: ChainParams,
        payload: Vec<u8>,
    ) -> Result<ChainHead, NodeError> {
        self.appender
            .create_chain(members, threshold, params, payload)
            .await
    }

    /// Appends a block to `chain_id` as leader (see [`Appender::append`]).
    pub async fn append(
        &self,
        chain_id: Hash,
        payload: Vec<u8>,
        roster: Option<Roster>,
    ) -> Result<ChainHead, NodeError> {
        self.appender.append(chain_id, payload, roster).await
    }

    /// This node's operator approves moving the timeline `timeline` to `roster`: the approval
    /// is signed with the node's key (a member of the timeline's current roster), kept, and
    /// sent to the other members; whichever leads the next epoch once a threshold approved
    /// includes the change. Returns the change as this node now sees it, and the members that
    /// could not be told (they learn it when their operator approves too, or not at all).
    pub async fn approve_roster(
        &self,
        timeline: Hash,
        roster: Roster,
    ) -> Result<(PendingRosterChange, Vec<PublicKey>), NodeError> {
        let current = timeline_roster(&self.store, &timeline).map_err(NodeError::Invalid)?;
        if current.index_of(&self.key()).is_none() {
            return Err(NodeError::Invalid(format!(
                "this node is not a member of timeline {timeline}'s roster: only its members approve a roster change"
            )));
        }
        let digest = chainiac_protocol::timeline::roster_change_digest(
            &timeline,
            &current.hash(),
            &roster.hash(),
        );
        let approval = chainiac_protocol::keys::KeySignature::sign(self.identity.secret(), &digest);
        let target = roster.hash();
        self.roster_changes
            .record(timeline, &current, roster.clone(), approval)
            .map_err(NodeError::Invalid)?;
        let others: Vec<PublicKey> = current
            .members()
            .iter()
            .map(|member| member.key)
            .filter(|key| *key != self.key())
            .collect();
        let sends = others.iter().map(|key| {
            let request = Request::ApproveRoster {
                timeline,
                roster: Box::new(roster.clone()),
                approval: Box::new(approval),
            };
            async move {
                let peer = chainiac_net::peer_id_of(key).ok()?;
                match self.net.request(peer, request).await {
                    Ok(Response::Approvals(_)) => None,
                    _ => Some(*key),
                }
            }
        });
        let unreached = futures::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
            .collect();
        let change = self
            .roster_changes
            .pending(&timeline, &current)
            .into_iter()
            .find(|change| change.roster == target)
            .ok_or_else(|| NodeError::Invalid("the approval was not kept".into()))?;
        Ok((change, unreached))
    }

    /// Timeline roster changes this node holds approvals for.
    pub fn roster_changes(&self) -> &RosterChanges {
        &self.roster_changes
    }

    /// Block `index` of a chain with the forward links into it.
    pub fn linked_block(
        &self,
        chain_id: &Hash,
        index: u64,
    ) -> Result<Option<LinkedBlock>, StoreError> {
        self.store.linked_block(chain_id, index)
    }

    /// Validates and stores a block received from a peer. Returns whether it was new.
    pub fn accept_block(&self, linked: &LinkedBlock) -> Result<bool, StoreError> {
        self.syncer.accept_block(linked, true)
    }

    /// Fetches a chain's missing blocks from `peer`, verifying each before storing it.
    pub async fn sync_chain(&self, peer: PeerId, chain_id: Hash) -> Result<u64, SyncError> {
        self.syncer.sync_chain(peer, chain_id).await
    }

    /// Handles network events until the network task stops.
    pub async fn run_events(self: Arc<Self>, mut events: mpsc::Receiver<NetEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request {
                    peer,
                    request,
                    reply,
                } => {
                    // The peer's own limits first, then the node's: nothing is decoded or
                    // spawned for a request either would refuse.
                    let slot = match self.dispatcher.admit(peer) {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            let _ = reply.send(refusal);
                            continue;
                        }
                    };
                    let Ok(permit) = self.request_tasks.clone().try_acquire_owned() else {
                        self.metrics.requests_refused.inc();
                        let busy = Response::Refused("node busy; retry later".into());
                        let _ = reply.send(Reply::of(&busy));
                        continue;
                    };
                    let dispatcher = self.dispatcher.clone();
                    tokio::spawn(async move {
                        let response = dispatcher.answer_bytes(slot, peer, request).await;
                        let _ = reply.send(response);
                        drop(permit);
                    });
                }
                NetEvent::Gossip {
                    source,
                    message_id,
                    data,
                } => {
                    let Ok(permit) = self.gossip_tasks.clone().try_acquire_owned() else {
                        self.net
                            .report(message_id, source, chainiac_net::Acceptance::Ignore)
                            .await;
                        continue;
                    };
                    let gossip = self.gossip.clone();
                    let net = self.net.clone();
                    tokio::spawn(async move {
                        let acceptance = gossip.validate(source, &data).await;
                        net.report(message_id, source, acceptance).await;
                        drop(permit);
                    });
                }
                NetEvent::Connected { peer, peers } => {
                    self.metrics.peers.set(peers as i64);
                    let syncer = self.syncer.clone();
                    tokio::spawn(async move { syncer.sync_with(peer).await });
                }
                NetEvent::Disconnected { peers } => {
                    self.metrics.peers.set(peers as i64);
                }
            }
        }
    }
}
