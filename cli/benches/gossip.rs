//! How fast a new block reaches every node, and what gossip costs: N node processes on
//! 127.0.0.1 (N = 4, 12, 24, 32 by default; `CHAINIAC_BENCH_SIZES=4,12` to choose), every node
//! bootstrapping from every node started before it. A chain witnessed by nodes 0-3 is created on
//! node 0, then `BLOCKS` blocks are appended there one after the other; for each, the time from
//! the append's answer until each other node's API reports the block (polled every 10 ms, so
//! figures are ±10 ms), and the gossip bytes every node sent (gossipsub's own counter).
//!
//! Run with `cargo bench --workspace --bench gossip`. It prints one line per size: median,
//! p95 and max arrival, bytes sent per node per block, RSS per node.

#![allow(clippy::print_stderr, clippy::print_stdout)]

use std::path::Path;
use std::time::Duration;

use chainiac_tests::TestResult;
use chainiac_tests::process::ProcessNetwork;

const BLOCKS: u64 = 20;
const POLL: Duration = Duration::from_millis(10);
const SENT_BYTES: &str = "chainiac_gossipsub_topic_msg_sent_bytes_total";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

fn measure(n: usize) -> TestResult {
    let binary = Path::new(env!("CARGO_BIN_EXE_chainiac"));
    let network = ProcessNetwork::start(binary, n, 5, n - 1)?;
    let others: Vec<usize> = (1..n).collect();
    let chain = network.nodes[0].create_chain(&network.roster(0..4)?)?;
    network.wait_block(&others, &chain.id, 0, POLL, Duration::from_secs(30))?;
    let sent = |network: &ProcessNetwork| -> f64 {
        network
            .nodes
            .iter()
            .filter_map(|node| node.metric(SENT_BYTES))
            .sum()
    };
    let before = sent(&network);
    let mut arrivals = Vec::new();
    for i in 1..=BLOCKS {
        let index = network.nodes[0].append(&chain, &i.to_le_bytes())?;
        arrivals.extend(network.wait_block(
            &others,
            &chain.id,
            index,
            POLL,
            Duration::from_secs(30),
        )?);
    }
    // Let the last relays finish before reading the counters.
    std::thread::sleep(Duration::from_millis(500));
    let bytes_per_node_block = (sent(&network) - before) / (n as f64 * BLOCKS as f64);
    arrivals.sort_unstable();
    let rss: Vec<u64> = network.nodes.iter().filter_map(|n| n.rss_kib()).collect();
    let rss_mean = rss.iter().sum::<u64>() / rss.len().max(1) as u64;
    println!(
        "gossip/{n:>2} nodes: median {:>4} ms, p95 {:>4} ms, max {:>4} ms over {} arrivals; {:>6.0} gossip bytes sent per node per block; RSS {} MiB per node",
        percentile(&arrivals, 0.5).as_millis(),
        percentile(&arrivals, 0.95).as_millis(),
        arrivals.last().copied().unwrap_or_default().as_millis(),
        arrivals.len(),
        bytes_per_node_block,
        rss_mean / 1024,
    );
    Ok(())
}

fn main() -> TestResult {
    // `cargo bench` passes `--bench`; `cargo test` runs benches with other flags: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let sizes: Vec<usize> = std::env::var("CHAINIAC_BENCH_SIZES")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![4, 12, 24, 32]);
    for n in sizes {
        measure(n)?;
    }
    Ok(())
}
