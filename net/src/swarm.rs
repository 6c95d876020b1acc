//! The libp2p layer: one task owns the swarm (TCP + Noise + Yamux, QUIC, identify, ping,
//! Kademlia, gossipsub, request-response) and talks to the node over bounded channels. It knows
//! nothing of chains: it decodes requests, hands them and gossip to the node, and returns the
//! node's verdicts.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::hash::domain;
use chainiac_protocol::keys::{PublicKey, SecretKey};
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId};
use libp2p::identity::Keypair;
use libp2p::request_response::{
    self, InboundRequestId, OutboundRequestId, ProtocolSupport, ResponseChannel,
};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, kad, noise, ping, tcp, yamux};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::wire::{
    BLOCKS_TOPIC, MAX_GOSSIP_LEN, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, REQUEST_PROTOCOL, Request,
    Response,
};

/// Capacity of the channels between the swarm task and the node.
pub const CHANNEL_CAPACITY: usize = 1024;
/// How often the node looks for more peers while it has fewer than [`DISCOVERY_TARGET`].
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);
/// Below this many connections the node keeps running Kademlia lookups (its automatic
/// bootstrap runs only when the routing table is first filled, which can be before the
/// bootstrap peer knows anyone else, and then only every 5 minutes).
const DISCOVERY_TARGET: usize = 16;
/// Lookups and redials back off, doubling from one discovery tick up to this many ticks.
const MAX_BACKOFF_TICKS: u32 = 16;

/// The libp2p peer id of the node whose key is `key` (nodes use their witness key as their
/// libp2p identity, so a roster names the peers to ask).
pub fn peer_id_of(key: &PublicKey) -> Result<PeerId, libp2p::identity::DecodingError> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())?;
    Ok(libp2p::identity::PublicKey::from(ed).to_peer_id())
}

/// The node key behind `peer`: its Ed25519 identity, which a peer id carries whole (an
/// identity multihash of the key's protobuf encoding). `None` for other kinds of peer ids.
pub fn key_of_peer(peer: &PeerId) -> Option<PublicKey> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    let public = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = public.try_into_ed25519().ok()?;
    PublicKey::from_bytes(&ed.to_bytes()).ok()
}

/// The libp2p key pair of a node's secret key (its witness key is its libp2p identity).
pub fn keypair_of(secret: &SecretKey) -> Result<Keypair, libp2p::identity::DecodingError> {
    let mut seed = secret.to_seed();
    Keypair::ed25519_from_bytes(&mut seed[..])
}

/// Why the swarm could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The key pair is not a valid libp2p identity.
    #[error("invalid network identity: {0}")]
    Identity(String),
    /// The transports or behaviours could not be set up.
    #[error("cannot set up the network: {0}")]
    Setup(String),
    /// A listen address cannot be used.
    #[error("cannot listen on {address}: {reason}")]
    Listen { address: Multiaddr, reason: String },
}

/// Why a request got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The swarm task has stopped (the node is shutting down).
    #[error("network stopped")]
    Stopped,
    /// The peer could not be reached, did not answer in time, or closed the stream.
    #[error("{0}")]
    Failed(String),
    /// The peer answered with bytes that are not a response.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// Why a block could not be published on the gossip topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The swarm task has stopped.
    #[error("network stopped")]
    Stopped,
    /// Gossipsub refused (no peer subscribed yet, duplicate, too large).
    #[error("{0}")]
    Refused(String),
}

/// A node's verdict on a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid and new: relay it.
    Accept,
    /// Not relayed, sender not penalised (known, or cannot be checked yet).
    Ignore,
    /// Invalid: not relayed, sender penalised.
    Reject,
}

/// An answer to a peer's request, encoded by its user (not on the swarm task), with what to
/// keep until the answer is written out or has failed (a share of a memory budget, so that
/// answers waiting to be written count against it).
pub struct Reply {
    /// The encoded response.
    pub bytes: Vec<u8>,
    /// Dropped once the answer is written or abandoned.
    pub hold: Option<Box<dyn std::any::Any + Send>>,
}

