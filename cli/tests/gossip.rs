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

/// One network of node processes at a time: the tests' timing bounds assume the machine's cores
/// are theirs.
static ONE_NETWORK_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_network_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `n` nodes; a chain created on node 0 with nodes 0–3 as witnesses; 10 blocks appended on
/// node 0, each of which must reach every node within [`REACH`]; then node `n-1` is killed,
/// 5 blocks are appended, and it must be current within [`REACH`] of its restart.
fn every_node_holds_every_block(n: usize) -> TestResult {
    let _alone = one_network_at_a_time();
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

/// Light clients in this process, each connected to three of the nodes.
const CLIENTS: usize = 100;
/// How long a block may take to reach every light client (a client outside its nodes' gossip
/// meshes hears of a block at the next heartbeat, a second later).
const CLIENT_REACH: Duration = Duration::from_secs(5);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

/// When each client first heard of each block: `heard[index][client]`.
#[derive(Default)]
struct Heard {
    at: std::sync::Mutex<std::collections::HashMap<u64, Vec<Option<std::time::Instant>>>>,
    changed: std::sync::Condvar,
}

impl Heard {
    fn record(&self, index: u64, client: usize) {
        let mut at = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slots = at.entry(index).or_insert_with(|| vec![None; CLIENTS]);
        if slots[client].is_none() {
            slots[client] = Some(std::time::Instant::now());
            self.changed.notify_all();
        }
    }

    /// Waits until every client heard of block `index` (or a later one), at most `patience`;
    /// returns when each did, if it did.
    fn wait(&self, index: u64, patience: Duration) -> Vec<Option<std::time::Instant>> {
        let deadline = std::time::Instant::now() + patience;
        let mut at = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            let heard: Vec<Option<std::time::Instant>> = (0..CLIENTS)
                .map(|client| {
                    at.iter()
                        .filter(|(i, _)| **i >= index)
                        .filter_map(|(_, slots)| slots[client])
                        .min()
                })
                .collect();
            let now = std::time::Instant::now();
            if heard.iter().all(Option::is_some) || now >= deadline {
                return heard;
            }
            at = self
                .changed
                .wait_timeout(at, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}

/// 24 node processes and 100 light clients (`chainiac_client::Connection`, each with its own
/// libp2p identity, connected to three nodes): every block appended on node 0 must reach every
/// node within [`REACH`], and at least 99 % of the (client, block) pairs within
/// [`CLIENT_REACH`] (a client outside its nodes' gossip meshes depends on their random IHAVE
/// announcements; a later block supersedes a missed one). Prints the p50, p95 and max arrival
/// for both and the nodes' memory (docs/benchmarks.md, "Scale").
#[test]
fn light_clients_hear_of_every_block_by_gossip() -> TestResult {
    let _alone = one_network_at_a_time();
    let n = 24;
    let network = ProcessNetwork::start(binary(), n, 5, n - 1)?;
    let addresses: Vec<libp2p::Multiaddr> = network
        .addresses()?
        .iter()
        .map(|address| address.parse())
        .collect::<Result<_, _>>()?;
    let everyone: Vec<usize> = (0..n).collect();
    let chain = network.nodes[0].create_chain(&network.roster(0..4)?)?;
    network.wait_block(&everyone, &chain.id, 0, POLL, REACH)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let heard = std::sync::Arc::new(Heard::default());
    let chain_id = chain.id;
    runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), async {
                for client in 0..CLIENTS {
                    let peers: Vec<libp2p::Multiaddr> = (0..3)
                        .map(|k| addresses[(client * 3 + k) % n].clone())
                        .collect();
                    let mut connection =
                        chainiac_client::Connection::open(&peers, Duration::from_secs(30)).await?;
                    let heard = heard.clone();
                    tokio::spawn(async move {
                        while let Some(head) = connection.next_gossip(&[chain_id]).await {
                            heard.record(head.index, client);
                        }
                    });
                }
                Ok::<_, Box<dyn std::error::Error>>(())
            })
            .await
        })
        .map_err(|_| "100 light clients could not connect within 120 s")??;

    // Warm-up: blocks until every client has heard of one (the gossip subscriptions are known).
    let mut warmed = false;
    for _ in 0..10 {
        let index = network.nodes[0].append(&chain, b"warm-up")?;
        network.wait_block(&everyone, &chain.id, index, POLL, REACH)?;
        if heard
            .wait(index, Duration::from_secs(3))
            .iter()
            .all(Option::is_some)
        {
            warmed = true;
            break;
        }
    }
    if !warmed {
        return Err("some light clients heard of none of 10 warm-up blocks".into());
    }

    let (mut nodes, mut clients, mut missed) = (Vec::new(), Vec::new(), 0);
    for i in 1..=10u64 {
        let index = network.nodes[0].append(&chain, &i.to_le_bytes())?;
        let answered = std::time::Instant::now();
        nodes.extend(network.wait_block(&everyone[1..], &chain.id, index, POLL, REACH)?);
        for at in heard.wait(index, CLIENT_REACH) {
            match at {
                Some(at) => clients.push(at.saturating_duration_since(answered)),
                None => missed += 1,
            }
        }
    }
    if missed * 100 > 10 * CLIENTS {
        return Err(format!(
            "{missed} of {} (client, block) pairs missed their block for {} ms",
            10 * CLIENTS,
            CLIENT_REACH.as_millis()
        )
        .into());
    }
    nodes.sort_unstable();
    clients.sort_unstable();
    let rss: Vec<u64> = network.nodes.iter().filter_map(|n| n.rss_kib()).collect();
    eprintln!(
        "{n} nodes: p50 {} ms, p95 {} ms, max {} ms (polled every {} ms); {CLIENTS} light clients: p50 {} ms, p95 {} ms, max {} ms, {missed} missed; node RSS {} MiB on average",
        percentile(&nodes, 0.5).as_millis(),
        percentile(&nodes, 0.95).as_millis(),
        nodes.last().copied().unwrap_or_default().as_millis(),
        POLL.as_millis(),
        percentile(&clients, 0.5).as_millis(),
        percentile(&clients, 0.95).as_millis(),
        clients.last().copied().unwrap_or_default().as_millis(),
        rss.iter().sum::<u64>() / rss.len().max(1) as u64 / 1024,
    );
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// How long a block may take to reach every node when every link takes 50 ms.
const REACH_WITH_LATENCY: Duration = Duration::from_secs(5);

