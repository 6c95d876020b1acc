//! Hot paths of the protocol crate. Run with `cargo bench -p chainiac-protocol`; figures are
//! recorded in docs/benchmarks.md.

#![allow(clippy::expect_used)]
// Sizes that criterion does not record are printed next to its figures.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Duration;

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{
    Aggregator, CollectiveSignature, Contribution, ResponseShare, Roster, RosterMember, commit,
    local_round,
};
use chainiac_protocol::encoding::{Decode, Encode, VERSION, Writer};
use chainiac_protocol::keys::SecretKey;
use chainiac_protocol::skipchain::{
    ChainParams, ForwardLink, ProofStep, SkipBlock, SkipProof, TrustedBlock,
};
use chainiac_protocol::timeline::{TimelineBlock, TimelineEntry, TimelineTree};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::Signer;
use rand::SeedableRng;
use rand::rngs::StdRng;

struct Witnesses {
    secrets: Vec<SecretKey>,
    roster: Roster,
}

fn witnesses(n: usize, seed: u64) -> Witnesses {
    let mut rng = StdRng::seed_from_u64(seed);
    let secrets: Vec<SecretKey> = (0..n).map(|_| SecretKey::generate(&mut rng)).collect();
    let members = secrets.iter().map(RosterMember::from_secret).collect();
    let roster = Roster::with_default_threshold(members).expect("valid roster");
    Witnesses { secrets, roster }
}

fn sign(
    w: &Witnesses,
    message: &[u8],
    participants: &[usize],
    rng: &mut StdRng,
) -> CollectiveSignature {
    let refs: Vec<&SecretKey> = w.secrets.iter().collect();
    local_round(&w.roster, &refs, message, participants, rng).expect("round")
}

