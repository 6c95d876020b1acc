//! The light client: follows projects with a small local state (per project, the last verified
//! block of its release and policy chains with their rosters, and the policies it has seen),
//! talks to any peer over libp2p, and believes nothing a peer says until it verifies it.
//!
//! A release chain is caught up with one skip proof (O(log n) blocks, whatever the number of
//! releases and roster changes in between). The policy chain, short by nature, is followed block
//! by block so that the client knows every policy a release may name. The head release's
//! developer signatures and build attestations are re-checked against the policy it names, and
//! artifacts are fetched from any peer in verified slices.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::Roster;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::policy::Policy;
use chainiac_protocol::project::{ChainGenesis, policy_of_block};
use chainiac_protocol::release::{ArtifactRef, Release, ReleaseManifest};
use chainiac_protocol::skipchain::{ProofStep, SkipBlock, SkipProof, TrustedBlock};
use chainiac_protocol::timeline::{Freshness, TimelineBlock};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::artifacts::{Download, DownloadError, download};
use crate::config::Identity;
use crate::net::{self, Acceptance, NetConfig, NetEvent, NetHandle};
use crate::wire::{HeadInfo, LinkedBlock, MAX_BLOCKS_PER_REQUEST, Request, Response};

/// How long `sync` waits for some peer to serve a block announced by gossip.
const ANNOUNCED_PATIENCE: Duration = Duration::from_secs(5);
/// The first pause before asking the peers again for an announced block (then doubling).
const ANNOUNCED_RETRY: Duration = Duration::from_millis(100);

/// Name of the client's state file inside its directory.
pub const STATE_FILE: &str = "client-state.json";

/// Light-client errors; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The state file.
    #[error("client state {path}: {message}")]
    State { path: PathBuf, message: String },
    /// No peer is configured or reachable.
    #[error("{0}")]
    Network(String),
    /// The project is not followed.
    #[error("project {0:?} is not followed; run `chainiac client follow RELEASE_CHAIN_ID` first")]
    NotFollowed(String),
    /// Every peer failed; one line per peer says why.
    #[error("no peer gave a verifiable answer: {0}")]
    AllPeersFailed(String),
    /// A verification failed on data already trusted or chosen by the user.
    #[error("{0}")]
    Invalid(String),
    /// An artifact download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
}

/// What the client trusts about one project.
#[derive(Clone, Debug)]
pub struct FollowedProject {
    /// The project's name.
    pub name: String,
    /// Its release chain (pinned by the user).
    pub release_chain: Hash,
    /// Its policy chain (named by the release chain's genesis).
    pub policy_chain: Hash,
    /// Last verified release-chain block.
    pub release: TrustedBlock,
    /// Last verified policy-chain block.
    pub policy: TrustedBlock,
    /// Every policy seen, by the hash of the policy-chain block holding it.
    pub policies: BTreeMap<Hash, Policy>,
}

impl FollowedProject {
    /// The latest verified release, if any release was logged yet.
    pub fn latest_release(&self) -> Result<Option<Release>, ClientError> {
        if self.release.block().index() == 0 {
            return Ok(None);
        }
        Release::from_bytes(self.release.block().payload())
            .map(Some)
            .map_err(|e| {
                ClientError::Invalid(format!(
                    "the trusted release block does not hold a release: {e}"
                ))
            })
    }

    /// Re-checks the latest release's approvals against the policy it names.
    pub fn verify_latest(&self) -> Result<Option<Release>, ClientError> {
        let Some(release) = self.latest_release()? else {
            return Ok(None);
        };
        let manifest = &release.manifest;
        if manifest.project != self.name {
            return Err(ClientError::Invalid(format!(
                "the release is for project {}, not {}",
                manifest.project, self.name
            )));
        }
        let policy = self.policies.get(&manifest.policy).ok_or_else(|| {
            ClientError::Invalid(format!(
                "release {} names policy block {} which is not in the project's policy chain",
                manifest.version, manifest.policy
            ))
        })?;
        release.check_approvals(policy).map_err(|e| {
            ClientError::Invalid(format!("release {} is not approved: {e}", manifest.version))
        })?;
        Ok(Some(release))
    }
}

