//! A connection to the network: an ephemeral libp2p identity, the peers it reached, and the
//! heads it learns by gossip. It fetches what the light-client core
//! ([`chainiac_protocol::light_client`]) needs and believes nothing a peer says until the core
//! has verified it; a peer that fails is recorded and the next one asked.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chainiac_net::download::{Download, download};
use chainiac_net::wire::{HeadInfo, LinkedBlock, MAX_BLOCKS_PER_REQUEST, Request, Response};
use chainiac_net::{Acceptance, NetConfig, NetEvent, NetHandle};
use chainiac_protocol::Hash;
use chainiac_protocol::anchor::AnchorProof;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::light_client::{
    FollowedProject, Offer, OfferedHead, PinnedTimeline, TimelineView,
};
use chainiac_protocol::release::ArtifactRef;
use chainiac_protocol::skipchain::{ProofStep, SkipBlock, SkipProof};
use chainiac_protocol::timeline::Freshness;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

use crate::{ClientError, PeerFailure};

/// How long `sync` waits for some peer to serve a block announced by gossip.
const ANNOUNCED_PATIENCE: Duration = Duration::from_secs(5);
/// The first pause before asking the peers again for an announced block (then doubling).
const ANNOUNCED_RETRY: Duration = Duration::from_millis(100);
/// How long a request to one peer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The peer id at the end of a multiaddress.
pub fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// What one sync did for a project.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The project.
    pub project: String,
    /// Release-chain index before the sync.
    pub from_index: u64,
    /// Release-chain index now trusted.
    pub to_index: u64,
    /// Blocks in the skip proof that moved the release chain forward.
    pub proof_blocks: usize,
    /// Encoded size of that proof.
    pub proof_bytes: usize,
    /// Policy-chain blocks verified.
    pub policy_blocks: usize,
    /// The latest release's version, if any.
    pub version: Option<String>,
    /// The peer that answered.
    pub peer: PeerId,
    /// Peers that failed first, and why.
    pub failures: Vec<PeerFailure>,
    /// The timeline epoch the head was checked against, if a timeline is pinned.
    pub timeline_epoch: Option<u64>,
    /// A release-chain block announced by gossip that no peer served yet (the client stays at
    /// `to_index`; a later sync picks it up).
    pub announced_unreached: Option<u64>,
}

/// What syncing from one peer came to.
enum Attempt {
    /// Everything verified: the updated project and the report.
    Synced(Box<(FollowedProject, SyncReport)>),
    /// The peer's policy chain, verified, ends in a policy (of this sequence) that names a
    /// timeline the sync was not given.
    NeedsTimeline { named: Hash, sequence: u64 },
}

/// A connection to the network.
pub struct Connection {
    net: NetHandle,
    peers: Vec<PeerId>,
    gossip: mpsc::Receiver<HeadInfo>,
    /// The highest block index announced by gossip per chain read through `next_gossip`. A
    /// gossip hint is unverified, so it only makes `sync` ask other peers (and wait a little)
    /// when the first one has not stored that block yet; it never stalls a sync.
    announced: HashMap<Hash, u64>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peers", &self.peers)
            .finish()
    }
}

/// A peer's failure to give a verifiable answer.
fn failure(peer: PeerId, reason: impl std::fmt::Display) -> PeerFailure {
    PeerFailure {
        peer,
        reason: reason.to_string(),
    }
}

