//! The chainiac peer-to-peer layer, shared by nodes and light clients.
//!
//! * [`swarm`]: one task owns the libp2p swarm (TCP + Noise + Yamux, QUIC, identify, ping,
//!   Kademlia, gossipsub, request-response) and talks to its user over bounded channels
//!   ([`NetHandle`] commands, [`NetEvent`]s). It takes a key pair, not a node's configuration.
//! * [`wire`]: the request, response and gossip messages in the protocol's canonical encoding,
//!   with a bound on everything a peer controls.
//! * [`download`]: fetching an artifact from any peer in slices verified against its hash.
//!
//! It knows bytes and peers, never the chain or the store: every message it hands over is
//! untrusted until its user has verified it.

pub mod download;
pub mod swarm;
pub mod wire;

pub use swarm::{
    Acceptance, NetConfig, NetError, NetEvent, NetHandle, NetInfo, PublishError, Reply,
    RequestError, key_of_peer, keypair_of, peer_id_of, spawn,
};
