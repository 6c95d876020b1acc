//! Rounds through the simulator: who signs and how many messages are deterministic; times are
//! checked only against what the network alone imposes.

use super::*;

fn honest(_: usize) -> Behaviour {
    Behaviour::Honest
}

/// Levels below the root of a complete tree of `branching` over `n` members.
fn depth(n: usize, branching: usize) -> u32 {
    let (mut depth, mut covered, mut level) = (0, 1, 1);
    while covered < n {
        level *= branching;
        covered += level;
        depth += 1;
    }
    depth
}

#[test]
fn star_and_tree_rounds_sign_with_every_witness() {
    let n = 1024;
    let network = NetworkModel::wide_area();
    let simulation = Simulation::new(n, honest, network);
    let star = simulation.sign(0, round_config(None)).expect("star round");
    for branching in [8, 16] {
        let tree = simulation
            .sign(0, round_config(Some(branching)))
            .expect("tree round");
        assert!(tree.report.tree, "{:?}", tree.report);
        assert_eq!(tree.report.attempts, 1);
        assert_eq!(tree.link.signature.mask.count(), n);
        simulation.verify(&tree.link).expect("a valid signature");
        // Every witness gets two requests and answers both, along a tree as in a star.
        assert_eq!(tree.messages, 4 * (n as u64 - 1));
        // The root talks to its children only.
        assert!(
            tree.leader_bytes_sent * 10 < star.leader_bytes_sent,
            "tree {} B, star {} B",
            tree.leader_bytes_sent,
            star.leader_bytes_sent
        );
        // Down and up every level, twice.
        let levels = depth(n, branching);
        assert!(tree.wall >= network.latency * 4 * levels, "{:?}", tree.wall);
        assert!(tree.wall < Duration::from_secs(10), "{:?}", tree.wall);
    }
    assert!(!star.report.tree);
    assert_eq!(star.report.attempts, 1);
    assert_eq!(star.link.signature.mask.count(), n);
    assert_eq!(star.messages, 4 * (n as u64 - 1));
    simulation.verify(&star.link).expect("a valid signature");
    // Two round trips, and the leader's uplink carries 1,023 requests of each kind.
    assert!(star.wall >= network.latency * 4, "{:?}", star.wall);
    assert!(star.wall < Duration::from_secs(10), "{:?}", star.wall);
}

#[test]
fn false_accusations_by_interior_nodes_are_resolved_inside_the_tree() {
    // Branching 4 over 100: the leader's children 1-4 each lead about 24 members. 1 and 2
    // report everyone below them as failed (48 members: 52 covered, below the threshold of
    // 67), 3 blames all its children when they respond.
    let n = 100;
    let simulation = Simulation::new(
        n,
        |index| match index {
            1 | 2 => Behaviour::AccusesChildren,
            3 => Behaviour::BlamesChildren,
            _ => Behaviour::Honest,
        },
        NetworkModel::wide_area(),
    );
    let round = simulation
        .sign(0, round_config(Some(4)))
        .expect("the round completes");
    // The accused of 1 and 2 were asked by the leader in the same attempt; those blamed by 3
    // (and 3) were asked directly in the next one. No star round, nobody left out.
    assert!(round.report.tree, "{:?}", round.report);
    assert_eq!(round.report.attempts, 2, "{:?}", round.report);
    assert_eq!(round.link.signature.mask.count(), n);
    assert!(round.report.unreachable.is_empty(), "{:?}", round.report);
    assert!(round.report.wrong.is_empty(), "{:?}", round.report);
    simulation.verify(&round.link).expect("a valid signature");
}

#[test]
fn liars_deeper_in_the_tree_become_leaves_after_one_attempt() {
    // Branching 4 over 100: 9 and 10 are children of 2, two levels below the leader. 9 blames
    // its children (37-40) in every attempt; 10 reports everyone below it as failed. Their
    // parent 2 passes the reports on as its own: the leader makes the whole path direct.
    let n = 100;
    let simulation = Simulation::new(
        n,
        |index| match index {
            9 => Behaviour::BlamesChildren,
            10 => Behaviour::AccusesChildren,
            _ => Behaviour::Honest,
        },
        NetworkModel::wide_area(),
    );
    let round = simulation
        .sign(0, round_config(Some(4)))
        .expect("the round completes");
    assert!(round.report.tree, "{:?}", round.report);
    assert_eq!(round.report.attempts, 2, "{:?}", round.report);
    assert_eq!(round.link.signature.mask.count(), n);
    assert!(round.report.unreachable.is_empty(), "{:?}", round.report);
    simulation.verify(&round.link).expect("a valid signature");
}

#[test]
fn members_the_leader_sees_fail_are_excluded_and_the_others_kept() {
    // Branching 4 over 64: 5 is an interior node (children 21-24) that never answers; 30 is a
    // leaf that answers with a wrong share.
    let n = 64;
    let simulation = Simulation::new(
        n,
        |index| match index {
            5 => Behaviour::Silent,
            30 => Behaviour::WrongShare,
            _ => Behaviour::Honest,
        },
        NetworkModel::wide_area(),
    );
    let round = simulation
        .sign(0, round_config(Some(4)))
        .expect("the round completes");
    assert!(round.report.tree, "{:?}", round.report);
    let mask = &round.link.signature.mask;
    assert!(!mask.contains(5) && !mask.contains(30));
    // 21-24 were cut off by 5's silence, then asked by the leader itself.
    assert_eq!(mask.count(), n - 2, "{:?}", round.report);
    let key = |index: usize| simulation.roster().members()[index].key;
    assert_eq!(round.report.wrong, vec![key(30)]);
    assert!(
        round.report.unreachable.iter().any(|(k, _)| *k == key(5)),
        "{:?}",
        round.report
    );
    simulation.verify(&round.link).expect("a valid signature");
}

/// The figures of docs/benchmarks.md ("Scale"): `CHAINIAC_SIM_SIZES=256,1024` to choose sizes.
#[test]
#[ignore = "minutes at 8,192 witnesses; run with --ignored --nocapture"]
#[allow(clippy::print_stdout, clippy::print_stderr)] // its output is the figures
fn rounds_at_cosi_scale() {
    let sizes: Vec<usize> = std::env::var("CHAINIAC_SIM_SIZES")
        .unwrap_or_else(|_| "256,1024,4096,8192".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let network = NetworkModel::wide_area();
    println!(
        "| N | shape | levels | wall (simulated) | leader CPU | busiest other node CPU | leader bytes sent | messages |"
    );
    println!("|--:|--|--:|--:|--:|--:|--:|--:|");
    for n in sizes {
        let setup = std::time::Instant::now();
        let simulation = Simulation::new(n, honest, network);
        eprintln!("{n} witnesses set up in {:.1?}", setup.elapsed());
        for branching in [None, Some(8), Some(16), Some(32)] {
            let round = simulation
                .sign(0, round_config(branching))
                .expect("a round");
            assert_eq!(round.link.signature.mask.count(), n);
            simulation.verify(&round.link).expect("a valid signature");
            let (shape, levels) = match branching {
                Some(k) => (format!("tree {k}"), depth(n, k)),
                None => ("star".into(), 1),
            };
            println!(
                "| {n} | {shape} | {levels} | {:.0} ms | {:.1} ms | {:.1} ms | {} | {} |",
                round.wall.as_secs_f64() * 1e3,
                round.leader_cpu.as_secs_f64() * 1e3,
                round.busiest_other_cpu.as_secs_f64() * 1e3,
                round.leader_bytes_sent,
                round.messages
            );
        }
    }
}