/// One collective verification against `verify_batch` of N individual signatures on the same
/// message, in the same run.
fn cosi_verification(c: &mut Criterion) {
    let message = b"chainiac forward link digest....";
    let mut group = c.benchmark_group("verify");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(1);
    let single = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let single_signature = single.sign(message);
    let single_key = single.verifying_key();
    group.bench_function("ed25519_verify_strict_one", |b| {
        b.iter(|| {
            single_key
                .verify_strict(black_box(message), black_box(&single_signature))
                .expect("valid");
        });
    });
    for n in [16usize, 128, 1024, 8192] {
        let w = witnesses(n, n as u64);
        let everyone: Vec<usize> = (0..n).collect();
        let full = sign(&w, message, &everyone, &mut rng);
        // Nearly full: 1% of the roster absent (at least one).
        let absent = (n / 100).max(1);
        let nearly: Vec<usize> = (absent..n).collect();
        let nearly_full = sign(&w, message, &nearly, &mut rng);
        // Only the threshold signs: the worst case for the cached aggregate key.
        let minimum: Vec<usize> = (0..w.roster.threshold()).collect();
        let at_threshold = sign(&w, message, &minimum, &mut rng);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("cosi_full_mask", n), &full, |b, sig| {
            b.iter(|| {
                w.roster
                    .verify(black_box(message), black_box(sig))
                    .expect("valid");
            });
        });
        group.bench_with_input(
            BenchmarkId::new("cosi_99pct_mask", n),
            &nearly_full,
            |b, sig| {
                b.iter(|| {
                    w.roster
                        .verify(black_box(message), black_box(sig))
                        .expect("valid");
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("cosi_threshold_mask", n),
            &at_threshold,
            |b, sig| {
                b.iter(|| {
                    w.roster
                        .verify(black_box(message), black_box(sig))
                        .expect("valid");
                });
            },
        );
        let keys: Vec<ed25519_dalek::SigningKey> = w
            .secrets
            .iter()
            .map(|s| ed25519_dalek::SigningKey::from_bytes(&s.to_seed()))
            .collect();
        let verifying: Vec<ed25519_dalek::VerifyingKey> =
            keys.iter().map(|k| k.verifying_key()).collect();
        let signatures: Vec<ed25519_dalek::Signature> =
            keys.iter().map(|k| k.sign(message)).collect();
        let messages: Vec<&[u8]> = vec![&message[..]; n];
        group.bench_function(BenchmarkId::new("ed25519_verify_batch", n), |b| {
            b.iter(|| {
                ed25519_dalek::verify_batch(black_box(&messages), &signatures, &verifying)
                    .expect("valid");
            });
        });
    }
    group.finish();
}

/// The leader's CPU for one star round at N = 1024: decode and sum the commitments, derive the
/// challenge, collect the responses, check them and output the signature.
fn leader_round(c: &mut Criterion) {
    let n = 1024;
    let w = witnesses(n, 7);
    let message = b"block to append";
    let mut rng = StdRng::seed_from_u64(8);
    let mut contributions = Vec::with_capacity(n);
    let mut nonces = Vec::with_capacity(n);
    for (index, secret) in w.secrets.iter().enumerate() {
        let (nonce, commitment) = commit(secret, message, &mut rng);
        contributions.push(Contribution::single(&w.roster, index, &commitment));
        nonces.push(nonce);
    }
    let challenge = {
        let mut aggregator = Aggregator::new(&w.roster, message);
        for c in &contributions {
            aggregator.add_commitment(c).expect("commitment");
        }
        aggregator.challenge().expect("challenge")
    };
    let responses: Vec<ResponseShare> = nonces
        .into_iter()
        .zip(&w.secrets)
        .map(|(nonce, secret)| {
            nonce
                .respond(secret, &w.roster, message, &challenge)
                .expect("response")
        })
        .collect();
    let mut lying = responses.clone();
    lying[500].s[3] ^= 1;
    let mut group = c.benchmark_group("leader_round");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (name, shares) in [("honest", &responses), ("one_wrong_response", &lying)] {
        group.bench_function(BenchmarkId::new(name, n), |b| {
            b.iter(|| {
                let mut aggregator = Aggregator::new(&w.roster, message);
                for c in &contributions {
                    aggregator.add_commitment(c).expect("commitment");
                }
                aggregator.challenge().expect("challenge");
                for share in shares.iter() {
                    aggregator.add_response(share).expect("response");
                }
                black_box(aggregator.finish())
            });
        });
    }
    group.finish();
}

/// Verifying a skip proof from the genesis (and from block 1) to the last of 10^6 blocks.
fn skip_proof(c: &mut Criterion) {
    const BLOCKS: u64 = 1_000_000;
    let w = witnesses(16, 9);
    let mut rng = StdRng::seed_from_u64(10);
    let params = ChainParams::new(2, 32).expect("params");
    let genesis =
        SkipBlock::genesis(params, w.roster.clone(), b"genesis".to_vec()).expect("genesis");
    let chain_id = genesis.chain_id();
    let from_routes: Vec<u64> = vec![0, 1];
    let routes: Vec<Vec<(u64, u32)>> = from_routes
        .iter()
        .map(|&from| params.route(from, BLOCKS - 1, |_, _| true).expect("route"))
        .collect();
    let mut needed: Vec<u64> = routes
        .iter()
        .flatten()
        .flat_map(|&(at, level)| [at, at + (1u64 << level)])
        .collect();
    needed.push(0);
    needed.push(1);
    needed.sort_unstable();
    needed.dedup();
    // Build every block (only hashes are kept, plus the blocks a proof needs).
    let mut hashes: Vec<Hash> = Vec::with_capacity(BLOCKS as usize);
    let mut kept = std::collections::HashMap::new();
    let mut previous = genesis.clone();
    hashes.push(genesis.hash());
    kept.insert(0u64, genesis);
    for index in 1..BLOCKS {
        let block = SkipBlock::successor(
            &previous,
            &w.roster,
            None,
            index.to_le_bytes().to_vec(),
            |i| hashes.get(i as usize).copied(),
        )
        .expect("block");
        hashes.push(block.hash());
        if needed.binary_search(&index).is_ok() {
            kept.insert(index, block.clone());
        }
        previous = block;
    }
    let everyone: Vec<usize> = (0..16).collect();
    let mut proofs = Vec::new();
    for (route, &from) in routes.iter().zip(&from_routes) {
        let steps = route
            .iter()
            .map(|&(at, level)| {
                let target = at + (1u64 << level);
                let message = ForwardLink::message_for(
                    &chain_id,
                    &hashes[at as usize],
                    &hashes[target as usize],
                    level,
                );
                let signature = sign(&w, message.as_bytes(), &everyone, &mut rng);
                ProofStep {
                    link: ForwardLink {
                        chain_id,
                        from: hashes[at as usize],
                        to: hashes[target as usize],
                        level,
                        signature,
                    },
                    block: kept[&target].clone(),
                    roster: None,
                }
            })
            .collect();
        let trusted = TrustedBlock::new(kept[&from].clone(), w.roster.clone()).expect("trusted");
        proofs.push((from, trusted, SkipProof { steps }));
    }
    let mut group = c.benchmark_group("skip_proof_1e6_blocks");
    group.sample_size(20);
    for (from, trusted, proof) in &proofs {
        let name = format!("from_{from}_{}_links", proof.steps.len());
        group.bench_function(name, |b| {
            b.iter(|| black_box(proof.verify(black_box(trusted)).expect("valid proof")));
        });
    }
    group.finish();
}

/// The timeline root over 10^5 (chain id, head) pairs, unsorted input.
fn timeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("timeline_root");
    group.sample_size(20);
    for n in [1_000u64, 100_000, 1_000_000] {
        let entries: Vec<TimelineEntry> = (0..n)
            .map(|i| TimelineEntry {
                chain_id: Hash::of("bench chain", &[&i.to_le_bytes()]),
                head: Hash::of("bench head", &[&i.to_le_bytes()]),
            })
            .collect();
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &entries, |b, entries| {
            b.iter(|| black_box(TimelineTree::build(entries.clone()).expect("tree").root()));
        });
    }
    group.finish();
    // One epoch with 1,000 heads moved (and, separately, 1,000 chains added), over timelines of
    // 10^3, 10^5 and 10^6 chains: the leader builds the block from the previous tree; a
    // witness decodes it and applies it to its own previous tree, which checks the commitment.
    for n in [1_000u64, 100_000, 1_000_000] {
        let entries: Vec<TimelineEntry> = (0..n)
            .map(|i| TimelineEntry {
                chain_id: Hash::of("bench chain", &[&i.to_le_bytes()]),
                head: Hash::of("bench head", &[&i.to_le_bytes()]),
            })
            .collect();
        let previous = TimelineTree::build(entries).expect("tree");
        if n >= 100_000 {
            // A node restarting from a checkpoint: the tree rebuilt from its entries.
            let checkpoint: Vec<TimelineEntry> = previous.entries().copied().collect();
            let mut group = c.benchmark_group("timeline_restart");
            group.sample_size(10);
            group.bench_with_input(BenchmarkId::from_parameter(n), &checkpoint, |b, entries| {
                b.iter(|| {
                    black_box(
                        TimelineTree::in_leaf_order(entries.clone())
                            .expect("tree")
                            .root(),
                    )
                });
            });
            group.finish();
        }
        let step = (n / 1_000).max(1);
        let moved: Vec<TimelineEntry> = (0..n)
            .step_by(step as usize)
            .take(1_000)
            .map(|i| TimelineEntry {
                chain_id: Hash::of("bench chain", &[&i.to_le_bytes()]),
                head: Hash::of("bench moved head", &[&i.to_le_bytes()]),
            })
            .collect();
        let added: Vec<TimelineEntry> = (n..n + 1_000)
            .map(|i| TimelineEntry {
                chain_id: Hash::of("bench chain", &[&i.to_le_bytes()]),
                head: Hash::of("bench head", &[&i.to_le_bytes()]),
            })
            .collect();
        let mut group = c.benchmark_group("timeline_epoch");
        group.sample_size(10);
        for (kind, changes) in [("moved_1000", &moved), ("added_1000", &added)] {
            let (block, _) =
                TimelineBlock::new(Some(&previous), 2, 1_010, changes.clone()).expect("block");
            let bytes = block.to_bytes();
            println!(
                "timeline epoch over {n} chains, {kind}: block payload {} bytes",
                bytes.len()
            );
            group.bench_function(BenchmarkId::new(format!("leader_{kind}"), n), |b| {
                b.iter(|| {
                    black_box(
                        TimelineBlock::new(Some(&previous), 2, 1_010, changes.clone())
                            .expect("block"),
                    )
                });
            });
            group.bench_function(BenchmarkId::new(format!("witness_{kind}"), n), |b| {
                b.iter(|| {
                    let block = TimelineBlock::from_bytes(&bytes).expect("valid");
                    black_box(block.apply(Some(&previous)).expect("applies"))
                });
            });
        }
        group.finish();
    }
}

