//! The node service: wires the store, the witness, the leader and the network together. The
//! network task moves bytes; everything it hands over is validated here before it is stored or
//! relayed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Challenge, ResponseShare, Roster, RosterMember};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::{ArtifactRef, Release, ReleaseManifest};
use chainiac_protocol::skipchain::{ChainParams, SkipBlock};
use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::artifacts::{ArtifactError, ArtifactStore, download};
use crate::config::Identity;
use crate::leader::{AppendError, BoxFuture, RoundConfig, WitnessTransport, sign_link};
use crate::metrics::Metrics;
use crate::net::{Acceptance, NetEvent, NetHandle, peer_id_of};
use crate::rules::{chain_kind, dependencies};
use crate::store::{ChainHead, Store, StoreError};
use crate::tree::{SubtreeHost, SubtreeRounds};
use crate::wire::{HeadInfo, LinkedBlock, MAX_ANCHORS, MAX_BLOCKS_PER_REQUEST, Request, Response};
use crate::witness::{Committed, Refusal, Witness};

/// Inbound requests a peer may make per second (burst: twice that).
pub const REQUESTS_PER_SECOND: f64 = 500.0;
/// How often a node tries to mirror a release's artifacts before leaving it to later syncs.
const REPLICATION_ATTEMPTS: u32 = 4;

/// The source and binaries of a release.
pub fn release_artifacts(release: &Release) -> Vec<ArtifactRef> {
    let manifest = &release.manifest;
    std::iter::once(manifest.source.clone())
        .chain(manifest.binaries.iter().map(|b| b.artifact.clone()))
        .collect()
}

/// A running node's shared state.
pub struct NodeCore {
    /// The node's identity.
    pub identity: Arc<Identity>,
    /// Its store.
    pub store: Store,
    /// Its witness.
    pub witness: Witness,
    /// The network task.
    pub net: NetHandle,
    /// Metrics.
    pub metrics: Metrics,
    /// Signing-round timeouts and shape.
    pub rounds: RoundConfig,
    /// Release artifacts this node stores and serves.
    pub artifacts: ArtifactStore,
    /// Ethereum anchoring of the timelines this node leads (off when `None`).
    pub anchoring: Option<Anchoring>,
    /// Build verification (off when `None`).
    pub verifier: Option<Arc<crate::verifier::Verifier>>,
    /// Tree rounds this node takes part in as an interior node or leaf.
    subtrees: SubtreeRounds,
    chain_locks: Mutex<HashMap<Hash, Arc<tokio::sync::Mutex<()>>>>,
    rate: Mutex<HashMap<PeerId, (f64, Instant)>>,
    syncing: Mutex<std::collections::HashSet<(PeerId, Hash)>>,
    /// Per chain, the position of the latest block another leader asked this node to sign,
    /// and when: a node does not propose a competing block there while that round may still
    /// be running (two leaders' rounds at one position can split the witnesses' guards).
    proposals_seen: Mutex<HashMap<Hash, (u64, Instant)>>,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("key", &self.identity.public().key)
            .finish()
    }
}

/// Where and how often the timeline is anchored.
#[derive(Clone)]
pub struct Anchoring {
    /// The external chain.
    pub backend: Arc<dyn chainiac_anchor::Anchor>,
    /// Anchor every N-th epoch this node leads.
    pub every_epochs: u64,
    /// Depth after which an anchor is final.
    pub confirmations: u64,
}

impl std::fmt::Debug for Anchoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchoring")
            .field("every_epochs", &self.every_epochs)
            .field("confirmations", &self.confirmations)
            .finish()
    }
}

/// Errors of node operations requested through the API.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The append could not be signed or stored.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
}

/// Most blocks of failed rounds one append completes before its own block.
const MAX_COMPLETED_LOCKS: usize = 4;

impl NodeCore {
    /// A node core over its parts.
    pub fn new(
        identity: Arc<Identity>,
        store: Store,
        witness: Witness,
        net: NetHandle,
        rounds: RoundConfig,
        artifacts: ArtifactStore,
    ) -> Self {
        Self {
            identity,
            store,
            witness,
            net,
            metrics: Metrics::new(),
            rounds,
            artifacts,
            anchoring: None,
            verifier: None,
            subtrees: SubtreeRounds::new(),
            chain_locks: Mutex::default(),
            rate: Mutex::default(),
            syncing: Mutex::default(),
            proposals_seen: Mutex::default(),
        }
    }

