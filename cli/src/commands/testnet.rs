//! A local testnet: N node processes on 127.0.0.1, each in `DIR/node-I`, connected to each
//! other, with a shared `roster.json`. `DIR/testnet.json` records what runs where.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chainiac_api::http::{Nodes, get_json};
use chainiac_api::types::{ChainHeadJson, CreateChainRequest, RosterMemberJson, StatusJson};
use chainiac_net::peer_id_of;
use chainiac_node::config::{NodeConfig, init_node};
use clap::Subcommand;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use chainiac_protocol::encoding::Encode;
use chainiac_protocol::project::ChainGenesis;

/// One node of the testnet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TestnetNode {
    /// `node-I`.
    pub(crate) name: String,
    /// Process id while running.
    pub(crate) pid: u32,
    /// HTTP API address.
    pub(crate) api: SocketAddr,
    /// libp2p address with peer id.
    pub(crate) p2p: String,
    /// Node directory.
    pub(crate) dir: PathBuf,
    /// Log file.
    pub(crate) log: PathBuf,
}

/// `testnet.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Testnet {
    /// The nodes.
    pub(crate) nodes: Vec<TestnetNode>,
    /// The roster file every chain of the testnet uses by default.
    pub(crate) roster: PathBuf,
    /// The testnet's timeline chain id.
    #[serde(default)]
    pub(crate) timeline: Option<String>,
    /// The local Ethereum node the timeline is anchored in, if any.
    #[serde(default)]
    pub(crate) anvil: Option<AnvilProcess>,
}

/// A local anvil started by the testnet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AnvilProcess {
    /// Process id.
    pub(crate) pid: u32,
    /// JSON-RPC URL.
    pub(crate) url: String,
}

/// The node's own anchoring key on a local testnet (plain, mode 0600; made once), funded
/// with 100 ETH from anvil's first development account by a transfer signed here: the node
/// signs its anchors itself, as on a real network.
fn testnet_anchor_key(node_dir: &Path, anvil_url: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = node_dir.join("anchor.key");
    if !path.exists() {
        chainiac_anchor::create_key(&path, None)?;
    }
    let address = chainiac_anchor::load_key(&path, None)?.address();
    super::block_on(chainiac_anchor::fund_from_dev_account(
        anvil_url,
        address,
        100 * 1_000_000_000 * chainiac_anchor::GWEI,
    ))?
    .with_context(|| format!("cannot fund the anchoring account {address:#x}"))?;
    Ok(path)
}

/// A testnet node being set up: where it lives, its anchoring key and the ports chosen for it.
struct PlannedNode {
    name: String,
    dir: std::path::PathBuf,
    config_path: std::path::PathBuf,
    anchor_key: Option<std::path::PathBuf>,
    api: SocketAddr,
    p2p_port: u16,
    p2p: String,
}

fn start_anvil(dir: &Path) -> anyhow::Result<AnvilProcess> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("anvil.log"))?;
    let child = Command::new(chainiac_anchor::anvil_binary()?)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--state")
        .arg(dir.join("anvil-state.json"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start anvil")?;
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "anvil did not start; see {}",
                dir.join("anvil.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "  started anvil (pid {}) on http://127.0.0.1:{port}",
        child.id()
    );
    Ok(AnvilProcess {
        pid: child.id(),
        url: format!("http://127.0.0.1:{port}"),
    })
}

impl Testnet {
    /// Loads `DIR/testnet.json`.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("testnet.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no testnet in {} (no testnet.json); start one with `chainiac testnet up --dir {}`",
                dir.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    /// Writes `DIR/testnet.json`.
    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join("testnet.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The API token every node of the testnet shares (`DIR/api.token`).
    pub(crate) fn token_file(dir: &Path) -> PathBuf {
        dir.join("api.token")
    }

    /// The API addresses of every node.
    pub(crate) fn apis(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.api).collect()
    }

    /// The libp2p addresses of every node (what a client dials).
    pub(crate) fn peers(&self) -> anyhow::Result<Vec<libp2p::Multiaddr>> {
        self.nodes
            .iter()
            .map(|n| {
                n.p2p
                    .parse()
                    .with_context(|| format!("{}'s address {:?}", n.name, n.p2p))
            })
            .collect()
    }

    /// Every node's API, with the testnet's token for writes (`dir` is the testnet's).
    pub(crate) fn writable_nodes(&self, dir: &Path) -> anyhow::Result<Nodes> {
        Ok(Nodes::new(&self.apis())
            .with_token(Some(chainiac_api::ApiToken::load(&Self::token_file(dir))?)))
    }

    /// The testnet's timeline chain.
    pub(crate) fn timeline_id(&self) -> anyhow::Result<chainiac_protocol::Hash> {
        let hex = self
            .timeline
            .as_deref()
            .context("the testnet has no timeline")?;
        Ok(chainiac_protocol::Hash::from_hex(hex)?)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free port on 127.0.0.1")?
        .local_addr()?
        .port())
}

fn is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false)
}

