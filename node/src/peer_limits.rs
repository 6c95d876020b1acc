//! What one peer may ask of this node: a rate of requests (a token bucket, charged one token
//! per request plus the time spent decoding it, so that expensive requests cost their sender
//! more), a number of requests in flight at once, and one request decoded at a time. Checked
//! before a request is decoded: a peer that spent its tokens gets nothing more decoded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Inbound requests a peer may make per second (burst: twice that).
pub const REQUESTS_PER_SECOND: f64 = 500.0;
/// Tokens one millisecond of decoding a peer's request costs it: four times the refill rate,
/// so one peer keeps a core decoding at most a quarter of the time (a request that takes half
/// a second to decode, such as a Commit carrying a roster of 9,000 members, costs a burst).
pub const TOKENS_PER_DECODING_MS: f64 = 2.0;
/// Requests of one peer being decoded or answered at once.
pub const MAX_IN_FLIGHT_PER_PEER: usize = 32;
/// Peers tracked before idle ones are forgotten.
const MAX_TRACKED_PEERS: usize = 10_000;

/// Why a peer's request is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer spent its tokens.
    #[error("rate limit exceeded; slow down")]
    Rate,
    /// The peer has too many requests in flight.
    #[error("too many requests in flight from this peer; wait for the answers")]
    InFlight,
}

#[derive(Debug)]
struct PeerState {
    tokens: f64,
    refilled: Instant,
    in_flight: usize,
    /// One decode at a time per peer.
    decoding: Arc<tokio::sync::Semaphore>,
    /// `Blocks` answers of this peer being built or written.
    blocks: Arc<tokio::sync::Semaphore>,
}

/// `Blocks` answers of one peer built or written at once.
pub const BLOCKS_ANSWERS_PER_PEER: usize = 2;

/// The per-peer limits of one node.
#[derive(Debug, Default)]
pub struct PeerLimits {
    peers: Arc<Mutex<HashMap<PeerId, PeerState>>>,
}

/// A request of a peer taken in: the peer's in-flight count drops when it is dropped.
#[derive(Debug)]
pub struct PeerSlot {
    peer: PeerId,
    peers: Arc<Mutex<HashMap<PeerId, PeerState>>>,
}

impl PeerLimits {
    /// Takes in one request of `peer`, or says why not.
    pub fn admit(&self, peer: PeerId) -> Result<PeerSlot, Refusal> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if peers.len() > MAX_TRACKED_PEERS {
            peers.retain(|_, state| {
                state.in_flight > 0 || state.refilled.elapsed() < Duration::from_secs(60)
            });
        }
        let now = Instant::now();
        let state = peers.entry(peer).or_insert(PeerState {
            tokens: 2.0 * REQUESTS_PER_SECOND,
            refilled: now,
            in_flight: 0,
            decoding: Arc::new(tokio::sync::Semaphore::new(1)),
            blocks: Arc::new(tokio::sync::Semaphore::new(BLOCKS_ANSWERS_PER_PEER)),
        });
        state.tokens = (state.tokens
            + now.duration_since(state.refilled).as_secs_f64() * REQUESTS_PER_SECOND)
            .min(2.0 * REQUESTS_PER_SECOND);
        state.refilled = now;
        if state.tokens < 1.0 {
            return Err(Refusal::Rate);
        }
        if state.in_flight >= MAX_IN_FLIGHT_PER_PEER {
            return Err(Refusal::InFlight);
        }
        state.tokens -= 1.0;
        state.in_flight += 1;
        Ok(PeerSlot {
            peer,
            peers: self.peers.clone(),
        })
    }
}

impl PeerSlot {
    /// Runs `decode` on a blocking thread once the peer's earlier requests are decoded, if the
    /// peer still has tokens, and charges it the time taken.
    pub async fn decode<T: Send + 'static>(
        &self,
        decode: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let turn = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.peer)
            .map(|state| state.decoding.clone());
        let _turn = match &turn {
            Some(turn) => Some(turn.acquire().await.map_err(|_| Refusal::Rate)?),
            None => None,
        };
        if !self.has_tokens() {
            return Err(Refusal::Rate);
        }
        let (decoded, work) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let decoded = decode();
            (decoded, started.elapsed())
        })
        .await
        .map_err(|_| Refusal::Rate)?;
        self.charge(work);
        Ok(decoded)
    }

    /// Waits for one of the peer's turns to have a `Blocks` answer built and written (held
    /// until the answer is written).
    pub async fn blocks_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let turns = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.peer)
            .map(|state| state.blocks.clone())?;
        turns.acquire_owned().await.ok()
    }

    fn has_tokens(&self) -> bool {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.peer)
            .is_none_or(|state| {
                let refilled =
                    state.tokens + state.refilled.elapsed().as_secs_f64() * REQUESTS_PER_SECOND;
                refilled >= 0.0
            })
    }

    /// Charges the peer for `work` spent on its request (its tokens may go below zero: it is
    /// then refused until they are refilled).
    pub fn charge(&self, work: Duration) {
        let cost = work.as_secs_f64() * 1000.0 * TOKENS_PER_DECODING_MS;
        if let Some(state) = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.peer)
        {
            state.tokens -= cost;
        }
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some(state) = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.peer)
        {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_refused_beyond_its_requests_in_flight_and_its_rate() {
        let limits = PeerLimits::default();
        let peer = PeerId::random();
        let slots: Vec<_> = (0..MAX_IN_FLIGHT_PER_PEER)
            .map(|_| limits.admit(peer).expect("within the limit"))
            .collect();
        assert_eq!(limits.admit(peer).err(), Some(Refusal::InFlight));
        // Another peer is not affected.
        let other = limits.admit(PeerId::random()).expect("another peer");
        drop(slots);
        let slot = limits.admit(peer).expect("answers came back");
        // Two seconds of decoding cost more than the whole burst.
        slot.charge(Duration::from_secs(2));
        drop(slot);
        assert_eq!(limits.admit(peer).err(), Some(Refusal::Rate));
        drop(other);
    }

    #[test]
    fn the_rate_allows_a_burst_then_refuses() {
        let limits = PeerLimits::default();
        let peer = PeerId::random();
        let burst = (0..10_000)
            .take_while(|_| limits.admit(peer).is_ok())
            .count();
        // About twice the rate (a few tokens refill while the loop runs).
        assert!(
            (2 * REQUESTS_PER_SECOND as usize..2 * REQUESTS_PER_SECOND as usize + 100)
                .contains(&burst),
            "{burst}"
        );
    }
}
