//! Real `chainiac node run` processes on 127.0.0.1: a node killed with SIGKILL during a stream
//! of appends restarts with a consistent store and catches up; SIGTERM stops a node cleanly.

use std::path::Path;
use std::process::Command;

use chainiac_tests::process::NodeProcess;
use serde_json::Value;

mod support;
use support::{TestResult, http, wait_for};

fn init(dir: &Path) -> TestResult<NodeProcess> {
    NodeProcess::init(Path::new(env!("CARGO_BIN_EXE_chainiac")), dir)
}

#[test]
fn a_node_killed_during_appends_restarts_consistent_and_catches_up() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut nodes = (0..4)
        .map(|i| init(&dir.path().join(format!("n{i}"))))
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
        .map(NodeProcess::public)
        .collect::<Result<_, _>>()?;
    let data = nodes[0].create_chain(&roster)?;
    let chain = data.id;
    wait_for("every node has the genesis", || {
        nodes.iter().all(|n| n.head(&chain).is_some())
    })?;

    for i in 1..=30u64 {
        if i == 12 {
            nodes[3].kill()?;
        }
        nodes[0].append(&data, &i.to_le_bytes())?;
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
    let mut node = init(&dir.path().join("n"))?;
    node.start(&[])?;
    let roster = vec![node.public()?];
    node.create_chain(&roster)?;
    let output = Command::new(env!("CARGO_BIN_EXE_chainiac"))
        .args(["node", "status", "--config"])
        .arg(node.dir.join("config.toml"))
        .args(["--api", &node.api.to_string()])
        .output()?;
    let text = String::from_utf8(output.stdout)?;
    assert!(output.status.success(), "{text}");
    assert!(text.contains("chains      1"), "{text}");
    assert!(text.contains("head #0"), "{text}");
    let output = Command::new(env!("CARGO_BIN_EXE_chainiac"))
        .args(["node", "status", "--json", "--config"])
        .arg(node.dir.join("config.toml"))
        .args(["--api", &node.api.to_string()])
        .output()?;
    assert!(output.status.success());
    let status: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(
        status["chains"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
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