/// Creates (if needed) and starts `count` nodes in `dir`, then waits until each is connected
/// to all others. Prints progress to stderr.
/// What a new testnet is made of.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TestnetShape {
    /// Nodes (all witnesses of the roster).
    pub(crate) nodes: usize,
    /// Length of a timeline epoch, in seconds.
    pub(crate) epoch_seconds: u64,
    /// Start anvil and anchor the timeline in it.
    pub(crate) anvil: bool,
    /// How many of the nodes (the last ones) are also build verifiers.
    pub(crate) verifiers: usize,
}

/// Whether this machine can run sandboxed builds (what a verifier node needs); the reason when
/// it cannot.
pub(crate) fn sandboxed_builds() -> Result<(), String> {
    chainiac_node::builder::Sandbox::system()
        .and_then(|sandbox| sandbox.check_limits())
        .map_err(|error| error.to_string())
}

pub(crate) fn up(dir: &Path, shape: TestnetShape) -> anyhow::Result<Testnet> {
    let TestnetShape {
        nodes: count,
        epoch_seconds,
        anvil,
        verifiers,
    } = shape;
    if count == 0 {
        bail!("a testnet needs at least one node");
    }
    if verifiers > count {
        bail!("--verifiers {verifiers} is more than the {count} nodes");
    }
    if verifiers > 0
        && let Err(reason) = sandboxed_builds()
    {
        bail!("verifier nodes cannot build here: {reason}");
    }
    let previous = Testnet::load(dir).ok();
    if let Some(existing) = previous.clone()
        && existing.nodes.iter().any(|n| is_running(n.pid))
    {
        return heal(dir, existing);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the chainiac executable")?;
    // anvil first, and every anchoring key funded, before any port is chosen: the funding's
    // connections take ephemeral ports that a chosen (and released) port could be.
    let anvil = if anvil {
        Some(start_anvil(&dir)?)
    } else {
        None
    };
    let mut prepared = Vec::new();
    let mut roster = Vec::new();
    for i in 0..count {
        let name = format!("node-{i}");
        let node_dir = dir.join(&name);
        let config_path = node_dir.join("config.toml");
        let public: RosterMemberJson = if config_path.exists() {
            let text = std::fs::read_to_string(node_dir.join("node.pub.json"))?;
            serde_json::from_str(&text).context("node.pub.json")?
        } else {
            let node = init_node(&node_dir)?;
            RosterMemberJson::from(&node.public.roster_member())
        };
        let key = chainiac_protocol::keys::PublicKey::from_hex(&public.public_key)
            .context("node.pub.json")?;
        let peer = peer_id_of(&key).context("peer id")?;
        let anchor_key = match &anvil {
            Some(anvil) => Some(testnet_anchor_key(&node_dir, &anvil.url)?),
            None => None,
        };
        roster.push(public);
        prepared.push((name, node_dir, config_path, peer, anchor_key));
    }
    let mut planned = Vec::new();
    for (name, dir, config_path, peer, anchor_key) in prepared {
        let p2p_port = free_port()?;
        let api: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let p2p = format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer}");
        planned.push(PlannedNode {
            name,
            dir,
            config_path,
            anchor_key,
            api,
            p2p_port,
            p2p,
        });
    }
    let roster_path = dir.join("roster.json");
    std::fs::write(&roster_path, serde_json::to_string_pretty(&roster)?)?;
    // One API token for every node of the testnet, so that one file drives all of them.
    let token_path = dir.join("api.token");
    let token = chainiac_api::ApiToken::load_or_create(&token_path)?;
    let all_peers: Vec<String> = planned.iter().map(|p| p.p2p.clone()).collect();
    let mut nodes = Vec::new();
    let first_verifier = count - verifiers;
    for (
        i,
        PlannedNode {
            name,
            dir: node_dir,
            config_path,
            anchor_key,
            api,
            p2p_port,
            p2p,
        },
    ) in planned.into_iter().enumerate()
    {
        let mut config = NodeConfig::load(&config_path)?;
        config.verifier.enabled = i >= first_verifier;
        config.network.listen = vec![format!("/ip4/127.0.0.1/tcp/{p2p_port}")];
        config.network.bootstrap = all_peers.iter().filter(|p| **p != p2p).cloned().collect();
        config.api.listen = api;
        config.api.token_file = Some(token_path.clone());
        config.anchor.ethereum_rpc = anvil.as_ref().map(|a| a.url.clone());
        config.anchor.key_file = anchor_key;
        std::fs::write(&config_path, config.to_commented_toml())?;
        let mut node = TestnetNode {
            name,
            pid: 0,
            api,
            p2p,
            log: node_dir.join("node.log"),
            dir: node_dir,
        };
        node.pid = spawn_node(&exe, &node)?;
        nodes.push(node);
    }
    let mut testnet = Testnet {
        nodes,
        roster: roster_path,
        timeline: previous.and_then(|p| p.timeline),
        anvil,
    };
    let save = |testnet: &Testnet| testnet.save(&dir);
    save(&testnet)?;
    wait_connected(&testnet, Duration::from_secs(60))?;
    if testnet.timeline.is_none() {
        // The testnet's first node creates its timeline (its key signs the genesis; the
        // witnesses admit it under their default, open admission).
        let creator = chainiac_api::keyfile::Identity::load(&testnet.nodes[0].dir.join("node.key"))
            .context("cannot read node-0's key to create the timeline")?;
        let roster_hash = chainiac_api::types::roster_from_json(&roster, None)
            .map_err(|e| anyhow::anyhow!("the testnet roster is invalid: {e}"))?
            .hash();
        let genesis = ChainGenesis::timeline(epoch_seconds, &roster_hash, creator.secret());
        let answer: ChainHeadJson = Nodes::new(&testnet.apis())
            .with_token(Some(token))
            .post(
                "/chains",
                &CreateChainRequest {
                    roster,
                    threshold: None,
                    base: None,
                    max_height: None,
                    payload: hex::encode(genesis.to_bytes()),
                },
            )
            .context("cannot create the testnet's timeline")?;
        let chain = answer.chain_id.as_str();
        eprintln!("  timeline {chain} (one block every {epoch_seconds} s)");
        testnet.timeline = Some(chain.to_owned());
        save(&testnet)?;
    }
    Ok(testnet)
}