impl Connection {
    /// Dials `peers` and waits (up to `timeout`) until at least one answers.
    pub async fn open(peers: &[Multiaddr], timeout: Duration) -> Result<Self, ClientError> {
        let wanted: Vec<PeerId> = peers.iter().filter_map(peer_of).collect();
        if wanted.is_empty() {
            return Err(ClientError::NoPeer);
        }
        let (net, mut events, _) = chainiac_net::spawn(
            libp2p::identity::Keypair::generate_ed25519(),
            &NetConfig {
                listen: Vec::new(),
                bootstrap: peers.to_vec(),
                request_timeout: REQUEST_TIMEOUT,
            },
            None,
        )?;
        let (heads, gossip) = mpsc::channel(1024);
        let (connected_tx, mut connected) = mpsc::channel(64);
        let reporter = net.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    NetEvent::Request { reply, .. } => {
                        let _ = reply.send(chainiac_net::Reply::of(&Response::Refused(
                            "this peer is a light client; it serves nothing".into(),
                        )));
                    }
                    NetEvent::Gossip {
                        source,
                        message_id,
                        data,
                    } => {
                        // Only a hint of a new head; everything is verified when synced.
                        if let Ok(linked) = LinkedBlock::from_bytes(&data) {
                            let _ = heads.try_send(HeadInfo {
                                chain_id: linked.block.chain_id(),
                                index: linked.block.index(),
                                hash: linked.block.hash(),
                            });
                        }
                        reporter
                            .report(message_id, source, Acceptance::Ignore)
                            .await;
                    }
                    NetEvent::Connected { peer, .. } => {
                        let _ = connected_tx.try_send(peer);
                    }
                    NetEvent::Disconnected { .. } => {}
                }
            }
        });
        // One answer proves the network is reachable; the other peers keep connecting in the
        // background (a request to a peer still dialing waits for its connection).
        let reached = tokio::time::timeout(timeout, async {
            while let Some(peer) = connected.recv().await {
                if wanted.contains(&peer) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !reached {
            net.shutdown().await;
            return Err(ClientError::Unreachable {
                peers: wanted.len(),
                seconds: timeout.as_secs(),
            });
        }
        // Ask peers in the order the user gave them.
        Ok(Self {
            net,
            peers: wanted,
            gossip,
            announced: HashMap::new(),
        })
    }

    /// The peers reached, in the order they are asked.
    pub fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    /// Waits for a block of one of `chain_ids` announced by gossip. The announcement is a hint:
    /// the next `sync` looks for a peer that serves that block (peers store a block a moment
    /// after they relay it) and verifies everything as usual.
    pub async fn next_gossip(&mut self, chain_ids: &[Hash]) -> Option<HeadInfo> {
        while let Some(head) = self.gossip.recv().await {
            if chain_ids.contains(&head.chain_id) {
                let announced = self.announced.entry(head.chain_id).or_insert(head.index);
                *announced = (*announced).max(head.index);
                return Some(head);
            }
        }
        None
    }

    /// Closes the network.
    pub async fn close(self) {
        self.net.shutdown().await;
    }

    async fn ask(&self, peer: PeerId, request: Request) -> Result<Response, String> {
        match self.net.request(peer, request).await {
            Ok(Response::Refused(reason)) => Err(format!("refused: {reason}")),
            Ok(response) => Ok(response),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn head(&self, peer: PeerId, chain_id: Hash) -> Result<Option<HeadInfo>, String> {
        match self.ask(peer, Request::Head { chain_id }).await? {
            Response::Head(head) => Ok(head.filter(|h| h.chain_id == chain_id)),
            _ => Err("unexpected answer to a head request".into()),
        }
    }

    async fn blocks(
        &self,
        peer: PeerId,
        chain_id: Hash,
        from: u64,
        count: u32,
    ) -> Result<Vec<LinkedBlock>, String> {
        let request = Request::Blocks {
            chain_id,
            from,
            count,
        };
        match self.ask(peer, request).await? {
            Response::Blocks(blocks) => Ok(blocks),
            _ => Err("unexpected answer to a blocks request".into()),
        }
    }

    async fn proof(
        &self,
        peer: PeerId,
        chain_id: Hash,
        from: u64,
        to: u64,
    ) -> Result<SkipProof, String> {
        match self
            .ask(peer, Request::Proof { chain_id, from, to })
            .await?
        {
            Response::Proof(proof) => Ok(*proof),
            _ => Err("unexpected answer to a proof request".into()),
        }
    }

    /// The block a peer sends as the genesis of `chain_id` (checked by the caller).
    async fn genesis(&self, peer: PeerId, chain_id: Hash) -> Result<SkipBlock, String> {
        Ok(self
            .blocks(peer, chain_id, 0, 1)
            .await?
            .into_iter()
            .next()
            .ok_or("the peer does not hold this chain")?
            .block)
    }

    /// Asks each peer in turn until `attempt` succeeds; every failure is kept.
    async fn first_success<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(PeerId) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let mut failures = Vec::new();
        for &peer in &self.peers {
            match attempt(peer).await {
                Ok(value) => return Ok(value),
                Err(reason) => {
                    tracing::warn!(%peer, %reason, "peer failed");
                    failures.push(failure(peer, reason));
                }
            }
        }
        Err(ClientError::AllPeersFailed(failures))
    }

    /// Starts following the project whose release chain is `release_chain`: fetches both
    /// genesis blocks and checks them ([`FollowedProject::start`]).
    pub async fn follow(&self, release_chain: Hash) -> Result<FollowedProject, ClientError> {
        self.first_success(|peer| async move {
            let release_genesis = self.genesis(peer, release_chain).await?;
            let policy_chain = FollowedProject::policy_chain_of(release_chain, &release_genesis)
                .map_err(|e| e.to_string())?;
            let policy_genesis = self.genesis(peer, policy_chain).await?;
            FollowedProject::start(release_chain, release_genesis, policy_genesis)
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Pins the timeline chain `chain` (its genesis must hash to the id and declare a timeline).
    pub async fn pin_timeline(&self, chain: Hash) -> Result<PinnedTimeline, ClientError> {
        self.first_success(|peer| async move {
            let genesis = self.genesis(peer, chain).await?;
            PinnedTimeline::start(chain, genesis).map_err(|e| e.to_string())
        })
        .await
    }

    /// Brings the pinned timeline to a peer's newest block with a skip proof and checks that it
    /// is fresh: a peer offering an old timeline (a freeze) is refused and the next one asked.
    pub async fn sync_timeline(
        &self,
        pinned: &mut PinnedTimeline,
        freshness: Freshness,
    ) -> Result<TimelineView, ClientError> {
        let pinned_now = &*pinned;
        let (trusted, view) = self
            .first_success(|peer| async move {
                let mut candidate = pinned_now.clone();
                let head = self
                    .head(peer, candidate.chain)
                    .await?
                    .ok_or("the peer does not hold the timeline")?;
                let from = candidate.trusted.block().index();
                if head.index > from {
                    let proof = self.proof(peer, candidate.chain, from, head.index).await?;
                    candidate
                        .advance(&proof, head.hash)
                        .map_err(|e| format!("invalid timeline proof: {e}"))?;
                }
                let view = candidate
                    .view(unix_now(), freshness)
                    .map_err(|e| e.to_string())?;
                Ok((candidate, view))
            })
            .await?;
        *pinned = trusted;
        Ok(view)
    }

    /// The anchors of `timeline` the peers recorded (each peer's list newest first, at most 64),
    /// interleaved peer by peer so that one peer's list cannot push the others' out of the
    /// first places, without repeats and without anchors of other timelines. They are hints:
    /// [`Connection::check_anchor_in_timeline`] and an Ethereum node check them.
    pub async fn anchors(&self, timeline: Hash) -> Vec<AnchorProof> {
        let timeline_hex = timeline.to_hex();
        let mut lists = Vec::new();
        for &peer in &self.peers {
            if let Ok(Response::Anchors(mut anchors)) =
                self.ask(peer, Request::Anchors { timeline }).await
            {
                anchors.retain(|a| a.timeline == timeline_hex);
                anchors.sort_by_key(|a| std::cmp::Reverse(a.timeline_index));
                lists.push(anchors.into_iter());
            }
        }
        let mut all: Vec<AnchorProof> = Vec::new();
        loop {
            let mut any = false;
            for list in &mut lists {
                if let Some(anchor) = list.next() {
                    any = true;
                    if !all.contains(&anchor) {
                        all.push(anchor);
                    }
                }
            }
            if !any {
                return all;
            }
        }
    }

    /// Checks an anchor a peer offered, offline: its Ethereum evidence holds (header, the
    /// transaction and its receipt under the header's roots, the sender vouched for by
    /// `member`; [`chainiac_anchor::verify_evidence`]), and the block it names is the block of
    /// `timeline` at that index: a skip proof from the timeline's genesis (`pinned`, fresh
    /// from [`Connection::pin_timeline`], whose genesis hashes to the chain id) must reach
    /// exactly that index and that block, every link signed by the roster of its time, and
    /// the member vouching for the sender must be in that block's roster. An anchor that
    /// passes is what the timeline itself holds at that position, sent by one of its
    /// witnesses; whether its Ethereum block is canonical and deep is the one question left
    /// for an Ethereum node. A peer's anchor list is only a hint; this is the check.
    pub async fn check_anchor_in_timeline(
        &self,
        pinned: &PinnedTimeline,
        anchor: &AnchorProof,
    ) -> Result<chainiac_anchor::VerifiedAnchor, ClientError> {
        let request = anchor
            .request()
            .map_err(|reason| ClientError::InvalidAnchor(format!("malformed anchor: {reason}")))?;
        let verified = chainiac_anchor::verify_evidence(anchor)
            .map_err(|e| ClientError::InvalidAnchor(format!("Ethereum evidence refused: {e}")))?;
        let member_of = |roster: &chainiac_protocol::cosi::Roster| {
            if roster.members().iter().any(|m| m.key == verified.member) {
                Ok(verified.clone())
            } else {
                Err(format!(
                    "the anchoring account {} is vouched for by {}, not a member of the timeline's roster at block {}",
                    verified.sender, verified.member, request.index
                ))
            }
        };
        if request.timeline != pinned.chain {
            return Err(ClientError::InvalidAnchor(format!(
                "the anchor is of timeline {}, not of {}",
                request.timeline, pinned.chain
            )));
        }
        if pinned.trusted.block().index() != 0 {
            return Err(ClientError::InvalidAnchor(
                "anchors are checked from the timeline's genesis".into(),
            ));
        }
        if request.index == 0 {
            return if pinned.trusted.block().hash() == request.block {
                member_of(pinned.trusted.roster()).map_err(ClientError::InvalidAnchor)
            } else {
                Err(ClientError::InvalidAnchor(format!(
                    "the anchor names block {} as the genesis of timeline {}, which it is not",
                    request.block, request.timeline
                )))
            };
        }
        self.first_success(|peer| async move {
            let proof = self.proof(peer, request.timeline, 0, request.index).await?;
            let mut reached = pinned.clone();
            reached.advance(&proof, request.block).map_err(|e| {
                format!(
                    "no valid proof that block {} is the timeline's block {}: {e}",
                    request.block, request.index
                )
            })?;
            // The proof ends at the named block; it must also be the named position.
            let index = reached.trusted.block().index();
            if index != request.index {
                return Err(format!(
                    "block {} is the timeline's block {index}, not {}",
                    request.block, request.index
                ));
            }
            Ok(reached.trusted.roster().clone())
        })
        .await
        .and_then(|roster| member_of(&roster).map_err(ClientError::InvalidAnchor))
    }

    /// The release head the timeline commits to, with its inclusion proof checked.
    async fn head_in_timeline(
        &self,
        peer: PeerId,
        view: &TimelineView,
        chain_id: Hash,
    ) -> Result<OfferedHead, String> {
        let request = Request::TimelineInclusion {
            timeline: view.chain,
            index: view.index,
            chain_id,
        };
        let (entry, proof, head_index) = match self.ask(peer, request).await {
            Ok(Response::Inclusion {
                entry,
                proof,
                head_index,
            }) => (entry, proof, head_index),
            Ok(_) => return Err("unexpected answer to a timeline inclusion request".into()),
            Err(error) => {
                return Err(format!(
                    "chain {chain_id} is not in timeline epoch {}: {error} (a chain enters the timeline at the epoch after it is created or moves; sync again then)",
                    view.block.commit.epoch
                ));
            }
        };
        let hash = view
            .check_head(&chain_id, &entry, &proof, unix_now())
            .map_err(|e| format!("the peer's timeline inclusion proof does not verify: {e}"))?;
        // The index is the peer's word; the skip proof to `hash` settles it.
        Ok(OfferedHead {
            index: head_index,
            hash,
        })
    }

    /// Brings `project` up to the heads a peer reports, verifying everything; tries the next
    /// peer when one fails. `project` is only changed when everything verified.
    /// With a `timeline`, the release chain is brought exactly to the head the timeline
    /// commits to (a peer showing another head is refused). Without one, the peer reporting the
    /// most advanced head is asked first, and a peer behind a block announced by gossip is
    /// passed over for one that serves it; if none does within a few seconds, the most
    /// advanced verified answer is kept and the report says so.
    pub async fn sync(
        &self,
        project: &mut FollowedProject,
        timeline: Option<&TimelineView>,
    ) -> Result<SyncReport, ClientError> {
        let announced = match timeline {
            Some(_) => None,
            None => self
                .announced
                .get(&project.release_chain)
                .copied()
                .filter(|&index| index > project.release.block().index()),
        };
        let mut waited = Duration::ZERO;
        loop {
            let mut failures = Vec::new();
            let mut best: Option<(FollowedProject, SyncReport)> = None;
            let mut needs: Option<(Hash, u64)> = None;
            let order = match timeline {
                // The timeline names the head; any peer can prove it.
                Some(_) => self.peers.clone(),
                None => self.peers_by_head(project.release_chain).await,
            };
            for peer in order {
                match self.sync_from(peer, project, timeline).await {
                    Ok(Attempt::NeedsTimeline { named, sequence }) => {
                        // A verified policy names another timeline: the other peers may be
                        // behind it (or withhold it), so the newest such policy wins below.
                        if needs.is_none_or(|(_, kept)| sequence > kept) {
                            needs = Some((named, sequence));
                        }
                        failures.push(failure(
                            peer,
                            format!("its policy chain names timeline {named}"),
                        ));
                    }
                    Ok(Attempt::Synced(synced)) => {
                        let (updated, report) = *synced;
                        let policy = updated.current_policy().map_or(0, |p| p.sequence);
                        if let Some((named, sequence)) = needs
                            && sequence > policy
                        {
                            failures.push(failure(
                                peer,
                                format!(
                                    "it serves policy {policy}, older than policy {sequence} another peer proved (which names timeline {named})"
                                ),
                            ));
                            continue;
                        }
                        if announced.is_none_or(|index| report.to_index >= index) {
                            *project = updated;
                            return Ok(SyncReport { failures, ..report });
                        }
                        if best
                            .as_ref()
                            .is_none_or(|(_, kept)| report.to_index > kept.to_index)
                        {
                            best = Some((updated, report));
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(%peer, %reason, "peer failed during sync");
                        failures.push(failure(peer, reason));
                    }
                }
            }
            let needed = |named| ClientError::TimelineNeeded {
                project: project.name.clone(),
                named,
                given: timeline.map(|view| view.chain),
            };
            let Some((updated, report)) = best else {
                return Err(match needs {
                    Some((named, _)) => needed(named),
                    None => ClientError::AllPeersFailed(failures),
                });
            };
            if let Some((named, sequence)) = needs
                && updated.current_policy().map_or(0, |p| p.sequence) < sequence
            {
                return Err(needed(named));
            }
            if waited >= ANNOUNCED_PATIENCE {
                *project = updated;
                return Ok(SyncReport {
                    failures,
                    announced_unreached: announced,
                    ..report
                });
            }
            // The peers verified fine but are behind the announcement: they are still storing
            // it. Ask again shortly.
            let pause = ANNOUNCED_RETRY.max(waited);
            tokio::time::sleep(pause).await;
            waited += pause;
        }
    }

    /// The peers, the one reporting the most advanced head of `chain` first (a peer that is
    /// behind, or withholds new blocks, is asked last); ties keep the user's order.
    async fn peers_by_head(&self, chain: Hash) -> Vec<PeerId> {
        let heads = futures::future::join_all(
            self.peers
                .iter()
                .map(|&peer| async move { (peer, self.head(peer, chain).await) }),
        )
        .await;
        let mut ranked: Vec<(PeerId, Option<u64>)> = heads
            .into_iter()
            .map(|(peer, head)| (peer, head.ok().flatten().map(|h| h.index)))
            .collect();
        ranked.sort_by_key(|&(_, index)| std::cmp::Reverse(index));
        ranked.into_iter().map(|(peer, _)| peer).collect()
    }

    /// The policy-chain blocks after `from` that `peer` serves, each with its level-0 link.
    async fn policy_steps(
        &self,
        peer: PeerId,
        chain: Hash,
        from: u64,
    ) -> Result<Vec<ProofStep>, String> {
        let blocks = self
            .blocks(peer, chain, from + 1, MAX_BLOCKS_PER_REQUEST)
            .await?;
        blocks
            .into_iter()
            .map(|linked| {
                let link = linked
                    .links
                    .into_iter()
                    .find(|l| l.level == 0)
                    .ok_or("a policy block without its level-0 forward link")?;
                Ok(ProofStep {
                    link,
                    block: linked.block,
                    roster: None,
                })
            })
            .collect()
    }

    async fn sync_from(
        &self,
        peer: PeerId,
        project: &FollowedProject,
        timeline: Option<&TimelineView>,
    ) -> Result<Attempt, String> {
        let mut updated = project.clone();
        // Policy chain: every block, each change checked against the policy before it.
        let mut policy_blocks = 0;
        // A node that logs a project's releases holds its policy chain (witnesses check each
        // release against it), so a peer without it has nothing verifiable to offer.
        let head = self
            .head(peer, project.policy_chain)
            .await?
            .ok_or("the peer does not hold the project's policy chain")?;
        {
            while updated.policy.block().index() < head.index {
                let steps = self
                    .policy_steps(peer, project.policy_chain, updated.policy.block().index())
                    .await?;
                if steps.is_empty() {
                    return Err("the peer announced policy blocks it does not serve".into());
                }
                policy_blocks += updated
                    .advance_policy(&steps)
                    .map_err(|e| format!("invalid policy-chain blocks: {e}"))?;
            }
        }
        // The verified policy says which timeline commits the project (protocol §10 step 2);
        // a policy that names none leaves the choice to the user.
        let given = timeline.map(|view| view.chain);
        let newest = updated.current_policy().map_err(|e| e.to_string())?;
        if let Some(named) = newest.timeline
            && Some(named) != given
        {
            return Ok(Attempt::NeedsTimeline {
                named,
                sequence: newest.sequence,
            });
        }
        // The policy chain must reach the head the timeline commits to (§10 step 4): a peer
        // cannot hide a policy change (a rotated-out key, another timeline) behind an old head.
        if let Some(view) = timeline {
            let committed = self
                .head_in_timeline(peer, view, project.policy_chain)
                .await
                .map_err(|e| format!("policy chain: {e}"))?;
            updated
                .check_policy_head(committed)
                .map_err(|e| e.to_string())?;
        }
        // Release chain: one skip proof from the trusted block to the head.
        let from_index = project.release.block().index();
        let head = match timeline {
            Some(view) => {
                self.head_in_timeline(peer, view, project.release_chain)
                    .await?
            }
            None => {
                let head = self
                    .head(peer, project.release_chain)
                    .await?
                    .ok_or("the peer does not hold the release chain")?;
                OfferedHead {
                    index: head.index,
                    hash: head.hash,
                }
            }
        };
        let (mut proof_blocks, mut proof_bytes) = (0, 0);
        if updated
            .check_offered_head(head)
            .map_err(|e| e.to_string())?
            == Offer::Ahead
        {
            let proof = self
                .proof(peer, project.release_chain, from_index, head.index)
                .await?;
            proof_blocks = proof.steps.len();
            proof_bytes = proof.to_bytes().len();
            updated
                .advance_release(&proof, head.hash)
                .map_err(|e| format!("the release chain does not verify: {e}"))?;
        }
        let version = updated
            .latest_release()
            .map_err(|e| e.to_string())?
            .map(|r| r.manifest.version);
        let report = SyncReport {
            project: project.name.clone(),
            from_index,
            to_index: updated.release.block().index(),
            proof_blocks,
            proof_bytes,
            policy_blocks,
            version,
            peer,
            failures: Vec::new(),
            timeline_epoch: timeline.map(|view| view.block.commit.epoch),
            announced_unreached: None,
        };
        Ok(Attempt::Synced(Box::new((updated, report))))
    }

    /// Syncs `project` against the timeline its verified policy names, or, when its policy
    /// names none, against the timeline the user pinned (`pinned`, if any). Timelines learned
    /// from policies are kept in `learned` by chain id, started from their genesis the first
    /// time; the policy authenticates them (it is signed under the release chain id the user
    /// pinned). When a peer proves a newer policy naming another timeline, the sync runs again
    /// against that one. Nothing is kept (no pin, no block) unless the sync succeeds. Returns
    /// the report and the timeline view the heads were checked against.
    pub async fn sync_project(
        &self,
        project: &mut FollowedProject,
        mut pinned: Option<&mut PinnedTimeline>,
        learned: &mut BTreeMap<Hash, PinnedTimeline>,
        freshness: Freshness,
    ) -> Result<(SyncReport, Option<TimelineView>), ClientError> {
        let mut target = project.committed_timeline()?;
        let mut last_error = None;
        // A policy names at most one timeline; a second switch within one sync means peers
        // disagree about the newest policy, which the next sync settles.
        for _ in 0..3 {
            let user = pinned.as_deref();
            let mut candidate = match target {
                Some(chain) => Some(match (learned.get(&chain), user) {
                    (Some(known), _) => known.clone(),
                    (None, Some(user)) if user.chain == chain => user.clone(),
                    (None, _) => self.pin_timeline(chain).await?,
                }),
                None => user.cloned(),
            };
            let view = match candidate.as_mut() {
                Some(timeline) => Some(self.sync_timeline(timeline, freshness).await?),
                None => None,
            };
            match self.sync(project, view.as_ref()).await {
                Err(ClientError::TimelineNeeded {
                    named,
                    project,
                    given,
                }) => {
                    tracing::info!(%project, timeline = %named, "the project's policy names another timeline");
                    target = Some(named);
                    last_error = Some(ClientError::TimelineNeeded {
                        named,
                        project,
                        given,
                    });
                }
                Err(error) => return Err(error),
                Ok(report) => {
                    if let Some(timeline) = candidate {
                        match pinned.as_deref_mut() {
                            Some(user) if user.chain == timeline.chain => *user = timeline,
                            Some(user) if target.is_none() => *user = timeline,
                            _ => {
                                learned.insert(timeline.chain, timeline);
                            }
                        }
                    }
                    return Ok((report, view));
                }
            }
        }
        Err(last_error.unwrap_or(ClientError::NoPeer))
    }

    /// Fetches an artifact of the latest trusted release from any peer, verifying every slice.
    pub async fn fetch(
        &self,
        artifact: &ArtifactRef,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<Download, ClientError> {
        Ok(download(&self.net, &self.peers, artifact, progress).await?)
    }
}
