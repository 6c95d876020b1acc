//! Real `chainiac node run` processes on 127.0.0.1, for tests and benchmarks where separate
//! processes are the point (gossip across dozens of nodes, SIGKILL and restarts). The caller
//! gives the path of the `chainiac` binary (`env!("CARGO_BIN_EXE_chainiac")` in the CLI crate's
//! tests and benchmarks).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use chainiac_protocol::Hash;

use crate::{DataChain, PATIENCE, TestResult, http, wait_for_blocking};

pub use chainiac_node::runtime::BYZANTINE_AGREEMENT_VARIABLE;

/// A free TCP port on loopback (bound then released: another process may take it meanwhile,
/// which a test run alone on a machine does not meet).
pub fn free_port() -> TestResult<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One node process.
pub struct NodeProcess {
    binary: PathBuf,
    /// Its directory (config, key, data).
    pub dir: PathBuf,
    /// Its HTTP API address.
    pub api: SocketAddr,
    p2p: u16,
    /// The address it listens on (loopback unless placed in a namespace).
    host: std::net::IpAddr,
    /// A command that runs it elsewhere (`ip netns exec NAME`), if any.
    prefix: Vec<String>,
    child: Option<Child>,
    /// Extra settings for `config.toml`'s `[network]` table, as TOML lines.
    network: Vec<String>,
    /// Extra environment variables of the process.
    env: Vec<(String, String)>,
}

impl NodeProcess {
    /// Creates a node in `dir` with `chainiac node init` (not started).
    pub fn init(binary: &Path, dir: &Path) -> TestResult<Self> {
        let status = Command::new(binary)
            .args(["node", "init", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("node init failed in {}", dir.display()).into());
        }
        Ok(Self {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            api: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            p2p: free_port()?,
            host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            prefix: Vec::new(),
            child: None,
            network: Vec::new(),
            env: Vec::new(),
        })
    }

    /// Runs it on `host` (its p2p and API address) through `prefix` (for instance
    /// [`crate::netns::Namespaces::exec_prefix`]), from its next start.
    pub fn place(&mut self, host: std::net::Ipv4Addr, prefix: Vec<String>) {
        self.host = std::net::IpAddr::V4(host);
        self.api = SocketAddr::new(self.host, self.api.port());
        self.prefix = prefix;
    }

    /// Sets an environment variable of the process (from its next start).
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Sets the anti-entropy period (written to the configuration before each start).
    pub fn anti_entropy_seconds(&mut self, seconds: u64) {
        self.network
            .push(format!("anti_entropy_seconds = {seconds}"));
    }

    fn configure(&self) -> TestResult {
        if self.network.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("config.toml");
        let text = std::fs::read_to_string(&path)?;
        let mut lines: Vec<String> = text
            .lines()
            .filter(|line| {
                !self
                    .network
                    .iter()
                    .any(|setting| setting.split('=').next() == line.split('=').next())
            })
            .map(str::to_owned)
            .collect();
        let at = lines
            .iter()
            .position(|line| line.trim() == "[network]")
            .ok_or("no [network] table")?;
        for setting in &self.network {
            lines.insert(at + 1, setting.clone());
        }
        std::fs::write(&path, lines.join("\n") + "\n")?;
        Ok(())
    }

    /// Starts it, bootstrapping from `bootstrap` (full multiaddresses), and waits until its API
    /// answers.
    pub fn start(&mut self, bootstrap: &[String]) -> TestResult {
        self.configure()?;
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .args(["node", "run", "--config"])
            .arg(self.dir.join("config.toml"))
            .args(["--listen", &format!("/ip4/{}/tcp/{}", self.host, self.p2p)])
            .args(["--api", &self.api.to_string()])
            .env("CHAINIAC_LOG", "warn")
            .env_remove("CHAINIAC_BOOTSTRAP")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !bootstrap.is_empty() {
            command.args(["--bootstrap", &bootstrap.join(",")]);
        }
        self.child = Some(command.spawn()?);
        wait_for_blocking("the API answers", || {
            http(self.api, "GET", "/status", None).is_ok_and(|(s, _)| s == 200)
        })
    }

    /// Its full libp2p address (with its peer id).
    pub fn address(&self) -> TestResult<String> {
        let (_, status) = http(self.api, "GET", "/status", None)?;
        let peer = status["peer_id"].as_str().ok_or("no peer id")?;
        Ok(format!("/ip4/{}/tcp/{}/p2p/{peer}", self.host, self.p2p))
    }

    /// Its API token (writes need it).
    pub fn token(&self) -> TestResult<chainiac_api::ApiToken> {
        Ok(chainiac_api::ApiToken::load(&self.dir.join("api.token"))?)
    }

