//! Anchoring the timeline in Ethereum: one transaction per anchored timeline block (retried
//! with the same nonce, so never twice), and re-checks of every anchor until it is final
//! (canonical with the configured confirmations), repairing it after a reorganisation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chainiac_anchor::{AccountStatus, AnchorError, AnchorRequest, GWEI};
use chainiac_net::wire::MAX_ANCHORS;
use chainiac_protocol::Hash;

use crate::store::Store;

/// Attempts to anchor one timeline block.
const ANCHOR_ATTEMPTS: u32 = 5;
/// Most anchors re-checked per timeline: the newest ones not known to be final.
const RECHECKED_ANCHORS: usize = 64;

/// Where and how often the timeline is anchored.
#[derive(Clone)]
pub struct Anchoring {
    /// The external chain.
    pub backend: Arc<dyn chainiac_anchor::Anchor>,
    /// Anchor every N-th epoch this node leads.
    pub every_epochs: u64,
    /// Depth after which an anchor is final.
    pub confirmations: u64,
    /// The anchoring account as last seen (balance, spending), for `/anchors`.
    pub account: Arc<std::sync::Mutex<Option<AccountStatus>>>,
    /// Metrics of anchoring.
    pub metrics: AnchorMetrics,
}

/// Prometheus handles of anchoring (registered by [`crate::metrics::Metrics`]).
#[derive(Clone, Debug, Default)]
pub struct AnchorMetrics {
    /// Anchors mined.
    pub anchored: prometheus_client::metrics::counter::Counter,
    /// Gwei spent on mined anchors.
    pub spent_gwei: prometheus_client::metrics::counter::Counter,
    /// Cost of the last anchor, gwei.
    pub last_cost_gwei: prometheus_client::metrics::gauge::Gauge,
    /// The anchoring account's balance, gwei.
    pub balance_gwei: prometheus_client::metrics::gauge::Gauge,
    /// Anchors the fee ceiling or the daily cap kept from being sent.
    pub held_by_fees: prometheus_client::metrics::counter::Counter,
}

impl Anchoring {
    /// Asks the backend for the account's balance and spending; keeps it for `/anchors`.
    pub async fn refresh_account(&self) {
        match self.backend.status().await {
            Ok(status) => {
                if let Some(status) = &status {
                    self.metrics
                        .balance_gwei
                        .set(i64::try_from(status.balance_wei / GWEI).unwrap_or(i64::MAX));
                }
                *self
                    .account
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
            }
            Err(error) => tracing::debug!(%error, "anchoring account not read"),
        }
    }

    /// The account as last seen.
    pub fn account(&self) -> Option<AccountStatus> {
        self.account
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record_cost(&self, cost_wei: u128) {
        let gwei = u64::try_from(cost_wei / GWEI).unwrap_or(u64::MAX);
        self.metrics.anchored.inc();
        self.metrics.spent_gwei.inc_by(gwei);
        self.metrics
            .last_cost_gwei
            .set(i64::try_from(gwei).unwrap_or(i64::MAX));
    }
}

impl std::fmt::Debug for Anchoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchoring")
            .field("every_epochs", &self.every_epochs)
            .field("confirmations", &self.confirmations)
            .finish()
    }
}

