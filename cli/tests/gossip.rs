//! Gossip at the size it is for: dozens of real `chainiac node run` processes on 127.0.0.1, every
//! node connected to every other (as a local testnet is). A chain created on one node, witnessed
//! by four, must reach every node with each of its blocks within 3 s; a node stopped while
//! blocks are appended must be current within 3 s of its restart.
//!
//! Before the fix, gossip stopped reaching most nodes of a testnet of 16 nodes or more: every
//! peer on 127.0.0.1 counted against gossipsub's IP-colocation limit, which put every peer of
//! every node below the graylist threshold (docs/benchmarks.md, "Gossip").

use std::path::Path;
use std::time::Duration;

use chainiac_tests::TestResult;
use chainiac_tests::process::ProcessNetwork;

/// How long a block may take to reach every node.
const REACH: Duration = Duration::from_secs(3);
/// How often each node's head is read.
const POLL: Duration = Duration::from_millis(25);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chainiac"))
}

/// `n` nodes; a chain created on node 0 with nodes 0–3 as witnesses; 10 blocks appended on
/// node 0, each of which must reach every node within [`REACH`]; then node `n-1` is killed,
/// 5 blocks are appended, and it must be current within [`REACH`] of its restart.
fn every_node_holds_every_block(n: usize) -> TestResult {
    let mut network = ProcessNetwork::start(binary(), n, 5, n - 1)?;
    let everyone: Vec<usize> = (0..n).collect();
    let roster = network.roster(0..4)?;
    let chain = network.nodes[0].create_chain(&roster)?;
    let genesis = network.wait_block(&everyone, &chain.id, 0, POLL, REACH)?;
    let mut slowest = genesis.iter().max().copied().unwrap_or_default();
    for i in 1..=10u64 {
        let index = network.nodes[0].append(&chain, &i.to_le_bytes())?;
        let reached = network.wait_block(&everyone, &chain.id, index, POLL, REACH)?;
        slowest = slowest.max(reached.iter().max().copied().unwrap_or_default());
    }
    eprintln!(
        "{n} nodes: the genesis and 10 blocks each reached every node within {} ms",
        slowest.as_millis()
    );

    let last = n - 1;
    network.nodes[last].kill()?;
    let running: Vec<usize> = (0..last).collect();
    let mut head = 10;
    for i in 11..=15u64 {
        head = network.nodes[0].append(&chain, &i.to_le_bytes())?;
        network.wait_block(&running, &chain.id, head, POLL, REACH)?;
    }
    let bootstrap = network.addresses()?;
    network.nodes[last].start(&bootstrap)?;
    let caught_up = network.wait_block(&[last], &chain.id, head, POLL, REACH)?;
    eprintln!(
        "{n} nodes: the restarted node was current {} ms after its API answered",
        caught_up[0].as_millis()
    );
    Ok(())
}

#[test]
fn twelve_nodes_receive_every_block_and_a_restarted_node_catches_up() -> TestResult {
    every_node_holds_every_block(12)
}

/// The size where gossip failed before (15 to 17 of 24 nodes never learned a new chain). Run it
/// with `cargo test --workspace -- --ignored twenty_four_nodes`.
#[test]
#[ignore = "24 node processes: run by hand (about a minute on 2 cores)"]
fn twenty_four_nodes_receive_every_block_and_a_restarted_node_catches_up() -> TestResult {
    every_node_holds_every_block(24)
}
