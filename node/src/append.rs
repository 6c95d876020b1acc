//! Leading: creating chains and appending blocks as the leader of their signing rounds. A block
//! is checked by this node's own rules first (so the submitter hears the precise rule that
//! failed), then signed by one round per forward link, stored, and gossiped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chainiac_net::wire::{LinkedBlock, Request, Response};
use chainiac_net::{NetHandle, peer_id_of};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::{ChainParams, LinkRequest, SkipBlock};

use crate::artifacts::ArtifactStore;
use crate::gossip::Gossip;
use crate::metrics::Metrics;
use crate::rounds::{
    AppendError, Asker, BoxFuture, RoundConfig, RoundReport, Witness, WitnessTransport, sign_link,
};
use crate::rules::release_in;
use crate::store::{ChainHead, Store, StoreError};
use crate::verifier::{Attestations, Verifier};

/// Most blocks of failed rounds one append completes before its own block.
const MAX_COMPLETED_LOCKS: usize = 4;

/// Errors of node operations requested through the API.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The append could not be signed or stored.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request is invalid or breaks a rule; the text says which.
    #[error("{0}")]
    Invalid(String),
}

/// What the leader works with.
#[derive(Clone, Debug)]
pub struct AppendParts {
    /// This node's key (its own witness is asked directly).
    pub key: PublicKey,
    /// The store.
    pub store: Store,
    /// The network, to reach the other witnesses.
    pub net: NetHandle,
    /// This node's witness.
    pub witness: Arc<Witness>,
    /// Timeouts and shape of rounds.
    pub rounds: RoundConfig,
    /// Artifacts (a release is led only once its artifacts are here to be served).
    pub artifacts: ArtifactStore,
    /// This node's build verifier, if any (asked directly for its attestation).
    pub verifier: Option<Arc<Verifier>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Gossip, to publish what is logged.
    pub gossip: Arc<Gossip>,
}

/// The leader service.
#[derive(Debug)]
pub struct Appender {
    parts: AppendParts,
    /// One append at a time per chain.
    chain_locks: Mutex<HashMap<Hash, Arc<tokio::sync::Mutex<()>>>>,
}

impl Appender {
    /// A leader over `parts`.
    pub fn new(parts: AppendParts) -> Self {
        Self {
            parts,
            chain_locks: Mutex::default(),
        }
    }

    /// Creates a chain with `members` as its roster: the genesis is checked by this node's
    /// rules, certified by its roster in a signing round (each member applies its rules and
    /// its operator's admission policy), then stored and gossiped. Nothing is stored if the
    /// roster does not certify it.
    pub async fn create_chain(
        &self,
        members: Vec<RosterMember>,
        threshold: Option<u32>,
        params: ChainParams,
        payload: Vec<u8>,
    ) -> Result<ChainHead, NodeError> {
        let parts = &self.parts;
        let roster = match threshold {
            Some(threshold) => Roster::new(members, threshold),
            None => Roster::with_default_threshold(members),
        }
        .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let genesis = SkipBlock::genesis(params, roster.clone(), payload)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let chain_id = genesis.chain_id();
        if parts.store.head(&chain_id)?.is_some() {
            return Err(StoreError::ChainExists(chain_id).into());
        }
        parts
            .witness
            .check_rules(&genesis)
            .map_err(NodeError::Invalid)?;
        let request =
            LinkRequest::for_genesis(&genesis).map_err(|e| NodeError::Invalid(e.to_string()))?;
        let transport = LeaderTransport { parts };
        let (certificate, report) =
            sign_link(&transport, &roster, &genesis, &request, parts.rounds)
                .await
                .inspect_err(|_| {
                    parts.metrics.appends_failed.inc();
                })?;
        self.count_round(&report);
        let head = parts.store.create_chain(&genesis, &certificate)?;
        parts
            .gossip
            .publish(LinkedBlock {
                block: genesis,
                links: vec![certificate],
            })
            .await;
        Ok(head)
    }

