//! Gossip: new blocks with their forward links, published on one topic. A gossiped block is
//! validated before it is relayed: stored and relayed if the store's rules accept it, ignored
//! if it is known or cannot be checked yet (a sync from its sender is started instead), rejected
//! (its sender penalised) if it is invalid.

use std::sync::Arc;

use chainiac_net::wire::LinkedBlock;
use chainiac_net::{Acceptance, NetHandle};
use chainiac_protocol::encoding::{Decode, Encode};
use libp2p::PeerId;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::sync::Syncer;

/// The gossip service.
#[derive(Debug)]
pub struct Gossip {
    store: Store,
    net: NetHandle,
    metrics: Arc<Metrics>,
    syncer: Arc<Syncer>,
}

impl Gossip {
    /// Gossip through `net`, storing accepted blocks with `syncer`.
    pub fn new(store: Store, net: NetHandle, metrics: Arc<Metrics>, syncer: Arc<Syncer>) -> Self {
        Self {
            store,
            net,
            metrics,
            syncer,
        }
    }

    /// Publishes a block this node stored. Peers that miss it learn it by sync.
    pub async fn publish(&self, block: LinkedBlock) {
        if let Err(error) = self.net.publish(block.to_bytes()).await {
            tracing::debug!(%error, "gossip not published (peers learn the block by sync)");
        }
    }

    /// Validates a gossiped message from `source`: accept (stored; relay it), ignore (known, or
    /// ahead of this node: sync instead) or reject (invalid: not stored, not relayed).
    pub async fn validate(&self, source: PeerId, data: &[u8]) -> Acceptance {
        let Ok(linked) = LinkedBlock::from_bytes(data) else {
            self.metrics.gossip_rejected.inc();
            return Acceptance::Reject;
        };
        let chain_id = linked.block.chain_id();
        let head = self.store.head(&chain_id).ok().flatten();
        let expected = head.map_or(0, |h| h.index + 1);
        if linked.block.index() > expected {
            self.syncer.spawn_sync(source, chain_id);
            return Acceptance::Ignore;
        }
        let syncer = self.syncer.clone();
        let result = tokio::task::spawn_blocking(move || {
            syncer
                .accept_block(&linked, true)
                .map(|new| new.then_some(linked.block))
        })
        .await;
        match result {
            Ok(Ok(Some(block))) => {
                self.metrics.gossip_accepted.inc();
                self.syncer.replicate(&block, Some(source));
                Acceptance::Accept
            }
            Ok(Ok(None)) => Acceptance::Ignore,
            Ok(Err(StoreError::Rejected(error))) => {
                tracing::info!(peer = %source, %error, "rejected an invalid gossiped block");
                self.metrics.gossip_rejected.inc();
                Acceptance::Reject
            }
            _ => Acceptance::Ignore,
        }
    }
}
