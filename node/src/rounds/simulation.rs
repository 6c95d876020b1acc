//! A network simulator for signing rounds at CoSi scale: thousands of witnesses in one process,
//! each a real [`Witness`] with its [`SubtreeRounds`], led by the real [`sign_link`]. Every
//! request and answer between two nodes is encoded in the wire format and decoded by its
//! receiver; it leaves when its sender's CPU and uplink are free and arrives one link latency
//! after its last byte left. Time is tokio's paused clock, so a round of simulated seconds runs
//! as fast as the CPU work in it. Each node's CPU is measured (the real time spent polling its
//! futures, nested calls charged to the callee) and keeps that node busy for as long in
//! simulated time, as if every node had a core of its own.
//!
//! Outcomes (who signs, attempts, messages, bytes) are deterministic; times include the measured
//! CPU of this machine and vary with it. Used by the tests below and by the at-scale figures of
//! docs/benchmarks.md ("Scale").

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use chainiac_net::wire::{Request, Response};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{
    Challenge, Contribution, ParticipationMask, ResponseShare, Roster, RosterMember, RoundTree,
};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, LinkRequest, SkipBlock};
use libp2p::PeerId;
use tokio::time::Instant;

use super::leader::{RoundConfig, RoundReport, sign_link};
use super::transport::{BoxFuture, WitnessTransport};
use super::tree::{SubtreeHost, SubtreeRounds};
use super::witness::{AnyPayload, Asker, Committed, Refusal, Witness};
use crate::config::Identity;
use crate::store::Store;

/// The links between simulated nodes.
#[derive(Clone, Copy, Debug)]
pub struct NetworkModel {
    /// One-way delay of every link.
    pub latency: Duration,
    /// Each node's uplink, in bytes per second: a node's messages leave one after the other.
    pub uplink_bytes_per_second: u64,
}

impl NetworkModel {
    /// 50 ms one way (100 ms round trips, as in the CoSi paper's testbed) and 100 Mbit/s uplinks.
    pub fn wide_area() -> Self {
        Self {
            latency: Duration::from_millis(50),
            uplink_bytes_per_second: 100_000_000 / 8,
        }
    }

