//! The timeline over real nodes: witnesses extend it every epoch; a light client accepts a head
//! only if a fresh timeline block commits to it, and refuses a stale timeline or a head outside it.

use std::time::Duration;

use chainiac_client::Connection;
use chainiac_node::rules::timeline_at;
use chainiac_protocol::timeline::Freshness;
use chainiac_tests::{Cluster, Project, TestResult, wait_for};

const CONNECT: Duration = Duration::from_secs(20);

async fn create_timeline(
    cluster: &Cluster,
    epoch_seconds: u64,
) -> TestResult<chainiac_protocol::Hash> {
    cluster
        .create_timeline(0, &[0, 1, 2, 3], epoch_seconds)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn witnesses_extend_the_timeline_every_epoch() -> TestResult {
    let cluster = Cluster::start(4, &[]).await?;
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let project = Project::create(&cluster.core(0), "ticking", 2, 1, &roster).await?;
    let timeline = create_timeline(&cluster, 1).await?;
    // Three epochs go by: every node holds the blocks, epochs increase, and the project's
    // chains are listed at their heads.
    cluster.wait_everywhere(&timeline, 3).await?;
    let core_2 = cluster.core(2);
    let store = core_2.store();
    let first = timeline_at(store, &timeline, 1)?.ok_or("block 1")?;
    let third = timeline_at(store, &timeline, 3)?.ok_or("block 3")?;
    assert!(third.commit.epoch > first.commit.epoch);
    let release_head = store.head(&project.release_chain)?.ok_or("head")?;
    // Blocks carry only the heads that moved; the tree of block 3 folds them together and
    // matches its commitment.
    let third = store.timeline_tree(&timeline, 3)?;
    assert_eq!(
        third.head_of(&project.release_chain),
        Some(release_head.hash)
    );
    assert_eq!(
        third.head_of(&timeline),
        None,
        "the timeline does not list itself"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_refuses_a_stale_timeline_and_heads_outside_it() -> TestResult {
    let cluster = Cluster::start(4, &[]).await?;
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let leader = cluster.core(0);
    let mut project = Project::create(&leader, "frozen", 2, 1, &roster).await?;
    project.publish_next(&leader, "1.0.0", None).await?;
    cluster.wait_everywhere(&project.release_chain, 1).await?;
    // A day-long epoch: one timeline block now, then none for the rest of the test (epochs
    // are aligned to the clock; an hour's would roll over during one run in 360).
    let timeline = create_timeline(&cluster, chainiac_protocol::project::MAX_EPOCH_SECONDS).await?;
    cluster.wait_everywhere(&timeline, 1).await?;

    let connection = Connection::open(&[cluster.address(1).await?], CONNECT).await?;
    let mut pinned = connection.pin_timeline(timeline).await?;
    let view = connection
        .sync_timeline(&mut pinned, Freshness::default())
        .await?;
    let mut followed = connection.follow(project.release_chain).await?;

    // A release logged after the timeline block is not accepted yet: the client stops at the
    // head the timeline commits to.
    project.publish_next(&leader, "1.1.0", None).await?;
    cluster.wait_everywhere(&project.release_chain, 2).await?;
    let report = connection.sync(&mut followed, Some(&view)).await?;
    assert_eq!(report.to_index, 1);
    assert_eq!(report.version.as_deref(), Some("1.0.0"));
    assert_eq!(report.timeline_epoch, Some(view.block.commit.epoch));

    // A project the timeline does not list is refused.
    let late = Project::create(&leader, "late", 2, 1, &roster).await?;
    cluster.wait_everywhere(&late.release_chain, 0).await?;
    let mut late_followed = connection.follow(late.release_chain).await?;
    let error = connection
        .sync(&mut late_followed, Some(&view))
        .await
        .err()
        .ok_or("a head outside the timeline was accepted")?
        .to_string();
    assert!(error.contains("not in timeline epoch"), "{error}");

    // Once the timeline block is older than the client's bound, the client refuses to update.
    let old = view.block.commit.timestamp;
    wait_for("the timeline block to be 2 s old", || async {
        chainiac_tests::now() >= old + 2
    })
    .await?;
    let strict = Freshness {
        max_age: 1,
        ..Freshness::default()
    };
    let error = connection
        .sync_timeline(&mut pinned, strict)
        .await
        .err()
        .ok_or("a stale timeline was accepted")?
        .to_string();
    assert!(
        error.contains("beyond the freshness bound of 1 s"),
        "{error}"
    );
    connection.close().await;
    Ok(())
}

/// A timeline moves to another roster only once a threshold of its current members' operators
/// approved the same move (each with their own node's key); the leader of the next epoch then
/// logs it, and the new roster extends the timeline from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timeline_moves_to_the_roster_a_threshold_of_its_members_approved() -> TestResult {
    let cluster = Cluster::start(5, &[]).await?;
    let timeline = create_timeline(&cluster, 1).await?;
    cluster.wait_everywhere(&timeline, 1).await?;
    let next = cluster.roster(&[1, 2, 3, 4])?;
    let roster_of_head = |i: usize| -> TestResult<chainiac_protocol::Hash> {
        let core = cluster.core(i);
        let store = core.store();
        let head = store.head(&timeline)?.ok_or("head")?;
        Ok(store
            .roster_of(&store.block(&head.hash)?.ok_or("block")?)?
            .hash())
    };
    let before = roster_of_head(0)?;
    // Two of four operators approve (threshold 3): the timeline keeps its roster.
    for i in [0, 1] {
        let (change, unreached) = cluster
            .core(i)
            .approve_roster(timeline, next.clone())
            .await?;
        assert_eq!(change.threshold, 3);
        assert!(unreached.is_empty(), "{unreached:?}");
    }
    let index = cluster
        .core(0)
        .store()
        .head(&timeline)?
        .ok_or("head")?
        .index;
    cluster.wait_everywhere(&timeline, index + 2).await?;
    assert_eq!(roster_of_head(0)?, before, "two approvals move nothing");
    // Node 4 is not a member: its approval is refused.
    let outsider = cluster.core(4).approve_roster(timeline, next.clone()).await;
    assert!(outsider.is_err());
    // The third operator approves: the timeline moves.
    let (change, _) = cluster
        .core(2)
        .approve_roster(timeline, next.clone())
        .await?;
    assert_eq!(change.approvals, 3);
    wait_for("the timeline runs under the approved roster", || async {
        roster_of_head(3).is_ok_and(|roster| roster == next.hash())
    })
    .await?;
    // Node 4 now witnesses it: the timeline goes on under the new roster.
    let moved = cluster
        .core(3)
        .store()
        .head(&timeline)?
        .ok_or("head")?
        .index;
    cluster.wait_head(4, &timeline, moved + 2).await?;
    Ok(())
}
