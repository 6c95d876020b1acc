//! The one test kit of chainiac, used by every integration test and network benchmark: a
//! cluster of real in-process nodes (real libp2p on 127.0.0.1, real RocksDB in temporary
//! directories) with a per-node options hook, Byzantine transports, a project fixture that signs
//! policies and releases the way developers do, an HTTP client for a node's API, and anvil.

// Test fixtures hold nodes, keys and temporary directories; debug output of them helps nobody.
#![allow(missing_debug_implementations)]

pub mod ethereum;
pub mod netns;
pub mod process;
pub mod schema;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chainiac_api::http::CallError;
use chainiac_net::wire::{Request, Response};
use chainiac_node::append::NodeError;
use chainiac_node::config::{NodeConfig, PublicIdentity, init_node};
use chainiac_node::node::NodeCore;
use chainiac_node::runtime::{NodeOptions, RunningNode};
use chainiac_node::serve::AnswerHook;
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember};
use chainiac_protocol::data_chain::{DataBlock, DataGenesis, Owners};
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::keys::{KeySignature, PublicKey, SecretKey};
use chainiac_protocol::policy::{Policy, SignedPolicy};
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::{
    ArtifactRef, BinaryArtifact, BuildRecipe, Release, ReleaseManifest,
};
use chainiac_protocol::skipchain::ChainParams;
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;

/// Result of a test.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A data chain as its owner sees it: one fresh owner key signs the genesis and every block
/// (docs/protocol.md §7.5), with the next sequence number and the roster the chain runs under.
pub struct DataChain {
    /// The chain id.
    pub id: Hash,
    owner: SecretKey,
    sequence: std::sync::atomic::AtomicU64,
    roster: std::sync::Mutex<Hash>,
}

impl DataChain {
    /// A fresh owner and the genesis payload it signs for a chain run by `roster`.
    pub fn genesis_payload(roster: &Roster) -> (SecretKey, Vec<u8>) {
        Self::genesis_payload_of(SecretKey::generate(&mut rand::rng()), roster, b"test chain")
    }

    /// The genesis payload `owner` signs for a chain labelled `label` run by `roster`.
    pub fn genesis_payload_of(
        owner: SecretKey,
        roster: &Roster,
        label: &[u8],
    ) -> (SecretKey, Vec<u8>) {
        let owners = Owners {
            keys: vec![owner.public_key()],
            threshold: 1,
        };
        let genesis = DataGenesis::sign(owners, label.to_vec(), &roster.hash(), &[&owner]);
        (owner, ChainGenesis::Data(genesis).to_bytes())
    }

    /// The chain `id` created by `owner` under `roster`.
    pub fn new(id: Hash, owner: SecretKey, roster: Hash) -> Self {
        Self {
            id,
            owner,
            sequence: std::sync::atomic::AtomicU64::new(0),
            roster: std::sync::Mutex::new(roster),
        }
    }

    /// Creates a data chain through `core` (the leader of its genesis round) with `members`
    /// as its roster (default threshold).
    pub async fn create(
        core: &NodeCore,
        members: Vec<RosterMember>,
        params: ChainParams,
    ) -> TestResult<Self> {
        Self::create_by(core, SecretKey::generate(&mut rand::rng()), members, params).await
    }

    /// [`DataChain::create`] with `owner` as its owner (labelled with a random label, so that
    /// one owner can create several chains).
    pub async fn create_by(
        core: &NodeCore,
        owner: SecretKey,
        members: Vec<RosterMember>,
        params: ChainParams,
    ) -> TestResult<Self> {
        let roster = Roster::with_default_threshold(members.clone())?;
        let label: [u8; 16] = rand::random();
        let (owner, payload) = Self::genesis_payload_of(owner, &roster, &label);
        let head = core.create_chain(members, None, params, payload).await?;
        Ok(Self::new(head.chain_id, owner, roster.hash()))
    }