    fn transmission(&self, bytes: usize) -> Duration {
        let nanos =
            (bytes as u128 * 1_000_000_000) / u128::from(self.uplink_bytes_per_second.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// What a simulated witness does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Never answers.
    Silent,
    /// Answers every challenge with a wrong share.
    WrongShare,
    /// As an interior node: commits itself and reports every member below it as failed, without
    /// asking them.
    AccusesChildren,
    /// As an interior node: commits honestly for its subtree, then answers the challenge by
    /// blaming all its children.
    BlamesChildren,
}

struct SimNode {
    key: PublicKey,
    peer: PeerId,
    witness: Witness,
    subtrees: SubtreeRounds,
    behaviour: Behaviour,
    /// The children of this node in each tree round it was asked to commit for (for
    /// [`Behaviour::BlamesChildren`]).
    children: Mutex<HashMap<Hash, Vec<usize>>>,
}

#[derive(Default, Clone, Copy)]
struct NodeClock {
    cpu: Duration,
    busy_until: Option<Instant>,
    uplink_free: Option<Instant>,
    bytes_sent: u64,
    messages_sent: u64,
}

struct SimNet {
    nodes: Vec<SimNode>,
    by_key: HashMap<PublicKey, usize>,
    clocks: Vec<Mutex<NodeClock>>,
    network: NetworkModel,
}

thread_local! {
    /// The node whose future is being polled, and since when (real time).
    static RUNNING: Cell<Option<(usize, std::time::Instant)>> = const { Cell::new(None) };
}

impl SimNet {
    fn clock(&self, node: usize) -> std::sync::MutexGuard<'_, NodeClock> {
        self.clocks[node]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn charge(&self, node: usize, cpu: Duration) {
        let now = Instant::now();
        let mut clock = self.clock(node);
        clock.cpu += cpu;
        clock.busy_until = Some(clock.busy_until.map_or(now, |busy| busy.max(now)) + cpu);
    }

    /// Charges the node being polled for its CPU so far, so that what it sends now leaves after
    /// that work.
    fn settle(&self) {
        let now = std::time::Instant::now();
        if let Some((node, since)) = RUNNING.get() {
            self.charge(node, now - since);
            RUNNING.set(Some((node, now)));
        }
    }

    /// Sends `bytes` from `node`: returns when they arrive.
    fn send(&self, node: usize, bytes: usize) -> Instant {
        self.settle();
        let now = Instant::now();
        let mut clock = self.clock(node);
        let departure = [clock.busy_until, clock.uplink_free]
            .into_iter()
            .flatten()
            .fold(now, Instant::max);
        let sent = departure + self.network.transmission(bytes);
        clock.uplink_free = Some(sent);
        clock.bytes_sent += bytes as u64;
        clock.messages_sent += 1;
        sent + self.network.latency
    }

    /// Node `me` handles `request` from `from`; `None` for no answer at all.
    async fn handle(self: Arc<Self>, me: usize, from: usize, request: Vec<u8>) -> Option<Vec<u8>> {
        let busy = self.clock(me).busy_until;
        if let Some(busy) = busy {
            tokio::time::sleep_until(busy).await;
        }
        let node = &self.nodes[me];
        if node.behaviour == Behaviour::Silent {
            return None;
        }
        let request = match Request::from_bytes(&request) {
            Ok(request) => request,
            Err(error) => return Some(Response::Refused(error.to_string()).to_bytes()),
        };
        let host = SimView {
            net: self.clone(),
            me,
            from,
        };
        let refuse = |refusal: Refusal| Response::Refused(refusal.to_string());
        let answer = match request {
            Request::Commit {
                round,
                block,
                level,
            } => node
                .witness
                .commit(host.asker(), round, &block, level)
                .map_or_else(refuse, Response::Committed),
            Request::Respond { round, challenge } => host
                .respond(round, &challenge)
                .map_or_else(refuse, Response::Responded),
            Request::TreeCommit {
                round,
                block,
                level,
                layout,
                budget_ms,
            } => match node.behaviour {
                Behaviour::AccusesChildren => {
                    match node
                        .witness
                        .commit_round(host.asker(), round, &block, level)
                    {
                        Ok(committed) => accuse_everyone_below(me, &committed, layout),
                        Err(refusal) => refuse(refusal),
                    }
                }
                _ => {
                    if let Ok(tree) = RoundTree::new(layout.clone(), self.nodes.len()) {
                        node.children
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(round, tree.children(me));
                    }
                    node.subtrees
                        .commit(&host, round, *block, level, layout, budget_ms)
                        .await
                }
            },
            Request::TreeRespond {
                round,
                challenge,
                budget_ms,
            } => {
                let children = node
                    .children
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&round)
                    .unwrap_or_default();
                match node.behaviour {
                    Behaviour::AccusesChildren => host
                        .respond(round, &challenge)
                        .map_or_else(refuse, Response::SubtreeResponded),
                    Behaviour::BlamesChildren if !children.is_empty() => {
                        Response::SubtreeIncomplete {
                            culprits: ParticipationMask::from_indices(self.nodes.len(), children),
                        }
                    }
                    _ => {
                        node.subtrees
                            .respond(&host, round, challenge, budget_ms)
                            .await
                    }
                }
            }
            _ => Response::Refused("not served by simulated witnesses".into()),
        };
        Some(answer.to_bytes())
    }
}

/// The answer of [`Behaviour::AccusesChildren`]: only its own commitment, everyone else in its
/// subtree reported as failed.
fn accuse_everyone_below(
    me: usize,
    committed: &Committed,
    layout: chainiac_protocol::cosi::TreeLayout,
) -> Response {
    let Ok(tree) = RoundTree::new(layout, committed.roster.len()) else {
        return Response::Refused("invalid tree".into());
    };
    let (mut failed, _) = tree.subtree(me);
    failed.clear(me);
    Response::SubtreeCommitted {
        contribution: Contribution::single(&committed.roster, me, &committed.commitment),
        failed,
    }
}

/// Charges the real time spent polling `inner` to node `node` (time spent in nested
/// [`Charged`] futures goes to their nodes).
struct Charged<F> {
    net: Arc<SimNet>,
    node: usize,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Charged<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = std::time::Instant::now();
        let outer = RUNNING.replace(Some((self.node, start)));
        if let Some((caller, since)) = outer {
            self.net.charge(caller, start - since);
        }
        let result = self.inner.as_mut().poll(cx);
        let end = std::time::Instant::now();
        if let Some((node, since)) = RUNNING.get() {
            self.net.charge(node, end - since);
        }
        RUNNING.set(outer.map(|(caller, _)| (caller, end)));
        result
    }
}

