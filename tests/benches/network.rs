//! Nodes on loopback: in-process nodes in one tokio runtime, real libp2p on 127.0.0.1, RocksDB
//! in temp dirs.
//!
//! * `round_latency/{star,tree}/N`: one append with only a level-0 link (chains of max height
//!   1), that is one signing round, led by a node of an N-witness roster;
//! * `appends/4_nodes`: appends per second on a 4-node network (base 2, every forward link);
//! * `sync/10000_blocks`: a fresh node syncing 10,000 blocks from a peer.
//!
//! Run with `cargo bench --workspace --locked --bench network`. Each latency group also prints
//! the median and 90th percentile of the individual appends.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chainiac_node::config::{Identity, PublicIdentity};
use chainiac_node::node::NodeCore;
use chainiac_node::runtime::NodeOptions;
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, local_round};
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, LinkRequest, SkipBlock};
use chainiac_tests::{Cluster, DataChain};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts `n` nodes (the test kit's cluster, with the default 5-s round timeouts); `options(i)`
/// tunes node `i`.
async fn cluster(n: usize, options: impl Fn(usize, &mut NodeOptions)) -> Cluster {
    Cluster::start_with_options(n, &|i, node: &mut NodeOptions| {
        node.rounds.commit_timeout = Duration::from_secs(5);
        node.rounds.respond_timeout = Duration::from_secs(5);
        options(i, node);
    })
    .await
    .expect("cluster")
}

/// A chain witnessed by every node, created by node `leader`, known to all.
async fn chain(cluster: &Cluster, leader: usize, params: ChainParams) -> DataChain {
    let members = cluster
        .publics
        .iter()
        .map(PublicIdentity::roster_member)
        .collect();
    let chain = DataChain::create(&cluster.core(leader), members, params)
        .await
        .expect("chain");
    let chain_id = chain.id;
    // Gossip may miss a node whose mesh is still forming; it would sync at its first round
    // (as a witness that is behind), but the benchmark wants every node ready.
    let leader_peer = cluster.peer_id(leader).expect("leader");
    for i in 0..cluster.len() {
        let core = cluster.core(i);
        let known = |core: &NodeCore| core.store().head(&chain_id).ok().flatten().is_some();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !known(&core) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !known(&core) {
            let _ = core.sync_chain(leader_peer, chain_id).await;
        }
        wait_head(&core, &chain_id, 0).await;
    }
    chain
}

async fn wait_head(core: &NodeCore, chain_id: &Hash, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while core
        .store()
        .head(chain_id)
        .ok()
        .flatten()
        .is_none_or(|head| head.index < index)
    {
        assert!(Instant::now() < deadline, "block {index} never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(rank).copied().unwrap_or_default()
}

fn report(name: &str, samples: &Mutex<Vec<Duration>>) {
    let mut samples = samples.lock().expect("lock");
    if samples.is_empty() {
        return;
    }
    let median = percentile(&mut samples, 0.5);
    let p90 = percentile(&mut samples, 0.9);
    eprintln!(
        "{name}: {} appends, median {:.1} ms, p90 {:.1} ms",
        samples.len(),
        median.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );
    samples.clear();
}

/// Tree branching for an N-witness roster: about √N.
fn branching(n: usize) -> usize {
    match n {
        0..=8 => 2,
        9..=35 => 4,
        _ => 8,
    }
}

fn round_latency(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("round_latency");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    // CHAINIAC_BENCH_SIZES=4,16 restricts the roster sizes (starting 64 nodes takes a while).
    let sizes: Vec<usize> = std::env::var("CHAINIAC_BENCH_SIZES")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![4, 16, 64]);
    for n in sizes {
        // Node 0 leads star rounds, node 1 tree rounds; both chains have the whole roster.
        let cluster = rt.block_on(cluster(n, |i, options| {
            options.rounds.tree_branching = branching(n);
            options.rounds.tree_min_roster = if i == 1 { 0 } else { usize::MAX };
        }));
        let params = ChainParams::new(2, 1).expect("params");
        for (name, leader) in [("star", 0usize), ("tree", 1)] {
            let chain = rt.block_on(chain(&cluster, leader, params));
            let core = cluster.core(leader);
            let samples = Mutex::new(Vec::new());
            group.bench_function(format!("{name}/{n}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for i in 0..iters {
                            let start = Instant::now();
                            chain
                                .append(&core, i.to_le_bytes().to_vec())
                                .await
                                .expect("append");
                            let elapsed = start.elapsed();
                            samples.lock().expect("lock").push(elapsed);
                            total += elapsed;
                        }
                        total
                    })
                });
            });
            report(&format!("round_latency/{name}/{n}"), &samples);
            let tree_rounds = core.metrics().rounds_tree.get();
            let rounds = core.metrics().rounds_completed.get();
            eprintln!("round_latency/{name}/{n}: {tree_rounds} of {rounds} rounds along a tree");
        }
        rt.block_on(cluster.shutdown());
    }
    group.finish();
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let cluster = rt.block_on(cluster(4, |_, _| {}));
    let chain = rt.block_on(chain(&cluster, 0, ChainParams::new(2, 32).expect("params")));
    let core = cluster.core(0);
    let mut group = c.benchmark_group("appends");
    const BATCH: u64 = 20;
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(BATCH));
    group.bench_function("4_nodes_sequential_20", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters * BATCH {
                    chain
                        .append(&core, i.to_le_bytes().to_vec())
                        .await
                        .expect("append");
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    rt.block_on(cluster.shutdown());
}

/// `count` blocks appended to a chain witnessed by `identity` alone, signed locally and stored
/// straight into `core`'s store (no network rounds needed to build them).
fn fill(core: &NodeCore, identity: &Identity, count: u64) -> Hash {
    let roster =
        Roster::with_default_threshold(vec![identity.public().roster_member()]).expect("roster");
    let genesis = SkipBlock::genesis(
        ChainParams::new(2, 32).expect("params"),
        roster.clone(),
        b"sync".to_vec(),
    )
    .expect("genesis");
    let chain_id = genesis.chain_id();
    let mut rng = rand::rng();
    let certificate = LinkRequest::for_genesis(&genesis)
        .expect("genesis")
        .sign_locally(chain_id, &roster, &[identity.secret()], &mut rng)
        .expect("certificate");
    core.store()
        .create_chain(&genesis, &certificate)
        .expect("create");
    let mut previous = genesis;
    for _ in 0..count {
        let block = SkipBlock::successor(&previous, &roster, None, vec![7; 64], |index| {
            core.store()
                .block_at(&chain_id, index)
                .ok()
                .flatten()
                .map(|b| b.hash())
        })
        .expect("block");
        let links: Vec<ForwardLink> = core
            .store()
            .link_requests(&block)
            .expect("requests")
            .into_iter()
            .map(|request| ForwardLink {
                chain_id,
                from: request.from,
                to: request.to,
                level: request.level,
                signature: local_round(
                    &roster,
                    &[identity.secret()],
                    request.message.as_bytes(),
                    &[0],
                    &mut rng,
                )
                .expect("sign"),
            })
            .collect();
        core.store().append(&block, &links).expect("append");
        previous = block;
    }
    chain_id
}

const SYNC_BLOCKS: u64 = 10_000;

fn sync(c: &mut Criterion) {
    let rt = runtime();
    let mut source = rt.block_on(cluster(1, |_, _| {}));
    let identity = source.core(0).identity().clone();
    let built = Instant::now();
    let chain_id = fill(&source.core(0), &identity, SYNC_BLOCKS);
    eprintln!(
        "sync: built {SYNC_BLOCKS} blocks in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("sync");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(SYNC_BLOCKS));
    group.bench_function("fresh_node_10000_blocks", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let fresh = source
                        .add_node(source.len(), &|_, _| {})
                        .expect("fresh node");
                    let start = Instant::now();
                    source.start_node(fresh).await.expect("start");
                    wait_head(&source.core(fresh), &chain_id, SYNC_BLOCKS).await;
                    total += start.elapsed();
                    source.stop_node(fresh).await;
                    let _ = std::fs::remove_dir_all(source.data_dir(fresh));
                }
                total
            })
        });
    });
    group.finish();
    rt.block_on(source.shutdown());
}

criterion_group!(benches, round_latency, appends, sync);
criterion_main!(benches);