    /// Whether another leader asked this node, less than `within` ago, to sign a block at
    /// `index` of `chain_id` (its round may still be running).
    pub fn proposal_in_flight(
        &self,
        chain_id: &Hash,
        index: u64,
        within: std::time::Duration,
    ) -> bool {
        self.proposals_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(chain_id)
            .is_some_and(|(seen, at)| *seen == index && at.elapsed() < within)
    }

    /// The node's public key.
    pub fn key(&self) -> PublicKey {
        self.identity.public().key
    }

    /// Creates a chain with `members` as its roster and gossips its genesis.
    pub async fn create_chain(
        &self,
        members: Vec<RosterMember>,
        threshold: Option<u32>,
        params: ChainParams,
        payload: Vec<u8>,
    ) -> Result<ChainHead, NodeError> {
        let roster = match threshold {
            Some(threshold) => Roster::new(members, threshold),
            None => Roster::with_default_threshold(members),
        }
        .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let genesis = SkipBlock::genesis(params, roster, payload)
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let head = self.store.create_chain(&genesis)?;
        self.publish(LinkedBlock {
            block: genesis,
            links: Vec::new(),
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
        // Build attestations are gathered before the chain is locked: rebuilds take minutes.
        let payload = crate::verifier::with_attestations(self, &chain_id, payload)
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
            let head = self
                .store
                .head(&chain_id)?
                .ok_or(StoreError::UnknownChain(chain_id))?;
            let previous = self.store.block(&head.hash)?.ok_or(StoreError::Corrupt {
                what: "chain head",
                detail: "head block missing".into(),
            })?;
            let current = self.store.roster_of(&previous)?;
            let block = SkipBlock::successor(
                &previous,
                &current,
                roster.clone(),
                payload.clone(),
                |index| {
                    self.store
                        .block_at(&chain_id, index)
                        .ok()
                        .flatten()
                        .map(|b| b.hash())
                },
            )
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
            self.witness
                .check_rules(&block)
                .map_err(NodeError::Invalid)?;
            if let Some(release) = self.release_in(&block)? {
                for artifact in release_artifacts(&release) {
                    if !self.artifacts.has(&artifact.hash) {
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
        self.witness.check_rules(&locked).map_err(|reason| {
            NodeError::Invalid(format!(
                "a witness is locked on block {}, which breaks a rule: {reason}",
                locked.hash()
            ))
        })?;
        self.log_block(locked).await
    }

    /// Signs the forward links into `block` (a checked successor of the chain's head) with
    /// rounds among their rosters, stores it, and gossips it. Nothing is stored if the
    /// level-0 link cannot be signed; a missing higher-level link is added later.
    async fn log_block(&self, block: SkipBlock) -> Result<ChainHead, NodeError> {
        let chain_id = block.chain_id();
        let requests = self.store.link_requests(&block)?;
        let transport = NodeTransport { core: self };
        let mut links = Vec::new();
        for request in &requests {
            let source = self
                .store
                .block_at(&chain_id, request.from_index)?
                .ok_or(chainiac_protocol::Error::MissingBlock {
                    index: request.from_index,
                })
                .map_err(StoreError::from)?;
            let roster = self.store.roster_of(&source)?;
            match sign_link(&transport, &roster, &block, request, self.rounds).await {
                Ok((link, report)) => {
                    self.metrics.rounds_completed.inc();
                    if report.tree {
                        self.metrics.rounds_tree.inc();
                    }
                    self.metrics
                        .witnesses_excluded
                        .inc_by(report.wrong.len() as u64);
                    links.push(link);
                }
                Err(error) if request.level == 0 => {
                    self.metrics.appends_failed.inc();
                    return Err(error.into());
                }
                Err(error) => {
                    tracing::warn!(level = request.level, %error, "higher-level forward link not signed; it can be added later");
                }
            }
        }
        let head = self.store.append(&block, &links)?;
        self.metrics.blocks_led.inc();
        self.publish(LinkedBlock { block, links }).await;
        Ok(head)
    }

    /// The release a block carries, if it is a block of a release chain.
    pub fn release_in(&self, block: &SkipBlock) -> Result<Option<Release>, StoreError> {
        if block.index() == 0 {
            return Ok(None);
        }
        match chain_kind(&self.store, &block.chain_id())? {
            Some(ChainGenesis::Release { .. }) => Ok(Release::from_bytes(block.payload()).ok()),
            _ => Ok(None),
        }
    }

    /// Mirrors the artifacts of a newly stored release: fetches the missing ones from `hint`
    /// (the peer the block came from) and the other connected peers, verifying every slice.
    pub fn replicate(self: &Arc<Self>, block: &SkipBlock, hint: Option<PeerId>) {
        let Ok(Some(release)) = self.release_in(block) else {
            return;
        };
        let missing: Vec<ArtifactRef> = release_artifacts(&release)
            .into_iter()
            .filter(|a| !self.artifacts.has(&a.hash))
            .collect();
        if missing.is_empty() {
            return;
        }
        let core = self.clone();
        tokio::spawn(async move {
            for artifact in missing {
                for attempt in 0..REPLICATION_ATTEMPTS {
                    if attempt > 0 {
                        tokio::time::sleep(std::time::Duration::from_secs(1 << attempt)).await;
                    }
                    let mut peers = core.net.info().await.peers;
                    if let Some(hint) = hint {
                        peers.retain(|p| *p != hint);
                        peers.insert(0, hint);
                    }
                    match download(&core.net, &peers, &artifact, &|_, _| {}).await {
                        Ok(fetched) => {
                            let store = core.artifacts.clone();
                            let stored =
                                tokio::task::spawn_blocking(move || store.put(&fetched.bytes))
                                    .await;
                            match stored {
                                Ok(Ok(_)) => {
                                    core.metrics.artifacts_replicated.inc();
                                    tracing::debug!(artifact = %artifact.hash, name = %artifact.name, "artifact replicated");
                                }
                                Ok(Err(error)) => {
                                    tracing::warn!(%error, "cannot store a replicated artifact");
                                }
                                Err(error) => tracing::warn!(%error, "artifact store task failed"),
                            }
                            break;
                        }
                        Err(error) => {
                            tracing::debug!(%error, attempt, "artifact not replicated yet");
                        }
                    }
                }
            }
        });
    }

    async fn publish(&self, block: LinkedBlock) {
        if let Err(error) = self.net.publish(block.to_bytes()).await {
            tracing::debug!(%error, "gossip not published (peers learn the block by sync)");
        }
    }

    fn allow(&self, peer: PeerId) -> bool {
        let mut rate = self.rate.lock().unwrap_or_else(PoisonError::into_inner);
        if rate.len() > 10_000 {
            rate.retain(|_, (_, last)| last.elapsed().as_secs() < 60);
        }
        let now = Instant::now();
        let (tokens, last) = rate.entry(peer).or_insert((2.0 * REQUESTS_PER_SECOND, now));
        *tokens = (*tokens + last.elapsed().as_secs_f64() * REQUESTS_PER_SECOND)
            .min(2.0 * REQUESTS_PER_SECOND);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Answers a peer's request.
    pub fn answer(&self, peer: PeerId, request: Request) -> Response {
        if !self.allow(peer) {
            return self.counted(Response::Refused("rate limit exceeded; slow down".into()));
        }
        self.counted(self.answer_inner(request))
    }

    fn counted(&self, response: Response) -> Response {
        if matches!(response, Response::Refused(_)) {
            self.metrics.requests_refused.inc();
        } else {
            self.metrics.requests_served.inc();
        }
        response
    }

    /// Answers a request off the event loop. A witness asked to sign a block beyond its head
    /// first fetches the missing blocks from the requester (which has them), then answers.
    pub async fn answer_async(self: &Arc<Self>, peer: PeerId, request: Request) -> Response {
        let internal = |_| Response::Refused("internal error".into());
        let signing = matches!(
            request,
            Request::Commit { .. } | Request::TreeCommit { .. } | Request::TreeRespond { .. }
        );
        if !signing {
            let core = self.clone();
            return tokio::task::spawn_blocking(move || core.answer(peer, request))
                .await
                .unwrap_or_else(internal);
        }
        if !self.allow(peer) {
            return self.counted(Response::Refused("rate limit exceeded; slow down".into()));
        }
        let host = TreeHost {
            core: self.clone(),
            peer,
        };
        let response = match request {
            Request::Commit {
                round,
                block,
                level,
            } => match self.commit_own(peer, round, Arc::new(*block), level).await {
                Ok(committed) => Response::Committed(committed.commitment),
                Err(refusal) => refusal.into(),
            },
            Request::TreeCommit {
                round,
                block,
                level,
                layout,
                budget_ms,
            } => {
                self.subtrees
                    .commit(&host, round, *block, level, layout, budget_ms)
                    .await
            }
            Request::TreeRespond {
                round,
                challenge,
                budget_ms,
            } => {
                self.subtrees
                    .respond(&host, round, challenge, budget_ms)
                    .await
            }
            _ => Response::Refused("internal error".into()),
        };
        self.counted(response)
    }

    /// This node's witness commits for a round led by (or forwarded from) `peer`, syncing from
    /// it first if the block is beyond this node's head.
    async fn commit_own(
        self: &Arc<Self>,
        peer: PeerId,
        round: Hash,
        block: Arc<SkipBlock>,
        level: u32,
    ) -> Result<Committed, Refusal> {
        // Only other nodes' proposals come here: this node's own witness is answered directly.
        self.proposals_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(block.chain_id(), (block.index(), Instant::now()));
        let store = self.store.clone();
        let needed = {
            let block = block.clone();
            tokio::task::spawn_blocking(move || dependencies(&store, &block))
                .await
                .unwrap_or_default()
        };
        for chain in needed {
            if let Err(error) = self.sync_chain(peer, chain).await {
                return Err(Refusal::Invalid(format!(
                    "this witness lacks blocks of chain {chain} the proposal depends on and could not sync them from the leader: {error}"
                )));
            }
        }
        let commit = |core: Arc<Self>, block: Arc<SkipBlock>| {
            tokio::task::spawn_blocking(move || core.witness.commit_round(round, &block, level))
        };
        let mut result = commit(self.clone(), block.clone()).await;
        if let Ok(Err(Refusal::Behind { .. })) = result {
            if let Err(error) = self.sync_chain(peer, block.chain_id()).await {
                return Err(Refusal::Invalid(format!(
                    "witness is behind and could not sync from the leader: {error}"
                )));
            }
            result = commit(self.clone(), block).await;
        }
        result.unwrap_or_else(|_| Err(Refusal::Invalid("internal error".into())))
    }

    fn answer_inner(&self, request: Request) -> Response {
        let refuse = |error: &dyn std::fmt::Display| Response::Refused(error.to_string());
        match request {
            Request::Heads => match self.store.chains(crate::wire::MAX_HEADS) {
                Ok(heads) => Response::Heads(
                    heads
                        .into_iter()
                        .map(|h| HeadInfo {
                            chain_id: h.chain_id,
                            index: h.index,
                            hash: h.hash,
                        })
                        .collect(),
                ),
                Err(error) => refuse(&error),
            },
            Request::Blocks {
                chain_id,
                from,
                count,
            } => {
                let mut blocks = Vec::new();
                for index in from..from.saturating_add(u64::from(count.min(MAX_BLOCKS_PER_REQUEST)))
                {
                    match self.linked_block(&chain_id, index) {
                        Ok(Some(block)) => blocks.push(block),
                        Ok(None) => break,
                        Err(error) => return refuse(&error),
                    }
                }
                Response::Blocks(blocks)
            }
            Request::Proof { chain_id, from, to } => {
                match self.store.skip_proof(&chain_id, from, to) {
                    Ok(proof) => Response::Proof(Box::new(proof)),
                    Err(error) => refuse(&error),
                }
            }
            Request::Commit {
                round,
                block,
                level,
            } => match self.witness.commit(round, &block, level) {
                Ok(commitment) => Response::Committed(commitment),
                Err(refusal) => refusal.into(),
            },
            Request::Respond { round, challenge } => {
                match self.witness.respond(round, &challenge) {
                    Ok(share) => Response::Responded(share),
                    Err(refusal) => refuse(&refusal),
                }
            }
            Request::Head { chain_id } => match self.store.head(&chain_id) {
                Ok(head) => Response::Head(head.map(|h| HeadInfo {
                    chain_id: h.chain_id,
                    index: h.index,
                    hash: h.hash,
                })),
                Err(error) => refuse(&error),
            },
            Request::TimelineInclusion {
                timeline,
                index,
                chain_id,
            } => match self.timeline_inclusion(&timeline, index, &chain_id) {
                Ok(response) => response,
                Err(reason) => refuse(&reason),
            },
            Request::Attest { manifest } => self.answer_attest(*manifest),
            Request::Anchors { timeline } => match self.store.anchors(&timeline, MAX_ANCHORS) {
                Ok(anchors) => Response::Anchors(anchors),
                Err(error) => refuse(&error),
            },
            Request::ArtifactSlice { hash, start, len } => {
                match self.artifacts.slice(&hash, start, len) {
                    Ok((size, data)) => Response::Slice { size, data },
                    Err(error @ ArtifactError::Io { .. }) => {
                        tracing::warn!(%error, "cannot serve an artifact");
                        refuse(&"artifact unavailable on this node")
                    }
                    Err(error) => refuse(&error),
                }
            }
            Request::TreeCommit { .. } | Request::TreeRespond { .. } => {
                Response::Refused("tree rounds are answered only for a parent in the tree".into())
            }
        }
    }

    /// This node's answer to a request for its attestation of `manifest`.
    pub(crate) fn answer_attest(&self, manifest: ReleaseManifest) -> Response {
        match &self.verifier {
            None => Response::Refused("this node is not a build verifier".into()),
            Some(verifier) => match verifier.request(self, manifest) {
                Ok(attestation) => Response::Attestation(attestation.map(Box::new)),
                Err(reason) => Response::Refused(reason),
            },
        }
    }

    fn timeline_inclusion(
        &self,
        timeline: &Hash,
        index: u64,
        chain_id: &Hash,
    ) -> Result<Response, String> {
        if !matches!(
            chain_kind(&self.store, timeline),
            Ok(Some(ChainGenesis::Timeline { .. }))
        ) {
            return Err(format!(
                "{timeline} is not a timeline chain this node holds"
            ));
        }
        if index == 0 {
            return Err("the timeline genesis lists no chain".into());
        }
        let (entry, proof) = self
            .store
            .timeline_tree(timeline, index)?
            .prove(chain_id)
            .ok_or_else(|| format!("chain {chain_id} is not in timeline block {index}"))?;
        let head_index = self
            .store
            .block(&entry.head)
            .map_err(|e| e.to_string())?
            .ok_or("the head the timeline names is not stored here")?
            .index();
        Ok(Response::Inclusion {
            entry,
            proof,
            head_index,
        })
    }

    /// Block `index` of a chain with the forward links into it.
    pub fn linked_block(
        &self,
        chain_id: &Hash,
        index: u64,
    ) -> Result<Option<LinkedBlock>, StoreError> {
        let Some(block) = self.store.block_at(chain_id, index)? else {
            return Ok(None);
        };
        let mut links = Vec::new();
        for (level, from) in block.back_links().iter().enumerate() {
            if let Some(link) = self.store.forward_link(from, level as u32)?
                && link.to == block.hash()
            {
                links.push(link);
            }
        }
        Ok(Some(LinkedBlock { block, links }))
    }

    /// Validates and stores a block received from a peer. Returns whether it was new.
    pub fn accept_block(&self, linked: &LinkedBlock) -> Result<bool, StoreError> {
        self.accept_block_with(linked, true)
    }

    /// [`NodeCore::accept_block`]; if not `durable`, without waiting for the disk (the caller
    /// persists the store once for a batch of blocks).
    fn accept_block_with(&self, linked: &LinkedBlock, durable: bool) -> Result<bool, StoreError> {
        let block = &linked.block;
        let chain_id = block.chain_id();
        if self.store.block(&block.hash())?.is_some() {
            return Ok(false);
        }
        let stored = if block.index() == 0 {
            self.store.create_chain(block)
        } else if durable {
            self.store.append(block, &linked.links)
        } else {
            self.store.append_relaxed(block, &linked.links)
        };
        if let Err(error) = stored {
            // The same block may have arrived meanwhile by the other path (gossip or sync).
            if self.store.block(&block.hash())?.is_some() {
                return Ok(false);
            }
            return Err(error);
        }
        self.metrics.blocks_received.inc();
        tracing::debug!(chain = %chain_id, index = block.index(), "stored block from a peer");
        Ok(true)
    }

    /// Handles a gossiped block: accept (store and relay), ignore (known, or ahead of us: sync
    /// instead) or reject (invalid: not stored, not relayed, sender penalised).
    pub async fn on_gossip(self: &Arc<Self>, source: PeerId, data: &[u8]) -> Acceptance {
        let Ok(linked) = LinkedBlock::from_bytes(data) else {
            self.metrics.gossip_rejected.inc();
            return Acceptance::Reject;
        };
        let chain_id = linked.block.chain_id();
        let head = self.store.head(&chain_id).ok().flatten();
        let expected = head.map_or(0, |h| h.index + 1);
        if linked.block.index() > expected {
            self.spawn_sync(source, chain_id);
            return Acceptance::Ignore;
        }
        let core = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            core.accept_block(&linked)
                .map(|new| new.then_some(linked.block))
        })
        .await;
        match result {
            Ok(Ok(Some(block))) => {
                self.metrics.gossip_accepted.inc();
                self.replicate(&block, Some(source));
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

    fn spawn_sync(self: &Arc<Self>, peer: PeerId, chain_id: Hash) {
        let key = (peer, chain_id);
        if !self
            .syncing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key)
        {
            return;
        }
        let core = self.clone();
        tokio::spawn(async move {
            if let Err(error) = core.sync_chain(peer, chain_id).await {
                tracing::info!(%peer, chain = %chain_id, %error, "sync stopped");
            }
            core.syncing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }

    /// Fetches a chain's missing blocks from `peer`, verifying each before storing it.
    pub async fn sync_chain(self: &Arc<Self>, peer: PeerId, chain_id: Hash) -> Result<u64, String> {
        let mut stored = 0;
        loop {
            let from = self
                .store
                .head(&chain_id)
                .map_err(|e| e.to_string())?
                .map_or(0, |h| h.index + 1);
            let request = Request::Blocks {
                chain_id,
                from,
                count: MAX_BLOCKS_PER_REQUEST,
            };
            let blocks = match self.net.request(peer, request).await? {
                Response::Blocks(blocks) => blocks,
                Response::Refused(reason) => return Err(reason),
                _ => return Err("unexpected answer to a blocks request".into()),
            };
            if blocks.is_empty() {
                return Ok(stored);
            }
            let count = blocks.len();
            let core = self.clone();
            let accepted =
                tokio::task::spawn_blocking(move || -> Result<Vec<SkipBlock>, String> {
                    // One disk sync per batch: each block is written without waiting for the disk,
                    // in order, so a crash keeps a prefix of the batch, and the batch is persisted
                    // before the next is asked for.
                    let mut accepted = Vec::new();
                    let mut result = Ok(());
                    for linked in blocks {
                        if linked.block.chain_id() != chain_id {
                            result = Err("peer sent a block of another chain".to_string());
                            break;
                        }
                        match core.accept_block_with(&linked, false) {
                            Ok(true) => accepted.push(linked.block),
                            Ok(false) => {}
                            Err(error) => {
                                result = Err(error.to_string());
                                break;
                            }
                        }
                    }
                    core.store.persist().map_err(|e| e.to_string())?;
                    result.map(|()| accepted)
                })
                .await
                .map_err(|e| e.to_string())??;
            stored += accepted.len() as u64;
            for block in &accepted {
                self.replicate(block, Some(peer));
            }
            if count < MAX_BLOCKS_PER_REQUEST as usize {
                return Ok(stored);
            }
        }
    }

    /// Asks `peer` for its heads and syncs every chain where it is ahead.
    pub async fn sync_with(self: &Arc<Self>, peer: PeerId) {
        let Ok(Response::Heads(heads)) = self.net.request(peer, Request::Heads).await else {
            return;
        };
        for head in heads {
            let ours = self.store.head(&head.chain_id).ok().flatten();
            if ours.is_none_or(|ours| ours.index < head.index) {
                self.spawn_sync(peer, head.chain_id);
            }
        }
    }

    /// Handles network events until the network task stops.
    pub async fn run_events(self: Arc<Self>, mut events: mpsc::Receiver<NetEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Request {
                    peer,
                    request,
                    reply,
                } => {
                    let core = self.clone();
                    tokio::spawn(async move {
                        let response = core.answer_async(peer, request).await;
                        let _ = reply.send(response);
                    });
                }
                NetEvent::Gossip {
                    source,
                    message_id,
                    data,
                } => {
                    let core = self.clone();
                    tokio::spawn(async move {
                        let acceptance = core.on_gossip(source, &data).await;
                        core.net.report(message_id, source, acceptance).await;
                    });
                }
                NetEvent::Connected { peer, peers } => {
                    self.metrics.peers.set(peers as i64);
                    let core = self.clone();
                    tokio::spawn(async move { core.sync_with(peer).await });
                }
                NetEvent::Disconnected { peers } => {
                    self.metrics.peers.set(peers as i64);
                }
            }
        }
    }
}

/// Reaches witnesses over the network, and this node's own witness directly.
struct NodeTransport<'a> {
    core: &'a NodeCore,
}

impl WitnessTransport for NodeTransport<'_> {
    fn call(
        &self,
        witness: PublicKey,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, String>> {
        Box::pin(async move {
            if witness == self.core.key() {
                return Ok(self.core.answer_inner(request));
            }
            let peer = peer_id_of(&witness).map_err(|e| e.to_string())?;
            self.core.net.request(peer, request).await
        })
    }

    fn local_key(&self) -> Option<PublicKey> {
        Some(self.core.key())
    }
}

/// What an interior node of a tree round uses: its own witness, and the network to reach its
/// children, for a request from `peer`.
struct TreeHost {
    core: Arc<NodeCore>,
    peer: PeerId,
}

impl WitnessTransport for TreeHost {
    fn call(
        &self,
        witness: PublicKey,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, String>> {
        Box::pin(async move {
            let peer = peer_id_of(&witness).map_err(|e| e.to_string())?;
            self.core.net.request(peer, request).await
        })
    }
}

impl SubtreeHost for TreeHost {
    fn commit_own(
        &self,
        round: Hash,
        block: Arc<SkipBlock>,
        level: u32,
    ) -> BoxFuture<'_, Result<Committed, String>> {
        Box::pin(async move {
            self.core
                .commit_own(self.peer, round, block, level)
                .await
                .map_err(|refusal| refusal.to_string())
        })
    }

    fn respond_own(
        &self,
        round: Hash,
        challenge: Challenge,
    ) -> BoxFuture<'_, Result<ResponseShare, String>> {
        let core = self.core.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || core.witness.respond(round, &challenge))
                .await
                .map_err(|_| "internal error".to_string())?
                .map_err(|refusal| refusal.to_string())
        })
    }

    fn abandon_own(&self, round: Hash) {
        self.core.witness.abandon(&round);
    }

    fn sent_by(&self, key: &PublicKey) -> bool {
        peer_id_of(key).is_ok_and(|peer| peer == self.peer)
    }
}

/// A witness refusal on the wire: a lock shows its block, everything else is text.
impl From<Refusal> for Response {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Locked { block } => Response::Locked(block),
            other => Response::Refused(other.to_string()),
        }
    }
}

/// Converts a witness refusal for logs.
impl From<Refusal> for NodeError {
    fn from(refusal: Refusal) -> Self {
        NodeError::Invalid(refusal.to_string())
    }
}