/// The network as node `me` sees it while answering a request from `from`.
struct SimView {
    net: Arc<SimNet>,
    me: usize,
    from: usize,
}

impl SimView {
    fn respond(&self, round: Hash, challenge: &Challenge) -> Result<ResponseShare, Refusal> {
        let node = &self.net.nodes[self.me];
        node.witness
            .respond(self.asker(), round, challenge)
            .map(|mut share| {
                if node.behaviour == Behaviour::WrongShare {
                    share.s[0] ^= 1;
                }
                share
            })
    }
}

impl WitnessTransport for SimView {
    fn call(
        &self,
        witness: PublicKey,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, String>> {
        Box::pin(async move {
            let net = &self.net;
            let target = *net
                .by_key
                .get(&witness)
                .ok_or_else(|| "unknown witness".to_string())?;
            let request = request.to_bytes();
            let local = target == self.me;
            if !local {
                tokio::time::sleep_until(net.send(self.me, request.len())).await;
            }
            let handling = net.clone().handle(target, self.me, request);
            let answer = Charged {
                net: net.clone(),
                node: target,
                inner: Box::pin(handling),
            }
            .await;
            let Some(answer) = answer else {
                // A silent node: the caller's timeout decides.
                return futures::future::pending().await;
            };
            if !local {
                tokio::time::sleep_until(net.send(target, answer.len())).await;
            }
            Response::from_bytes(&answer).map_err(|e| format!("undecodable answer: {e}"))
        })
    }

    fn local_key(&self) -> Option<PublicKey> {
        Some(self.net.nodes[self.me].key)
    }
}

impl SubtreeHost for SimView {
    fn commit_own(
        &self,
        round: Hash,
        block: Arc<SkipBlock>,
        level: u32,
    ) -> BoxFuture<'_, Result<Committed, String>> {
        let witness = &self.net.nodes[self.me].witness;
        Box::pin(async move {
            witness
                .commit_round(self.asker(), round, &block, level)
                .map_err(|r| r.to_string())
        })
    }

    fn respond_own(
        &self,
        round: Hash,
        challenge: Challenge,
    ) -> BoxFuture<'_, Result<ResponseShare, String>> {
        Box::pin(async move { self.respond(round, &challenge).map_err(|r| r.to_string()) })
    }

    fn abandon_own(&self, round: Hash) {
        self.net.nodes[self.me]
            .witness
            .abandon(self.asker(), &round);
    }

    fn asker(&self) -> Asker {
        Asker::Peer(self.net.nodes[self.from].peer)
    }

    fn sent_by(&self, key: &PublicKey) -> bool {
        self.net.nodes[self.from].key == *key
    }
}

/// A roster of simulated witnesses and a chain they witness, with one block to sign.
pub struct Simulation {
    net: Arc<SimNet>,
    roster: Roster,
    block: SkipBlock,
    request: LinkRequest,
}

/// One signing round, measured.
#[derive(Debug)]
pub struct RoundMeasurement {
    /// The link the round produced.
    pub link: ForwardLink,
    /// What happened to each witness.
    pub report: RoundReport,
    /// Simulated time from the leader's start to the signature.
    pub wall: Duration,
    /// The leader's CPU.
    pub leader_cpu: Duration,
    /// The CPU of the busiest other node (an interior node of a tree, or any witness of a star).
    pub busiest_other_cpu: Duration,
    /// Bytes the leader sent.
    pub leader_bytes_sent: u64,
    /// Messages sent by all nodes (requests and answers).
    pub messages: u64,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("witnesses", &self.roster.len())
            .field("network", &self.net.network)
            .finish()
    }
}