/// The timeline a client follows: pinned by its chain id, with the last verified block.
#[derive(Clone, Debug)]
pub struct PinnedTimeline {
    /// The timeline chain id.
    pub chain: Hash,
    /// Last verified timeline block.
    pub trusted: TrustedBlock,
}

/// A verified, fresh timeline block, against which heads are checked during one sync.
#[derive(Clone, Debug)]
pub struct TimelineView {
    /// The timeline chain.
    pub chain: Hash,
    /// The block's index.
    pub index: u64,
    /// Its payload.
    pub block: TimelineBlock,
    /// Its age when checked, in seconds.
    pub age: u64,
}

/// Seconds since the epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What one sync did for a project.
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The project.
    pub project: String,
    /// Release-chain index before and after.
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
    pub failures: Vec<(PeerId, String)>,
    /// The timeline epoch the head was checked against, if a timeline is pinned.
    pub timeline_epoch: Option<u64>,
    /// A release-chain block announced by gossip that no peer served yet (the client stays at
    /// `to_index`; a later sync picks it up).
    pub announced_unreached: Option<u64>,
}

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    peers: Vec<String>,
    projects: BTreeMap<String, ProjectFile>,
    #[serde(default)]
    timeline: Option<TimelineFile>,
    #[serde(default)]
    max_age: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct TimelineFile {
    chain: String,
    block: String,
    roster: String,
}

#[derive(Serialize, Deserialize)]
struct ProjectFile {
    release_chain: String,
    policy_chain: String,
    release_block: String,
    release_roster: String,
    policy_block: String,
    policy_roster: String,
    policies: BTreeMap<String, String>,
}

/// The client's persistent state: peers to ask and followed projects.
#[derive(Clone, Debug, Default)]
pub struct ClientState {
    /// Peer addresses (multiaddresses ending in `/p2p/PEER_ID`).
    pub peers: Vec<Multiaddr>,
    /// Followed projects by name.
    pub projects: BTreeMap<String, FollowedProject>,
    /// The timeline heads are checked against (none: no freshness guarantee).
    pub timeline: Option<PinnedTimeline>,
    /// How old the timeline may be, in seconds (default 3600).
    pub max_age: Option<u64>,
}

impl ClientState {
    /// The freshness bound in force.
    pub fn freshness(&self) -> Freshness {
        Freshness {
            max_age: self.max_age.unwrap_or(Freshness::default().max_age),
            ..Freshness::default()
        }
    }
}

fn decode_hex<T: Decode>(text: &str, what: &str) -> Result<T, String> {
    let bytes = hex::decode(text).map_err(|_| format!("{what}: not hex"))?;
    T::from_bytes(&bytes).map_err(|e| format!("{what}: {e}"))
}

