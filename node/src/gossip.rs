//! Gossip: new blocks with their forward links, published on one topic. A gossiped block is
//! validated before it is relayed: stored and relayed if the store's rules accept it, ignored
//! if it is known or cannot be checked yet (a sync from its sender is started instead), rejected
//! (its sender penalised) if it is invalid.

use std::sync::Arc;
use std::time::Duration;

use chainiac_net::wire::LinkedBlock;
use chainiac_net::{Acceptance, NetHandle};
use chainiac_protocol::encoding::{Decode, Encode};
use libp2p::PeerId;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::sync::Syncer;

/// How long a gossiped block that needs earlier blocks of its chain (or its genesis) may wait
/// for them to be fetched from its sender before it is judged: under gossipsub's message-cache
/// window (5 heartbeats of 500 ms), after which the block could no longer be relayed.
const CATCH_UP: Duration = Duration::from_millis(1500);

/// Decides which gossip messages a node drops before validating them: the seam through which
/// tests lose messages on purpose (anti-entropy must repair them). No real node has one.
pub trait GossipHook: Send + Sync + 'static {
    /// Whether to drop `block`, received from `source`.
    fn drop_block(&self, source: PeerId, block: &LinkedBlock) -> bool;
}

/// The gossip service.
pub struct Gossip {
    store: Store,
    net: NetHandle,
    metrics: Arc<Metrics>,
    syncer: Arc<Syncer>,
    hook: Option<Arc<dyn GossipHook>>,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip")
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Gossip {
    /// Gossip through `net`, storing accepted blocks with `syncer`.
    pub fn new(
        store: Store,
        net: NetHandle,
        metrics: Arc<Metrics>,
        syncer: Arc<Syncer>,
        hook: Option<Arc<dyn GossipHook>>,
    ) -> Self {
        Self {
            store,
            net,
            metrics,
            syncer,
            hook,
        }
    }

    /// Publishes a block this node stored. Peers that miss it learn it by sync.
    pub async fn publish(&self, block: LinkedBlock) {
        if let Err(error) = self.net.publish(block.to_bytes()).await {
            tracing::debug!(%error, "gossip not published (peers learn the block by sync)");
        }
    }

    /// Validates a gossiped message from `source`: accept (a valid block, stored: relay it),
    /// ignore (cannot be judged yet, or not the stored block's links) or reject (invalid: not
    /// stored, not relayed, sender penalised). A block of a chain this node lacks earlier blocks
    /// of (or does not know at all) is judged after fetching those from its sender, the genesis
    /// first, so that it is relayed too: relaying only what a node could check itself would stop
    /// a new chain's blocks at every node that missed its genesis.
    pub async fn validate(&self, source: PeerId, data: &[u8]) -> Acceptance {
        let Ok(linked) = LinkedBlock::from_bytes(data) else {
            self.metrics.gossip_rejected.inc();
            return Acceptance::Reject;
        };
        if self
            .hook
            .as_ref()
            .is_some_and(|hook| hook.drop_block(source, &linked))
        {
            return Acceptance::Ignore;
        }
        let chain_id = linked.block.chain_id();
        let expected = |store: &Store| {
            store
                .head(&chain_id)
                .ok()
                .flatten()
                .map_or(0, |h| h.index + 1)
        };
        if linked.block.index() > expected(&self.store) {
            let caught_up =
                tokio::time::timeout(CATCH_UP, self.syncer.sync_chain(source, chain_id)).await;
            if !matches!(caught_up, Ok(Ok(_))) || linked.block.index() > expected(&self.store) {
                // The sender could not serve what precedes its block in time: finish in the
                // background; the block is not relayed by this node.
                self.syncer.spawn_sync(source, chain_id);
                return Acceptance::Ignore;
            }
        }
        let syncer = self.syncer.clone();
        let result = tokio::task::spawn_blocking(move || {
            let new = syncer.accept_block(&linked, true)?;
            Ok::<_, StoreError>((new, linked))
        })
        .await;
        match result {
            Ok(Ok((true, linked))) => {
                self.metrics.gossip_accepted.inc();
                self.syncer.replicate(&linked.block, Some(source));
                Acceptance::Accept
            }
            // Stored meanwhile (by the sync above, or another path): relay it only if the
            // message is exactly the stored block with its links, so that a valid block with
            // forged links attached is not spread.
            Ok(Ok((false, linked))) => {
                let stored = self
                    .store
                    .linked_block(&chain_id, linked.block.index())
                    .ok()
                    .flatten();
                if stored.is_some_and(|stored| stored == linked) {
                    Acceptance::Accept
                } else {
                    Acceptance::Ignore
                }
            }
            Ok(Err(StoreError::Rejected(error))) => {
                tracing::info!(peer = %source, %error, "rejected an invalid gossiped block");
                self.metrics.gossip_rejected.inc();
                Acceptance::Reject
            }
            _ => Acceptance::Ignore,
        }
    }
}
