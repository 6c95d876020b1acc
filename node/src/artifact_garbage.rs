//! Garbage collection of artifacts: files uploaded for a release that was then refused (or
//! never sent), and the leftovers of interrupted writes, are removed once they are older than
//! the grace period and no stored release names them. Artifacts of logged releases are kept
//! for ever: mirrors serve them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chainiac_protocol::Hash;
use chainiac_protocol::project::ChainGenesis;

use crate::artifacts::{ArtifactStore, Collected};
use crate::node::NodeCore;
use crate::rules::{chain_kind, release_in};
use crate::store::Store;

/// How often the collector looks for stale files.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Wait after start-up before the first sweep.
const FIRST_SWEEP: Duration = Duration::from_secs(60);

/// Every artifact a release stored here names.
fn referenced(store: &Store) -> Result<HashSet<Hash>, String> {
    let mut named = HashSet::new();
    for head in store.chains(usize::MAX).map_err(|e| e.to_string())? {
        if !matches!(
            chain_kind(store, &head.chain_id).map_err(|e| e.to_string())?,
            Some(ChainGenesis::Release { .. })
        ) {
            continue;
        }
        for index in 1..=head.index {
            let Some(block) = store
                .block_at(&head.chain_id, index)
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            if let Some(release) = release_in(store, &block).map_err(|e| e.to_string())? {
                named.extend(release.manifest.artifacts().iter().map(|a| a.hash));
            }
        }
    }
    Ok(named)
}

/// Removes the artifacts not written since `written_before` that no stored release names, and
/// the leftovers of interrupted writes. The releases are read only when something is stale.
pub fn collect(
    store: &Store,
    artifacts: &ArtifactStore,
    written_before: SystemTime,
) -> Result<Collected, String> {
    let stale = artifacts.stale(written_before).map_err(|e| e.to_string())?;
    if stale.is_empty() {
        return Ok(Collected::default());
    }
    let referenced = referenced(store)?;
    artifacts
        .collect(&stale, &referenced)
        .map_err(|e| e.to_string())
}

/// Sweeps every hour, keeping unreferenced files for `grace`.
pub async fn run(core: Arc<NodeCore>, grace: Duration) {
    tokio::time::sleep(FIRST_SWEEP).await;
    loop {
        let store = core.store().clone();
        let artifacts = core.artifacts().clone();
        let written_before = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let result =
            tokio::task::spawn_blocking(move || collect(&store, &artifacts, written_before)).await;
        match result {
            Ok(Ok(collected)) if collected != Collected::default() => tracing::info!(
                artifacts = collected.artifacts,
                leftovers = collected.leftovers,
                bytes = collected.bytes,
                "removed artifacts no logged release names"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "artifact garbage collection failed"),
            Err(error) => tracing::warn!(%error, "artifact garbage collection task failed"),
        }
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}
