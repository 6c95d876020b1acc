//! Releases end to end over real nodes: the witnesses' refusals, artifact mirroring and a lying
//! mirror, and a light client catching up across many releases and roster changes.

use std::time::{Duration, SystemTime};

use chainiac_client::{Connection, select_artifact};
use chainiac_net::wire::{Request, Response};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::skipchain::SkipBlock;
use chainiac_tests::{Cluster, Project, TestResult, wait_for};

const CONNECT: Duration = Duration::from_secs(20);

fn head_index(cluster: &Cluster, node: usize, chain: &chainiac_protocol::Hash) -> TestResult<u64> {
    Ok(cluster
        .core(node)
        .store()
        .head(chain)?
        .ok_or("chain missing")?
        .index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn releases_breaking_a_rule_are_refused_and_nothing_is_logged() -> TestResult {
    let cluster = Cluster::start(4, &[]).await?;
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let leader = cluster.core(0);
    let mut project = Project::create(&leader, "hello", 3, 2, &roster).await?;
    cluster.wait_everywhere(&project.release_chain, 0).await?;
    let first = project.next_release("1.0.0");
    first.publish(&leader, project.release_chain, None).await?;
    project.sequence = 1;
    cluster.wait_everywhere(&project.release_chain, 1).await?;

    let refusals = [
        (
            "t-1 signatures",
            project.release_with("1.1.0", 2, &[&project.developers[0]]),
            "1 valid developer signatures but 2 are required",
        ),
        (
            "replayed release",
            project.next_release("1.0.0"),
            "version 1.0.0 is not greater",
        ),
    ];
    for (what, prepared, expected) in refusals {
        let error = prepared
            .publish(&leader, project.release_chain, None)
            .await
            .err()
            .ok_or(format!("{what} was accepted"))?
            .to_string();
        assert!(error.contains(expected), "{what}: {error}");
    }
    // The exact same signed release again.
    let error = first
        .publish(&leader, project.release_chain, None)
        .await
        .err()
        .ok_or("replay accepted")?
        .to_string();
    assert!(error.contains("sequence 1 was already used"), "{error}");

    // A release signed with a key rotated out of the policy.
    let retired = project.rotate_developer(&leader, 1).await?;
    cluster.wait_everywhere(&project.policy_chain, 1).await?;
    let stale_key = project.release_with("1.1.0", 2, &[&project.developers[0], &retired]);
    let error = stale_key
        .publish(&leader, project.release_chain, None)
        .await
        .err()
        .ok_or("rotated-out key accepted")?
        .to_string();
    assert!(error.contains("developer keys entitled"), "{error}");

    // Witnesses refuse on their own, whatever the leader checked: ask one directly.
    let previous = leader
        .store()
        .block_at(&project.release_chain, 1)?
        .ok_or("block 1")?;
    let current = leader.store().roster_of(&previous)?;
    let bad = SkipBlock::successor(
        &previous,
        &current,
        None,
        stale_key.release.to_bytes(),
        |index| {
            leader
                .store()
                .block_at(&project.release_chain, index)
                .ok()
                .flatten()
                .map(|b| b.hash())
        },
    )?;
    let answer = cluster
        .core(1)
        .answer(
            cluster
                .core(0)
                .net()
                .info()
                .await
                .peer_id
                .ok_or("peer id")?,
            Request::Commit {
                round: chainiac_protocol::Hash([7; 32]),
                block: Box::new(bad),
                level: 0,
            },
        )
        .await;
    match answer {
        Response::Refused(reason) => {
            assert!(reason.contains("developer keys entitled"), "{reason}");
        }
        other => return Err(format!("witness committed to an invalid release: {other:?}").into()),
    }

    for node in 0..4 {
        assert_eq!(
            head_index(&cluster, node, &project.release_chain)?,
            1,
            "node {node}"
        );
    }
    // And the valid release still goes through.
    project.publish_next(&leader, "1.1.0", None).await?;
    cluster.wait_everywhere(&project.release_chain, 2).await?;

    // Artifacts uploaded for a refused release are collected once older than the grace
    // period; those of the logged releases stay.
    let refused = project.release_with("9.9.9", 3, &[&project.developers[0]]);
    assert!(
        refused
            .publish(&leader, project.release_chain, None)
            .await
            .is_err()
    );
    let orphans: Vec<_> = refused.files.iter().map(|(a, _)| a.hash).collect();
    assert!(orphans.iter().all(|hash| leader.artifacts().has(hash)));
    let mut logged = Vec::new();
    for index in 1..=2 {
        let block = leader
            .store()
            .block_at(&project.release_chain, index)?
            .ok_or("logged block")?;
        let release = chainiac_protocol::release::Release::from_bytes(block.payload())?;
        logged.extend(release.manifest.artifacts().into_iter().map(|a| a.hash));
    }
    // Within the grace period nothing goes.
    let grace = Duration::from_secs(3600);
    let within = chainiac_node::artifact_garbage::collect(
        leader.store(),
        leader.artifacts(),
        SystemTime::now() - grace,
    )?;
    assert_eq!(within.artifacts, 0);
    let collected = chainiac_node::artifact_garbage::collect(
        leader.store(),
        leader.artifacts(),
        SystemTime::now() + grace,
    )?;
    assert_eq!(collected.artifacts, orphans.len(), "{collected:?}");
    assert!(orphans.iter().all(|hash| !leader.artifacts().has(hash)));
    assert!(logged.iter().all(|hash| leader.artifacts().has(hash)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_replicate_artifacts_and_a_client_skips_a_lying_peer() -> TestResult {
    let cluster = Cluster::start(4, &[]).await?;
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let leader = cluster.core(0);
    let mut project = Project::create(&leader, "mirrored", 2, 1, &roster).await?;
    cluster.wait_everywhere(&project.release_chain, 0).await?;

    // The client follows before the release and learns of it by gossip.
    let mut connection = Connection::open(
        &[cluster.address(2).await?, cluster.address(1).await?],
        CONNECT,
    )
    .await?;
    let mut followed = connection.follow(project.release_chain).await?;
    connection.sync(&mut followed, None).await?;
    let prepared = project.next_release("2.0.0");
    prepared
        .publish(&leader, project.release_chain, None)
        .await?;
    project.sequence = 1;
    // The genesis may still be relayed to the new client; the release comes after it.
    let gossiped = tokio::time::timeout(chainiac_tests::PATIENCE, async {
        loop {
            match connection.next_gossip(&[project.release_chain]).await {
                Some(head) if head.index == 0 => continue,
                other => return other,
            }
        }
    })
    .await?
    .ok_or("gossip channel closed")?;
    assert_eq!(gossiped.index, 1);
    let report = connection.sync(&mut followed, None).await?;
    assert_eq!(report.to_index, 1);
    let release = followed.verify_latest()?.ok_or("no release")?;
    let binary = select_artifact(&release, None)?;

    // Every node mirrors the artifacts of the release.
    for node in 1..4 {
        let core = cluster.core(node);
        wait_for(&format!("node {node} mirrors the artifacts"), || async {
            prepared
                .files
                .iter()
                .all(|(artifact, _)| core.artifacts().has(&artifact.hash))
        })
        .await?;
    }

    // Node 2's copy of the binary goes bad; the client asks node 2 first.
    let path = cluster
        .data_dir(2)
        .join("artifacts")
        .join(binary.hash.to_hex());
    let mut bytes = std::fs::read(&path)?;
    bytes[100] ^= 0xff;
    std::fs::write(&path, &bytes)?;
    let download = connection.fetch(&binary, &|_, _| {}).await?;
    binary.check(&download.bytes)?;
    let liar = cluster
        .core(2)
        .net()
        .info()
        .await
        .peer_id
        .ok_or("peer id")?;
    assert_eq!(download.failures.len(), 1, "{:?}", download.failures);
    assert_eq!(download.failures[0].peer, liar);
    assert!(download.failures[0].sent_bad_data);
    assert!(
        download.failures[0].reason.contains("does not verify"),
        "{}",
        download.failures[0].reason
    );
    assert_ne!(download.from, liar);
    connection.close().await;
    Ok(())
}

/// The number of blocks a skip proof may need from block 0 to block `to` with base 2: up and
/// down the levels, at most 2 per level.
fn proof_bound(to: u64) -> usize {
    2 * (64 - to.leading_zeros()) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_1000_releases_and_3_roster_changes_behind_catches_up_in_log_n() -> TestResult {
    let cluster = Cluster::start(5, &[]).await?;
    let rosters = [
        cluster.roster(&[0, 1, 2, 3])?,
        cluster.roster(&[1, 2, 3, 4])?,
        cluster.roster(&[0, 2, 3, 4])?,
        cluster.roster(&[0, 1, 3, 4])?,
    ];
    // Node 3 is in every roster; it leads.
    let leader = cluster.core(3);
    let mut project = Project::create(&leader, "busy", 3, 2, &rosters[0]).await?;
    cluster.wait_everywhere(&project.release_chain, 0).await?;
    let connection = Connection::open(&[cluster.address(4).await?], CONNECT).await?;
    let mut followed = connection.follow(project.release_chain).await?;
    connection.sync(&mut followed, None).await?;

    const RELEASES: u64 = 1000;
    for sequence in 1..=RELEASES {
        let roster = match sequence {
            250 => Some(rosters[1].clone()),
            500 => Some(rosters[2].clone()),
            750 => Some(rosters[3].clone()),
            _ => None,
        };
        // The witnesses move only when the policy's roots say so; the release chain
        // follows the policy on its next block.
        if let Some(roster) = &roster {
            project.change_witnesses(&leader, roster.clone()).await?;
        }
        project
            .publish_next(&leader, &format!("1.0.{sequence}"), roster)
            .await?;
    }
    cluster
        .wait_head(4, &project.release_chain, RELEASES)
        .await?;

    let report = connection.sync(&mut followed, None).await?;
    assert_eq!(report.to_index, RELEASES);
    assert_eq!(report.version.as_deref(), Some("1.0.1000"));
    assert!(
        report.proof_blocks <= proof_bound(RELEASES),
        "{} blocks in the proof, bound {}",
        report.proof_blocks,
        proof_bound(RELEASES)
    );
    assert_eq!(followed.release.roster().hash(), rosters[3].hash());
    eprintln!(
        "caught up 1000 releases with {} proof blocks ({} bytes)",
        report.proof_blocks, report.proof_bytes
    );
    connection.close().await;
    Ok(())
}