/// Starts `node`'s process with its configuration (logs appended to its log file); returns its
/// process id.
fn spawn_node(exe: &Path, node: &TestnetNode) -> anyhow::Result<u32> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .with_context(|| format!("cannot open {}", node.log.display()))?;
    let child = Command::new(exe)
        .args(["node", "run", "--config"])
        .arg(node.dir.join("config.toml"))
        .env_remove("CHAINIAC_API")
        .env_remove("CHAINIAC_LISTEN")
        .env_remove("CHAINIAC_BOOTSTRAP")
        .env_remove("CHAINIAC_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", node.name))?;
    eprintln!(
        "  started {} (pid {}), API http://{}",
        node.name,
        child.id(),
        node.api
    );
    Ok(child.id())
}

/// Brings back the stopped nodes of a testnet some of whose nodes run: each restarts with its
/// own configuration (same addresses, same data), the running ones are left alone, and the
/// restarted ones catch up by sync.
fn heal(dir: &Path, mut testnet: Testnet) -> anyhow::Result<Testnet> {
    let exe = std::env::current_exe().context("cannot find the chainiac executable")?;
    let mut restarted = 0;
    for node in &mut testnet.nodes {
        if is_running(node.pid) {
            continue;
        }
        node.pid = spawn_node(&exe, node)?;
        restarted += 1;
    }
    if restarted == 0 {
        eprintln!("  every node already runs");
    }
    testnet.save(dir)?;
    wait_connected(&testnet, Duration::from_secs(60))?;
    Ok(testnet)
}

