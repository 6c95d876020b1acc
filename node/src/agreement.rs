//! Deciding chain positions: this node's side of the agreement protocol
//! (`chainiac_protocol::agreement`, docs/protocol.md §9.5) for every chain whose next block
//! its roster decides.
//!
//! For each open position (the index after a chain's head, where this node is a member of the
//! head's roster) the node runs one [`Agreement`] machine and does what the machine cannot:
//! it checks who speaks (only roster members, by their authenticated peer id), the signatures
//! of every vote and certificate, and every proposed block (a successor of the head that
//! passes this node's payload rules) before the machine sees them; it signs its own votes;
//! persists the machine's promises before they leave; moves messages; and keeps time. A
//! decision is handed to the node ([`Decision`]), which gets the forward links signed.
//!
//! Who may ask what: any peer may offer a candidate block (it is checked like a proposal and
//! only ever voted on through the machine); only members of the deciding roster may send
//! agreement messages, and what they send is refused unless its evidence verifies.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chainiac_net::wire::{Request, Response};
use chainiac_net::{NetHandle, peer_id_of};
use chainiac_protocol::Hash;
use chainiac_protocol::agreement::{
    Action, Agreement, Certificate, DurableRecord, Event, Member, Message, Position,
    SignedCertificate, SignedMessage, Statement, Timing, quorum_of,
};
use chainiac_protocol::cosi::Roster;
use chainiac_protocol::keys::{PublicKey, Signature};
use chainiac_protocol::skipchain::SkipBlock;
use libp2p::PeerId;
use tokio::sync::{Notify, mpsc};

use crate::config::Identity;
use crate::rounds::Witness;
use crate::store::Store;

/// Most positions decided at once (one per chain whose next block is being decided).
pub const MAX_OPEN_POSITIONS: usize = 1024;
/// Most blocks kept per position (candidates and proposals seen).
pub const MAX_BLOCKS_PER_POSITION: usize = 2 * chainiac_protocol::agreement::MAX_CANDIDATES;
/// Most certificates kept per position, besides those the machine persisted.
const MAX_CERTIFICATES_PER_POSITION: usize = 32;
/// How long an agreement message may take to reach a member before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A decided position, for the node to get its forward links signed and store it.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The block decided.
    pub block: Arc<SkipBlock>,
    /// Its commit certificate.
    pub certificate: SignedCertificate,
    /// Whether this node logs it at once: it offered the block, or it proposed a block no
    /// member offered. The other members wait a view's base time to see whether it did.
    pub led: bool,
}

/// What a message from a peer led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Taken into account.
    Noted,
    /// The position is ahead of this node's head: it should sync from the sender first.
    Behind,
}

/// One open position.
struct Open {
    position: Position,
    roster: Roster,
    peers: Vec<PeerId>,
    me: Member,
    machine: Agreement,
    blocks: HashMap<Hash, Arc<SkipBlock>>,
    /// Blocks this node's own publishers offered (this node logs them once decided).
    offered_here: HashSet<Hash>,
    /// Blocks offered by another member's publishers (that member logs them).
    offered_by_members: HashSet<Hash>,
    /// When the decision was last handed to the node to be logged.
    delivered: Option<Instant>,
    /// Blocks written to the store with the record (those its promises name).
    persisted_blocks: HashSet<Hash>,
    /// Vote signatures received, for certificates this node may build as a leader.
    votes: HashMap<Statement, BTreeMap<Member, Signature>>,
    certificates: HashMap<Statement, SignedCertificate>,
}

/// How this node behaves in agreement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Conduct {
    /// As the protocol says.
    #[default]
    Honest,
    /// Test only (`CHAINIAC_TEST_BYZANTINE_AGREEMENT=1`): as a faulty member would. As a
    /// leader it proposes another block to every other member; with each vote it also votes
    /// for another block it holds; and it replays every message it receives to the other
    /// members. Honest members must stay safe and live with up to `f` such members.
    Byzantine,
}

/// Why a block is kept at a position.
#[derive(Clone, Copy)]
enum Kept {
    /// Offered by a publisher's node (anyone).
    Candidate,
    /// This node's own offer, or carried by a verified member's message.
    Evidence,
}