impl Simulation {
    /// `witnesses` nodes, each behaving as `behaviour` says (the default is honest), with the
    /// given links.
    pub fn new(
        witnesses: usize,
        behaviour: impl Fn(usize) -> Behaviour,
        network: NetworkModel,
    ) -> Self {
        let identities: Vec<Arc<Identity>> = (0..witnesses)
            .map(|_| Arc::new(Identity::generate()))
            .collect();
        let roster = Roster::with_default_threshold(
            identities
                .iter()
                .map(|i| RosterMember::from_secret(i.secret()))
                .collect(),
        )
        .expect("a roster of fresh keys");
        let genesis = SkipBlock::genesis(
            ChainParams::new(2, 8).expect("parameters"),
            roster.clone(),
            b"simulation".to_vec(),
        )
        .expect("genesis");
        let secrets: Vec<&chainiac_protocol::keys::SecretKey> =
            identities.iter().map(|i| i.secret()).collect();
        let certificate = LinkRequest::for_genesis(&genesis)
            .expect("genesis request")
            .sign_locally(genesis.chain_id(), &roster, &secrets, &mut rand::rng())
            .expect("certificate");
        // One store for all: every witness would hold the same chain, and the equivocation
        // guard records the same block for each of them.
        let store = Store::in_memory();
        store
            .create_chain(&genesis, &certificate)
            .expect("create the chain");
        let block = SkipBlock::successor(&genesis, &roster, None, b"release".to_vec(), |_| {
            Some(genesis.hash())
        })
        .expect("block");
        let request = store
            .link_requests(&block)
            .expect("link requests")
            .into_iter()
            .find(|request| request.level == 0)
            .expect("a level-0 link");
        let nodes: Vec<SimNode> = identities
            .iter()
            .enumerate()
            .map(|(index, identity)| {
                let key = identity.public().key;
                let witness = Witness::new(identity.clone(), store.clone(), Arc::new(AnyPayload));
                witness.record_decision(block.chain_id(), block.index(), block.hash());
                SimNode {
                    key,
                    peer: chainiac_net::peer_id_of(&key).expect("a valid key"),
                    witness,
                    subtrees: SubtreeRounds::new(),
                    behaviour: behaviour(index),
                    children: Mutex::default(),
                }
            })
            .collect();
        let by_key = nodes.iter().enumerate().map(|(i, n)| (n.key, i)).collect();
        let clocks = (0..witnesses).map(|_| Mutex::default()).collect();
        Self {
            net: Arc::new(SimNet {
                nodes,
                by_key,
                clocks,
                network,
            }),
            roster,
            block,
            request,
        }
    }

    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Runs one round led by `leader` with `config` (a star unless `config` makes a tree) on a
    /// fresh paused clock, and measures it.
    pub fn sign(&self, leader: usize, config: RoundConfig) -> Result<RoundMeasurement, String> {
        for clock in &self.net.clocks {
            *clock.lock().unwrap_or_else(PoisonError::into_inner) = NodeClock::default();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let start = Instant::now();
            let view = SimView {
                net: self.net.clone(),
                me: leader,
                from: leader,
            };
            let signing = Charged {
                net: self.net.clone(),
                node: leader,
                inner: Box::pin(sign_link(
                    &view,
                    &self.roster,
                    &self.block,
                    &self.request,
                    config,
                )),
            };
            let (link, report) = signing.await.map_err(|e| e.to_string())?;
            let leader_clock = *self.net.clock(leader);
            let end = leader_clock
                .busy_until
                .map_or(Instant::now(), |busy| busy.max(Instant::now()));
            let others = (0..self.net.nodes.len()).filter(|&i| i != leader);
            Ok(RoundMeasurement {
                link,
                report,
                wall: end - start,
                leader_cpu: leader_clock.cpu,
                busiest_other_cpu: others
                    .clone()
                    .map(|i| self.net.clock(i).cpu)
                    .max()
                    .unwrap_or_default(),
                leader_bytes_sent: leader_clock.bytes_sent,
                messages: self
                    .net
                    .clocks
                    .iter()
                    .map(|c| {
                        c.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .messages_sent
                    })
                    .sum(),
            })
        })
    }

    /// Checks `link` as any client would: the collective signature over the link's message,
    /// by this roster.
    pub fn verify(&self, link: &ForwardLink) -> Result<(), String> {
        link.verify(&self.roster).map_err(|e| e.to_string())
    }
}

/// A round configuration: a star, or a tree of `branching` children per node.
pub fn round_config(branching: Option<usize>) -> RoundConfig {
    match branching {
        Some(branching) => RoundConfig {
            tree_branching: branching,
            tree_min_roster: 2,
            ..RoundConfig::default()
        },
        None => RoundConfig {
            tree_min_roster: usize::MAX,
            ..RoundConfig::default()
        },
    }
}

#[cfg(test)]
mod tests;
