//! Real `chainiac node run` processes on 127.0.0.1: a node killed with SIGKILL during a stream
//! of appends restarts with a consistent store and catches up; SIGTERM stops a node cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::{PATIENCE, TestResult, http, wait_for};

fn free_port() -> Result<u16, Box<dyn std::error::Error>> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Process {
    dir: PathBuf,
    api: SocketAddr,
    p2p: u16,
    child: Option<Child>,
}

impl Process {
    fn init(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let status = Command::new(env!("CARGO_BIN_EXE_chainiac"))
            .args(["node", "init", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .status()?;
        assert!(status.success(), "node init failed");
        Ok(Self {
            dir: dir.to_path_buf(),
            api: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            p2p: free_port()?,
            child: None,
        })
    }

    fn start(&mut self, bootstrap: &[String]) -> TestResult {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chainiac"));
        command
            .args(["node", "run", "--config"])
            .arg(self.dir.join("config.toml"))
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{}", self.p2p)])
            .args(["--api", &self.api.to_string()])
            .env("CHAINIAC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !bootstrap.is_empty() {
            command.args(["--bootstrap", &bootstrap.join(",")]);
        }
        self.child = Some(command.spawn()?);
        wait_for("the API answers", || {
            http(self.api, "GET", "/status", None).is_ok_and(|(s, _)| s == 200)
        })
    }

    fn address(&self) -> Result<String, Box<dyn std::error::Error>> {
        let (_, status) = http(self.api, "GET", "/status", None)?;
        let peer = status["peer_id"].as_str().ok_or("no peer id")?;
        Ok(format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", self.p2p))
    }

    fn public(&self) -> Result<Value, Box<dyn std::error::Error>> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            self.dir.join("node.pub.json"),
        )?)?)
    }

    fn head(&self, chain: &str) -> Option<u64> {
        http(self.api, "GET", &format!("/chains/{chain}"), None)
            .ok()
            .and_then(|(s, v)| if s == 200 { v["index"].as_u64() } else { None })
    }

    fn kill(&mut self) -> TestResult {
        if let Some(mut child) = self.child.take() {
            child.kill()?; // SIGKILL
            child.wait()?;
        }
        Ok(())
    }

    fn terminate(&mut self) -> Result<Option<i32>, Box<dyn std::error::Error>> {
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
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[test]
fn a_node_killed_during_appends_restarts_consistent_and_catches_up() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut nodes = (0..4)
        .map(|i| Process::init(&dir.path().join(format!("n{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    nodes[0].start(&[])?;
    let first = nodes[0].address()?;
    for node in nodes.iter_mut().skip(1) {
        node.start(std::slice::from_ref(&first))?;
    }
    wait_for("all nodes see 3 peers", || {
        nodes.iter().all(|n| {
            http(n.api, "GET", "/status", None)
                .is_ok_and(|(_, s)| s["peers"].as_array().is_some_and(|p| p.len() >= 3))
        })
    })?;
    let roster: Vec<Value> = nodes
        .iter()
        .map(Process::public)
        .collect::<Result<_, _>>()?;
    let (status, created) = http(
        nodes[0].api,
        "POST",
        "/chains",
        Some(&json!({ "roster": roster })),
    )?;
    assert_eq!(status, 200, "{created}");
    let chain = created["chain_id"].as_str().ok_or("chain id")?.to_owned();
    wait_for("every node has the genesis", || {
        nodes.iter().all(|n| n.head(&chain).is_some())
    })?;

    for i in 1..=30u64 {
        if i == 12 {
            nodes[3].kill()?;
        }
        let (status, body) = http(
            nodes[0].api,
            "POST",
            &format!("/chains/{chain}/blocks"),
            Some(&json!({ "payload": hex::encode(i.to_le_bytes()) })),
        )?;
        assert_eq!(status, 200, "append {i}: {body}");
    }
    nodes[3].start(std::slice::from_ref(&first))?;
    wait_for("the killed node catches up", || {
        nodes[3].head(&chain) == Some(30)
    })?;
    for index in 0..=30 {
        let (_, reference) = http(
            nodes[0].api,
            "GET",
            &format!("/chains/{chain}/blocks/{index}"),
            None,
        )?;
        let (_, restarted) = http(
            nodes[3].api,
            "GET",
            &format!("/chains/{chain}/blocks/{index}"),
            None,
        )?;
        assert_eq!(reference["hash"], restarted["hash"], "block {index}");
    }
    // A clean stop: SIGTERM, exit status 0, and the store reopens.
    assert_eq!(nodes[3].terminate()?, Some(0));
    nodes[3].start(std::slice::from_ref(&first))?;
    assert_eq!(nodes[3].head(&chain), Some(30));
    Ok(())
}

#[test]
fn node_status_prints_peers_chains_and_heads() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut node = Process::init(&dir.path().join("n"))?;
    node.start(&[])?;
    let roster = vec![node.public()?];
    let (status, _) = http(
        node.api,
        "POST",
        "/chains",
        Some(&json!({ "roster": roster })),
    )?;
    assert_eq!(status, 200);
    let output = Command::new(env!("CARGO_BIN_EXE_chainiac"))
        .args(["node", "status", "--config"])
        .arg(node.dir.join("config.toml"))
        .args(["--api", &node.api.to_string()])
        .output()?;
    let text = String::from_utf8(output.stdout)?;
    assert!(output.status.success(), "{text}");
    assert!(text.contains("chains      1"), "{text}");
    assert!(text.contains("head #0"), "{text}");
    // A stopped node: a clear error.
    node.kill()?;
    let output = Command::new(env!("CARGO_BIN_EXE_chainiac"))
        .args(["node", "status", "--config"])
        .arg(node.dir.join("config.toml"))
        .args(["--api", &node.api.to_string()])
        .output()?;
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr)?.contains("is the node running?"));
    Ok(())
}