/// Where a candidate came from.
#[derive(Clone, Copy)]
enum Offer {
    /// This node's own publisher.
    Here,
    /// A peer forwarding its publisher's block.
    From(PeerId),
}

/// A message to send once the state lock is released.
struct Outgoing {
    to: PeerId,
    request: Request,
}

/// The agreement service of a node.
pub struct Agreements {
    identity: Arc<Identity>,
    store: Store,
    net: NetHandle,
    witness: Arc<Witness>,
    timing: Timing,
    patience: Duration,
    conduct: Conduct,
    clock: Instant,
    open: Mutex<HashMap<Position, Open>>,
    wake: Notify,
    decisions: mpsc::UnboundedSender<Decision>,
}

impl std::fmt::Debug for Agreements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agreements")
            .field("timing", &self.timing)
            .finish()
    }
}

impl Agreements {
    /// The service, and where its decisions arrive.
    pub fn new(
        identity: Arc<Identity>,
        store: Store,
        net: NetHandle,
        witness: Arc<Witness>,
        timing: Timing,
        patience: Duration,
        conduct: Conduct,
    ) -> (Self, mpsc::UnboundedReceiver<Decision>) {
        let (decisions, receiver) = mpsc::unbounded_channel();
        let service = Self {
            identity,
            store,
            net,
            witness,
            timing,
            patience,
            conduct,
            clock: Instant::now(),
            open: Mutex::default(),
            wake: Notify::new(),
            decisions,
        };
        (service, receiver)
    }