    /// Appends a block with `payload` (and optionally a new roster) to `chain_id` as leader:
    /// one signing round per forward link, the level-0 link required, higher levels best effort.
    pub async fn append(
        &self,
        chain_id: Hash,
        payload: Vec<u8>,
        roster: Option<Roster>,
    ) -> Result<ChainHead, NodeError> {
        let parts = &self.parts;
        // Build attestations are gathered before the chain is locked: rebuilds take minutes.
        let payload = Attestations {
            store: &parts.store,
            net: &parts.net,
            local: parts.verifier.as_deref(),
            key: parts.key,
        }
        .gather(&chain_id, payload)
        .await
        .map_err(NodeError::Invalid)?;
        let lock = {
            let mut locks = self
                .chain_locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            locks.entry(chain_id).or_default().clone()
        };
        let _guard = lock.lock().await;
        let mut completed = 0;
        loop {
            let head = parts
                .store
                .head(&chain_id)?
                .ok_or(StoreError::UnknownChain(chain_id))?;
            let previous = parts.store.block(&head.hash)?.ok_or(StoreError::Corrupt {
                what: "chain head",
                detail: "head block missing".into(),
            })?;
            let current = parts.store.roster_of(&previous)?;
            let block = SkipBlock::successor(
                &previous,
                &current,
                roster.clone(),
                payload.clone(),
                |index| {
                    parts
                        .store
                        .block_at(&chain_id, index)
                        .ok()
                        .flatten()
                        .map(|b| b.hash())
                },
            )
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
            parts
                .witness
                .check_rules(&block)
                .map_err(NodeError::Invalid)?;
            if let Some(release) = release_in(&parts.store, &block)? {
                for artifact in release.manifest.artifacts() {
                    // Touched, so that the garbage collector keeps it while the round runs.
                    if !parts.artifacts.has(&artifact.hash)
                        || parts.artifacts.touch(&artifact.hash).is_err()
                    {
                        return Err(NodeError::Invalid(format!(
                            "artifact {} ({}) is not stored on this node; upload it (PUT /artifacts) before publishing, so that the release can be served",
                            artifact.name, artifact.hash
                        )));
                    }
                }
            }
            match self.log_block(block).await {
                Err(NodeError::Append(AppendError::Locked {
                    block: locked,
                    witnesses,
                    ..
                })) if completed < MAX_COMPLETED_LOCKS => {
                    completed += 1;
                    tracing::info!(
                        chain = %chain_id,
                        index = locked.index(),
                        locked = %locked.hash(),
                        witnesses,
                        "witnesses are locked on a block of a failed round; completing it first"
                    );
                    self.complete_locked(&previous, *locked).await?;
                }
                logged => return logged,
            }
        }
    }

    /// Completes `locked`, a block some witnesses already signed after `previous` in a round
    /// that failed: checked like any proposal (successor of `previous`, payload rules), then
    /// signed and logged. Every witness either signs it or is locked on it, unless the
    /// witnesses are split between two blocks; then this fails with the split.
    async fn complete_locked(
        &self,
        previous: &SkipBlock,
        locked: SkipBlock,
    ) -> Result<ChainHead, NodeError> {
        if locked.chain_id() != previous.chain_id()
            || locked.index() != previous.index() + 1
            || locked.back_links().first() != Some(&previous.hash())
        {
            return Err(NodeError::Invalid(format!(
                "a witness is locked on block {}, which does not follow the head {}",
                locked.hash(),
                previous.hash()
            )));
        }
        self.parts.witness.check_rules(&locked).map_err(|reason| {
            NodeError::Invalid(format!(
                "a witness is locked on block {}, which breaks a rule: {reason}",
                locked.hash()
            ))
        })?;
        self.log_block(locked).await
    }

    fn count_round(&self, report: &RoundReport) {
        let metrics = &self.parts.metrics;
        metrics.rounds_completed.inc();
        if report.tree {
            metrics.rounds_tree.inc();
        }
        metrics.witnesses_excluded.inc_by(report.wrong.len() as u64);
    }

    /// Signs the forward links into `block` (a checked successor of the chain's head) with
    /// rounds among their rosters, stores it, and gossips it. Nothing is stored if the
    /// level-0 link cannot be signed; a missing higher-level link is added later.
    async fn log_block(&self, block: SkipBlock) -> Result<ChainHead, NodeError> {
        let parts = &self.parts;
        let chain_id = block.chain_id();
        let requests = parts.store.link_requests(&block)?;
        let transport = LeaderTransport { parts };
        let mut links = Vec::new();
        for request in &requests {
            let source = parts
                .store
                .block_at(&chain_id, request.from_index)?
                .ok_or(chainiac_protocol::Error::MissingBlock {
                    index: request.from_index,
                })
                .map_err(StoreError::from)?;
            let roster = parts.store.roster_of(&source)?;
            match sign_link(&transport, &roster, &block, request, parts.rounds).await {
                Ok((link, report)) => {
                    self.count_round(&report);
                    links.push(link);
                }
                Err(error) if request.level == 0 => {
                    parts.metrics.appends_failed.inc();
                    return Err(error.into());
                }
                Err(error) => {
                    tracing::warn!(level = request.level, %error, "higher-level forward link not signed; it can be added later");
                }
            }
        }
        let head = parts.store.append(&block, &links)?;
        parts.metrics.blocks_led.inc();
        parts.gossip.publish(LinkedBlock { block, links }).await;
        Ok(head)
    }
}

/// Reaches witnesses over the network, and this node's own witness directly.
struct LeaderTransport<'a> {
    parts: &'a AppendParts,
}

impl WitnessTransport for LeaderTransport<'_> {
    fn call(
        &self,
        witness: PublicKey,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, String>> {
        Box::pin(async move {
            if witness == self.parts.key {
                return Ok(self.parts.witness.answer(Asker::OwnNode, request));
            }
            let peer = peer_id_of(&witness).map_err(|e| e.to_string())?;
            self.parts
                .net
                .request(peer, request)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn local_key(&self) -> Option<PublicKey> {
        Some(self.parts.key)
    }
}