/// Anchors a timeline block, retrying with backoff; the backend reuses the transaction's nonce
/// across attempts, so a block is never anchored twice.
pub async fn anchor_block(
    anchoring: Anchoring,
    store: Store,
    request: AnchorRequest,
    _slot: tokio::sync::OwnedMutexGuard<()>,
) {
    for attempt in 0..ANCHOR_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        if store
            .anchors(&request.timeline, MAX_ANCHORS)
            .is_ok_and(|anchors| anchors.iter().any(|a| a.timeline_index >= request.index))
        {
            return;
        }
        let result = anchoring.backend.anchor(&request).await;
        match result {
            Ok(proof) => {
                anchoring.record_cost(proof.cost_wei);
                match store.put_anchor(&request.timeline, request.index, &proof) {
                    Ok(()) => tracing::info!(
                        timeline_index = request.index,
                        transaction = %proof.transaction,
                        block = proof.block_number,
                        cost_gwei = %chainiac_anchor::gwei(proof.cost_wei),
                        "timeline anchored in Ethereum"
                    ),
                    Err(error) => tracing::warn!(%error, "anchor proof not stored"),
                }
                anchoring.refresh_account().await;
                return;
            }
            Err(AnchorError::Fees(refusal)) => {
                // Not retried: the next epoch's anchor covers this block once fees allow.
                anchoring.metrics.held_by_fees.inc();
                tracing::warn!(timeline_index = request.index, %refusal, "timeline block not anchored: fee policy");
                anchoring.refresh_account().await;
                return;
            }
            Err(error) => {
                tracing::warn!(attempt, timeline_index = request.index, %error, "anchoring failed; retrying");
            }
        }
    }
    tracing::warn!(
        timeline_index = request.index,
        "timeline block not anchored; a later epoch's anchor will cover it"
    );
}

/// Per timeline, the index up to which every anchor is final.
pub type Finalized = Arc<std::sync::Mutex<HashMap<Hash, u64>>>;

/// Re-checks the anchors that are not final yet, oldest first: one whose transaction was mined
/// again in another block after a reorganisation gets an updated proof; one whose transaction
/// disappeared is anchored again. An anchor is final once it is canonical with the configured
/// number of confirmations; final anchors are not asked about again.
pub async fn recheck_anchors(
    anchoring: Anchoring,
    store: Store,
    timelines: Vec<Hash>,
    finalized: Finalized,
    slot: tokio::sync::OwnedMutexGuard<()>,
) {
    for timeline in timelines {
        let final_up_to = finalized
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&timeline)
            .copied();
        let Ok(mut anchors) = store.anchors(&timeline, RECHECKED_ANCHORS) else {
            continue;
        };
        anchors.retain(|proof| final_up_to.is_none_or(|up_to| proof.timeline_index > up_to));
        anchors.reverse();
        let mut all_final_so_far = true;
        for proof in anchors {
            let verified = anchoring
                .backend
                .verify(&proof, anchoring.confirmations)
                .await;
            match verified {
                Ok(_) => {
                    if all_final_so_far {
                        finalized
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(timeline, proof.timeline_index);
                    }
                    continue;
                }
                Err(AnchorError::NotConfirmed { .. }) => {
                    all_final_so_far = false;
                    continue;
                }
                Err(AnchorError::Refused(_)) => {}
                // The Ethereum node is unreachable or failing: try again at the next check.
                _ => break,
            }
            all_final_so_far = false;
            let refreshed = anchoring.backend.refresh(&proof).await;
            match refreshed {
                Ok(Some(current)) if current != proof => {
                    tracing::info!(
                        timeline_index = proof.timeline_index,
                        block = current.block_number,
                        "anchor moved to another block after a reorganisation"
                    );
                    let _ = store.put_anchor(&timeline, proof.timeline_index, &current);
                }
                Ok(None) => {
                    tracing::warn!(
                        timeline_index = proof.timeline_index,
                        "anchor transaction reorganised away; anchoring again"
                    );
                    anchor_again(&store, &anchoring, &timeline, &proof).await;
                }
                _ => {}
            }
        }
    }
    anchoring.refresh_account().await;
    drop(slot);
}

/// Anchors a proof's block again with its original transaction (same nonce), so that the
/// block cannot end up anchored twice.
async fn anchor_again(
    store: &Store,
    anchoring: &Anchoring,
    timeline: &Hash,
    proof: &chainiac_anchor::AnchorProof,
) {
    match anchoring.backend.reanchor(proof).await {
        Ok(again) => {
            anchoring.record_cost(again.cost_wei);
            let _ = store.put_anchor(timeline, again.timeline_index, &again);
        }
        Err(error) => tracing::warn!(%error, "re-anchoring failed; retried at the next check"),
    }
}