/// What a light client pays to catch up 10, 1,000 and 100,000 blocks behind the head: one skip
/// proof, against downloading and checking every block in between (each block's level-0 link), in
/// the same run, over a chain of 1 KiB payloads (about a release's size) and a 4-witness roster.
fn client_catch_up(c: &mut Criterion) {
    const HEAD: u64 = 100_000;
    let w = witnesses(4, 11);
    let mut rng = StdRng::seed_from_u64(12);
    let params = ChainParams::new(2, 32).expect("params");
    let genesis = SkipBlock::genesis(params, w.roster.clone(), vec![0; 1024]).expect("genesis");
    let chain_id = genesis.chain_id();
    let mut blocks = vec![genesis];
    for index in 1..=HEAD {
        let mut payload = vec![0u8; 1024];
        payload[..8].copy_from_slice(&index.to_le_bytes());
        let block =
            SkipBlock::successor(&blocks[blocks.len() - 1], &w.roster, None, payload, |i| {
                blocks.get(i as usize).map(SkipBlock::hash)
            })
            .expect("block");
        blocks.push(block);
    }
    let everyone: Vec<usize> = (0..4).collect();
    let link = |from: u64, level: u32, rng: &mut StdRng| {
        let to = from + (1u64 << level);
        let (source, target) = (blocks[from as usize].hash(), blocks[to as usize].hash());
        let message = ForwardLink::message_for(&chain_id, &source, &target, level);
        ProofStep {
            link: ForwardLink {
                chain_id,
                from: source,
                to: target,
                level,
                signature: sign(&w, message.as_bytes(), &everyone, rng),
            },
            block: blocks[to as usize].clone(),
            roster: None,
        }
    };
    let smallest_from = HEAD - 100_000;
    let level0: Vec<ProofStep> = (smallest_from..HEAD)
        .map(|at| link(at, 0, &mut rng))
        .collect();
    let mut group = c.benchmark_group("client_catch_up");
    group.sample_size(10);
    for behind in [10u64, 1_000, 100_000] {
        let from = HEAD - behind;
        let trusted =
            TrustedBlock::new(blocks[from as usize].clone(), w.roster.clone()).expect("trusted");
        let route = params.route(from, HEAD, |_, _| true).expect("route");
        let proof = SkipProof {
            steps: route
                .iter()
                .map(|&(at, level)| link(at, level, &mut rng))
                .collect(),
        };
        // Blocks come in batches of 256, as a node serves them; each batch is checked from
        // the last block of the previous one.
        let every_block: Vec<SkipProof> = level0[(from - smallest_from) as usize..]
            .chunks(256)
            .map(|steps| SkipProof {
                steps: steps.to_vec(),
            })
            .collect();
        let every_bytes: usize = every_block.iter().map(|p| p.to_bytes().len()).sum();
        println!(
            "client_catch_up behind={behind}: skip proof {} blocks, {} bytes; every block {} blocks, {every_bytes} bytes ({:.0}x the bytes)",
            proof.steps.len(),
            proof.to_bytes().len(),
            behind,
            every_bytes as f64 / proof.to_bytes().len() as f64
        );
        group.bench_with_input(
            BenchmarkId::new("skip_proof", behind),
            &proof,
            |b, proof| {
                b.iter(|| black_box(proof.verify(&trusted).expect("valid proof")));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("every_block", behind),
            &every_block,
            |b, batches| {
                b.iter(|| {
                    let mut current = trusted.clone();
                    for batch in batches {
                        current = batch.verify(&current).expect("valid blocks");
                    }
                    black_box(current)
                });
            },
        );
    }
    group.finish();
}

/// Decoding a roster never seen (every key and proof of possession checked), against the same
/// bytes decoded before (remembered by hash).
fn roster_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("roster_decode");
    group.sample_size(10);
    for n in [100usize, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        let mut seed = 1_000u64;
        group.bench_function(BenchmarkId::new("unseen_members", n), |b| {
            b.iter_batched(
                || {
                    seed += 1;
                    let mut rng = StdRng::seed_from_u64(seed);
                    let members: Vec<RosterMember> = (0..n)
                        .map(|_| RosterMember::from_secret(&SecretKey::generate(&mut rng)))
                        .collect();
                    // Encoded by hand: building the roster would check the proofs before the
                    // measurement.
                    let threshold = Roster::default_threshold(n) as u32;
                    let mut writer = Writer::new();
                    writer.u8(VERSION).u32(threshold).list(&members);
                    writer.finish()
                },
                |bytes| Roster::from_bytes(black_box(&bytes)).expect("decodes"),
                criterion::BatchSize::PerIteration,
            );
        });
        let bytes = witnesses(n, 77).roster.to_bytes();
        group.bench_function(BenchmarkId::new("seen_before", n), |b| {
            b.iter(|| Roster::from_bytes(black_box(&bytes)).expect("decodes"));
        });
    }
    group.finish();
}