    /// Its roster entry (`node.pub.json`).
    pub fn public(&self) -> TestResult<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            self.dir.join("node.pub.json"),
        )?)?)
    }

    /// How many peers it is connected to, if it answers.
    pub fn peers(&self) -> Option<usize> {
        http(self.api, "GET", "/status", None)
            .ok()
            .and_then(|(_, s)| s["peers"].as_array().map(Vec::len))
    }

    /// The index of its head of `chain`, if it holds the chain.
    pub fn head(&self, chain: &Hash) -> Option<u64> {
        http(self.api, "GET", &format!("/chains/{chain}"), None)
            .ok()
            .and_then(|(s, v)| if s == 200 { v["index"].as_u64() } else { None })
    }

    /// A counter of its metrics (the sum over its labels), if it answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body =
            chainiac_api::http::call(self.api, "GET", "/metrics", "text/plain", b"", None).ok()?;
        let text = String::from_utf8(body).ok()?;
        Some(
            text.lines()
                .filter(|line| {
                    line.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Creates a data chain led by this node with `roster` (owned by a fresh key).
    pub fn create_chain(&self, roster: &[Value]) -> TestResult<DataChain> {
        DataChain::create_over_http(self.api, &self.token()?, &Value::Array(roster.to_vec()))
    }

    /// Appends a block carrying `data` to `chain`, led by this node; returns its index.
    pub fn append(&self, chain: &DataChain, data: &[u8]) -> TestResult<u64> {
        let (status, body) = chain.append_over_http(self.api, &self.token()?, data)?;
        if status != 200 {
            return Err(format!("append refused: {body}").into());
        }
        Ok(body["index"].as_u64().ok_or("index")?)
    }

    /// Stops it with SIGKILL.
    pub fn kill(&mut self) -> TestResult {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops it with SIGTERM and returns its exit code.
    pub fn terminate(&mut self) -> TestResult<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        Err("node did not stop on SIGTERM".into())
    }

    /// The resident memory of the process, in KiB (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A network of node processes on loopback, every node bootstrapping from every node started
/// before it (so that, with discovery, each is connected to all others, as `chainiac testnet`
/// does).
pub struct ProcessNetwork {
    /// The nodes (stopped before their directory goes).
    pub nodes: Vec<NodeProcess>,
    _dir: tempfile::TempDir,
}

impl ProcessNetwork {
    /// Creates and starts `n` nodes with the given anti-entropy period, and waits until each is
    /// connected to at least `min_peers` others.
    pub fn start(
        binary: &Path,
        n: usize,
        anti_entropy_seconds: u64,
        min_peers: usize,
    ) -> TestResult<Self> {
        Self::start_placed(binary, n, anti_entropy_seconds, min_peers, |_, _| {})
    }

    /// [`ProcessNetwork::start`], with `place` called on each node before it starts (to put
    /// it in a namespace: [`NodeProcess::place`]).
    pub fn start_placed(
        binary: &Path,
        n: usize,
        anti_entropy_seconds: u64,
        min_peers: usize,
        place: impl Fn(usize, &mut NodeProcess),
    ) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let mut nodes = Vec::with_capacity(n);
        let mut addresses = Vec::new();
        for i in 0..n {
            let mut node = NodeProcess::init(binary, &dir.path().join(format!("n{i}")))?;
            node.anti_entropy_seconds(anti_entropy_seconds);
            place(i, &mut node);
            node.start(&addresses)?;
            addresses.push(node.address()?);
            nodes.push(node);
        }
        let network = Self { nodes, _dir: dir };
        network.wait_peers(min_peers)?;
        Ok(network)
    }

    /// Waits until every running node has at least `min_peers` peers.
    pub fn wait_peers(&self, min_peers: usize) -> TestResult {
        wait_for_blocking(&format!("every node has {min_peers} peers"), || {
            self.nodes
                .iter()
                .filter(|n| n.child.is_some())
                .all(|n| n.peers().is_some_and(|p| p >= min_peers))
        })
    }

    /// The full addresses of the running nodes.
    pub fn addresses(&self) -> TestResult<Vec<String>> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(NodeProcess::address)
            .collect()
    }

    /// The roster entries of nodes `members`.
    pub fn roster(&self, members: std::ops::Range<usize>) -> TestResult<Vec<Value>> {
        self.nodes[members]
            .iter()
            .map(NodeProcess::public)
            .collect()
    }

    /// Waits until every node in `nodes` holds block `index` of `chain`, polling every `poll`;
    /// returns, per node, how long after the call it first reported it.
    pub fn wait_block(
        &self,
        nodes: &[usize],
        chain: &Hash,
        index: u64,
        poll: Duration,
        patience: Duration,
    ) -> TestResult<Vec<Duration>> {
        let started = Instant::now();
        let mut reached: Vec<Option<Duration>> = vec![None; nodes.len()];
        while reached.iter().any(Option::is_none) {
            if started.elapsed() > patience {
                let missing: Vec<usize> = nodes
                    .iter()
                    .zip(&reached)
                    .filter(|(_, r)| r.is_none())
                    .map(|(n, _)| *n)
                    .collect();
                return Err(format!(
                    "block {index} did not reach nodes {missing:?} within {} ms",
                    patience.as_millis()
                )
                .into());
            }
            for (slot, &node) in reached.iter_mut().zip(nodes) {
                if slot.is_none() && self.nodes[node].head(chain).is_some_and(|h| h >= index) {
                    *slot = Some(started.elapsed());
                }
            }
            std::thread::sleep(poll);
        }
        Ok(reached.into_iter().flatten().collect())
    }
}