/// Restarts one node of a testnet (stopping it first if it runs), with the same addresses and
/// data, and waits until it is connected again.
pub(crate) fn restart(dir: &Path, name: &str) -> anyhow::Result<()> {
    let mut testnet = Testnet::load(dir)?;
    let names = testnet
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect::<Vec<_>>()
        .join(", ");
    let node = testnet
        .nodes
        .iter_mut()
        .find(|n| n.name == name)
        .with_context(|| format!("no node named {name:?}; the testnet has {names}"))?;
    if is_running(node.pid) {
        stop(node)?;
    }
    node.pid = spawn_node(&std::env::current_exe()?, node)?;
    testnet.save(dir)?;
    wait_connected(&testnet, Duration::from_secs(60))
}

/// Stops one node: SIGTERM, then SIGKILL if it has not stopped after 15 s.
fn stop(node: &TestnetNode) -> anyhow::Result<()> {
    stop_all(&[node])
}

/// Stops nodes together: SIGTERM to each, then waits for all of them (a node's shutdown lets
/// its work in flight end, a few seconds each: one after the other they would add up), and
/// SIGKILL for any still running after 15 s.
fn stop_all(nodes: &[&TestnetNode]) -> anyhow::Result<()> {
    for node in nodes {
        signal(node.pid, Signal::SIGTERM)?;
    }
    let start = Instant::now();
    let mut waiting: Vec<&TestnetNode> = nodes.to_vec();
    while !waiting.is_empty() {
        waiting.retain(|node| {
            let running = is_running(node.pid);
            if !running {
                eprintln!("  stopped {}", node.name);
            }
            running
        });
        if start.elapsed() >= Duration::from_secs(15) {
            for node in &waiting {
                eprintln!("  {} did not stop within 15 s; killing it", node.name);
                signal(node.pid, Signal::SIGKILL)?;
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until every node's API answers and reports all other nodes as peers.
pub(crate) fn wait_connected(testnet: &Testnet, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let want = testnet.nodes.len() - 1;
    for node in &testnet.nodes {
        loop {
            if !is_running(node.pid) {
                bail!(
                    "{} stopped during startup; see its log {}",
                    node.name,
                    node.log.display()
                );
            }
            let status = get_json::<StatusJson>(node.api, "/status").ok();
            if status.as_ref().is_some_and(|s| s.peers.len() >= want) {
                break;
            }
            if start.elapsed() > timeout {
                let missing = match &status {
                    Some(status) => testnet
                        .nodes
                        .iter()
                        .filter(|other| other.name != node.name)
                        .filter(|other| !status.peers.iter().any(|p| other.p2p.ends_with(p)))
                        .map(|other| other.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => "its API does not answer".to_owned(),
                };
                bail!(
                    "{} is not connected to all {want} other nodes after {} s (missing: {missing}); \
                     the end of its log {}:\n{}",
                    node.name,
                    timeout.as_secs(),
                    node.log.display(),
                    log_tail(&node.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The last `lines` lines of a log file (for error messages that must explain themselves where
/// the file is gone, as in CI).
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read it: {error})"),
    }
}

/// One node's state, as `testnet status --json` prints it.
#[derive(Debug, Serialize)]
struct NodeState {
    name: String,
    pid: u32,
    /// `healthy`, `starting` (running, its API not answering yet) or `stopped`.
    state: &'static str,
    /// Connected peers and chains held (absent unless healthy).
    peers: Option<usize>,
    chains: Option<usize>,
    api: SocketAddr,
    p2p: String,
}

/// Prints each node's state; fails (exit status 1) if a node is not running.
pub(crate) fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let testnet = Testnet::load(dir)?;
    let states: Vec<NodeState> = testnet
        .nodes
        .iter()
        .map(|node| {
            let running = is_running(node.pid);
            let status = if running {
                get_json::<StatusJson>(node.api, "/status").ok()
            } else {
                None
            };
            NodeState {
                name: node.name.clone(),
                pid: node.pid,
                state: match (&status, running) {
                    (Some(_), _) => "healthy",
                    (None, true) => "starting",
                    (None, false) => "stopped",
                },
                peers: status.as_ref().map(|s| s.peers.len()),
                chains: status.as_ref().map(|s| s.chains.len()),
                api: node.api,
                p2p: node.p2p.clone(),
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&states)?);
    } else {
        println!(
            "{:<8} {:>7}  {:<8} {:>5} {:>6}  {:<21} p2p",
            "node", "pid", "state", "peers", "chains", "api"
        );
        let count = |n: Option<usize>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        for node in &states {
            println!(
                "{:<8} {:>7}  {:<8} {:>5} {:>6}  {:<21} {}",
                node.name,
                node.pid,
                node.state,
                count(node.peers),
                count(node.chains),
                node.api.to_string(),
                node.p2p
            );
        }
    }
    let stopped: Vec<&str> = testnet
        .nodes
        .iter()
        .filter(|n| !is_running(n.pid))
        .map(|n| n.name.as_str())
        .collect();
    if !stopped.is_empty() {
        bail!(
            "{} of {} nodes are stopped ({}); bring them back with `chainiac testnet up --dir {}`",
            stopped.len(),
            testnet.nodes.len(),
            stopped.join(", "),
            dir.display()
        );
    }
    Ok(())
}

/// Prints the last `lines` lines of each node's log (or of one node).
pub(crate) fn logs(dir: &Path, node: Option<&str>, lines: usize) -> anyhow::Result<()> {
    let testnet = Testnet::load(dir)?;
    let mut found = false;
    for n in &testnet.nodes {
        if node.is_some_and(|wanted| wanted != n.name) {
            continue;
        }
        found = true;
        let text = std::fs::read_to_string(&n.log)
            .with_context(|| format!("cannot read {}", n.log.display()))?;
        let all: Vec<&str> = text.lines().collect();
        println!("==> {} ({}) <==", n.name, n.log.display());
        for line in &all[all.len().saturating_sub(lines)..] {
            println!("{line}");
        }
    }
    if !found {
        bail!(
            "no node named {:?}; the testnet has {}",
            node.unwrap_or_default(),
            testnet
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Stops every node (SIGTERM, then waits for a clean exit; SIGKILL after 15 s).
pub(crate) fn down(dir: &Path) -> anyhow::Result<usize> {
    let testnet = Testnet::load(dir)?;
    let running: Vec<&TestnetNode> = testnet
        .nodes
        .iter()
        .filter(|node| is_running(node.pid))
        .collect();
    stop_all(&running)?;
    let stopped = running.len();
    if let Some(anvil) = &testnet.anvil
        && is_running(anvil.pid)
    {
        signal(anvil.pid, Signal::SIGTERM)?;
        eprintln!("  stopped anvil");
    }
    Ok(stopped)
}

fn signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let pid = i32::try_from(pid).context("process id out of range")?;
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(error) => bail!("cannot signal process {pid}: {error}"),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TestnetCommand {
    /// Create and start N nodes on 127.0.0.1 and wait until they are connected. On a testnet
    /// some of whose nodes still run, start the stopped ones and keep the others.
    Up {
        /// Number of nodes of a new testnet (an existing one keeps its nodes).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Length of a timeline epoch, in seconds.
        #[arg(long, default_value_t = 10)]
        epoch_seconds: u64,
        /// Start a local Ethereum node (anvil) and anchor the timeline in it.
        #[arg(long)]
        anvil: bool,
        /// How many of the nodes (the last ones) also rebuild releases as build verifiers
        /// (docs/verifiers.md; needs bubblewrap).
        #[arg(long, default_value_t = 0)]
        verifiers: usize,
    },
    /// Stop (if it runs) and start one node again, with the same addresses and data.
    Restart {
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// The node (node-0, node-1, ...).
        #[arg(long)]
        node: String,
    },
    /// Show each node's state (exit status 1 if a node is stopped).
    Status {
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Print the nodes' states as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the end of the nodes' logs.
    Logs {
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Only this node (node-0, node-1, ...).
        #[arg(long)]
        node: Option<String>,
        /// Lines per node.
        #[arg(long, default_value_t = 40)]
        lines: usize,
    },
    /// Stop every node (their data stays).
    Down {
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// Bring up a 4-node testnet and run the whole release story on it.
    Demo {
        /// Directory for the demo (must not hold a running testnet). Default: a new temporary
        /// directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Leave the testnet running afterwards.
        #[arg(long)]
        keep: bool,
    },
}

/// `chainiac testnet ...`.
pub(crate) fn testnet(command: TestnetCommand) -> anyhow::Result<()> {
    match command {
        TestnetCommand::Up {
            nodes,
            dir,
            epoch_seconds,
            anvil,
            verifiers,
        } => {
            eprintln!("starting the testnet in {}", dir.display());
            let net = up(
                &dir,
                TestnetShape {
                    nodes,
                    epoch_seconds,
                    anvil,
                    verifiers,
                },
            )?;
            println!("testnet of {} nodes is up and connected", net.nodes.len());
            for node in &net.nodes {
                println!("  {}  api http://{}  p2p {}", node.name, node.api, node.p2p);
            }
            println!("roster file: {}", net.roster.display());
            println!(
                "API token:   {} (export CHAINIAC_API_TOKEN_FILE={} for the commands that write)",
                Testnet::token_file(&dir).display(),
                Testnet::token_file(&dir).display()
            );
            if let Some(timeline) = &net.timeline {
                println!("timeline:    {timeline}");
            }
            if let Some(anvil) = &net.anvil {
                println!(
                    "anvil:       {} (anchoring on; `chainiac anchor list --node {}`)",
                    anvil.url, net.nodes[0].api
                );
            }
            println!(
                "try: chainiac project create hello --dir my-project --roster {} --node {} --api-token {}",
                net.roster.display(),
                net.nodes[0].api,
                Testnet::token_file(&dir).display()
            );
            Ok(())
        }
        TestnetCommand::Status { dir, json } => status(&dir, json),
        TestnetCommand::Restart { dir, node } => {
            restart(&dir, &node)?;
            println!("{node} restarted and connected");
            Ok(())
        }
        TestnetCommand::Logs { dir, node, lines } => logs(&dir, node.as_deref(), lines),
        TestnetCommand::Down { dir } => {
            let stopped = down(&dir)?;
            println!("stopped {stopped} node(s); data kept in {}", dir.display());
            Ok(())
        }
        TestnetCommand::Demo { dir, keep } => {
            let dir = match dir {
                Some(dir) => dir,
                None => {
                    let base =
                        std::env::temp_dir().join(format!("chainiac-demo-{}", std::process::id()));
                    std::fs::create_dir_all(&base)?;
                    base
                }
            };
            super::demo::run(&dir, keep)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_is_the_last_lines_or_says_why_it_is_missing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("node.log");
        std::fs::write(&log, "one\ntwo\nthree\n")?;
        assert_eq!(log_tail(&log, 2), "two\nthree");
        assert_eq!(log_tail(&log, 10), "one\ntwo\nthree");
        let missing = log_tail(&dir.path().join("gone.log"), 2);
        assert!(missing.starts_with("(cannot read it"), "{missing}");
        Ok(())
    }
}
