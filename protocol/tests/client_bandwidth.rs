//! The CHAINIAC paper's client-bandwidth comparison, reproduced with this implementation's
//! encodings: the bytes a light client downloads to become current again after being offline
//! for a day, a week, a month and a year, with skip proofs and the timeline, against a client
//! that downloads and verifies every update in between (every block of every chain it follows,
//! and every timeline block: a hash-chained, TUF-style update log without skip links).
//!
//! The workload model and the sources of its figures are in docs/benchmarks.md ("Scale",
//! client bandwidth). Blocks, forward links (real collective signatures of a 16-witness roster),
//! skip proofs, timeline blocks and inclusion proofs are built and encoded for real; only the
//! number of them comes from the model.

// A model, not a library: a broken assumption should stop it loudly, and its output is the
// table.
#![allow(clippy::expect_used, clippy::print_stdout)]

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember, local_round};
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::keys::SecretKey;
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, ProofStep, SkipBlock, SkipProof};
use chainiac_protocol::timeline::{TimelineBlock, TimelineEntry, TimelineTree};
use rand::SeedableRng;
use rand::rngs::StdRng;

const DAY: u64 = 86_400;

/// A package ecosystem and one client of it.
#[derive(Clone, Copy, Debug)]
struct Workload {
    /// Chains the timeline covers: a release chain and a policy chain per project.
    projects: u64,
    /// Releases a day, over the whole ecosystem.
    releases_per_day: u64,
    /// Projects the client follows.
    followed: u64,
    /// Days between two releases of a followed project.
    days_between_releases: u64,
    /// Releases each followed project made before the client's last sync.
    earlier_releases: u64,
    /// Timeline epoch.
    epoch_seconds: u64,
    /// Days the timeline ran before the client's last sync.
    timeline_age_days: u64,
    /// Bytes of a release payload (manifest and developer signatures).
    release_payload: usize,
}

struct Signer {
    secrets: Vec<SecretKey>,
    roster: Roster,
    rng: StdRng,
}

impl Signer {
    fn new(witnesses: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(15);
        let secrets: Vec<SecretKey> = (0..witnesses)
            .map(|_| SecretKey::generate(&mut rng))
            .collect();
        let roster =
            Roster::with_default_threshold(secrets.iter().map(RosterMember::from_secret).collect())
                .expect("roster");
        Self {
            secrets,
            roster,
            rng,
        }
    }

    fn link(&mut self, blocks: &[SkipBlock], from: u64, level: u32) -> ProofStep {
        let to = from + (1u64 << level);
        let (source, target) = (&blocks[from as usize], &blocks[to as usize]);
        let chain_id = source.chain_id();
        let message = ForwardLink::message_for(&chain_id, &source.hash(), &target.hash(), level);
        let secrets: Vec<&SecretKey> = self.secrets.iter().collect();
        let everyone: Vec<usize> = (0..secrets.len()).collect();
        let signature = local_round(
            &self.roster,
            &secrets,
            message.as_bytes(),
            &everyone,
            &mut self.rng,
        )
        .expect("round");
        ProofStep {
            link: ForwardLink {
                chain_id,
                from: source.hash(),
                to: target.hash(),
                level,
                signature,
            },
            block: target.clone(),
            roster: None,
        }
    }
}

/// A chain of `len` blocks after its genesis, every payload `payload` (blocks differ by index
/// and back links).
fn chain(signer: &Signer, seed: u64, len: u64, payload: &[u8]) -> Vec<SkipBlock> {
    let params = ChainParams::new(2, 32).expect("params");
    let genesis = SkipBlock::genesis(params, signer.roster.clone(), seed.to_le_bytes().to_vec())
        .expect("genesis");
    let mut blocks = vec![genesis];
    for _ in 0..len {
        let block = SkipBlock::successor(
            &blocks[blocks.len() - 1],
            &signer.roster,
            None,
            payload.to_vec(),
            |i| blocks.get(i as usize).map(SkipBlock::hash),
        )
        .expect("block");
        blocks.push(block);
    }
    blocks
}

/// Bytes of the skip proof from `from` to `to`, and of every block in between with its
/// level-0 link.
fn catch_up(signer: &mut Signer, blocks: &[SkipBlock], from: u64, to: u64) -> (usize, usize) {
    if from == to {
        return (0, 0);
    }
    let params = blocks[0].params();
    let route = params.route(from, to, |_, _| true).expect("route");
    let proof = SkipProof {
        steps: route
            .iter()
            .map(|&(at, level)| signer.link(blocks, at, level))
            .collect(),
    };
    // A level-0 link has the same size whatever blocks it joins (fixed-size fields and a
    // mask over the same roster).
    let link = signer.link(blocks, from, 0).link.to_bytes().len();
    let every: usize = blocks[from as usize + 1..=to as usize]
        .iter()
        .map(|block| block.to_bytes().len() + link)
        .sum();
    (proof.to_bytes().len(), every)
}

/// What a client offline for `days` downloads.
struct Downloads {
    /// Skip proofs of the timeline and of each followed release chain, and inclusion proofs.
    skipping: usize,
    /// Every timeline block and every release block since, each with its level-0 link.
    every: usize,
    /// Every release block since, with its link, and nothing for freshness.
    releases_only: usize,
}