    /// The view timing.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// How long a member that need not log a decided block at once waits for the one that
    /// should before it does so itself; a decision still not logged is handed over again
    /// after this long.
    pub fn patience(&self) -> Duration {
        self.patience
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks `block` as the next block of its chain here: a successor of the head that
    /// passes this node's payload rules.
    pub fn check_block(&self, block: &SkipBlock) -> Result<(), String> {
        self.store
            .link_requests(block)
            .map_err(|e| format!("block {} does not follow the head: {e}", block.index()))?;
        self.witness.check_rules(block)
    }

    /// The members of the roster deciding `position` (the roster of the block before it),
    /// with their peer ids.
    pub fn deciding_roster(&self, position: Position) -> Result<(Roster, Vec<PeerId>), String> {
        let before = position.index.saturating_sub(1);
        let previous = self
            .store
            .block_at(&position.chain_id, before)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("block {before} of the chain is missing"))?;
        let roster = self.store.roster_of(&previous).map_err(|e| e.to_string())?;
        let peers = roster
            .members()
            .iter()
            .map(|member| peer_id_of(&member.key).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((roster, peers))
    }

    /// Offers `block` (checked with [`Agreements::check_block`]) to be decided at its position:
    /// this node's machine takes it as a candidate if it is a member of the deciding roster,
    /// and the block is forwarded to every other member, so that whoever leads proposes it.
    /// Called again from time to time while the position is undecided (messages may be lost).
    /// Returns the members that refused it, with their reasons.
    pub async fn offer(
        self: &Arc<Self>,
        block: Arc<SkipBlock>,
    ) -> Result<Vec<(PublicKey, String)>, String> {
        let (roster, peers) = self.deciding_roster(Position {
            chain_id: block.chain_id(),
            index: block.index(),
        })?;
        // Store writes and reads: not on the async workers.
        let outgoing = {
            let this = self.clone();
            let block = block.clone();
            tokio::task::spawn_blocking(move || this.candidate(block, Offer::Here))
                .await
                .map_err(|_| "internal error".to_string())??
        };
        self.send(outgoing);
        let me = self.identity.public().key;
        let asked = roster
            .members()
            .iter()
            .zip(peers)
            .filter(|(member, _)| member.key != me)
            .map(|(member, peer)| {
                let request = Request::Candidate {
                    block: Box::new((*block).clone()),
                };
                let net = self.net.clone();
                let key = member.key;
                async move {
                    match tokio::time::timeout(SEND_TIMEOUT, net.request(peer, request)).await {
                        Ok(Ok(Response::Refused(reason))) => Some((key, reason)),
                        _ => None,
                    }
                }
            });
        Ok(futures::future::join_all(asked)
            .await
            .into_iter()
            .flatten()
            .collect())
    }

    /// A candidate block from `peer` (a publisher's node forwarding it).
    pub fn receive_candidate(&self, peer: PeerId, block: SkipBlock) -> Result<(), String> {
        // A settled position is not the offerer's concern here: it learns the block logged
        // there by gossip or sync, and offers its own block again after it.
        let head = self
            .store
            .head(&block.chain_id())
            .map_err(|e| e.to_string())?;
        if head.is_some_and(|head| head.index >= block.index()) {
            return Ok(());
        }
        self.check_block(&block)?;
        let outgoing = self.candidate(Arc::new(block), Offer::From(peer))?;
        self.send(outgoing);
        Ok(())
    }

    /// Takes `block`, checked, as a candidate.
    fn candidate(&self, block: Arc<SkipBlock>, offer: Offer) -> Result<Vec<Outgoing>, String> {
        let position = Position {
            chain_id: block.chain_id(),
            index: block.index(),
        };
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = self.open_position(&mut open, position, None)? else {
            return Ok(Vec::new());
        };
        let hash = block.hash();
        state.keep_block(
            block,
            match offer {
                Offer::Here => Kept::Evidence,
                Offer::From(_) => Kept::Candidate,
            },
        )?;
        match offer {
            Offer::Here => {
                state.offered_here.insert(hash);
            }
            Offer::From(peer) => {
                if state.peers.contains(&peer)
                    && state.offered_by_members.len() < MAX_BLOCKS_PER_POSITION
                {
                    state.offered_by_members.insert(hash);
                }
            }
        }
        let actions = state.machine.handle(Event::Candidate(hash), self.now());
        let outgoing = self.perform(state, actions);
        self.redeliver_if_stale(state);
        self.wake.notify_one();
        Ok(outgoing)
    }

    /// An agreement message from `peer` about (`chain_id`, `index`). Only a member of the
    /// deciding roster is heard; its evidence is verified before anything is kept, and an
    /// attached block is checked (outside the state lock: rules may read the store) before the
    /// machine may vote for it.
    pub fn receive(
        &self,
        peer: PeerId,
        chain_id: Hash,
        index: u64,
        message: &SignedMessage,
        block: Option<SkipBlock>,
    ) -> Result<Received, String> {
        let position = Position { chain_id, index };
        let head = self
            .store
            .head(&chain_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("this node does not hold chain {chain_id}"))?;
        if index > head.index + 1 {
            return Ok(Received::Behind);
        }
        if index <= head.index {
            return Err(format!(
                "block {index} is already logged here (head {}); sync the chain",
                head.index
            ));
        }
        if let Some(block) = &block
            && Some(block.hash()) != message.block()
        {
            return Err("the attached block is not the one the message is about".into());
        }
        // First pass: who speaks, is the evidence valid, is the block new here.
        let (from, verified, unknown_block) = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let state = self
                .open_position(&mut open, position, Some(peer))?
                .ok_or("this node is not a member of the roster deciding this block")?;
            let from = state
                .peers
                .iter()
                .position(|member| *member == peer)
                .ok_or("only members of the deciding roster take part in its agreement")?;
            let from = Member::try_from(from).map_err(|_| "roster too large")?;
            let verified = message
                .verify(&position, &state.roster, from)
                .map_err(|e| e.to_string())?;
            let unknown = block
                .as_ref()
                .is_some_and(|block| !state.blocks.contains_key(&block.hash()));
            (from, verified, unknown)
        };
        if unknown_block && let Some(block) = &block {
            self.check_block(block)?;
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(state) = open.get_mut(&position) else {
            return Err("the position was settled meanwhile".into());
        };
        if let Some(block) = block {
            state.keep_block(Arc::new(block), Kept::Evidence)?;
        }
        if let SignedMessage::Propose { block, .. } = message
            && !state.blocks.contains_key(block)
        {
            return Err("a proposal must carry its block".into());
        }
        state.remember(message, from);
        if self.conduct == Conduct::Byzantine {
            let replay = Request::Agreement {
                chain_id,
                index,
                message: message.clone(),
                block: message
                    .block()
                    .and_then(|hash| state.blocks.get(&hash))
                    .map(|block| Box::new((**block).clone())),
            };
            let me = state.me as usize;
            let replays: Vec<Outgoing> = state
                .peers
                .iter()
                .enumerate()
                .filter(|(member, other)| *member != me && **other != peer)
                .map(|(_, other)| Outgoing {
                    to: *other,
                    request: replay.clone(),
                })
                .collect();
            self.send(replays);
        }
        let actions = state.machine.handle(
            Event::Received {
                from,
                message: verified,
            },
            self.now(),
        );
        let outgoing = self.perform(state, actions);
        drop(open);
        self.send(outgoing);
        self.wake.notify_one();
        Ok(Received::Noted)
    }

    /// The open position `position`, opened (and restored from what this node persisted) if
    /// this node is a member of its deciding roster; `None` if it is not.
    fn open_position<'a>(
        &self,
        open: &'a mut HashMap<Position, Open>,
        position: Position,
        sender: Option<PeerId>,
    ) -> Result<Option<&'a mut Open>, String> {
        if !open.contains_key(&position) {
            self.prune(open);
            if open.len() >= MAX_OPEN_POSITIONS {
                return Err("too many positions being decided at once; try again later".into());
            }
            let head = self
                .store
                .head(&position.chain_id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("this node does not hold chain {}", position.chain_id))?;
            if head.index + 1 != position.index {
                return Err(format!(
                    "block {} is not the next block of the chain here (head {})",
                    position.index, head.index
                ));
            }
            let (roster, peers) = self.deciding_roster(position)?;
            let Some(me) = roster.index_of(&self.identity.public().key) else {
                return Ok(None);
            };
            let quorum = quorum_of(&roster).map_err(|e| e.to_string())?;
            // A stranger does not get to open positions.
            if sender.is_some_and(|sender| !peers.contains(&sender)) {
                return Err(
                    "only members of the deciding roster take part in its agreement".into(),
                );
            }
            let record = self
                .store
                .agreement_record(&position.chain_id, position.index)
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            let me = Member::try_from(me).map_err(|_| "roster too large")?;
            let kept = self
                .store
                .agreement_blocks(&position.chain_id, position.index)
                .map_err(|e| e.to_string())?;
            let machine =
                Agreement::restore(quorum, position.seed(), me, self.timing, record.durable());
            let mut state = Open {
                position,
                roster,
                peers,
                me,
                machine,
                blocks: kept
                    .iter()
                    .map(|block| (block.hash(), Arc::new(block.clone())))
                    .collect(),
                offered_here: HashSet::new(),
                offered_by_members: HashSet::new(),
                delivered: None,
                persisted_blocks: kept.iter().map(SkipBlock::hash).collect(),
                votes: HashMap::new(),
                certificates: record
                    .certificates()
                    .map(|certificate| (certificate.statement, certificate.clone()))
                    .collect(),
            };
            let actions = state.machine.resume(self.now());
            let outgoing = self.perform(&mut state, actions);
            self.send(outgoing);
            open.insert(position, state);
        }
        Ok(open.get_mut(&position))
    }

    /// Forgets positions the chain has settled.
    fn prune(&self, open: &mut HashMap<Position, Open>) {
        open.retain(|position, _| {
            self.store
                .head(&position.chain_id)
                .ok()
                .flatten()
                .is_none_or(|head| head.index < position.index)
        });
    }

    /// Performs the machine's `actions` for `state`: persists, records decisions, and returns
    /// the messages to send (after the persisted state, which is written first).
    fn perform(&self, state: &mut Open, actions: Vec<Action>) -> Vec<Outgoing> {
        let mut outgoing = Vec::new();
        for action in actions {
            match action {
                Action::Persist(durable) => {
                    let record = DurableRecord::of(&durable, |certificate| {
                        state.signed(certificate, &self.identity)
                    });
                    // The blocks the promises name are kept with them: after a restart this
                    // member may have to propose or log them, and may be the only one left
                    // holding them.
                    let named = [
                        durable.lock.as_ref().map(|c| c.statement.block),
                        durable.prepared.map(|(_, block)| block),
                        durable.committed.map(|(_, block)| block),
                        durable.proposal.as_ref().map(|(_, block, _)| *block),
                        durable.decided.as_ref().map(|c| c.statement.block),
                    ];
                    let new_blocks: Vec<Arc<SkipBlock>> = named
                        .into_iter()
                        .flatten()
                        .filter(|hash| !state.persisted_blocks.contains(hash))
                        .filter_map(|hash| state.blocks.get(&hash).cloned())
                        .collect();
                    let written = record
                        .ok_or_else(|| "a certificate's signatures are missing".to_string())
                        .and_then(|record| {
                            let blocks: Vec<&SkipBlock> =
                                new_blocks.iter().map(|b| b.as_ref()).collect();
                            self.store
                                .record_agreement(
                                    &state.position.chain_id,
                                    state.position.index,
                                    &record,
                                    &blocks,
                                )
                                .map_err(|e| e.to_string())
                        });
                    if written.is_ok() {
                        state
                            .persisted_blocks
                            .extend(new_blocks.iter().map(|block| block.hash()));
                    }
                    if let Err(error) = written {
                        // Nothing after an unwritten promise may leave the node.
                        tracing::error!(position = ?state.position, %error, "cannot persist agreement state; its messages are not sent");
                        return Vec::new();
                    }
                }
                Action::Send { to, message } => {
                    if self.conduct == Conduct::Byzantine {
                        outgoing.extend(self.double_vote(state, to, &message));
                    }
                    if let Some(request) = self.request(state, &message)
                        && let Some(peer) = state.peers.get(to as usize)
                    {
                        outgoing.push(Outgoing { to: *peer, request });
                    }
                }
                Action::Broadcast(message) => {
                    let split = match (&message, self.conduct) {
                        (Message::Propose { view, block, .. }, Conduct::Byzantine) => state
                            .blocks
                            .keys()
                            .find(|other| *other != block)
                            .copied()
                            .and_then(|other| {
                                self.request(
                                    state,
                                    &Message::Propose {
                                        view: *view,
                                        block: other,
                                        justification: None,
                                    },
                                )
                            }),
                        _ => None,
                    };
                    if let Some(request) = self.request(state, &message) {
                        for (member, peer) in state.peers.iter().enumerate() {
                            if member % 2 == 1
                                && let Some(split) = &split
                            {
                                outgoing.push(Outgoing {
                                    to: *peer,
                                    request: split.clone(),
                                });
                            } else if member != state.me as usize {
                                outgoing.push(Outgoing {
                                    to: *peer,
                                    request: request.clone(),
                                });
                            }
                        }
                    }
                }
                Action::Decided(certificate) => self.decided(state, &certificate),
            }
        }
        outgoing
    }

    fn decided(&self, state: &mut Open, certificate: &Certificate) {
        let position = state.position;
        self.witness.record_decision(
            position.chain_id,
            position.index,
            certificate.statement.block,
        );
        tracing::info!(chain = %position.chain_id, index = position.index, view = certificate.statement.view, block = %certificate.statement.block, "position decided");
        self.deliver(state, false);
    }

    /// Hands the decision of `state` to the node to be logged (again, if `again`: an earlier
    /// attempt may have failed, for instance with too few witnesses online to sign the links).
    fn deliver(&self, state: &mut Open, again: bool) {
        let Some(certificate) = state.machine.decided().cloned() else {
            return;
        };
        let block = certificate.statement.block;
        let position = state.position;
        let Some(signed) = state.signed(&certificate, &self.identity) else {
            tracing::error!(?position, "decided without the commit votes' signatures");
            return;
        };
        let Some(decided) = state.blocks.get(&block).cloned() else {
            tracing::info!(?position, %block, "decided a block this node does not hold; another member logs it");
            return;
        };
        // Whoever offered the block logs it (it holds what the block refers to, such as a
        // release's artifacts); if no member did, the leader that proposed it.
        let proposed =
            state
                .machine
                .durable()
                .proposal
                .as_ref()
                .is_some_and(|(view, proposed, _)| {
                    *view == certificate.statement.view && *proposed == block
                });
        let led = again
            || state.offered_here.contains(&block)
            || (proposed && !state.offered_by_members.contains(&block));
        state.delivered = Some(Instant::now());
        let _ = self.decisions.send(Decision {
            block: decided,
            certificate: signed,
            led,
        });
    }

    /// Delivers again a decision whose block is still not logged a while after it was last
    /// delivered.
    fn redeliver_if_stale(&self, state: &mut Open) {
        let stale = self.patience;
        if state.machine.decided().is_some()
            && state
                .delivered
                .is_none_or(|delivered| delivered.elapsed() >= stale)
        {
            self.deliver(state, true);
        }
    }

    /// Byzantine conduct: with a vote for one block, a signed vote for another block held.
    fn double_vote(&self, state: &mut Open, to: Member, message: &Message) -> Option<Outgoing> {
        let Message::Vote(statement) = message else {
            return None;
        };
        let other = *state
            .blocks
            .keys()
            .find(|other| **other != statement.block)?;
        let forged = Statement {
            block: other,
            ..*statement
        };
        let request = self.request(state, &Message::Vote(forged))?;
        Some(Outgoing {
            to: *state.peers.get(to as usize)?,
            request,
        })
    }

    /// The request carrying `message` with its evidence (and its block, when held).
    fn request(&self, state: &mut Open, message: &Message) -> Option<Request> {
        let signed = match message {
            Message::Propose {
                view,
                block,
                justification,
            } => SignedMessage::Propose {
                view: *view,
                block: *block,
                justification: match justification {
                    Some(certificate) => Some(state.signed(certificate, &self.identity)?),
                    None => None,
                },
            },
            Message::Vote(statement) => SignedMessage::Vote {
                statement: *statement,
                signature: state.position.sign_vote(self.identity.secret(), statement),
            },
            Message::Certified(certificate) => {
                SignedMessage::Certified(state.signed(certificate, &self.identity)?)
            }
            Message::ViewChange { view, prepared } => SignedMessage::ViewChange {
                view: *view,
                prepared: match prepared {
                    Some(certificate) => Some(state.signed(certificate, &self.identity)?),
                    None => None,
                },
            },
        };
        let block = match &signed {
            SignedMessage::Vote { .. } => None,
            other => other
                .block()
                .and_then(|hash| state.blocks.get(&hash))
                .map(|block| Box::new((**block).clone())),
        };
        if matches!(signed, SignedMessage::Propose { .. }) && block.is_none() {
            tracing::warn!(position = ?state.position, "cannot propose a block this node does not hold");
            return None;
        }
        Some(Request::Agreement {
            chain_id: state.position.chain_id,
            index: state.position.index,
            message: signed,
            block,
        })
    }

    fn send(&self, outgoing: Vec<Outgoing>) {
        for Outgoing { to, request } in outgoing {
            let net = self.net.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(SEND_TIMEOUT, net.request(to, request)).await {
                    Ok(Ok(Response::Noted)) => {}
                    Ok(Ok(Response::Refused(reason))) => {
                        tracing::debug!(peer = %to, %reason, "agreement message refused");
                    }
                    Ok(Ok(_)) => {
                        tracing::debug!(peer = %to, "unexpected answer to an agreement message");
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(peer = %to, %error, "agreement message not delivered");
                    }
                    Err(_) => tracing::debug!(peer = %to, "agreement message timed out"),
                }
            });
        }
    }

    /// Calls every machine whose deadline passed; returns when the next one is due.
    fn tick(&self) -> Option<u64> {
        let now = self.now();
        let mut outgoing = Vec::new();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        self.prune(&mut open);
        for state in open.values_mut() {
            if state.machine.next_deadline().is_some_and(|due| due <= now) {
                let actions = state.machine.handle(Event::Tick, now);
                outgoing.extend(self.perform(state, actions));
            }
            state.forget_old_votes();
            self.redeliver_if_stale(state);
        }
        let next = open
            .values()
            .filter_map(|state| state.machine.next_deadline())
            .min();
        drop(open);
        self.send(outgoing);
        next
    }

    /// Keeps the machines' time until the node stops.
    pub async fn run(self: Arc<Self>) {
        loop {
            let next = {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.tick())
                    .await
                    .ok()
                    .flatten()
            };
            // Decided positions not logged yet are looked at every few view base times.
            let idle = self.patience;
            let wait = next.map_or(idle, |due| {
                Duration::from_millis(due.saturating_sub(self.now())).min(idle)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// The view this node is in at `position`, if it takes part in deciding it.
    pub fn view(&self, position: &Position) -> Option<u32> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(position)
            .map(|state| state.machine.view())
    }
}

impl Open {
    fn keep_block(&mut self, block: Arc<SkipBlock>, kept: Kept) -> Result<(), String> {
        if self.blocks.contains_key(&block.hash()) {
            return Ok(());
        }
        // Blocks offered by anyone may take half the room; the rest is for blocks of verified
        // messages of members (proposals, certificates), so that offers cannot crowd them out.
        let room = match kept {
            Kept::Candidate => MAX_BLOCKS_PER_POSITION / 2,
            Kept::Evidence => MAX_BLOCKS_PER_POSITION,
        };
        if self.blocks.len() >= room {
            return Err("too many blocks proposed at this position".into());
        }
        self.blocks.insert(block.hash(), block);
        Ok(())
    }

    /// Keeps the evidence of a verified message: a vote's signature (for a block held, in the
    /// view this node is in or the next), a certificate.
    fn remember(&mut self, message: &SignedMessage, from: Member) {
        match message {
            SignedMessage::Vote {
                statement,
                signature,
            } => {
                let view = self.machine.view();
                if self.blocks.contains_key(&statement.block)
                    && (view..=view.saturating_add(1)).contains(&statement.view)
                {
                    self.votes
                        .entry(*statement)
                        .or_default()
                        .insert(from, *signature);
                }
            }
            SignedMessage::Propose {
                justification: Some(certificate),
                ..
            }
            | SignedMessage::ViewChange {
                prepared: Some(certificate),
                ..
            }
            | SignedMessage::Certified(certificate) => {
                if self.certificates.len() >= MAX_CERTIFICATES_PER_POSITION {
                    let keep = self.machine.durable().clone();
                    let persisted: Vec<Statement> = [
                        keep.lock,
                        keep.decided,
                        keep.proposal
                            .and_then(|(_, _, justification)| justification),
                    ]
                    .into_iter()
                    .flatten()
                    .map(|c| c.statement)
                    .collect();
                    if let Some(oldest) = self
                        .certificates
                        .keys()
                        .filter(|s| !persisted.contains(s))
                        .min_by_key(|s| s.view)
                        .copied()
                    {
                        self.certificates.remove(&oldest);
                    }
                }
                self.certificates
                    .entry(certificate.statement)
                    .or_insert_with(|| certificate.clone());
            }
            SignedMessage::Propose { .. } | SignedMessage::ViewChange { .. } => {}
        }
    }

    fn forget_old_votes(&mut self) {
        let view = self.machine.view();
        self.votes.retain(|statement, _| statement.view >= view);
    }

    /// The signatures of `certificate`: one this node received, or one it builds as the
    /// leader from the votes it received and its own.
    fn signed(
        &mut self,
        certificate: &Certificate,
        identity: &Identity,
    ) -> Option<SignedCertificate> {
        if let Some(known) = self.certificates.get(&certificate.statement) {
            return Some(known.clone());
        }
        let votes = self.votes.get(&certificate.statement);
        let signatures = certificate
            .signers
            .iter()
            .map(|&member| {
                if member == self.me {
                    Some((
                        member,
                        self.position
                            .sign_vote(identity.secret(), &certificate.statement),
                    ))
                } else {
                    votes
                        .and_then(|votes| votes.get(&member))
                        .map(|signature| (member, *signature))
                }
            })
            .collect::<Option<Vec<_>>>()?;
        let signed = SignedCertificate {
            statement: certificate.statement,
            signatures,
        };
        self.certificates
            .insert(certificate.statement, signed.clone());
        Some(signed)
    }
}
