//! Agreement under crashes, with real `chainiac node run` processes on 127.0.0.1: seven nodes
//! form the roster of one chain; three publishers append to it at once through three different
//! nodes while, every few seconds for a minute, a node picked at random is killed with SIGKILL
//! and restarted (its agreement promises come back from its RocksDB store), and one member is
//! Byzantine throughout (it equivocates as a leader, votes for two blocks, and replays every
//! message it receives to the others). At the end every
//! node holds the same chain, no position is stuck (one more append through each publisher's
//! node is logged), and every append a node acknowledged is in the chain, exactly once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chainiac_tests::process::{BYZANTINE_AGREEMENT_VARIABLE, ProcessNetwork};
use chainiac_tests::{DataChain, PATIENCE, TestResult, http};

/// How long nodes are killed and restarted while the publishers append.
const CHAOS: Duration = Duration::from_secs(60);
const NODES: usize = 7;
const PUBLISHERS: usize = 3;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chainiac"))
}

/// The data of block `index` of `chain` on the node at `api`, with the block's hash.
fn block_at(
    api: std::net::SocketAddr,
    chain: &DataChain,
    index: u64,
) -> TestResult<(String, Vec<u8>)> {
    let (status, body) = http(
        api,
        "GET",
        &format!("/chains/{}/blocks/{index}", chain.id),
        None,
    )?;
    if status != 200 {
        return Err(format!("block {index}: status {status}: {body}").into());
    }
    let encoding = hex::decode(body["encoding"].as_str().ok_or("encoding")?)?;
    let block = <chainiac_protocol::skipchain::SkipBlock as chainiac_protocol::encoding::Decode>::from_bytes(&encoding)?;
    Ok((
        body["hash"].as_str().ok_or("hash")?.to_owned(),
        DataChain::data_of(&block),
    ))
}

/// A small deterministic generator (xorshift), so that a failing schedule can be rerun.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn seven_nodes_with_three_publishers_survive_kill_9_every_few_seconds() -> TestResult {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed_c4a0_5000_0007);
    eprintln!("chaos schedule seed {seed} (rerun with CHAOS_SEED={seed})");
    let mut network = ProcessNetwork::start(binary(), NODES, 2, NODES - 1)?;
    // The last node is a faulty roster member for the whole run (and is killed like any other).
    let byzantine = NODES - 1;
    network.nodes[byzantine].kill()?;
    network.nodes[byzantine].env(BYZANTINE_AGREEMENT_VARIABLE, "1");
    let others = network.addresses()?;
    network.nodes[byzantine].start(&others)?;
    network.wait_peers(NODES - 1)?;
    let roster = network.roster(0..NODES)?;
    let chain = Arc::new(network.nodes[0].create_chain(&roster)?);
    let everyone: Vec<usize> = (0..NODES).collect();
    network.wait_block(&everyone, &chain.id, 0, Duration::from_millis(50), PATIENCE)?;
    let apis: Vec<_> = network.nodes.iter().map(|node| node.api).collect();
    let tokens = network
        .nodes
        .iter()
        .map(|node| node.token())
        .collect::<TestResult<Vec<_>>>()?;

    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            let chain = chain.clone();
            let stop = stop.clone();
            let api = apis[publisher];
            let token = tokens[publisher].clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut refused = 0u32;
                let mut count = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    count += 1;
                    let data = format!("publisher {publisher} append {count}").into_bytes();
                    match chain.append_over_http(api, &token, &data) {
                        Ok((200, body)) => {
                            if let Some(index) = body["index"].as_u64() {
                                acknowledged.push((index, data));
                            }
                        }
                        // Refused (a lost position, a node restarting): sign again and retry.
                        _ => {
                            refused += 1;
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();

    let mut schedule = Schedule(seed | 1);
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(2000 + schedule.next(3000)));
        let victim = schedule.next(NODES as u64) as usize;
        network.nodes[victim].kill()?;
        kills += 1;
        std::thread::sleep(Duration::from_millis(500 + schedule.next(1500)));
        let others = network.addresses()?;
        network.nodes[victim].start(&others)?;
    }
    stop.store(true, Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for publisher in publishers {
        let (mine, lost) = publisher.join().map_err(|_| "publisher panicked")?;
        acknowledged.extend(mine);
        refused += lost;
    }
    eprintln!(
        "{kills} kills; {} appends acknowledged, {refused} refused or failed and retried",
        acknowledged.len()
    );
    assert!(kills >= 10, "only {kills} kills");
    assert!(
        acknowledged.len() >= 10,
        "only {} appends acknowledged",
        acknowledged.len()
    );

    // No position is stuck: one more append through each publisher's node is logged.
    network.wait_peers(NODES - 1)?;
    let mut last = 0;
    for publisher in 0..PUBLISHERS {
        let data = format!("publisher {publisher} after the chaos").into_bytes();
        let deadline = Instant::now() + PATIENCE;
        loop {
            match chain.append_over_http(apis[publisher], &tokens[publisher], &data) {
                Ok((200, body)) => {
                    let index = body["index"].as_u64().ok_or("index")?;
                    acknowledged.push((index, data));
                    last = last.max(index);
                    break;
                }
                outcome if Instant::now() > deadline => {
                    return Err(format!(
                        "publisher {publisher} cannot append after the chaos: {outcome:?}"
                    )
                    .into());
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    network.wait_block(
        &everyone,
        &chain.id,
        last,
        Duration::from_millis(50),
        PATIENCE,
    )?;

    // One chain everywhere, every acknowledged append in it exactly once.
    let mut seen = std::collections::HashSet::new();
    for index in 1..=last {
        let (hash, data) = block_at(apis[0], &chain, index)?;
        assert!(
            seen.insert(data.clone()),
            "block {index}: data logged twice"
        );
        for api in &apis[1..] {
            assert_eq!(
                block_at(*api, &chain, index)?.0,
                hash,
                "block {index} differs on {api}"
            );
        }
    }
    for (index, data) in &acknowledged {
        assert_eq!(
            &block_at(apis[0], &chain, *index)?.1,
            data,
            "acknowledged block {index}"
        );
    }
    Ok(())
}