fn offline(workload: &Workload, signer: &mut Signer, days: u64) -> Downloads {
    // The timeline: one block per epoch, each carrying the heads that moved in it.
    let epochs_per_day = DAY / workload.epoch_seconds;
    let changes_per_epoch = (workload.releases_per_day / epochs_per_day).max(1);
    let changes: Vec<TimelineEntry> = (0..changes_per_epoch)
        .map(|i| TimelineEntry {
            chain_id: Hash::of("bench chain", &[&i.to_le_bytes()]),
            head: Hash::of("bench head", &[&i.to_le_bytes()]),
        })
        .collect();
    let (timeline_payload, _) = TimelineBlock::new(None, 1, 10, changes).expect("timeline block");
    let timeline_payload = timeline_payload.to_bytes();
    let last_sync = workload.timeline_age_days * epochs_per_day;
    let now = last_sync + days * epochs_per_day;
    let timeline = chain(signer, 0, now, &timeline_payload);
    let (mut skipping, mut every) = catch_up(signer, &timeline, last_sync, now);
    let mut releases_only = 0;

    // Each followed project: its releases since the last sync, staggered over the release
    // period, and two inclusion proofs (release and policy chain) in the newest timeline block.
    let tree = TimelineTree::build(
        (0..workload.projects * 2)
            .map(|i| TimelineEntry {
                chain_id: Hash::of("bench chain", &[&i.to_le_bytes()]),
                head: Hash::of("bench head", &[&i.to_le_bytes()]),
            })
            .collect(),
    )
    .expect("tree");
    let release_payload = vec![0x5a; workload.release_payload];
    let period = workload.days_between_releases;
    for project in 0..workload.followed {
        let phase = project * period / workload.followed;
        let releases = (days + phase) / period - phase / period;
        let from = workload.earlier_releases;
        let blocks = chain(signer, project + 1, from + releases, &release_payload);
        let (proof, all) = catch_up(signer, &blocks, from, from + releases);
        skipping += proof;
        every += all;
        releases_only += all;
        for chain in [2 * project, 2 * project + 1] {
            let chain_id = Hash::of("bench chain", &[&chain.to_le_bytes()]);
            let (_, inclusion) = tree.prove(&chain_id).expect("in the timeline");
            skipping += inclusion.to_bytes().len();
        }
    }
    Downloads {
        skipping,
        every,
        releases_only,
    }
}

fn report(workload: &Workload, durations: &[(u64, &str)]) -> Vec<Downloads> {
    let mut signer = Signer::new(16);
    println!("{workload:?}");
    println!(
        "| offline | chainiac: skip proofs, timeline | every update (releases and timeline) | ratio | every release, no freshness |"
    );
    println!("|--|--:|--:|--:|--:|");
    durations
        .iter()
        .map(|&(days, name)| {
            let downloads = offline(workload, &mut signer, days);
            println!(
                "| {name} | {} | {} | 1/{:.1} | {} |",
                downloads.skipping,
                downloads.every,
                downloads.every as f64 / downloads.skipping as f64,
                downloads.releases_only
            );
            downloads
        })
        .collect()
}

/// The model of docs/benchmarks.md at a tenth of PyPI's projects, so that it runs in CI: skip
/// proofs cost less than every update, and the gap widens with the time offline.
#[test]
fn skip_proofs_cost_less_than_every_update_and_the_gap_widens() {
    let workload = Workload {
        projects: 60_000,
        releases_per_day: 2_700,
        followed: 20,
        days_between_releases: 30,
        earlier_releases: 50,
        epoch_seconds: 600,
        timeline_age_days: 30,
        release_payload: 1024,
    };
    let results = report(
        &workload,
        &[(7, "a week"), (30, "a month"), (365, "a year")],
    );
    let ratios: Vec<f64> = results
        .iter()
        .map(|downloads| downloads.every as f64 / downloads.skipping as f64)
        .collect();
    assert!(ratios[0] > 1.0, "{ratios:?}");
    assert!(
        ratios.windows(2).all(|pair| pair[1] > pair[0]),
        "{ratios:?}"
    );
}

/// The figures of docs/benchmarks.md ("Scale"): PyPI's size, 10-minute epochs.
#[test]
#[ignore = "builds a timeline of two years of epochs; run with --ignored --nocapture"]
fn client_bandwidth_against_every_update() {
    for epoch_seconds in [600, 10] {
        let workload = Workload {
            projects: 600_000,
            releases_per_day: 2_700,
            followed: 100,
            days_between_releases: 30,
            earlier_releases: 50,
            epoch_seconds,
            timeline_age_days: if epoch_seconds < 60 { 30 } else { 365 },
            release_payload: 1024,
        };
        let durations: &[(u64, &str)] = if epoch_seconds < 60 {
            &[(1, "a day"), (7, "a week"), (30, "a month")]
        } else {
            &[
                (1, "a day"),
                (7, "a week"),
                (30, "a month"),
                (365, "a year"),
            ]
        };
        report(&workload, durations);
    }
}