impl ClientState {
    /// Loads the state from `dir` (empty if there is none yet).
    pub fn load(dir: &Path) -> Result<Self, ClientError> {
        let path = dir.join(STATE_FILE);
        let error = |message: String| ClientError::State {
            path: path.clone(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(error(e.to_string())),
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
        let mut state = Self::default();
        for peer in &file.peers {
            state.peers.push(
                peer.parse()
                    .map_err(|e| error(format!("peer {peer}: {e}")))?,
            );
        }
        if let Some(timeline) = &file.timeline {
            let load = || -> Result<PinnedTimeline, String> {
                let block: SkipBlock = decode_hex(&timeline.block, "timeline block")?;
                let roster: Roster = decode_hex(&timeline.roster, "timeline roster")?;
                Ok(PinnedTimeline {
                    chain: Hash::from_hex(&timeline.chain).map_err(|e| e.to_string())?,
                    trusted: TrustedBlock::new(block, roster).map_err(|e| e.to_string())?,
                })
            };
            state.timeline = Some(load().map_err(|e| error(format!("timeline: {e}")))?);
        }
        state.max_age = file.max_age;
        for (name, project) in file.projects {
            let load = || -> Result<FollowedProject, String> {
                let trusted = |block: &str, roster: &str| -> Result<TrustedBlock, String> {
                    let block: SkipBlock = decode_hex(block, "block")?;
                    let roster: Roster = decode_hex(roster, "roster")?;
                    TrustedBlock::new(block, roster).map_err(|e| e.to_string())
                };
                let mut policies = BTreeMap::new();
                for (hash, policy) in &project.policies {
                    policies.insert(
                        Hash::from_hex(hash).map_err(|e| e.to_string())?,
                        decode_hex(policy, "policy")?,
                    );
                }
                Ok(FollowedProject {
                    name: name.clone(),
                    release_chain: Hash::from_hex(&project.release_chain)
                        .map_err(|e| e.to_string())?,
                    policy_chain: Hash::from_hex(&project.policy_chain)
                        .map_err(|e| e.to_string())?,
                    release: trusted(&project.release_block, &project.release_roster)?,
                    policy: trusted(&project.policy_block, &project.policy_roster)?,
                    policies,
                })
            };
            let project = load().map_err(|e| error(format!("project {name}: {e}")))?;
            state.projects.insert(name, project);
        }
        Ok(state)
    }

    /// Saves the state to `dir` atomically (temporary file, sync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), ClientError> {
        let path = dir.join(STATE_FILE);
        let error = |e: std::io::Error| ClientError::State {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(error)?;
        let file = StateFile {
            timeline: self.timeline.as_ref().map(|t| TimelineFile {
                chain: t.chain.to_hex(),
                block: hex::encode(t.trusted.block().to_bytes()),
                roster: hex::encode(t.trusted.roster().to_bytes()),
            }),
            max_age: self.max_age,
            peers: self.peers.iter().map(ToString::to_string).collect(),
            projects: self
                .projects
                .iter()
                .map(|(name, p)| {
                    (
                        name.clone(),
                        ProjectFile {
                            release_chain: p.release_chain.to_hex(),
                            policy_chain: p.policy_chain.to_hex(),
                            release_block: hex::encode(p.release.block().to_bytes()),
                            release_roster: hex::encode(p.release.roster().to_bytes()),
                            policy_block: hex::encode(p.policy.block().to_bytes()),
                            policy_roster: hex::encode(p.policy.roster().to_bytes()),
                            policies: p
                                .policies
                                .iter()
                                .map(|(h, policy)| (h.to_hex(), hex::encode(policy.to_bytes())))
                                .collect(),
                        },
                    )
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| error(std::io::Error::other(e.to_string())))?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text).map_err(error)?;
        std::fs::File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(error)?;
        std::fs::rename(&temporary, &path).map_err(error)?;
        Ok(())
    }
}

/// The peer id at the end of a multiaddress.
pub fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// A connection to the network: an ephemeral libp2p identity, the peers it reached, and the
/// heads it learns by gossip.
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

impl Connection {
    /// Dials `peers` and waits (up to `timeout`) until at least one answers.
    pub async fn open(peers: &[Multiaddr], timeout: Duration) -> Result<Self, ClientError> {
        let wanted: Vec<PeerId> = peers.iter().filter_map(peer_of).collect();
        if wanted.is_empty() {
            return Err(ClientError::Network(
                "no peer to ask: give at least one with --peer /ip4/.../tcp/.../p2p/PEER_ID".into(),
            ));
        }
        let identity = Identity::generate();
        let (net, mut events, _) = net::spawn(
            &identity,
            &NetConfig {
                listen: Vec::new(),
                bootstrap: peers.to_vec(),
                request_timeout: Duration::from_secs(30),
            },
        )
        .map_err(|e| ClientError::Network(format!("cannot start the network: {e}")))?;
        let (heads, gossip) = mpsc::channel(1024);
        let (connected_tx, mut connected) = mpsc::channel(64);
        let reporter = net.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    NetEvent::Request { reply, .. } => {
                        let _ = reply.send(Response::Refused(
                            "this peer is a light client; it serves nothing".into(),
                        ));
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
            return Err(ClientError::Network(format!(
                "none of the {} peers answered within {} s; check the addresses and that the nodes run",
                wanted.len(),
                timeout.as_secs()
            )));
        }
        // Ask peers in the order the user gave them.
        let peers = wanted;
        Ok(Self {
            net,
            peers,
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
        match self.net.request(peer, request).await? {
            Response::Refused(reason) => Err(format!("refused: {reason}")),
            response => Ok(response),
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
        match self
            .ask(
                peer,
                Request::Blocks {
                    chain_id,
                    from,
                    count,
                },
            )
            .await?
        {
            Response::Blocks(blocks) => Ok(blocks),
            _ => Err("unexpected answer to a blocks request".into()),
        }
    }

    async fn genesis(&self, peer: PeerId, chain_id: Hash) -> Result<SkipBlock, String> {
        let block = self
            .blocks(peer, chain_id, 0, 1)
            .await?
            .into_iter()
            .next()
            .ok_or("the peer does not hold this chain")?
            .block;
        if block.hash() != chain_id || block.index() != 0 {
            return Err("the peer sent a genesis block whose hash is not the chain id".into());
        }
        Ok(block)
    }

    /// Pins the timeline chain `chain` (its genesis must hash to the id and declare a timeline).
    pub async fn pin_timeline(&self, chain: Hash) -> Result<PinnedTimeline, ClientError> {
        let mut failures = Vec::new();
        for &peer in &self.peers {
            match self.genesis(peer, chain).await {
                Ok(genesis) => {
                    if !matches!(
                        ChainGenesis::of_payload(genesis.payload()),
                        Some(ChainGenesis::Timeline { .. })
                    ) {
                        return Err(ClientError::Invalid(format!(
                            "{chain} is not a timeline chain"
                        )));
                    }
                    let trusted = TrustedBlock::genesis(genesis)
                        .map_err(|e| ClientError::Invalid(e.to_string()))?;
                    return Ok(PinnedTimeline { chain, trusted });
                }
                Err(error) => failures.push(format!("{peer}: {error}")),
            }
        }
        Err(ClientError::AllPeersFailed(failures.join("; ")))
    }

    /// Brings the pinned timeline to a peer's newest block with a skip proof and checks that it
    /// is fresh: a peer offering an old timeline (a freeze) is refused and the next one asked.
    pub async fn sync_timeline(
        &self,
        pinned: &mut PinnedTimeline,
        freshness: Freshness,
    ) -> Result<TimelineView, ClientError> {
        let mut failures = Vec::new();
        for &peer in &self.peers {
            match self.timeline_from(peer, pinned, freshness).await {
                Ok((trusted, view)) => {
                    pinned.trusted = trusted;
                    return Ok(view);
                }
                Err(error) => {
                    tracing::warn!(%peer, %error, "peer failed during timeline sync");
                    failures.push(format!("{peer}: {error}"));
                }
            }
        }
        Err(ClientError::AllPeersFailed(failures.join("; ")))
    }

    async fn timeline_from(
        &self,
        peer: PeerId,
        pinned: &PinnedTimeline,
        freshness: Freshness,
    ) -> Result<(TrustedBlock, TimelineView), String> {
        let head = self
            .head(peer, pinned.chain)
            .await?
            .ok_or("the peer does not hold the timeline")?;
        let from = pinned.trusted.block().index();
        let trusted = if head.index > from {
            let request = Request::Proof {
                chain_id: pinned.chain,
                from,
                to: head.index,
            };
            let Response::Proof(proof) = self.ask(peer, request).await? else {
                return Err("unexpected answer to a proof request".into());
            };
            let reached = proof
                .verify(&pinned.trusted)
                .map_err(|e| format!("invalid timeline proof: {e}"))?;
            if reached.block().hash() != head.hash {
                return Err("the timeline proof does not end at the announced head".into());
            }
            reached
        } else {
            pinned.trusted.clone()
        };
        if trusted.block().index() == 0 {
            return Err("the timeline has no epoch yet; wait for its first block".into());
        }
        let block = TimelineBlock::from_bytes(trusted.block().payload())
            .map_err(|e| format!("invalid timeline block: {e}"))?;
        let now = unix_now();
        freshness
            .check(block.commit.timestamp, now)
            .map_err(|e| e.to_string())?;
        let view = TimelineView {
            chain: pinned.chain,
            index: trusted.block().index(),
            age: now.saturating_sub(block.commit.timestamp),
            block,
        };
        Ok((trusted, view))
    }

    /// The newest anchors of a timeline any peer recorded (the client can check them with
    /// `chainiac anchor verify` against an Ethereum node of its choice).
    pub async fn anchors(&self, timeline: Hash) -> Vec<chainiac_anchor::AnchorProof> {
        let mut all = Vec::new();
        for &peer in &self.peers {
            if let Ok(Response::Anchors(anchors)) =
                self.ask(peer, Request::Anchors { timeline }).await
            {
                all.extend(anchors);
            }
        }
        all.sort_by_key(|a| std::cmp::Reverse(a.timeline_index));
        all.dedup_by(|a, b| a.timeline_index == b.timeline_index);
        all
    }

    /// The release head the timeline commits to, with its inclusion proof checked.
    async fn head_in_timeline(
        &self,
        peer: PeerId,
        view: &TimelineView,
        chain_id: Hash,
    ) -> Result<HeadInfo, String> {
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
                    "the release chain is not in timeline epoch {}: {error}",
                    view.block.commit.epoch
                ));
            }
        };
        if entry.chain_id != chain_id
            || proof.leaf_count != view.block.commit.chain_count
            || proof.verify(&view.block.commit.root, &entry).is_err()
        {
            return Err(format!(
                "the peer's timeline inclusion proof for {chain_id} does not verify"
            ));
        }
        Ok(HeadInfo {
            chain_id,
            index: head_index,
            hash: entry.head,
        })
    }

    /// Starts following the project whose release chain is `release_chain`: fetches both
    /// genesis blocks (each must hash to its chain id) and checks the genesis policy.
    pub async fn follow(&self, release_chain: Hash) -> Result<FollowedProject, ClientError> {
        let mut failures = Vec::new();
        for &peer in &self.peers {
            match self.follow_from(peer, release_chain).await {
                Ok(project) => return Ok(project),
                Err(error) => failures.push(format!("{peer}: {error}")),
            }
        }
        Err(ClientError::AllPeersFailed(failures.join("; ")))
    }

    async fn follow_from(
        &self,
        peer: PeerId,
        release_chain: Hash,
    ) -> Result<FollowedProject, String> {
        let release_genesis = self.genesis(peer, release_chain).await?;
        let Some(ChainGenesis::Release {
            project,
            policy_chain,
        }) = ChainGenesis::of_payload(release_genesis.payload())
        else {
            return Err(format!("{release_chain} is not a release chain"));
        };
        let policy_genesis = self.genesis(peer, policy_chain).await?;
        let signed = policy_of_block(0, policy_genesis.payload()).map_err(|e| e.to_string())?;
        signed
            .verify_genesis()
            .map_err(|e| format!("the project's genesis policy does not verify: {e}"))?;
        if signed.policy.project != project {
            return Err(format!(
                "the policy chain is for {}, the release chain for {project}",
                signed.policy.project
            ));
        }
        let mut policies = BTreeMap::new();
        policies.insert(policy_genesis.hash(), signed.policy);
        Ok(FollowedProject {
            name: project,
            release_chain,
            policy_chain,
            release: TrustedBlock::genesis(release_genesis).map_err(|e| e.to_string())?,
            policy: TrustedBlock::genesis(policy_genesis).map_err(|e| e.to_string())?,
            policies,
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
            let order = match timeline {
                // The timeline names the head; any peer can prove it.
                Some(_) => self.peers.clone(),
                None => self.peers_by_head(project.release_chain).await,
            };
            for peer in order {
                match self.sync_from(peer, project, timeline).await {
                    Ok((updated, report)) => {
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
                    Err(error) => {
                        tracing::warn!(%peer, %error, "peer failed during sync");
                        failures.push((peer, error));
                    }
                }
            }
            let Some((updated, report)) = best else {
                return Err(ClientError::AllPeersFailed(
                    failures
                        .iter()
                        .map(|(p, e)| format!("{p}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ));
            };
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

    async fn sync_from(
        &self,
        peer: PeerId,
        project: &FollowedProject,
        timeline: Option<&TimelineView>,
    ) -> Result<(FollowedProject, SyncReport), String> {
        let mut updated = project.clone();
        // Policy chain: every block, verified through its level-0 link.
        let mut policy_blocks = 0;
        if let Some(head) = self.head(peer, project.policy_chain).await? {
            while updated.policy.block().index() < head.index {
                let from = updated.policy.block().index() + 1;
                let blocks = self
                    .blocks(peer, project.policy_chain, from, MAX_BLOCKS_PER_REQUEST)
                    .await?;
                if blocks.is_empty() {
                    return Err("the peer announced policy blocks it does not serve".into());
                }
                let steps = blocks
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
                    .collect::<Result<Vec<_>, String>>()?;
                let count = steps.len();
                let proof = SkipProof { steps };
                updated.policy = proof
                    .verify(&updated.policy)
                    .map_err(|e| format!("invalid policy-chain blocks: {e}"))?;
                for step in &proof.steps {
                    let signed = policy_of_block(step.block.index(), step.block.payload())
                        .map_err(|e| format!("policy block {}: {e}", step.block.index()))?;
                    updated.policies.insert(step.block.hash(), signed.policy);
                }
                policy_blocks += count;
            }
        }
        // Release chain: one skip proof from the trusted block to the head.
        let from_index = project.release.block().index();
        let mut proof_blocks = 0;
        let mut proof_bytes = 0;
        let head = match timeline {
            Some(view) => {
                self.head_in_timeline(peer, view, project.release_chain)
                    .await?
            }
            None => self
                .head(peer, project.release_chain)
                .await?
                .ok_or("the peer does not hold the release chain")?,
        };
        if head.index < from_index {
            return Err(format!(
                "rollback: the head offered is block {}, the client already trusts block {from_index}",
                head.index
            ));
        }
        if head.index == from_index && head.hash != project.release.block().hash() {
            return Err("the head offered is not the block the client trusts (split view)".into());
        }
        if head.index > from_index {
            let request = Request::Proof {
                chain_id: project.release_chain,
                from: from_index,
                to: head.index,
            };
            let Response::Proof(proof) = self.ask(peer, request).await? else {
                return Err("unexpected answer to a proof request".into());
            };
            proof_blocks = proof.steps.len();
            proof_bytes = proof.to_bytes().len();
            let reached = proof
                .verify(&project.release)
                .map_err(|e| format!("invalid skip proof: {e}"))?;
            if reached.block().hash() != head.hash {
                return Err("the proof does not end at the head the peer announced".into());
            }
            let previous = project.latest_release().map_err(|e| e.to_string())?;
            updated.release = reached;
            let latest = updated.verify_latest().map_err(|e| e.to_string())?;
            if let (Some(previous), Some(latest)) = (previous, latest) {
                check_progress(&previous.manifest, &latest.manifest)?;
            }
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
        Ok((updated, report))
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

fn check_progress(previous: &ReleaseManifest, latest: &ReleaseManifest) -> Result<(), String> {
    if latest.sequence <= previous.sequence {
        return Err(format!(
            "rollback: the new head is release {} (sequence {}), the client already trusts {} (sequence {})",
            latest.version, latest.sequence, previous.version, previous.sequence
        ));
    }
    Ok(())
}

/// The artifact of `release` to fetch: the binary for `platform`, or the source.
pub fn select_artifact(
    release: &Release,
    platform: Option<&str>,
) -> Result<ArtifactRef, ClientError> {
    let manifest = &release.manifest;
    match platform {
        None if manifest.binaries.len() == 1 => Ok(manifest.binaries[0].artifact.clone()),
        None if manifest.binaries.is_empty() => Ok(manifest.source.clone()),
        Some("source") => Ok(manifest.source.clone()),
        Some(platform) => manifest
            .binaries
            .iter()
            .find(|b| b.platform == platform)
            .map(|b| b.artifact.clone())
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "release {} has no binary for platform {platform}; it has: {}",
                    manifest.version,
                    platforms(manifest)
                ))
            }),
        None => Err(ClientError::Invalid(format!(
            "release {} has several binaries; choose one with --platform ({})",
            manifest.version,
            platforms(manifest)
        ))),
    }
}

fn platforms(manifest: &ReleaseManifest) -> String {
    manifest
        .binaries
        .iter()
        .map(|b| b.platform.as_str())
        .chain(std::iter::once("source"))
        .collect::<Vec<_>>()
        .join(", ")
}