    fn current_roster(&self) -> Hash {
        *self
            .roster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The payload of the next block carrying `data`, keeping the roster.
    pub fn payload(&self, data: &[u8]) -> Vec<u8> {
        self.payload_for(data, &self.current_roster())
    }

    /// The payload of the next block carrying `data`, for a chain running under the roster
    /// with hash `roster_after` after it.
    pub fn payload_for(&self, data: &[u8], roster_after: &Hash) -> Vec<u8> {
        let sequence = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        DataBlock::sign(
            &self.id,
            sequence,
            roster_after,
            data.to_vec(),
            &[&self.owner],
        )
        .to_bytes()
    }

    /// Appends `data` with `core` as leader.
    pub async fn append(
        &self,
        core: &NodeCore,
        data: impl AsRef<[u8]>,
    ) -> Result<chainiac_node::store::ChainHead, NodeError> {
        core.append(self.id, self.payload(data.as_ref()), None)
            .await
    }

    /// Appends `data` with `core` as leader, moving the chain to `roster`.
    pub async fn append_with_roster(
        &self,
        core: &NodeCore,
        data: impl AsRef<[u8]>,
        roster: Roster,
    ) -> Result<chainiac_node::store::ChainHead, NodeError> {
        let after = roster.hash();
        let head = core
            .append(
                self.id,
                self.payload_for(data.as_ref(), &after),
                Some(roster),
            )
            .await?;
        *self
            .roster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = after;
        Ok(head)
    }

    /// Creates a data chain run by `roster` (a JSON list of roster entries, as `node init`
    /// writes them) through a node's HTTP API at `api`.
    pub fn create_over_http(
        api: SocketAddr,
        token: &chainiac_api::ApiToken,
        roster: &Value,
    ) -> TestResult<Self> {
        let members: Vec<chainiac_api::types::RosterMemberJson> =
            serde_json::from_value(roster.clone())?;
        let parsed = chainiac_api::types::roster_from_json(&members, None)?;
        let (owner, payload) = Self::genesis_payload(&parsed);
        let (status, created) = http_with_token(
            api,
            "POST",
            "/chains",
            Some(&serde_json::json!({ "roster": roster, "payload": hex::encode(payload) })),
            Some(token),
        )?;
        if status != 200 {
            return Err(format!("chain not created: {created}").into());
        }
        let id = Hash::from_hex(created["chain_id"].as_str().ok_or("chain id")?)?;
        Ok(Self::new(id, owner, parsed.hash()))
    }

    /// Appends `data` through a node's HTTP API at `api`; returns the HTTP status and body.
    pub fn append_over_http(
        &self,
        api: SocketAddr,
        token: &chainiac_api::ApiToken,
        data: &[u8],
    ) -> TestResult<(u16, Value)> {
        http_with_token(
            api,
            "POST",
            &format!("/chains/{}/blocks", self.id),
            Some(&serde_json::json!({ "payload": hex::encode(self.payload(data)) })),
            Some(token),
        )
    }

    /// The data a block of a data chain carries (the genesis carries none).
    pub fn data_of(block: &chainiac_protocol::skipchain::SkipBlock) -> Vec<u8> {
        use chainiac_protocol::encoding::Decode;
        DataBlock::from_bytes(block.payload())
            .map(|data| data.data)
            .unwrap_or_default()
    }
}

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `condition` until it holds, failing after [`PATIENCE`].
pub async fn wait_for<F, Fut>(what: &str, mut condition: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("timed out waiting until {what}").into())
}

/// Polls `condition` until it holds, failing after [`PATIENCE`] (for tests without a runtime).
pub fn wait_for_blocking(what: &str, mut condition: impl FnMut() -> bool) -> TestResult {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if condition() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(format!("timed out waiting until {what}").into())
}

/// A Byzantine transport: every response share the node sends is wrong (one bit flipped).
#[derive(Debug, Clone, Copy, Default)]
pub struct WrongShares;

impl AnswerHook for WrongShares {
    fn rewrite(&self, _: PeerId, _: &Request, answer: Response) -> Response {
        match answer {
            Response::Responded(mut share) => {
                share.s[0] ^= 1;
                Response::Responded(share)
            }
            other => other,
        }
    }
}

/// A rule of a [`Mirror`]: the answer to send instead, or `None` to leave it alone.
pub type Lie = Box<dyn Fn(&Request, &Response) -> Option<Response> + Send + Sync>;

/// A malicious mirror: a node whose answers to peers (light clients, other nodes) are rewritten
/// by the rules a test installs, the first that applies winning. Honest until told to lie.
#[derive(Default)]
pub struct Mirror {
    lies: std::sync::Mutex<Vec<Lie>>,
}

