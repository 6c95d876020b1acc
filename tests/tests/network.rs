//! Real nodes over real libp2p on 127.0.0.1, each with a real RocksDB store in a temp dir.

use std::time::Duration;

use chainiac_net::wire::{LinkedBlock, Request, Response};
use chainiac_node::runtime::NodeOptions;
use chainiac_protocol::Hash;
use chainiac_protocol::agreement::{Phase, Position, SignedCertificate, Statement};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::skipchain::{ChainParams, SkipBlock};
use chainiac_tests::{Cluster, DataChain, TestResult, WrongShares, wait_for};

/// Starts `n` nodes (those in `faulty` send wrong shares); with `tree`, rounds go along trees of
/// (branching, smallest roster).
async fn start(n: usize, faulty: &[usize], tree: Option<(usize, usize)>) -> TestResult<Cluster> {
    Cluster::start_with_options(n, &|i, options: &mut NodeOptions| {
        // Generous: under a loaded CI a slow witness must not be excluded, since the tests
        // assert who signed; stopped nodes fail at once (their connection is refused).
        options.rounds.commit_timeout = Duration::from_secs(10);
        options.rounds.respond_timeout = Duration::from_secs(10);
        options.rounds.decision_timeout = Duration::from_secs(30);
        if faulty.contains(&i) {
            options.answer_hook = Some(std::sync::Arc::new(WrongShares));
        }
        if let Some((branching, min_roster)) = tree {
            options.rounds.tree_branching = branching;
            options.rounds.tree_min_roster = min_roster;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_nodes_append_100_blocks_and_agree() -> TestResult {
    let cluster = start(4, &[], None).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    for i in 1..=100u64 {
        let head = chain
            .append(&cluster.core(0), i.to_le_bytes().to_vec())
            .await?;
        assert_eq!(head.index, i);
    }
    for i in 0..4 {
        cluster.wait_head(i, &chain_id, 100).await?;
    }
    for index in 0..=100 {
        let reference = cluster
            .core(0)
            .store()
            .block_at(&chain_id, index)?
            .ok_or("missing block")?
            .hash();
        for i in 1..4 {
            let hash = cluster
                .core(i)
                .store()
                .block_at(&chain_id, index)?
                .ok_or("missing block")?
                .hash();
            assert_eq!(hash, reference, "node {i} block {index}");
        }
    }
    for i in 0..4 {
        let core_i = cluster.core(i);
        let store = core_i.store();
        let proof = store.skip_proof(&chain_id, 0, 100)?;
        assert!(proof.steps.len() <= 7, "{} steps", proof.steps.len());
        let head = proof.verify(&store.trusted(&chain_id, 0)?)?;
        assert_eq!(head.block().index(), 100);
    }
    Ok(())
}

/// Every node holds the same blocks with the same forward links as node 0, up to `last`.
fn assert_same_chain(cluster: &Cluster, chain_id: &Hash, last: u64, nodes: &[usize]) -> TestResult {
    let reference = cluster.core(0);
    for index in 0..=last {
        let expected = reference
            .linked_block(chain_id, index)?
            .ok_or("missing block")?;
        for &i in nodes {
            let linked = cluster
                .core(i)
                .linked_block(chain_id, index)?
                .ok_or("missing block")?;
            assert_eq!(linked, expected, "node {i} block {index}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nine_nodes_sign_along_a_tree_and_agree() -> TestResult {
    let cluster = start(9, &[], Some((2, 4))).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    for i in 1..=10u64 {
        let head = chain
            .append(&cluster.core(0), i.to_le_bytes().to_vec())
            .await?;
        assert_eq!(head.index, i);
    }
    let leader = cluster.core(0);
    assert_eq!(
        leader.metrics().rounds_tree.get(),
        leader.metrics().rounds_completed.get(),
        "every round went along the tree"
    );
    assert!(leader.metrics().rounds_tree.get() >= 10);
    for i in 0..9 {
        cluster.wait_head(i, &chain_id, 10).await?;
    }
    assert_same_chain(&cluster, &chain_id, 10, &(1..9).collect::<Vec<_>>())?;
    let block = leader.store().block_at(&chain_id, 10)?.ok_or("block 10")?;
    let link = leader
        .store()
        .forward_link(&block.back_links()[0], 0)?
        .ok_or("link")?;
    assert_eq!(link.signature.mask.count(), 9, "every witness signed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tree_round_completes_without_a_stopped_interior_node() -> TestResult {
    let mut cluster = start(9, &[], Some((2, 4))).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    chain.append(&cluster.core(0), b"1".to_vec()).await?;
    // With leader 0 and branching 2, the roster's member 1 is the leader's first child and
    // the root of the subtree {1, 3, 4, 7, 8}. Find the node holding that roster slot.
    let roster = {
        let core_0 = cluster.core(0);
        let store = core_0.store();
        store.roster_of(&store.block_at(&chain_id, 1)?.ok_or("block 1")?)?
    };
    let leader_slot = roster
        .index_of(&cluster.publics[0].key)
        .ok_or("leader in roster")?;
    let mut order: Vec<usize> = vec![leader_slot];
    order.extend((0..9).filter(|&slot| slot != leader_slot));
    let interior_slot = order[1];
    let interior = (0..9)
        .find(|&i| cluster.publics[i].key == roster.members()[interior_slot].key)
        .ok_or("interior node")?;
    cluster.stop_node(interior).await;
    for i in 2..=4u64 {
        let head = chain
            .append(&cluster.core(0), i.to_le_bytes().to_vec())
            .await?;
        assert_eq!(head.index, i);
    }
    let leader = cluster.core(0);
    assert!(
        leader.metrics().rounds_tree.get() >= 4,
        "rounds went along a tree"
    );
    let block = leader.store().block_at(&chain_id, 4)?.ok_or("block 4")?;
    let link = leader
        .store()
        .forward_link(&block.back_links()[0], 0)?
        .ok_or("link")?;
    assert_eq!(link.signature.mask.count(), 8);
    assert!(!link.signature.mask.contains(interior_slot));
    let running: Vec<usize> = (0..9).filter(|&i| i != interior).collect();
    for &i in &running {
        cluster.wait_head(i, &chain_id, 4).await?;
    }
    assert_same_chain(&cluster, &chain_id, 4, &running)?;
    Ok(())
}

/// A round can no longer lock a position on a block nobody decided (which used to stall the
/// position when two such blocks split the witnesses): a witness commits to a link only into
/// the block decided at its position, shown by its commit certificate. A leader's round for a
/// block of its own making is refused by every witness, a forged decision too, and the next
/// append logs its block at that position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_witness_signs_no_link_into_a_block_that_was_not_decided() -> TestResult {
    let cluster = start(4, &[], None).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    let leader = cluster.core(0);
    let store = leader.store();
    let head = store.head(&chain_id)?.ok_or("head")?;
    let previous = store.block(&head.hash)?.ok_or("head block")?;
    let roster = store.roster_of(&previous)?;
    let orphan = SkipBlock::successor(
        &previous,
        &roster,
        None,
        chain.payload(b"orphan"),
        |index| {
            store
                .block_at(&chain_id, index)
                .ok()
                .flatten()
                .map(|b| b.hash())
        },
    )?;
    let from = cluster.peer_id(0)?;
    for i in 1..4 {
        let commit = Request::Commit {
            round: Hash::of("test undecided round", &[b"orphan"]),
            block: Box::new(orphan.clone()),
            level: 0,
        };
        let answer = cluster.core(i).answer(from, commit).await;
        assert!(
            matches!(&answer, Response::Refused(reason) if reason.contains("not decided")),
            "node {i}: {answer:?}"
        );
    }
    // One member's commit vote is not a decision.
    let statement = Statement {
        phase: Phase::Commit,
        view: 0,
        block: orphan.hash(),
    };
    let position = Position {
        chain_id,
        index: orphan.index(),
    };
    let slot = roster
        .index_of(&cluster.publics[0].key)
        .ok_or("node 0 in the roster")?;
    let forged = SignedCertificate {
        statement,
        signatures: vec![(
            u32::try_from(slot)?,
            position.sign_vote(leader.identity().secret(), &statement),
        )],
    };
    let answer = cluster
        .core(1)
        .answer(
            from,
            Request::Decided {
                block: Box::new(orphan.clone()),
                certificate: forged,
            },
        )
        .await;
    assert!(
        matches!(&answer, Response::Refused(reason) if reason.contains("threshold")),
        "{answer:?}"
    );

    let logged = chain.append(&cluster.core(0), b"mine".to_vec()).await?;
    assert_eq!(logged.index, 1);
    for i in 0..4 {
        cluster.wait_head(i, &chain_id, 1).await?;
        let block = cluster
            .core(i)
            .store()
            .block_at(&chain_id, 1)?
            .ok_or("block 1")?;
        assert_eq!(DataChain::data_of(&block), b"mine", "node {i}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn witnesses_down_one_tolerated_two_refused_then_recovered() -> TestResult {
    let mut cluster = start(4, &[], None).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    chain.append(&cluster.core(0), b"1".to_vec()).await?;

    cluster.stop_node(3).await;
    let head = chain.append(&cluster.core(0), b"2".to_vec()).await?;
    assert_eq!(head.index, 2, "3 of 4 witnesses still sign");

    cluster.stop_node(2).await;
    let error = chain
        .append(&cluster.core(0), b"3".to_vec())
        .await
        .err()
        .ok_or("append should fail")?;
    let message = error.to_string();
    assert!(message.contains("not decided and logged"), "{message}");
    assert!(message.contains("at least 3 of the 4 members"), "{message}");
    for i in [0, 1] {
        assert_eq!(
            cluster.core(i).store().head(&chain_id)?.map(|h| h.index),
            Some(2),
            "nothing written on node {i}"
        );
    }

    // The failed append's block stays offered: once a threshold is back, it is decided and
    // logged without being submitted again, and the next append follows it.
    cluster.start_node(2).await?;
    cluster.wait_connected().await?;
    for i in 0..3 {
        cluster.wait_head(i, &chain_id, 3).await?;
        let block = cluster
            .core(i)
            .store()
            .block_at(&chain_id, 3)?
            .ok_or("block 3")?;
        assert_eq!(DataChain::data_of(&block), b"3", "node {i}");
    }
    let head = chain.append(&cluster.core(0), b"4".to_vec()).await?;
    assert_eq!(head.index, 4);
    cluster.wait_head(2, &chain_id, 4).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_response_is_excluded_and_the_round_completes() -> TestResult {
    let cluster = start(4, &[2], None).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    for i in 1..=4u64 {
        chain
            .append(&cluster.core(0), i.to_le_bytes().to_vec())
            .await?;
    }
    let excluded = cluster.core(0).metrics().witnesses_excluded.get();
    assert!(
        excluded >= 4,
        "the faulty witness was excluded in every round ({excluded})"
    );
    let block = cluster
        .core(0)
        .store()
        .block_at(&chain_id, 4)?
        .ok_or("block 4")?;
    let link = cluster
        .core(0)
        .store()
        .forward_link(&block.back_links()[0], 0)?
        .ok_or("link")?;
    assert!(
        !link.signature.mask.contains(2),
        "the faulty witness is not in the signature"
    );
    assert_eq!(link.signature.mask.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_node_syncs_1000_blocks() -> TestResult {
    let mut cluster = start(1, &[], None).await?;
    // A chain witnessed by node 0 alone, so that 1,000 appends need no network round trips.
    let members = vec![cluster.publics[0].roster_member()];
    let core = cluster.core(0);
    let chain = DataChain::create(&core, members, ChainParams::new(2, 32)?).await?;
    let chain_id = chain.id;
    for i in 1..=1000u64 {
        chain.append(&core, i.to_le_bytes().to_vec()).await?;
    }
    let late = cluster.add_node(1, &|_, _| {})?;
    cluster.start_node(late).await?;
    cluster.wait_head(1, &chain_id, 1000).await?;
    let late = cluster.core(1);
    let proof = late.store().skip_proof(&chain_id, 0, 1000)?;
    assert_eq!(
        proof
            .verify(&late.store().trusted(&chain_id, 0)?)?
            .block()
            .hash(),
        core.store().head(&chain_id)?.ok_or("head")?.hash
    );
    Ok(())
}

/// Forty blocks of 1 MB (40 MB, more than one 32 MiB answer may carry) still reach a node
/// that was not there when they were logged: a `Blocks` answer stops at its byte budget and the
/// syncing node asks again from where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_node_syncs_blocks_larger_together_than_one_answer() -> TestResult {
    let mut cluster = start(1, &[], None).await?;
    let members = vec![cluster.publics[0].roster_member()];
    let core = cluster.core(0);
    let chain = DataChain::create(&core, members, ChainParams::new(2, 32)?).await?;
    let chain_id = chain.id;
    for i in 1..=40u8 {
        chain.append(&core, vec![i; 1_000_000]).await?;
    }
    let late = cluster.add_node(1, &|_, _| {})?;
    cluster.start_node(late).await?;
    cluster.wait_head(1, &chain_id, 40).await?;
    let block = cluster
        .core(1)
        .store()
        .block_at(&chain_id, 40)?
        .ok_or("block 40")?;
    assert_eq!(DataChain::data_of(&block), vec![40u8; 1_000_000]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_gossip_is_neither_stored_nor_accepted() -> TestResult {
    let cluster = start(3, &[], None).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    chain.append(&cluster.core(0), b"1".to_vec()).await?;
    for i in 0..3 {
        cluster.wait_head(i, &chain_id, 1).await?;
    }
    // Node 2 turns bad: it gossips a block whose level-0 link signature is broken, and garbage.
    let attacker = cluster.core(2);
    let mut forged = attacker.linked_block(&chain_id, 1)?.ok_or("block 1")?;
    let previous = forged.block.clone();
    let roster = attacker.store().roster_of(&previous)?;
    let next = chainiac_protocol::skipchain::SkipBlock::successor(
        &previous,
        &roster,
        None,
        b"forged".to_vec(),
        |i| {
            attacker
                .store()
                .block_at(&chain_id, i)
                .ok()
                .flatten()
                .map(|b| b.hash())
        },
    )?;
    forged.links[0].to = next.hash();
    forged.links[0].from = previous.hash();
    forged.links[0].signature.s[0] ^= 1;
    let bad = LinkedBlock {
        block: next.clone(),
        links: vec![forged.links[0].clone()],
    };
    let accepted_before: u64 = (0..2)
        .map(|i| cluster.core(i).metrics().gossip_accepted.get())
        .sum();
    attacker.net().publish_raw(bad.to_bytes()).await;
    attacker
        .net()
        .publish_raw(b"garbage that is not a block".to_vec())
        .await;
    wait_for("both honest peers reject the bad gossip", || async {
        (0..2)
            .map(|i| cluster.core(i).metrics().gossip_rejected.get())
            .sum::<u64>()
            >= 4
    })
    .await?;
    for i in 0..2 {
        assert!(
            cluster.core(i).store().block(&next.hash())?.is_none(),
            "node {i} stored a forged block"
        );
        assert_eq!(
            cluster.core(i).store().head(&chain_id)?.map(|h| h.index),
            Some(1)
        );
    }
    assert_eq!(
        (0..2)
            .map(|i| cluster.core(i).metrics().gossip_accepted.get())
            .sum::<u64>(),
        accepted_before
    );
    // Honest nodes still carry valid blocks to each other.
    chain.append(&cluster.core(0), b"2".to_vec()).await?;
    cluster.wait_head(1, &chain_id, 2).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_and_oversized_requests_get_errors_and_the_node_keeps_serving() -> TestResult {
    let cluster = start(2, &[], None).await?;
    let peer = cluster.peer_id(1)?;
    let core = cluster.core(0);
    let net = core.net();
    let garbage = net.request_raw(peer, vec![0xde, 0xad, 0xbe, 0xef]).await?;
    assert!(
        matches!(&garbage, Response::Refused(reason) if reason.contains("malformed request")),
        "{garbage:?}"
    );
    let unknown_kind = net.request_raw(peer, vec![1, 200]).await?;
    assert!(matches!(unknown_kind, Response::Refused(_)));
    let oversized = net
        .request_raw(peer, vec![0u8; chainiac_net::wire::MAX_REQUEST_LEN + 1])
        .await;
    assert!(
        oversized.is_err() || matches!(oversized, Ok(Response::Refused(_))),
        "{oversized:?}"
    );
    let too_many = Request::Blocks {
        chain_id: Hash::default(),
        from: 0,
        count: 100_000,
    };
    assert!(matches!(
        net.request_raw(peer, too_many.to_bytes()).await?,
        Response::Refused(_)
    ));
    let unknown_round = Request::Respond {
        round: Hash::default(),
        challenge: chainiac_protocol::cosi::Challenge {
            participants: chainiac_protocol::cosi::ParticipationMask::full(1),
            first: [0; 32],
            second: [0; 32],
        },
    };
    assert!(matches!(
        net.request(peer, unknown_round).await?,
        Response::Refused(_)
    ));
    // Still serving.
    assert!(matches!(
        net.request(peer, Request::Heads).await?,
        Response::Heads(_)
    ));
    Ok(())
}

/// A peer whose requests are expensive to decode (a Commit carrying a roster of 9,000 members
/// with their proofs of possession, about a second of checks each) is charged for the work:
/// after a burst it gets refusals instead of decodes, while another peer is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expensive_requests_are_charged_to_their_sender_and_others_are_served() -> TestResult {
    use chainiac_protocol::cosi::{Roster, RosterMember};
    use chainiac_protocol::keys::SecretKey;

    let cluster = start(3, &[], None).await?;
    let victim = cluster.peer_id(0)?;
    let members: Vec<RosterMember> = (0..9_000)
        .map(|_| RosterMember::from_secret(&SecretKey::generate(&mut rand::rng())))
        .collect();
    let roster = Roster::with_default_threshold(members)?;
    let block = SkipBlock::genesis(ChainParams::new(2, 8)?, roster, b"heavy".to_vec())?;
    let heavy = Request::Commit {
        round: Hash::default(),
        block: Box::new(block),
        level: 0,
    }
    .to_bytes();
    assert!(heavy.len() <= chainiac_net::wire::MAX_REQUEST_LEN);
    let attacker = cluster.core(1).net().clone();
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let attacker = attacker.clone();
            let heavy = heavy.clone();
            tokio::spawn(async move { attacker.request_raw(victim, heavy).await })
        })
        .collect();
    let honest = cluster.core(2).net().clone();
    let served = async {
        let mut served = 0;
        for _ in 0..20 {
            if matches!(
                honest.request(victim, Request::Heads).await,
                Ok(Response::Heads(_))
            ) {
                served += 1;
            }
        }
        served
    };
    let served = served.await;
    let mut answers = Vec::new();
    for request in flood {
        answers.push(request.await?);
    }
    assert_eq!(served, 20, "the other peer is served during the flood");
    let refused_for_rate = answers
        .iter()
        .filter(|answer| {
            matches!(answer, Ok(Response::Refused(reason)) if reason.contains("rate limit"))
        })
        .count();
    assert!(
        refused_for_rate >= 8,
        "at most half of the expensive requests were decoded: {answers:?}"
    );
    Ok(())
}

/// A client that trusts a block naming its roster by hash gets the roster from any node and
/// checks its hash; a proof's `from` defaults to the genesis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_serves_rosters_by_hash_and_proofs_from_the_genesis() -> TestResult {
    let cluster = start(4, &[], None).await?;
    let chain = cluster.create_chain(0).await?;
    let chain_id = chain.id;
    chain.append(&cluster.core(0), b"1".to_vec()).await?;
    let api = cluster.api(0)?;
    let (status, block) =
        chainiac_tests::http(api, "GET", &format!("/chains/{chain_id}/blocks/1"), None)?;
    assert_eq!(status, 200, "{block}");
    let roster_hash = block["roster_hash"].as_str().ok_or("roster hash")?;
    let (status, roster) =
        chainiac_tests::http(api, "GET", &format!("/rosters/{roster_hash}"), None)?;
    assert_eq!(status, 200, "{roster}");
    let encoding = hex::decode(roster["encoding"].as_str().ok_or("encoding")?)?;
    let decoded = chainiac_protocol::cosi::Roster::from_bytes(&encoding)?;
    assert_eq!(decoded.hash().to_hex(), roster_hash);
    assert_eq!(roster["members"].as_array().map(Vec::len), Some(4));
    let (status, _) = chainiac_tests::http(
        api,
        "GET",
        &format!("/rosters/{}", Hash::default().to_hex()),
        None,
    )?;
    assert_eq!(status, 404);
    let (status, proof) =
        chainiac_tests::http(api, "GET", &format!("/chains/{chain_id}/proof"), None)?;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(
        (proof["from"].as_u64(), proof["to"].as_u64()),
        (Some(0), Some(1))
    );
    Ok(())
}

/// Three publishers append to one chain at once through three different nodes of a roster of
/// seven, one of which is Byzantine: every position is contended. Before agreement, two leaders at one index could leave
/// the witnesses locked on two blocks for ever ("split locks", docs/security.md). Now every
/// position is decided once: every acknowledged append is logged exactly once, in the same
/// chain on every node, and a publisher that lost a position (its signed sequence number is then
/// stale, a data-chain rule) signs again and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_publishers_racing_through_different_nodes_are_all_logged_once() -> TestResult {
    const PUBLISHERS: usize = 3;
    const APPENDS: usize = 4;
    // Node 6 is a faulty member: it equivocates as a leader, votes for two blocks and replays
    // what it receives.
    let cluster = std::sync::Arc::new(
        Cluster::start_with_options(7, &|i, options: &mut NodeOptions| {
            if i == 6 {
                options.conduct = chainiac_node::agreement::Conduct::Byzantine;
            }
        })
        .await?,
    );
    let chain = std::sync::Arc::new(cluster.create_chain(0).await?);
    let chain_id = chain.id;
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        let cluster = cluster.clone();
        let chain = chain.clone();
        publishers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for append in 0..APPENDS {
                let data = format!("publisher {publisher} append {append}").into_bytes();
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match chain.append(&cluster.core(publisher), &data).await {
                        Ok(head) => {
                            acknowledged.push((head.index, data));
                            break;
                        }
                        Err(error) if attempts < 20 => {
                            eprintln!("publisher {publisher}: {error}; signing again");
                        }
                        Err(error) => return Err(error.to_string()),
                    }
                }
            }
            Ok(acknowledged)
        }));
    }
    let mut acknowledged = Vec::new();
    for publisher in publishers {
        acknowledged.extend(publisher.await??);
    }
    let total = (PUBLISHERS * APPENDS) as u64;
    assert_eq!(acknowledged.len() as u64, total);
    let last = acknowledged
        .iter()
        .map(|(index, _)| *index)
        .max()
        .ok_or("appends")?;
    for i in 0..7 {
        cluster.wait_head(i, &chain_id, last).await?;
    }
    assert_same_chain(&cluster, &chain_id, last, &(1..7).collect::<Vec<_>>())?;
    let core = cluster.core(0);
    for (index, data) in &acknowledged {
        let block = core
            .store()
            .block_at(&chain_id, *index)?
            .ok_or("acknowledged block")?;
        assert_eq!(&DataChain::data_of(&block), data, "block {index}");
    }
    let mut logged = Vec::new();
    for index in 1..=last {
        let block = core.store().block_at(&chain_id, index)?.ok_or("block")?;
        logged.push(DataChain::data_of(&block).to_vec());
    }
    logged.sort();
    logged.dedup();
    assert_eq!(logged.len() as u64, last, "no data logged twice");
    Ok(())
}

/// A follower stands by for `commit + respond + view base` after each decision, in case the
/// leader crashed before logging the block. Stopping the follower drops that standby instead
/// of holding the node and its store open until it ends (operators saw 12 s stops).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_follower_does_not_wait_out_the_leaders_patience() -> TestResult {
    let mut cluster = start(4, &[], None).await?;
    let chain = cluster.create_chain(0).await?;
    chain.append(&cluster.core(0), b"decided".to_vec()).await?;
    cluster.wait_everywhere(&chain.id, 1).await?;
    let patience = Duration::from_secs(10 + 10 + 1);
    let stopping = std::time::Instant::now();
    cluster.stop_node(1).await;
    let stopped = stopping.elapsed();
    eprintln!("follower stopped in {} ms", stopped.as_millis());
    assert!(
        stopped < patience / 2,
        "the follower took {} ms to stop",
        stopped.as_millis()
    );
    // Its store is closed: the node starts again on the same data and holds the block.
    cluster.start_node(1).await?;
    cluster.wait_head(1, &chain.id, 1).await?;
    cluster.shutdown().await;
    Ok(())
}