impl Reply {
    /// `response`, encoded, holding nothing.
    pub fn of(response: &Response) -> Self {
        Self {
            bytes: response.to_bytes(),
            hold: None,
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("bytes", &self.bytes.len())
            .field("hold", &self.hold.is_some())
            .finish()
    }
}

/// What the swarm task hands to the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A request as it arrived, undecoded: decoding may be expensive (rosters carry proofs of
    /// possession to check), so the node decodes it after its per-peer limits, off the swarm
    /// task, and charges the work to `peer`. The node answers through `reply`.
    Request {
        peer: PeerId,
        request: Vec<u8>,
        reply: oneshot::Sender<Reply>,
    },
    /// A gossip message to validate, then report with [`NetHandle::report`].
    Gossip {
        source: PeerId,
        message_id: MessageId,
        data: Vec<u8>,
    },
    /// A connection to a new peer.
    Connected { peer: PeerId, peers: usize },
    /// A peer's last connection closed.
    Disconnected { peers: usize },
}

enum Command {
    Request {
        peer: PeerId,
        request: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    Publish {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), PublishError>>,
    },
    Report {
        message_id: MessageId,
        source: PeerId,
        acceptance: Acceptance,
    },
    Dial {
        address: Multiaddr,
    },
    Info {
        reply: oneshot::Sender<NetInfo>,
    },
    PublishRaw {
        data: Vec<u8>,
    },
    Shutdown,
}

/// The swarm's addresses and peers.
#[derive(Clone, Debug, Default)]
pub struct NetInfo {
    /// This node's peer id.
    pub peer_id: Option<PeerId>,
    /// Addresses the swarm listens on.
    pub listen: Vec<Multiaddr>,
    /// Connected peers.
    pub peers: Vec<PeerId>,
}

/// A cloneable handle to the swarm task.
#[derive(Clone, Debug)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl NetHandle {
    /// Sends `request` to `peer` and waits for its answer (bounded by the protocol timeout).
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, RequestError> {
        self.request_raw(peer, request.to_bytes()).await
    }

    /// Sends raw bytes as a request (tests of malformed and oversized requests).
    pub async fn request_raw(
        &self,
        peer: PeerId,
        request: Vec<u8>,
    ) -> Result<Response, RequestError> {
        let response = self.request_undecoded(peer, request).await?;
        // Decoded by the task that asked, on a blocking thread (an answer of up to 32 MiB may
        // carry rosters to check), never on the swarm task.
        tokio::task::spawn_blocking(move || Response::from_bytes(&response))
            .await
            .map_err(|_| RequestError::Stopped)?
            .map_err(|e| RequestError::Malformed(e.to_string()))
    }

    /// Sends raw bytes as a request and returns the answer's bytes, undecoded (load tests
    /// that must not spend their own memory and time on the answers).
    pub async fn request_undecoded(
        &self,
        peer: PeerId,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer,
                request,
                reply,
            })
            .await
            .map_err(|_| RequestError::Stopped)?;
        answer.await.map_err(|_| RequestError::Stopped)?
    }

    /// Publishes a block on the blocks topic.
    pub async fn publish(&self, data: Vec<u8>) -> Result<(), PublishError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Publish { data, reply })
            .await
            .map_err(|_| PublishError::Stopped)?;
        answer.await.map_err(|_| PublishError::Stopped)?
    }

    /// Publishes arbitrary bytes on the blocks topic (tests of gossip validation).
    pub async fn publish_raw(&self, data: Vec<u8>) {
        let _ = self.commands.send(Command::PublishRaw { data }).await;
    }

    /// Reports the node's verdict on a gossip message.
    pub async fn report(&self, message_id: MessageId, source: PeerId, acceptance: Acceptance) {
        let _ = self
            .commands
            .send(Command::Report {
                message_id,
                source,
                acceptance,
            })
            .await;
    }

    /// Dials an address.
    pub async fn dial(&self, address: Multiaddr) {
        let _ = self.commands.send(Command::Dial { address }).await;
    }

    /// Stops the swarm task.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// The swarm's listen addresses and peers.
    pub async fn info(&self) -> NetInfo {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Info { reply }).await.is_err() {
            return NetInfo::default();
        }
        answer.await.unwrap_or_default()
    }
}

/// Length-delimited by the stream: a message is everything until the writer closes, at most
/// the protocol's bound.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesCodec;

async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_bounded(io, MAX_REQUEST_LEN).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_bounded(io, MAX_RESPONSE_LEN).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&request).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&response).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    requests: request_response::Behaviour<BytesCodec>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// Network settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Request timeout.
    pub request_timeout: Duration,
}