impl Mirror {
    /// Adds a rule.
    pub fn lie(
        &self,
        rule: impl Fn(&Request, &Response) -> Option<Response> + Send + Sync + 'static,
    ) {
        self.lies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(rule));
    }

    /// Drops every rule: honest again.
    pub fn reform(&self) {
        self.lies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

impl AnswerHook for Mirror {
    fn rewrite(&self, _: PeerId, request: &Request, answer: Response) -> Response {
        let lies = self
            .lies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lies.iter()
            .find_map(|lie| lie(request, &answer))
            .unwrap_or(answer)
    }
}

/// Settings of each node of a cluster, changed before it starts.
pub type Setup<'a> = dyn Fn(usize, &mut NodeOptions) + 'a;

/// A set of in-process nodes that can be stopped and restarted.
pub struct Cluster {
    dir: tempfile::TempDir,
    options: Vec<NodeOptions>,
    /// The nodes' roster entries.
    pub publics: Vec<PublicIdentity>,
    nodes: Vec<Option<RunningNode>>,
}

impl Cluster {
    /// Starts `n` nodes (those in `faulty` send wrong response shares) and waits until every
    /// node is connected to every other.
    pub async fn start(n: usize, faulty: &[usize]) -> TestResult<Self> {
        Self::start_with(n, faulty, |_, _| {}).await
    }

    /// Like [`Cluster::start`], with `configure(i, config)` applied to each node's configuration.
    pub async fn start_with(
        n: usize,
        faulty: &[usize],
        configure: impl Fn(usize, &mut NodeConfig),
    ) -> TestResult<Self> {
        Self::start_with_options(n, &|i, options: &mut NodeOptions| {
            configure(i, &mut options.config);
            if faulty.contains(&i) {
                options.answer_hook = Some(Arc::new(WrongShares));
            }
        })
        .await
    }

    /// Starts `n` nodes with `setup(i, options)` applied to each node's options (configuration,
    /// rounds, Byzantine transport) and waits until every node is connected to every other.
    /// Rounds time out after 3 s unless the setup says otherwise.
    pub async fn start_with_options(n: usize, setup: &Setup<'_>) -> TestResult<Self> {
        let mut cluster = Cluster {
            options: Vec::new(),
            publics: Vec::new(),
            nodes: Vec::new(),
            dir: tempfile::tempdir()?,
        };
        for i in 0..n {
            cluster.add_node(i, setup)?;
        }
        for i in 0..n {
            cluster.start_node(i).await?;
        }
        cluster.wait_connected().await?;
        Ok(cluster)
    }

    /// Creates node `i` (not started): a fresh key and configuration, listening on loopback.
    pub fn add_node(&mut self, i: usize, setup: &Setup<'_>) -> TestResult<usize> {
        let created = init_node(&self.dir.path().join(format!("node{i}")))?;
        let mut config = created.config;
        config.network.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        config.api.listen = "127.0.0.1:0".parse()?;
        let mut options = NodeOptions::new(config);
        options.rounds.commit_timeout = Duration::from_secs(3);
        options.rounds.respond_timeout = Duration::from_secs(3);
        options.rounds.view_base = Duration::from_secs(1);
        options.rounds.decision_timeout = Duration::from_secs(60);
        setup(i, &mut options);
        self.options.push(options);
        self.publics.push(created.public);
        self.nodes.push(None);
        Ok(self.nodes.len() - 1)
    }

    /// Starts node `i`, bootstrapping from every running node.
    pub async fn start_node(&mut self, i: usize) -> TestResult {
        let bootstrap = self.addresses().await;
        let mut options = self.options[i].clone();
        options.config.network.bootstrap = bootstrap.iter().map(ToString::to_string).collect();
        self.nodes[i] = Some(RunningNode::start(options).await?);
        Ok(())
    }

    /// Stops every node cleanly.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i).await;
        }
    }

    /// Stops node `i` cleanly.
    pub async fn stop_node(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.shutdown().await;
        }
    }

    /// Node `i`'s shared state.
    pub fn core(&self, i: usize) -> Arc<NodeCore> {
        self.nodes[i]
            .as_ref()
            .map(|n| n.core.clone())
            .unwrap_or_else(|| panic!("node {i} is not running"))
    }

    /// How many nodes the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The data directory of node `i`.
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.options[i].config.data_dir.clone()
    }

    /// The libp2p peer id of running node `i`.
    pub fn peer_id(&self, i: usize) -> TestResult<PeerId> {
        Ok(self.nodes[i].as_ref().ok_or("node not running")?.peer_id)
    }

    /// The API token of node `i` (its writes need it).
    pub fn api_token(&self, i: usize) -> TestResult<chainiac_api::ApiToken> {
        let config = &self.options[i].config;
        Ok(chainiac_api::ApiToken::load(
            &config.api.token_path(&config.key_file),
        )?)
    }

    /// The HTTP API address of running node `i`.
    pub fn api(&self, i: usize) -> TestResult<SocketAddr> {
        Ok(self.nodes[i].as_ref().ok_or("node not running")?.api_addr)
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn scratch(&self) -> std::path::PathBuf {
        self.dir.path().join("scratch")
    }

    /// Full libp2p addresses (with peer id) of the running nodes, in node order.
    pub async fn addresses(&self) -> Vec<Multiaddr> {
        let mut out = Vec::new();
        for node in self.nodes.iter().flatten() {
            if let Some(address) = node.listen_addrs().await.into_iter().next() {
                out.push(address.with(libp2p::multiaddr::Protocol::P2p(node.peer_id)));
            }
        }
        out
    }

    /// The libp2p address of node `i`.
    pub async fn address(&self, i: usize) -> TestResult<Multiaddr> {
        let node = self.nodes[i].as_ref().ok_or("node not running")?;
        let address = node
            .listen_addrs()
            .await
            .into_iter()
            .next()
            .ok_or("node has no listen address")?;
        Ok(address.with(libp2p::multiaddr::Protocol::P2p(node.peer_id)))
    }

    /// Waits until every running node is connected to every other.
    pub async fn wait_connected(&self) -> TestResult {
        let running: Vec<&RunningNode> = self.nodes.iter().flatten().collect();
        let want = running.len() - 1;
        wait_for("every node connected to every other", || async {
            for node in &running {
                if node.core.net().info().await.peers.len() < want {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// Node `i`'s identity (its secret key), as its operator holds it.
    pub fn identity(&self, i: usize) -> TestResult<chainiac_node::config::Identity> {
        Ok(chainiac_node::config::Identity::load(
            &self.options[i].config.key_file,
        )?)
    }

    /// The roster of the nodes `members`, with the default threshold.
    pub fn roster(&self, members: &[usize]) -> TestResult<Roster> {
        Ok(Roster::with_default_threshold(
            members
                .iter()
                .map(|&i| self.publics[i].roster_member())
                .collect(),
        )?)
    }

    /// Creates a data chain led by `leader` with every node as witness (owned by a fresh key),
    /// and waits until all running nodes hold its genesis.
    pub async fn create_chain(&self, leader: usize) -> TestResult<DataChain> {
        let members = self
            .publics
            .iter()
            .map(PublicIdentity::roster_member)
            .collect();
        let chain =
            DataChain::create(&self.core(leader), members, ChainParams::new(2, 32)?).await?;
        self.wait_everywhere(&chain.id, 0).await?;
        Ok(chain)
    }

    /// Creates a timeline of `epoch_seconds` led by node `leader`, witnessed by the nodes
    /// `members` and created by a fresh key. Returns its id.
    pub async fn create_timeline(
        &self,
        leader: usize,
        members: &[usize],
        epoch_seconds: u64,
    ) -> TestResult<Hash> {
        let roster = self.roster(members)?;
        let creator = SecretKey::generate(&mut rand::rng());
        let head = self
            .core(leader)
            .create_chain(
                roster.members().to_vec(),
                None,
                ChainParams::new(2, 32)?,
                ChainGenesis::timeline(epoch_seconds, &roster.hash(), &creator).to_bytes(),
            )
            .await?;
        Ok(head.chain_id)
    }

    /// Waits until running node `i` holds block `index` of `chain_id`.
    pub async fn wait_head(&self, i: usize, chain_id: &Hash, index: u64) -> TestResult {
        let core = self.core(i);
        wait_for(&format!("node {i} reaches block {index}"), || async {
            core.store()
                .head(chain_id)
                .ok()
                .flatten()
                .is_some_and(|h| h.index >= index)
        })
        .await
    }

    /// Waits until the newest block of `timeline` on running node `i` commits to block `index`
    /// of `chain_id` (as `i` holds it) as that chain's head: what a client checking heads
    /// against the timeline gets from `i`.
    pub async fn wait_timeline_commits(
        &self,
        i: usize,
        timeline: &Hash,
        chain_id: &Hash,
        index: u64,
    ) -> TestResult {
        let store = self.core(i).store().clone();
        let what = format!("node {i}'s timeline to commit to block {index} of {chain_id}");
        wait_for(&what, || async {
            let Ok(Some(head)) = store.head(timeline) else {
                return false;
            };
            let Ok(Some(block)) = store.block_at(chain_id, index) else {
                return false;
            };
            store
                .timeline_tree(timeline, head.index)
                .is_ok_and(|tree| tree.head_of(chain_id) == Some(block.hash()))
        })
        .await
    }

    /// Waits until every running node holds block `index` of `chain_id`.
    pub async fn wait_everywhere(&self, chain_id: &Hash, index: u64) -> TestResult {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.wait_head(i, chain_id, index).await?;
            }
        }
        Ok(())
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A project as its developers hold it: keys, chain ids, the policy in force.
pub struct Project {
    /// Name.
    pub name: String,
    /// Root keys.
    pub roots: Vec<SecretKey>,
    /// Current developer keys (slot order).
    pub developers: Vec<SecretKey>,
    /// The policy in force.
    pub policy: Policy,
    /// Hash of the policy-chain block holding it.
    pub policy_block: Hash,
    /// Policy chain id.
    pub policy_chain: Hash,
    /// Release chain id.
    pub release_chain: Hash,
    /// Sequence of the last release logged.
    pub sequence: u64,
}

/// A release ready to publish: the payload and the artifact bytes it names.
pub struct PreparedRelease {
    /// The release.
    pub release: Release,
    /// (reference, bytes) of each artifact.
    pub files: Vec<(ArtifactRef, Vec<u8>)>,
}

impl PreparedRelease {
    /// Stores the artifacts on `core` and asks it to lead the release's round.
    pub async fn publish(
        &self,
        core: &NodeCore,
        chain: Hash,
        roster: Option<Roster>,
    ) -> Result<u64, NodeError> {
        for (_, bytes) in &self.files {
            core.artifacts()
                .put(bytes)
                .map_err(|e| NodeError::Invalid(e.to_string()))?;
        }
        Ok(core
            .append(chain, self.release.to_bytes(), roster)
            .await?
            .index)
    }
}

impl Project {
    /// Creates a project with `developers` keys (releases need `threshold`), one root key, and
    /// its two chains witnessed by `roster`, led by `core`.
    pub async fn create(
        core: &NodeCore,
        name: &str,
        developers: usize,
        threshold: u32,
        roster: &Roster,
    ) -> TestResult<Self> {
        Self::create_with_verifiers(core, name, developers, threshold, roster, &[], 0).await
    }

    /// [`Project::create`] with a policy that commits the project to `timeline` (clients check
    /// both chains' heads against it).
    pub async fn create_on_timeline(
        core: &NodeCore,
        name: &str,
        roster: &Roster,
        timeline: Hash,
    ) -> TestResult<Self> {
        Self::create_full(core, name, 2, 1, roster, &[], 0, Some(timeline)).await
    }

    /// [`Project::create`] with build verifiers, `attestations` of which must reproduce each
    /// release.
    pub async fn create_with_verifiers(
        core: &NodeCore,
        name: &str,
        developers: usize,
        threshold: u32,
        roster: &Roster,
        verifiers: &[PublicKey],
        attestations: u32,
    ) -> TestResult<Self> {
        Self::create_full(
            core,
            name,
            developers,
            threshold,
            roster,
            verifiers,
            attestations,
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_full(
        core: &NodeCore,
        name: &str,
        developers: usize,
        threshold: u32,
        roster: &Roster,
        verifiers: &[PublicKey],
        attestations: u32,
        timeline: Option<Hash>,
    ) -> TestResult<Self> {
        let mut rng = rand::rng();
        let roots = vec![SecretKey::generate(&mut rng)];
        let developers: Vec<SecretKey> = (0..developers)
            .map(|_| SecretKey::generate(&mut rng))
            .collect();
        let policy = Policy {
            project: name.into(),
            sequence: 0,
            previous: None,
            root_keys: roots.iter().map(SecretKey::public_key).collect(),
            root_threshold: 1,
            developer_keys: developers.iter().map(SecretKey::public_key).collect(),
            developer_threshold: threshold,
            build_verifiers: verifiers.to_vec(),
            attestations_required: attestations,
            witnesses: roster.hash(),
            timeline,
        };
        let signatures = vec![KeySignature::sign(&roots[0], &policy.digest())];
        let genesis = ChainGenesis::Policy(SignedPolicy {
            policy: policy.clone(),
            signatures,
        });
        let members: Vec<RosterMember> = roster.members().to_vec();
        let threshold = Some(roster.threshold() as u32);
        let policy_head = core
            .create_chain(
                members.clone(),
                threshold,
                ChainParams::new(2, 32)?,
                genesis.to_bytes(),
            )
            .await?;
        let release_genesis = ChainGenesis::release(name, policy_head.chain_id, &[&roots[0]]);
        let release_head = core
            .create_chain(
                members,
                threshold,
                ChainParams::new(2, 32)?,
                release_genesis.to_bytes(),
            )
            .await?;
        Ok(Self {
            name: name.into(),
            roots,
            developers,
            policy,
            policy_block: policy_head.hash,
            policy_chain: policy_head.chain_id,
            release_chain: release_head.chain_id,
            sequence: 0,
        })
    }

    /// A release of `version` with `sequence`, signed by the developer keys `signers`.
    pub fn release_with(
        &self,
        version: &str,
        sequence: u64,
        signers: &[&SecretKey],
    ) -> PreparedRelease {
        let source_bytes = format!("{} {version} source", self.name).into_bytes();
        let binary_bytes = format!("{} {version} binary", self.name)
            .repeat(1000)
            .into_bytes();
        let source = ArtifactRef::of(&format!("{}-{version}.tar", self.name), &source_bytes);
        let binary = ArtifactRef::of(&format!("{}-{version}", self.name), &binary_bytes);
        let manifest = ReleaseManifest {
            project: self.name.clone(),
            version: version.into(),
            sequence,
            source: source.clone(),
            recipe: BuildRecipe {
                script: "make".into(),
                outputs: vec![("linux-x86_64".into(), "out/bin".into())],
            },
            binaries: vec![BinaryArtifact {
                platform: "linux-x86_64".into(),
                artifact: binary.clone(),
            }],
            policy: self.policy_block,
            timestamp: now(),
        };
        let digest = manifest.digest();
        PreparedRelease {
            release: Release {
                manifest,
                signatures: signers
                    .iter()
                    .map(|k| KeySignature::sign(k, &digest))
                    .collect(),
                attestations: Vec::new(),
            },
            files: vec![(source, source_bytes), (binary, binary_bytes)],
        }
    }

    /// The next release, signed by the first t developers.
    pub fn next_release(&self, version: &str) -> PreparedRelease {
        let signers: Vec<&SecretKey> = self
            .developers
            .iter()
            .take(self.policy.developer_threshold as usize)
            .collect();
        self.release_with(version, self.sequence + 1, &signers)
    }

    /// Publishes the next release through `core` and records it.
    pub async fn publish_next(
        &mut self,
        core: &NodeCore,
        version: &str,
        roster: Option<Roster>,
    ) -> TestResult<u64> {
        let prepared = self.next_release(version);
        let index = prepared.publish(core, self.release_chain, roster).await?;
        self.sequence += 1;
        Ok(index)
    }

    /// Moves the project to the witnesses `roster`: a policy change naming them, signed by the
    /// root key, logged by `core` on the policy chain (which moves to `roster` with it). The
    /// release chain follows at its next release, which must carry `roster`.
    pub async fn change_witnesses(&mut self, core: &NodeCore, roster: Roster) -> TestResult {
        let mut next = self.policy.clone();
        next.sequence += 1;
        next.previous = Some(self.policy.digest());
        next.witnesses = roster.hash();
        let signed = SignedPolicy {
            signatures: vec![KeySignature::sign(&self.roots[0], &next.digest())],
            policy: next.clone(),
        };
        let head = core
            .append(self.policy_chain, signed.to_bytes(), Some(roster))
            .await?;
        self.policy = next;
        self.policy_block = head.hash;
        Ok(())
    }

    /// Replaces developer `slot`'s key through a policy change signed by the first t
    /// developers, logged by `core`. Returns the retired key.
    pub async fn rotate_developer(
        &mut self,
        core: &NodeCore,
        slot: usize,
    ) -> TestResult<SecretKey> {
        let fresh = SecretKey::generate(&mut rand::rng());
        let mut next = self.policy.clone();
        next.sequence += 1;
        next.previous = Some(self.policy.digest());
        next.developer_keys[slot] = fresh.public_key();
        let digest = next.digest();
        let signatures = self
            .developers
            .iter()
            .take(self.policy.developer_threshold as usize)
            .map(|k| KeySignature::sign(k, &digest))
            .collect();
        let signed = SignedPolicy {
            policy: next.clone(),
            signatures,
        };
        let head = core
            .append(self.policy_chain, signed.to_bytes(), None)
            .await?;
        self.policy = next;
        self.policy_block = head.hash;
        Ok(std::mem::replace(&mut self.developers[slot], fresh))
    }
}

/// One call to a node's HTTP API: the status and the body as JSON (`Null` if the body is not
/// JSON; `{"error": MESSAGE}` for an error answer).
pub fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> TestResult<(u16, Value)> {
    http_with_token(address, method, path, body, None)
}

/// [`http`] with the node's API token (writes need it).
pub fn http_with_token(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&chainiac_api::ApiToken>,
) -> TestResult<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    match chainiac_api::http::call(
        address,
        method,
        path,
        "application/json",
        body.as_bytes(),
        token,
    ) {
        Ok(answer) => Ok((200, serde_json::from_slice(&answer).unwrap_or(Value::Null))),
        Err(CallError::Status {
            status, message, ..
        }) => Ok((status, serde_json::json!({ "error": message }))),
        Err(error) => Err(error.into()),
    }
}

/// A local Ethereum node (anvil) for anchoring tests, stopped when dropped.
pub struct Anvil {
    child: Option<std::process::Child>,
    /// Its JSON-RPC URL.
    pub url: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    state: std::path::PathBuf,
    binary: std::path::PathBuf,
}

/// Where anvil is (see [`chainiac_anchor::anvil_binary`]).
pub fn anvil_binary() -> TestResult<std::path::PathBuf> {
    Ok(chainiac_anchor::anvil_binary()?)
}

impl Anvil {
    /// Starts anvil on a free loopback port, keeping its chain in `state` across restarts, and
    /// waits until it answers. The port is free when chosen, not when anvil binds it (another
    /// process may take it in between): an anvil that cannot bind it exits, and another port
    /// is tried.
    pub fn start(state: &std::path::Path) -> TestResult<Self> {
        let mut tries = 0;
        loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let mut anvil = Self {
                child: None,
                url: format!("http://127.0.0.1:{port}"),
                port,
                state: state.to_path_buf(),
                binary: anvil_binary()?,
            };
            tries += 1;
            match anvil.restart() {
                Ok(()) => return Ok(anvil),
                Err(error) if tries >= 5 => return Err(error),
                Err(_) => {}
            }
        }
    }

    /// Starts it again (same port, same chain state), and waits until it answers JSON-RPC:
    /// a bare TCP connect is not enough, since a loopback connect to a port nobody listens on
    /// can connect to itself.
    pub fn restart(&mut self) -> TestResult {
        let mut child = std::process::Command::new(&self.binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--silent",
            ])
            .arg("--state")
            .arg(&self.state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let deadline = std::time::Instant::now() + PATIENCE;
        while ethereum::eth_rpc(&self.url, "eth_chainId", &serde_json::json!([])).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(
                    format!("anvil exited ({status}) before answering on {}", self.url).into(),
                );
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("anvil did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops it with SIGTERM (anvil writes its state on the way out) and waits.
    pub fn stop(&mut self) -> TestResult {
        if let Some(mut child) = self.child.take() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
                nix::sys::signal::Signal::SIGTERM,
            )?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
