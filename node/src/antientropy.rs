//! Anti-entropy: gossip can miss a node (it was down, its mesh was forming, a message was
//! dropped), and a node that misses the genesis of a quiet chain would never hear of it again.
//! So every period each node compares its heads with a few random peers and syncs what it lacks.
//!
//! The comparison is compact: one 32-byte digest of all heads (`Request::HeadsSummary`); only
//! when it differs, the 256 bucket digests (`HeadsBuckets`, 8 KiB); only for the buckets that
//! differ, their heads (`HeadsInBucket`). A node in sync with its peers spends two small
//! request-response exchanges per period. Each node only pulls: a peer that is behind pulls from
//! this node in its own period.

use std::sync::Arc;
use std::time::Duration;

use chainiac_net::NetHandle;
use chainiac_net::wire::{Request, Response};
use libp2p::PeerId;
use rand::seq::IndexedRandom;

use crate::store::Store;
use crate::sync::Syncer;

/// Peers compared with each period.
pub const PEERS_PER_PERIOD: usize = 2;

/// The anti-entropy service.
#[derive(Debug)]
pub struct AntiEntropy {
    store: Store,
    net: NetHandle,
    syncer: Arc<Syncer>,
    period: Duration,
}

/// What one comparison with a peer found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    /// Buckets whose digests differed.
    pub buckets: usize,
    /// Chains the peer is ahead on (or that this node lacks); a sync was started for each.
    pub behind: usize,
}

impl AntiEntropy {
    /// Compares `store` with peers every `period`, syncing through `syncer`.
    pub fn new(store: Store, net: NetHandle, syncer: Arc<Syncer>, period: Duration) -> Self {
        Self {
            store,
            net,
            syncer,
            period,
        }
    }

    /// Runs until the task is aborted.
    pub async fn run(self) {
        loop {
            // A random offset keeps nodes started together from asking in step.
            let jitter = self.period.mul_f64(rand::random::<f64>() * 0.25);
            tokio::time::sleep(self.period + jitter).await;
            let peers = self.net.info().await.peers;
            let chosen: Vec<PeerId> = peers
                .sample(&mut rand::rng(), PEERS_PER_PERIOD)
                .copied()
                .collect();
            for peer in chosen {
                match self.compare(peer).await {
                    Ok(found) if found.behind > 0 => {
                        tracing::info!(%peer, chains = found.behind, "anti-entropy: syncing chains this node missed");
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        tracing::debug!(%peer, %reason, "anti-entropy comparison failed");
                    }
                }
            }
        }
    }

    /// Compares this node's heads with `peer`'s and starts a sync for every chain the peer is
    /// ahead on.
    pub async fn compare(&self, peer: PeerId) -> Result<Comparison, String> {
        let ours = self.store.heads_digest().map_err(|e| e.to_string())?;
        let ask = |request: Request| async move {
            self.net
                .request(peer, request)
                .await
                .map_err(|e| e.to_string())
        };
        match ask(Request::HeadsSummary).await? {
            Response::HeadsSummary { root, .. } if root == ours.root() => {
                return Ok(Comparison::default());
            }
            Response::HeadsSummary { .. } => {}
            other => return Err(format!("unexpected answer to a heads summary: {other:?}")),
        }
        let Response::HeadsBuckets(theirs) = ask(Request::HeadsBuckets).await? else {
            return Err("unexpected answer to a heads buckets request".into());
        };
        let mut found = Comparison::default();
        for (bucket, (their, our)) in (0u8..=255).zip(theirs.iter().zip(ours.buckets())) {
            if their == our {
                continue;
            }
            found.buckets += 1;
            let Response::Heads(heads) = ask(Request::HeadsInBucket { bucket }).await? else {
                return Err("unexpected answer to a bucket's heads".into());
            };
            for head in heads {
                if crate::store::HeadsDigest::bucket_of(&head.chain_id) != bucket {
                    return Err("the peer listed a chain outside the bucket asked".into());
                }
                let ours = self.store.head(&head.chain_id).map_err(|e| e.to_string())?;
                if ours.is_none_or(|ours| ours.index < head.index) {
                    found.behind += 1;
                    self.syncer.spawn_sync(peer, head.chain_id);
                }
            }
        }
        Ok(found)
    }
}