/// Gossipsub's peer score. Invalid blocks cost their relayer score: below the graylist
/// threshold its gossip is ignored. Quiet topics are normal here, so missing deliveries cost
/// nothing. The IP-colocation penalty (a Sybil defence: many peers from one address) spares
/// loopback: with its defaults every peer of a node on a machine running more than 14 nodes
/// would be graylisted, and gossip on a local testnet of 16 nodes or more stopped reaching most
/// nodes.
fn peer_score(topic: &IdentTopic) -> gossipsub::PeerScoreParams {
    let mut score = gossipsub::PeerScoreParams::default();
    score.topics.insert(
        topic.hash(),
        gossipsub::TopicScoreParams {
            invalid_message_deliveries_weight: -100.0,
            mesh_message_deliveries_weight: 0.0,
            ..Default::default()
        },
    );
    score.ip_colocation_factor_whitelist.extend([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    score
}

/// Starts the swarm task with the identity `keypair`. Returns its handle, the event stream of
/// the node (or client) using it, and its peer id. Gossip metrics (messages and bytes sent and
/// received per topic) are registered in `metrics` when given.
pub fn spawn(
    keypair: Keypair,
    config: &NetConfig,
    metrics: Option<&mut Registry>,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>, PeerId), NetError> {
    let peer_id = keypair.public().to_peer_id();
    let request_timeout = config.request_timeout;
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup(&e))?
        .with_quic()
        .with_behaviour(
            |key| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
                let gossip_config = gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .validate_messages()
                    .max_transmit_size(MAX_GOSSIP_LEN)
                    .heartbeat_interval(Duration::from_millis(500))
                    .message_id_fn(|message: &gossipsub::Message| {
                        MessageId::from(
                            Hash::of(domain::GOSSIP_MESSAGE_ID, &[&message.data])
                                .0
                                .to_vec(),
                        )
                    })
                    .build()?;
                let mut gossipsub = gossipsub::Behaviour::new(
                    MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?;
                if let Some(registry) = metrics {
                    gossipsub =
                        gossipsub.with_metrics(registry, gossipsub::MetricsConfig::default());
                }
                let topic = IdentTopic::new(BLOCKS_TOPIC);
                gossipsub.with_peer_score(
                    peer_score(&topic),
                    gossipsub::PeerScoreThresholds::default(),
                )?;
                gossipsub.subscribe(&topic)?;
                let requests = request_response::Behaviour::with_codec(
                    BytesCodec,
                    [(StreamProtocol::new(REQUEST_PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(request_timeout)
                        .with_max_concurrent_streams(256),
                );
                let local = key.public().to_peer_id();
                let mut kad = kad::Behaviour::with_config(
                    local,
                    kad::store::MemoryStore::new(local),
                    kad::Config::new(StreamProtocol::new("/chainiac/kad/1")),
                );
                kad.set_mode(Some(kad::Mode::Server));
                let identify = identify::Behaviour::new(identify::Config::new(
                    "/chainiac/1".into(),
                    key.public(),
                ));
                Ok(Behaviour {
                    gossipsub,
                    requests,
                    kad,
                    identify,
                    ping: ping::Behaviour::default(),
                })
            },
        )
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    for address in &config.listen {
        swarm
            .listen_on(address.clone())
            .map_err(|e| NetError::Listen {
                address: address.clone(),
                reason: e.to_string(),
            })?;
    }
    for address in &config.bootstrap {
        if let Err(error) = swarm.dial(address.clone()) {
            tracing::warn!(%address, %error, "cannot dial bootstrap peer");
        }
    }
    let (commands, command_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (events, event_rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(
        SwarmTask {
            swarm,
            events,
            pending: HashMap::new(),
            holding: HashMap::new(),
            listen: Vec::new(),
            bootstrap: config.bootstrap.clone(),
            redial: Backoff::default(),
            lookup: Backoff::default(),
        }
        .run(command_rx),
    );
    Ok((NetHandle { commands }, event_rx, peer_id))
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    events: mpsc::Sender<NetEvent>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, RequestError>>>,
    /// What answers being written hold (see [`Reply::hold`]).
    holding: HashMap<InboundRequestId, Box<dyn std::any::Any + Send>>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    /// Dialling the bootstrap peers again while the node has no connection.
    redial: Backoff,
    /// Kademlia lookups while the node has few connections; reset by every new peer, so a
    /// network that is growing is explored quickly and a settled one is left quiet.
    lookup: Backoff,
}

/// The peer id a multiaddress ends with, if any.
fn peer_in(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|protocol| match protocol {
        libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// Doubling waits, counted in discovery ticks.
#[derive(Debug, Default)]
struct Backoff {
    /// Ticks to wait before the next redial.
    wait: u32,
    /// Ticks waited so far.
    waited: u32,
}

impl Backoff {
    /// Counts one tick; true when it is time to act (after 1, 2, 4, ... ticks).
    fn tick(&mut self) -> bool {
        self.waited += 1;
        if self.waited < self.wait.max(1) {
            return false;
        }
        self.waited = 0;
        self.wait = (self.wait.max(1) * 2).min(MAX_BACKOFF_TICKS);
        true
    }

    /// Start again from the shortest wait.
    fn reset(&mut self) {
        *self = Self::default();
    }
}

type Answer = (
    InboundRequestId,
    ResponseChannel<Vec<u8>>,
    Result<Reply, oneshot::error::RecvError>,
);

impl SwarmTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut answers: FuturesUnordered<futures::future::BoxFuture<'static, Answer>> =
            FuturesUnordered::new();
        let mut discovery = tokio::time::interval(DISCOVERY_INTERVAL);
        discovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = discovery.tick() => self.discover(),
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                event = self.swarm.select_next_some() => {
                    if let Some(answer) = self.on_swarm_event(event) {
                        answers.push(answer);
                    }
                }
                Some((request_id, channel, reply)) = answers.next(), if !answers.is_empty() => {
                    let reply = reply.unwrap_or_else(|_| Reply::of(&Response::Refused("node shutting down".into())));
                    let sent = self.swarm.behaviour_mut().requests.send_response(channel, reply.bytes);
                    if let (Ok(()), Some(hold)) = (sent, reply.hold) {
                        self.holding.insert(request_id, hold);
                    }
                }
            }
        }
    }

    /// Looks for more peers while the node has few: a Kademlia lookup of its own neighbourhood
    /// (which connects to the peers found), and the bootstrap peers it is not connected to
    /// again, with backoff (all of them with no connection at all; otherwise those whose
    /// address names their peer id, so that a bootstrap peer that was not listening yet when
    /// the node started is not left to the lookups alone).
    fn discover(&mut self) {
        let connected = self.swarm.connected_peers().count();
        let missing: Vec<Multiaddr> = self
            .bootstrap
            .iter()
            .filter(|address| match peer_in(address) {
                Some(peer) => !self.swarm.is_connected(&peer),
                None => connected == 0,
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            self.redial.reset();
        } else if self.redial.tick() {
            for address in missing {
                // A named peer is dialled even while another dial to it is pending: a dial
                // stuck in a handshake (a peer starting up, a hostile listener on a reused
                // port) must not keep the node from its bootstrap peer until it times out.
                let dial = match peer_in(&address) {
                    Some(peer) => DialOpts::peer_id(peer)
                        .addresses(vec![address.clone()])
                        .condition(PeerCondition::Disconnected)
                        .build(),
                    None => DialOpts::unknown_peer_id().address(address.clone()).build(),
                };
                if let Err(error) = self.swarm.dial(dial) {
                    tracing::info!(%address, %error, "cannot dial bootstrap peer");
                }
            }
        }
        if connected == 0 {
            return;
        }
        if connected < DISCOVERY_TARGET && self.lookup.tick() {
            // Fails only with an empty routing table, which the next connection fills.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .requests
                    .send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Command::Publish { data, reply } => {
                let result = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(BLOCKS_TOPIC), data);
                let _ = reply.send(
                    result
                        .map(|_| ())
                        .map_err(|e| PublishError::Refused(e.to_string())),
                );
            }
            Command::PublishRaw { data } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(BLOCKS_TOPIC), data);
            }
            Command::Report {
                message_id,
                source,
                acceptance,
            } => {
                let acceptance = match acceptance {
                    Acceptance::Accept => MessageAcceptance::Accept,
                    Acceptance::Ignore => MessageAcceptance::Ignore,
                    Acceptance::Reject => MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &source, acceptance);
            }
            Command::Dial { address } => {
                if let Err(error) = self.swarm.dial(address.clone()) {
                    tracing::warn!(%address, %error, "dial failed");
                }
            }
            Command::Shutdown => {}
            Command::Info { reply } => {
                let _ = reply.send(NetInfo {
                    peer_id: Some(*self.swarm.local_peer_id()),
                    listen: self.listen.clone(),
                    peers: self.swarm.connected_peers().copied().collect(),
                });
            }
        }
    }

    fn on_swarm_event(
        &mut self,
        event: SwarmEvent<BehaviourEvent>,
    ) -> Option<futures::future::BoxFuture<'static, Answer>> {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen.push(address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                // Only an address we dialled is one the peer listens on; an inbound
                // connection's remote address is the dialer's ephemeral port (its listen
                // addresses come with identify).
                if endpoint.is_dialer() {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 {
                    self.lookup.reset();
                    let peers = self.swarm.connected_peers().count();
                    // Debug, not info: peer ids are free, so a stranger connecting in a loop
                    // would otherwise grow the operator's log without bound.
                    tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), peers, "peer connected");
                    let _ = self.events.try_send(NetEvent::Connected {
                        peer: peer_id,
                        peers,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                let peers = self.swarm.connected_peers().count();
                let cause = cause.map_or_else(|| "closed".to_owned(), |e| e.to_string());
                tracing::debug!(peer = %peer_id, %cause, peers, "peer disconnected");
                let _ = self.events.try_send(NetEvent::Disconnected { peers });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                // Failures to reach a bootstrap peer are what an operator looks for when the
                // node stays alone; failures of lookups' guesses are routine.
                if self.bootstrap.iter().any(|a| peer_in(a) == Some(peer)) {
                    tracing::info!(%peer, %error, "cannot reach bootstrap peer");
                } else {
                    tracing::debug!(%peer, %error, "dial failed");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for address in info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address.clone());
                    self.swarm.add_peer_address(peer_id, address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let event = NetEvent::Gossip {
                    source: propagation_source,
                    message_id: message_id.clone(),
                    data: message.data,
                };
                if self.events.try_send(event).is_err() {
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Requests(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request_id,
                    request,
                    channel,
                } => {
                    let (reply, answer) = oneshot::channel();
                    if self
                        .events
                        .try_send(NetEvent::Request {
                            peer,
                            request,
                            reply,
                        })
                        .is_err()
                    {
                        let busy = Response::Refused("node busy; retry later".into());
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .requests
                            .send_response(channel, busy.to_bytes());
                        return None;
                    }
                    return Some(Box::pin(async move { (request_id, channel, answer.await) }));
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Requests(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed(error.to_string())));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Requests(
                request_response::Event::InboundFailure {
                    peer,
                    error,
                    request_id,
                    ..
                },
            )) => {
                self.holding.remove(&request_id);
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Requests(
                request_response::Event::ResponseSent { request_id, .. },
            )) => {
                self.holding.remove(&request_id);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_id_gives_back_the_node_key() {
        let secret = SecretKey::from_seed(&[7; 32]);
        let key = secret.public_key();
        let peer = peer_id_of(&key).expect("an Ed25519 key");
        assert_eq!(key_of_peer(&peer), Some(key));
        assert_eq!(key_of_peer(&PeerId::random()), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::default();
        let acted: Vec<u32> = (1..=80).filter(|_| backoff.tick()).collect();
        // Acts after 1, 2, 4, 8, 16 ticks, then every 16.
        assert_eq!(acted, [1, 3, 7, 15, 31, 47, 63, 79]);
        backoff.reset();
        assert!(backoff.tick(), "acts on the first tick after a reset");
    }

    /// A bootstrap peer that was not listening yet when the node started is dialled again
    /// although the node has other connections (as in a testnet whose nodes start together).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bootstrap_peer_that_starts_late_is_dialled_again() -> Result<(), String> {
        let config = |listen: &str, bootstrap: Vec<Multiaddr>| NetConfig {
            listen: vec![listen.parse().expect("address")],
            bootstrap,
            request_timeout: Duration::from_secs(5),
        };
        let late_key = Keypair::generate_ed25519();
        let late_id = late_key.public().to_peer_id();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let late_address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{late_id}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let (node, _node_events, _) = spawn(
            Keypair::generate_ed25519(),
            &config("/ip4/127.0.0.1/tcp/0", vec![late_address]),
            None,
        )
        .map_err(|e| e.to_string())?;
        // The node has a connection (so it is not alone), but not to the late peer.
        let mut listen = Vec::new();
        for _ in 0..500 {
            listen = node.info().await.listen;
            if !listen.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_other, _other_events, _) = spawn(
            Keypair::generate_ed25519(),
            &config("/ip4/127.0.0.1/tcp/0", listen),
            None,
        )
        .map_err(|e| e.to_string())?;
        let (_late, _late_events, _) = spawn(
            late_key,
            &config(&format!("/ip4/127.0.0.1/tcp/{port}"), Vec::new()),
            None,
        )
        .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !node.info().await.peers.contains(&late_id) {
            if tokio::time::Instant::now() > deadline {
                return Err("the late bootstrap peer was never dialled again".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
