//! Figures for docs/benchmarks.md ("Agreement"), not checks: ignored by default, run with
//! `cargo test --workspace --no-run` then the `latency` test binary with
//! `--ignored --nocapture` (`CHAINIAC_BENCH_SIZES=4,16` restricts the sizes).
//!
//! * the latency of one append to a chain of maximum height 1 (one level-0 link), led by node
//!   0 of an N-node roster (every node a witness), star rounds: median and 90th percentile;
//! * the time from stopping the node that leads view 0 of the next position to that position
//!   being logged, through another node (default view timing).

#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use chainiac_node::config::PublicIdentity;
use chainiac_node::runtime::NodeOptions;
use chainiac_protocol::Hash;
use chainiac_protocol::skipchain::ChainParams;
use chainiac_tests::{Cluster, DataChain, TestResult};

const APPENDS: usize = 20;

fn sizes() -> Vec<usize> {
    std::env::var("CHAINIAC_BENCH_SIZES")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![4, 16, 64])
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(rank).copied().unwrap_or_default()
}

async fn cluster(n: usize) -> TestResult<Cluster> {
    Cluster::start_with_options(n, &|_, options: &mut NodeOptions| {
        let defaults = chainiac_node::rounds::RoundConfig::default();
        options.rounds = chainiac_node::rounds::RoundConfig {
            tree_min_roster: usize::MAX,
            ..defaults
        };
    })
    .await
}

async fn chain(cluster: &Cluster) -> TestResult<DataChain> {
    let members = cluster
        .publics
        .iter()
        .map(PublicIdentity::roster_member)
        .collect();
    let chain = DataChain::create(&cluster.core(0), members, ChainParams::new(2, 1)?).await?;
    cluster.wait_everywhere(&chain.id, 0).await?;
    Ok(chain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for docs/benchmarks.md"]
async fn append_latency() -> TestResult {
    for n in sizes() {
        let cluster = cluster(n).await?;
        let chain = chain(&cluster).await?;
        let core = cluster.core(0);
        // Warm-up: connections, caches.
        for i in 0..3u64 {
            chain.append(&core, i.to_le_bytes()).await?;
        }
        let mut samples = Vec::new();
        for i in 0..APPENDS as u64 {
            let start = Instant::now();
            chain.append(&core, (100 + i).to_le_bytes()).await?;
            samples.push(start.elapsed());
        }
        let median = percentile(&mut samples, 0.5);
        let p90 = percentile(&mut samples, 0.9);
        eprintln!(
            "append latency, {n} nodes: {APPENDS} appends, median {:.1} ms, p90 {:.1} ms",
            median.as_secs_f64() * 1e3,
            p90.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The roster slot leading view 0 at (chain, index), as docs/protocol.md §9.5 defines it.
fn view_0_leader(chain_id: &Hash, index: u64, members: u32) -> usize {
    let seed = Hash::of(
        "chainiac v1 round leader",
        &[chain_id.as_bytes(), &index.to_le_bytes()],
    );
    let bytes = seed.as_bytes();
    (u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % members) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement for docs/benchmarks.md"]
async fn leader_crash_recovery() -> TestResult {
    for n in [4usize, 16] {
        let mut cluster = cluster(n).await?;
        let chain = chain(&cluster).await?;
        chain.append(&cluster.core(0), b"warm-up").await?;
        let roster = {
            let core = cluster.core(0);
            let store = core.store();
            store.roster_of(&store.block_at(&chain.id, 1)?.ok_or("block 1")?)?
        };
        let slot = view_0_leader(&chain.id, 2, u32::try_from(n)?);
        let leader = (0..n)
            .find(|&i| cluster.publics[i].key == roster.members()[slot].key)
            .ok_or("leader node")?;
        let publisher = (leader + 1) % n;
        cluster.stop_node(leader).await;
        let start = Instant::now();
        let head = chain
            .append(&cluster.core(publisher), b"after the crash")
            .await?;
        assert_eq!(head.index, 2);
        eprintln!(
            "leader crash, {n} nodes: block 2 logged {:.0} ms after its view-0 leader stopped",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