/// All members of a roster of `n` (`f = (n-1)/3`, threshold `n - f`) decide one position,
/// messages delivered in order, in-process: the CPU cost of agreement without signatures or a
/// network. With `silent_first_leader`, the leader of view 0 never speaks, so the position is
/// decided after a view change (simulated clock: when nothing is in flight, time jumps to the
/// next deadline). Returns (messages, the view decided in, the simulated time in ms).
fn decide_position(n: u32, silent_first_leader: bool) -> (usize, u32, u64) {
    use chainiac_protocol::agreement::{Action, Agreement, Event, Quorum, Timing};
    use std::collections::VecDeque;
    let f = (n - 1) / 3;
    let quorum = Quorum::new(n, n - f).expect("valid");
    let seed = Quorum::position_seed(&Hash::of("chainiac bench chain", &[]), 1);
    let silent = silent_first_leader.then(|| quorum.leader(&seed, 0));
    let timing = Timing::default();
    let mut members: Vec<Agreement> = (0..n)
        .map(|me| Agreement::new(quorum, seed, me, timing))
        .collect();
    let mut queue = VecDeque::new();
    let mut now = 0;
    let candidate = Hash::of("chainiac bench block", &[]);
    for me in 0..n {
        if Some(me) != silent {
            let actions = members[me as usize].handle(Event::Candidate(candidate), now);
            queue.extend(actions.into_iter().map(|action| (me, action)));
        }
    }
    let mut messages = 0;
    let mut decided_view = 0;
    loop {
        while let Some((from, action)) = queue.pop_front() {
            let deliveries: Vec<(u32, _)> = match action {
                Action::Send { to, message } => vec![(to, message)],
                Action::Broadcast(message) => (0..n)
                    .filter(|to| *to != from)
                    .map(|to| (to, message.clone()))
                    .collect(),
                Action::Decided(certificate) => {
                    decided_view = certificate.statement.view;
                    continue;
                }
                Action::Persist(_) => continue,
            };
            for (to, message) in deliveries {
                messages += 1;
                if Some(to) == silent {
                    continue;
                }
                let actions = members[to as usize].handle(Event::Received { from, message }, now);
                queue.extend(actions.into_iter().map(|action| (to, action)));
            }
        }
        let live = (0..n).filter(|me| Some(*me) != silent);
        if live
            .clone()
            .all(|me| members[me as usize].decided().is_some())
        {
            return (messages, decided_view, now);
        }
        now = live
            .filter_map(|me| members[me as usize].next_deadline())
            .min()
            .expect("an undecided member has a deadline");
        for me in (0..n).filter(|me| Some(*me) != silent) {
            if members[me as usize]
                .next_deadline()
                .is_some_and(|at| at <= now)
            {
                let actions = members[me as usize].handle(Event::Tick, now);
                queue.extend(actions.into_iter().map(|action| (me, action)));
            }
        }
    }
}

fn agreement(c: &mut Criterion) {
    let mut group = c.benchmark_group("agreement_position");
    group.measurement_time(Duration::from_secs(5));
    for n in [4u32, 16, 64] {
        for silent in [false, true] {
            let (messages, view, at) = decide_position(n, silent);
            let case = if silent {
                "first_leader_silent"
            } else {
                "all_honest"
            };
            println!(
                "agreement n={n} {case}: {messages} messages, decided in view {view} at {at} ms of simulated time (default timing, no network delay)"
            );
            group.bench_with_input(BenchmarkId::new(case, n), &n, |b, &n| {
                b.iter(|| black_box(decide_position(n, silent)));
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    agreement,
    roster_decode,
    cosi_verification,
    leader_round,
    skip_proof,
    timeline,
    client_catch_up
);
criterion_main!(benches);
