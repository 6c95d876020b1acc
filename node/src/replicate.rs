//! Mirroring: a node that stores a release block fetches the release's artifacts from its peers
//! (every slice verified against the hash the release names), so that any node can serve them.

use std::sync::Arc;
use std::time::Duration;

use chainiac_net::NetHandle;
use chainiac_net::download::download;
use chainiac_protocol::release::ArtifactRef;
use chainiac_protocol::skipchain::SkipBlock;
use libp2p::PeerId;

use crate::artifacts::ArtifactStore;
use crate::metrics::Metrics;
use crate::rules::release_in;
use crate::store::Store;

/// How often a node tries to mirror a release's artifacts before leaving it to later syncs.
const REPLICATION_ATTEMPTS: u32 = 4;

/// The mirroring service.
#[derive(Debug)]
pub struct Replicator {
    store: Store,
    artifacts: ArtifactStore,
    net: NetHandle,
    metrics: Arc<Metrics>,
}

impl Replicator {
    /// Mirrors into `artifacts`, fetching through `net`.
    pub fn new(
        store: Store,
        artifacts: ArtifactStore,
        net: NetHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            artifacts,
            net,
            metrics,
        }
    }

    /// Mirrors the artifacts of a newly stored release: fetches the missing ones from `hint`
    /// (the peer the block came from) and the other connected peers, in the background.
    pub fn replicate(self: &Arc<Self>, block: &SkipBlock, hint: Option<PeerId>) {
        let Ok(Some(release)) = release_in(&self.store, block) else {
            return;
        };
        let missing: Vec<ArtifactRef> = release
            .manifest
            .artifacts()
            .into_iter()
            .filter(|a| !self.artifacts.has(&a.hash))
            .collect();
        if missing.is_empty() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            for artifact in missing {
                this.mirror(&artifact, hint).await;
            }
        });
    }

    async fn mirror(&self, artifact: &ArtifactRef, hint: Option<PeerId>) {
        for attempt in 0..REPLICATION_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
            let mut peers = self.net.info().await.peers;
            if let Some(hint) = hint {
                peers.retain(|p| *p != hint);
                peers.insert(0, hint);
            }
            let fetched = match download(&self.net, &peers, artifact, &|_, _| {}).await {
                Ok(fetched) => fetched,
                Err(error) => {
                    tracing::debug!(%error, attempt, "artifact not replicated yet");
                    continue;
                }
            };
            let store = self.artifacts.clone();
            match tokio::task::spawn_blocking(move || store.put(&fetched.bytes)).await {
                Ok(Ok(_)) => {
                    self.metrics.artifacts_replicated.inc();
                    tracing::debug!(artifact = %artifact.hash, name = %artifact.name, "artifact replicated");
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot store a replicated artifact"),
                Err(error) => tracing::warn!(%error, "artifact store task failed"),
            }
            return;
        }
    }
}
