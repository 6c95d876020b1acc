//! A network under a hostile peer's flood keeps logging releases: four honest nodes, a fifth
//! node run by the attacker (in no roster), and a publisher. While the attacker sends requests
//! carrying rosters of 9,000 members, 256 concurrent `Blocks` requests for a chain of 1 MB
//! blocks (each answer as large as the budget allows), garbage requests, and garbage gossip, the
//! publisher publishes 20 releases through the four nodes in turn. Every release is logged on
//! every node, `/status` keeps answering; the test prints its latency and the process's peak
//! memory (all five nodes run in this process) for docs/benchmarks.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chainiac_net::wire::{Request, Response};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember};
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::keys::SecretKey;
use chainiac_protocol::skipchain::{ChainParams, SkipBlock};
use chainiac_tests::{Cluster, Project, TestResult, wait_for};

const ATTACKER: usize = 4;
const RELEASES: u64 = 20;

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map_or(0, |kib| kib / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_from_a_hostile_peer_does_not_stop_releases() -> TestResult {
    let cluster = Cluster::start(5, &[]).await?;
    let honest = [0, 1, 2, 3];
    let roster = cluster.roster(&honest)?;
    let core = cluster.core(0);
    let mut project = Project::create(&core, "flooded", 2, 2, &roster).await?;
    // A chain of large blocks, so that every Blocks answer is as large as its budget.
    let bulk = cluster.create_chain(0).await?;
    for i in 0..30u8 {
        bulk.append(&core, vec![i; 1_000_000]).await?;
    }

    let heavy = {
        let members: Vec<RosterMember> = (0..9_000)
            .map(|_| RosterMember::from_secret(&SecretKey::generate(&mut rand::rng())))
            .collect();
        let block = SkipBlock::genesis(
            ChainParams::new(2, 8)?,
            Roster::with_default_threshold(members)?,
            b"heavy".to_vec(),
        )?;
        Request::Commit {
            round: Hash::default(),
            block: Box::new(block),
            level: 0,
        }
        .to_bytes()
    };
    let targets: Vec<_> = honest
        .iter()
        .map(|&i| cluster.peer_id(i))
        .collect::<TestResult<_>>()?;
    let attacker = cluster.core(ATTACKER).net().clone();
    let flooding = Arc::new(AtomicBool::new(true));
    // Stops the flood and the /status poller however the test ends (the runtime waits for the
    // poller's thread before a failure is reported).
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    let _stop = StopOnDrop(flooding.clone());
    let mut flood = Vec::new();
    // 256 concurrent maximal Blocks requests, renewed as they are answered.
    for n in 0..256usize {
        let (attacker, flooding, target) = (attacker.clone(), flooding.clone(), targets[n % 4]);
        let chain_id = bulk.id;
        flood.push(tokio::spawn(async move {
            let mut answered = 0u64;
            while flooding.load(Ordering::Relaxed) {
                let request = Request::Blocks {
                    chain_id,
                    from: 1,
                    count: 256,
                };
                // Undecoded: the measured memory is the nodes', not the attacker's.
                match attacker.request_undecoded(target, request.to_bytes()).await {
                    Ok(_) => answered += 1,
                    // A refused or failed request comes back at once: do not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            answered
        }));
    }
    // Rosters of 9,000 members, garbage requests and garbage gossip.
    for n in 0..8usize {
        let (attacker, flooding, target) = (attacker.clone(), flooding.clone(), targets[n % 4]);
        let heavy = heavy.clone();
        flood.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while flooding.load(Ordering::Relaxed) {
                let _ = attacker.request_raw(target, heavy.clone()).await;
                let garbage: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
                let _ = attacker.request_raw(target, garbage.clone()).await;
                attacker.publish_raw(garbage).await;
                sent += 3;
                tokio::task::yield_now().await;
            }
            sent
        }));
    }
    // /status answers throughout.
    let api = cluster.api(0)?;
    let status = {
        let flooding = flooding.clone();
        tokio::task::spawn_blocking(move || {
            let mut latencies = Vec::new();
            let mut failures = 0;
            while flooding.load(Ordering::Relaxed) {
                let started = Instant::now();
                match chainiac_tests::http(api, "GET", "/status", None) {
                    Ok((200, _)) => latencies.push(started.elapsed()),
                    _ => failures += 1,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (latencies, failures)
        })
    };
    let started = Instant::now();
    let mut retries = 0;
    for n in 0..RELEASES {
        // Each release through the next node, as publishers spread over nodes; a node that has
        // not yet received the previous release refuses (its sequence is not the next), and
        // the publisher tries the next node, as the CLI does.
        let mut attempt = 0;
        loop {
            let leader = cluster.core(honest[(n as usize + attempt) % 4]);
            match project
                .publish_next(&leader, &format!("1.0.{}", n + 1), None)
                .await
            {
                Ok(_) => break,
                Err(error) if attempt < 8 => {
                    eprintln!("flood: release {} not logged yet: {error}", n + 1);
                    attempt += 1;
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
    let publishing = started.elapsed();
    for &i in &honest {
        wait_for(&format!("node {i} logs every release"), || async {
            cluster
                .core(i)
                .store()
                .head(&project.release_chain)
                .ok()
                .flatten()
                .is_some_and(|h| h.index == RELEASES)
        })
        .await?;
    }
    flooding.store(false, Ordering::Relaxed);
    let mut attacks = 0;
    for task in flood {
        attacks += task.await?;
    }
    let (mut latencies, failures) = status.await?;
    assert_eq!(failures, 0, "/status answered every time");
    assert!(!latencies.is_empty());
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    let peak = peak_rss_mib();
    eprintln!(
        "flood: {RELEASES} releases in {:.1} s ({retries} retried on another node); attacker requests answered or sent: {attacks}; /status p50 {:?}, p99 {:?} over {} calls; peak RSS of the five nodes {peak} MiB",
        publishing.as_secs_f64(),
        latencies[latencies.len() / 2],
        p99,
        latencies.len()
    );
    // Five nodes and the attacker's receive buffers share this process: each honest node holds
    // at most 256 MiB of Blocks answers, and at most 40 answers (24 MiB) are in flight to the
    // attacker at once; about 3.5 GiB measured.
    assert!(peak < 5120, "memory stays bounded: {peak} MiB");
    // The flood is over; the honest nodes still serve.
    assert!(matches!(
        cluster
            .core(1)
            .net()
            .request(targets[0], Request::Heads)
            .await?,
        Response::Heads(_)
    ));
    Ok(())
}
