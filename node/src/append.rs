//! Leading: creating chains and appending blocks as the leader of their signing rounds. A block
//! is checked by this node's own rules first (so the submitter hears the precise rule that
//! failed), then signed by one round per forward link, stored, and gossiped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chainiac_net::wire::{LinkedBlock, Request, Response};
use chainiac_net::{NetHandle, peer_id_of};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::{ChainParams, LinkRequest, SkipBlock};

use futures::future::join_all;

use crate::agreement::{Agreements, Decision};
use crate::artifacts::ArtifactStore;
use crate::gossip::Gossip;
use crate::metrics::Metrics;
use crate::rounds::{
    AppendError, Asker, BoxFuture, RoundConfig, RoundReport, Witness, WitnessTransport, sign_link,
};
use crate::rules::release_in;
use crate::store::{ChainHead, Store, StoreError};
use crate::verifier::{Attestations, Verifier};

/// Most positions one append may lose to competing blocks before it gives up (each time, its
/// block is proposed again after the one decided).
const MAX_LOST_POSITIONS: usize = 16;

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
    /// Agreement, which decides each block before its links are signed.
    pub agreements: Arc<Agreements>,
    /// Mirroring: a decided block this node logs may be a release whose artifacts it lacks.
    pub replicator: Arc<crate::replicate::Replicator>,
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
        let deadline = Instant::now() + parts.rounds.decision_timeout;
        let mut lost = 0;
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
            let block = Arc::new(block);
            let logged = self.decide(&block, deadline).await?;
            if logged.hash == block.hash() {
                return Ok(logged);
            }
            lost += 1;
            tracing::info!(
                chain = %chain_id,
                index = block.index(),
                logged = %logged.hash,
                "another block was decided at this index; proposing again after it"
            );
            if lost >= MAX_LOST_POSITIONS {
                parts.metrics.appends_failed.inc();
                return Err(NodeError::Append(AppendError::Contended {
                    positions: lost,
                }));
            }
        }
    }

    /// Offers `block` to be decided at its position and waits until a block is logged there
    /// (this block or a competing one), offering it again every view's base time (offers may be
    /// lost, members may restart). Returns the head logged at that index.
    async fn decide(
        &self,
        block: &Arc<SkipBlock>,
        deadline: Instant,
    ) -> Result<ChainHead, NodeError> {
        let parts = &self.parts;
        let chain_id = block.chain_id();
        let index = block.index();
        let position = chainiac_protocol::agreement::Position { chain_id, index };
        let mut appended = parts.store.watch_appends();
        // Whether the previous offer was refused by more members than the roster can spare.
        let mut refused_last_time = false;
        let period = Duration::from_millis(parts.agreements.timing().base_ms.max(1));
        let logged = |store: &Store| -> Result<Option<ChainHead>, NodeError> {
            Ok(store.block_at(&chain_id, index)?.map(|logged| ChainHead {
                chain_id,
                index,
                hash: logged.hash(),
            }))
        };
        loop {
            if let Some(head) = logged(&parts.store)? {
                return Ok(head);
            }
            let now = Instant::now();
            if now >= deadline {
                parts.metrics.appends_failed.inc();
                let roster = parts
                    .agreements
                    .deciding_roster(position)
                    .map(|(roster, _)| roster);
                return Err(NodeError::Append(AppendError::Undecided {
                    index,
                    seconds: parts.rounds.decision_timeout.as_secs(),
                    view: parts.agreements.view(&position),
                    threshold: roster.as_ref().map_or(0, |r| r.threshold()),
                    members: roster.as_ref().map_or(0, |r| r.len()),
                }));
            }
            match parts.agreements.offer(block.clone()).await {
                Ok(refusals) if refusals.is_empty() => refused_last_time = false,
                Ok(refusals) => {
                    let (roster, _) = parts
                        .agreements
                        .deciding_roster(position)
                        .map_err(NodeError::Invalid)?;
                    // More refusals than members the roster can do without, twice in a row
                    // (a member may refuse once while it catches up): an honest member refused,
                    // so the others (same rules) will too.
                    let too_many = refusals.len() > roster.len() - roster.threshold();
                    let give_up = too_many && refused_last_time;
                    refused_last_time = too_many;
                    if give_up {
                        parts.metrics.appends_failed.inc();
                        let reasons: Vec<String> = refusals
                            .iter()
                            .map(|(key, reason)| format!("{key}: {reason}"))
                            .collect();
                        return Err(NodeError::Invalid(format!(
                            "{} of the {} members deciding block {index} refused it: {}",
                            refusals.len(),
                            roster.len(),
                            reasons.join("; ")
                        )));
                    }
                }
                Err(reason) => {
                    if let Some(head) = logged(&parts.store)? {
                        return Ok(head);
                    }
                    return Err(NodeError::Invalid(reason));
                }
            }
            let until = tokio::time::Instant::from_std((now + period).min(deadline));
            loop {
                tokio::select! {
                    changed = appended.changed() => {
                        if changed.is_err() || logged(&parts.store)?.is_some() {
                            break;
                        }
                    }
                    () = tokio::time::sleep_until(until) => break,
                }
            }
        }
    }

    /// Gets the forward links into `decision.block`, decided at its position, signed and stores
    /// it: every witness of the links' rosters is first shown the commit certificate (a witness
    /// signs a link only into a decided block), then one signing round per link runs. Several
    /// members may do this at once; whoever stores it first wins and the others find it stored.
    pub async fn notarize(&self, decision: &Decision) -> Result<(), NodeError> {
        let parts = &self.parts;
        let block = decision.block.as_ref();
        let chain_id = block.chain_id();
        if parts.store.block_at(&chain_id, block.index())?.is_some() {
            return Ok(());
        }
        let requests = parts.store.link_requests(block)?;
        let mut witnesses = BTreeSet::new();
        for request in &requests {
            if let Some(source) = parts.store.block_at(&chain_id, request.from_index)? {
                for member in parts.store.roster_of(&source)?.members() {
                    witnesses.insert(member.key);
                }
            }
        }
        parts
            .witness
            .record_decision(chain_id, block.index(), block.hash());
        let shown = witnesses
            .into_iter()
            .filter(|key| *key != parts.key)
            .filter_map(|key| peer_id_of(&key).ok())
            .map(|peer| {
                let request = Request::Decided {
                    block: Box::new(block.clone()),
                    certificate: decision.certificate.clone(),
                };
                let net = parts.net.clone();
                let timeout = parts.rounds.commit_timeout;
                async move {
                    if let Ok(Ok(Response::Refused(reason))) =
                        tokio::time::timeout(timeout, net.request(peer, request)).await
                    {
                        tracing::debug!(%peer, %reason, "a witness refused the decision");
                    }
                }
            });
        join_all(shown).await;
        match self.log_block(block.clone()).await {
            Err(NodeError::Store(_)) | Err(NodeError::Append(AppendError::Store(_)))
                if parts
                    .store
                    .block_at(&chain_id, block.index())?
                    .map(|b| b.hash())
                    == Some(block.hash()) =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
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
        parts.replicator.replicate(&block, None);
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