/// 24 node processes, each in its own network namespace made by the test, every packet between
/// two nodes delayed 50 ms (`tc netem`): a chain witnessed by four of them, 10 blocks, each
/// must reach every node within [`REACH_WITH_LATENCY`]. Prints p50, p95 and max arrival.
/// Skips, saying why, where the machine cannot make namespaces or delays (not root, no netem in
/// the kernel). `CHAINIAC_LINK_DELAY_MS=0` runs it in namespaces without delay.
#[test]
fn twenty_four_nodes_with_fifty_milliseconds_per_link() -> TestResult {
    let delay_ms: u64 = std::env::var("CHAINIAC_LINK_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(50);
    let delay = (delay_ms > 0).then(|| Duration::from_millis(delay_ms));
    let n = 24;
    let _alone = one_network_at_a_time();
    let namespaces = match chainiac_tests::netns::Namespaces::create(n, delay)? {
        Ok(namespaces) => namespaces,
        Err(reason) => {
            eprintln!(
                "SKIPPED twenty_four_nodes_with_fifty_milliseconds_per_link: this machine cannot delay links between network namespaces: {reason}"
            );
            return Ok(());
        }
    };
    let network = ProcessNetwork::start_placed(binary(), n, 5, n - 1, |i, node| {
        node.place(namespaces.address(i), namespaces.exec_prefix(i));
    })?;
    let everyone: Vec<usize> = (0..n).collect();
    let chain = network.nodes[0].create_chain(&network.roster(0..4)?)?;
    network.wait_block(&everyone, &chain.id, 0, POLL, REACH_WITH_LATENCY)?;
    let mut arrivals = Vec::new();
    for i in 1..=10u64 {
        let index = network.nodes[0].append(&chain, &i.to_le_bytes())?;
        arrivals.extend(network.wait_block(
            &everyone[1..],
            &chain.id,
            index,
            POLL,
            REACH_WITH_LATENCY,
        )?);
    }
    arrivals.sort_unstable();
    eprintln!(
        "{n} nodes, {delay_ms} ms per link: p50 {} ms, p95 {} ms, max {} ms (polled every {} ms)",
        percentile(&arrivals, 0.5).as_millis(),
        percentile(&arrivals, 0.95).as_millis(),
        arrivals.last().copied().unwrap_or_default().as_millis(),
        POLL.as_millis()
    );
    drop(network);
    drop(namespaces);
    Ok(())
}
