//! Timeline epochs: every epoch, one member of a timeline chain's roster leads the block that
//! commits to the head of every chain this node holds. Epoch `e`'s first choice is member
//! `e mod n`; if no block for the epoch appears, the next member takes over after a slot of
//! `epoch / n` (at least the commit timeout plus 500 ms, so that the first leader's Commit has
//! reached every member or timed out before anyone competes with it), and so on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Encode;

use chainiac_protocol::timeline::{MAX_BLOCK_CHANGES, TimelineBlock, TimelineEntry, TimelineTree};

use chainiac_anchor::AnchorRequest;

use crate::anchoring::{Finalized, anchor_block, recheck_anchors};
use crate::node::NodeCore;
use crate::rounds::RoundConfig;
use crate::rules::{timeline_at, timeline_roster};
use crate::store::{ChainHead, Store};

/// How often the service looks at the clock.
const TICK: Duration = Duration::from_millis(100);
/// How often it rescans the store for timeline chains.
const RESCAN: Duration = Duration::from_secs(2);
/// Margin added to the commit timeout for the shortest takeover slot.
const SLOT_MARGIN: Duration = Duration::from_millis(500);
/// Shortest time a round another member started for the next position is assumed to run.
const MIN_ROUND_IN_FLIGHT: Duration = Duration::from_secs(10);
/// Wait before a failed attempt is retried.
const RETRY: Duration = Duration::from_secs(1);
/// How often the anchors that are not final yet are re-checked for reorganisations.
const RECHECK: Duration = Duration::from_secs(2);

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What this node must do for a timeline chain now.
#[derive(Debug, PartialEq, Eq)]
enum Duty {
    /// Nothing: the epoch is done, or it is another member's turn.
    Wait,
    /// Lead the block of this epoch.
    Lead { epoch: u64 },
}

/// The shortest takeover slot: a member takes over only once the leader before it has had its
/// whole commit phase, so any Commit it sent has arrived (and `proposal_in_flight` holds the
/// taker back) or has timed out (and the leader goes on without this member).
fn min_slot(rounds: &RoundConfig) -> Duration {
    rounds.commit_timeout + SLOT_MARGIN
}

/// How long a round another member started may still be running: two full attempts (a round
/// restarts once without the members that failed it).
fn round_in_flight(rounds: &RoundConfig) -> Duration {
    (2 * (rounds.commit_timeout + rounds.respond_timeout)).max(MIN_ROUND_IN_FLIGHT)
}

/// Whether member `me` of `members` leads epoch `current` at `millis` into the epoch, given
/// the epoch of the last timeline block.
fn duty(
    last_epoch: Option<u64>,
    current: u64,
    millis_into_epoch: u64,
    (epoch_millis, min_slot_millis): (u64, u64),
    me: usize,
    members: usize,
) -> Duty {
    if last_epoch.is_some_and(|last| last >= current) || members == 0 {
        return Duty::Wait;
    }
    let first = (current % members as u64) as usize;
    let turn = (me + members - first) % members;
    let slot = (epoch_millis / members as u64).max(min_slot_millis);
    if millis_into_epoch >= turn as u64 * slot {
        Duty::Lead { epoch: current }
    } else {
        Duty::Wait
    }
}

/// Runs the epochs of every timeline chain this node witnesses, until the task is aborted.
pub async fn run(core: Arc<NodeCore>) {
    let mut timelines: Vec<(Hash, u64)> = Vec::new();
    let mut scanned: Option<Instant> = None;
    let mut attempted: HashMap<(Hash, u64), Instant> = HashMap::new();
    // One anchoring transaction at a time: the next epoch's anchor covers a skipped one.
    let anchoring_slot = Arc::new(tokio::sync::Mutex::new(()));
    let mut rechecked = Instant::now();
    // Per timeline, the index up to which every anchor is final (canonical and confirmed).
    let finalized: Finalized = Arc::default();
    loop {
        tokio::time::sleep(TICK).await;
        if let Some(anchoring) = core.anchoring()
            && rechecked.elapsed() >= RECHECK
            && let Ok(guard) = anchoring_slot.clone().try_lock_owned()
        {
            rechecked = Instant::now();
            let chains: Vec<Hash> = timelines.iter().map(|t| t.0).collect();
            tokio::spawn(recheck_anchors(
                anchoring.clone(),
                core.store().clone(),
                chains,
                finalized.clone(),
                guard,
            ));
        }
        if scanned.is_none_or(|at| at.elapsed() >= RESCAN) {
            let store = core.store().clone();
            timelines = tokio::task::spawn_blocking(move || timeline_chains(&store))
                .await
                .unwrap_or_default();
            scanned = Some(Instant::now());
        }
        attempted.retain(|_, at| at.elapsed() < 4 * RETRY);
        for &(chain, epoch_seconds) in &timelines {
            let epoch_millis = epoch_seconds * 1000;
            let now = now_millis();
            let current = now / epoch_millis;
            let Some((last_epoch, me, members)) = position(&core, &chain) else {
                continue;
            };
            let Duty::Lead { epoch } = duty(
                last_epoch,
                current,
                now % epoch_millis,
                (epoch_millis, min_slot(core.rounds()).as_millis() as u64),
                me,
                members,
            ) else {
                continue;
            };
            if attempted
                .get(&(chain, epoch))
                .is_some_and(|at| at.elapsed() < RETRY)
            {
                continue;
            }
            // Another member's round for the same position may still be running (a slow
            // round of the previous epoch, or the leader this turn takes over from): a
            // competing block now could split the witnesses' equivocation guards and stall
            // the timeline, so wait for it to end or time out.
            let next_index = core
                .store()
                .head(&chain)
                .ok()
                .flatten()
                .map_or(0, |head| head.index + 1);
            if core.proposal_in_flight(&chain, next_index, round_in_flight(core.rounds())) {
                continue;
            }
            attempted.insert((chain, epoch), Instant::now());
            match lead(&core, chain, epoch, now / 1000).await {
                Ok(head) => {
                    tracing::debug!(timeline = %chain, epoch, index = head.index, "timeline block logged");
                    if let Some(anchoring) = core.anchoring()
                        && epoch % anchoring.every_epochs == 0
                        && let Ok(guard) = anchoring_slot.clone().try_lock_owned()
                    {
                        let request = AnchorRequest {
                            timeline: chain,
                            index: head.index,
                            block: head.hash,
                        };
                        tokio::spawn(anchor_block(
                            anchoring.clone(),
                            core.store().clone(),
                            request,
                            guard,
                        ));
                    }
                }
                Err(error) => {
                    tracing::info!(timeline = %chain, epoch, %error, "timeline block not logged; retrying or leaving it to the next member");
                    // This node may have missed the last timeline block: catch up from peers.
                    let core = core.clone();
                    tokio::spawn(async move {
                        for peer in core.net().info().await.peers {
                            let _ = core.sync_chain(peer, chain).await;
                        }
                    });
                }
            }
        }
    }
}

fn timeline_chains(store: &Store) -> Vec<(Hash, u64)> {
    store.timeline_chains().unwrap_or_default()
}

/// The last epoch of the timeline, this node's position in its roster, and the roster size.
fn position(core: &NodeCore, chain: &Hash) -> Option<(Option<u64>, usize, usize)> {
    let store = core.store();
    let head = store.head(chain).ok()??;
    let block = store.block(&head.hash).ok()??;
    let roster = store.roster_of(&block).ok()?;
    let me = roster.index_of(&core.key())?;
    let last = timeline_at(store, chain, head.index)
        .ok()?
        .map(|t| t.commit.epoch);
    Some((last, me, roster.len()))
}

/// Leads the timeline block of `epoch`: the heads of the other chains in the store that moved
/// forward since the previous timeline block (at most [`MAX_BLOCK_CHANGES`], the rest wait for
/// the next epoch), and the move to another roster if a threshold of the current members
/// approved one.
async fn lead(core: &NodeCore, chain: Hash, epoch: u64, now: u64) -> Result<ChainHead, String> {
    let current = timeline_roster(core.store(), &chain)?;
    let change = core.roster_changes().ready(&chain, &current);
    let (roster, approvals) = match change {
        Some((roster, approvals)) => {
            tracing::info!(timeline = %chain, roster = %roster.hash(), "moving the timeline to the roster its members approved");
            (Some(roster), approvals)
        }
        None => (None, Vec::new()),
    };
    let store = core.store().clone();
    let payload = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let previous_index = store
            .head(&chain)
            .map_err(|e| e.to_string())?
            .ok_or("the timeline chain is not stored here")?
            .index;
        let previous = store.timeline_tree(&chain, previous_index)?;
        let TimelineChanges {
            changes,
            recorded_through,
        } = timeline_changes(&store, &chain, &previous)?;
        store
            .advance_timeline_cursor(&chain, recorded_through)
            .map_err(|e| e.to_string())?;
        let (mut block, _) =
            TimelineBlock::new(Some(&previous), epoch, now, changes).map_err(|e| e.to_string())?;
        block.approvals = approvals;
        Ok(block.to_bytes())
    })
    .await
    .map_err(|e| e.to_string())??;
    core.append(chain, payload, roster)
        .await
        .map_err(|e| e.to_string())
}

/// What a leader proposes for its timeline.
#[derive(Debug, PartialEq, Eq)]
struct TimelineChanges {
    /// The heads to record (at most [`MAX_BLOCK_CHANGES`]).
    changes: Vec<TimelineEntry>,
    /// The head change up to which every change is recorded in the previous tree already (the
    /// timeline's next cursor).
    recorded_through: u64,
}

/// Head changes read from the store at a time.
const CHANGES_PER_READ: usize = 4096;

/// The heads this node holds that `previous` does not record yet: new chains, and chains
/// whose head here is newer than the recorded one (a node behind on a chain proposes nothing
/// for it rather than a rollback). Timeline chains are left out. Only the chains whose head
/// changed after the timeline's cursor are read, oldest change first.
fn timeline_changes(
    store: &Store,
    timeline: &Hash,
    previous: &TimelineTree,
) -> Result<TimelineChanges, String> {
    let timelines: std::collections::HashSet<Hash> =
        timeline_chains(store).into_iter().map(|t| t.0).collect();
    let cursor = store.timeline_cursor(timeline).map_err(|e| e.to_string())?;
    let mut recorded_through = cursor;
    let mut pending = false;
    let mut after = cursor;
    let mut changes = Vec::new();
    // A chain written again between two reads comes back with a later change: once is enough.
    let mut seen = std::collections::HashSet::new();
    while changes.len() < MAX_BLOCK_CHANGES {
        let moved = store
            .head_changes_after(after, CHANGES_PER_READ)
            .map_err(|e| e.to_string())?;
        let Some(&(last, _)) = moved.last() else {
            break;
        };
        after = last;
        for (seq, chain_id) in moved {
            let change = if timelines.contains(&chain_id) {
                None
            } else {
                unrecorded_head(store, previous, &chain_id)?
            };
            match change {
                Some(change) if changes.len() < MAX_BLOCK_CHANGES && seen.insert(chain_id) => {
                    changes.push(change);
                    pending = true;
                }
                Some(_) => pending = true,
                None if !pending => recorded_through = seq,
                None => {}
            }
        }
    }
    Ok(TimelineChanges {
        changes,
        recorded_through,
    })
}

/// The head of `chain_id` here, if `previous` records an older one or none.
fn unrecorded_head(
    store: &Store,
    previous: &TimelineTree,
    chain_id: &Hash,
) -> Result<Option<TimelineEntry>, String> {
    let Some(head) = store.head(chain_id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    match previous.head_of(chain_id) {
        Some(recorded) if recorded == head.hash => return Ok(None),
        Some(recorded) => {
            // A recorded head this node does not hold is newer than its own (the node is
            // behind): proposing its head would be a rollback. Its sync writes a new change
            // when it catches up.
            let recorded_index = store
                .block(&recorded)
                .map_err(|e| e.to_string())?
                .map(|block| block.index());
            if recorded_index.is_none_or(|index| index >= head.index) {
                return Ok(None);
            }
        }
        None => {}
    }
    Ok(Some(TimelineEntry {
        chain_id: *chain_id,
        head: head.hash,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use chainiac_protocol::cosi::{Roster, RosterMember};
    use chainiac_protocol::keys::SecretKey;
    use chainiac_protocol::project::ChainGenesis;
    use chainiac_protocol::skipchain::{ChainParams, LinkRequest, SkipBlock};

    struct Chains {
        store: Store,
        secret: SecretKey,
        roster: Roster,
    }

    impl Chains {
        fn new() -> Self {
            let secret = SecretKey::generate(&mut rand::rng());
            let roster = Roster::with_default_threshold(vec![RosterMember::from_secret(&secret)])
                .expect("roster");
            Self {
                store: Store::in_memory(),
                secret,
                roster,
            }
        }

        fn create(&self, payload: Vec<u8>) -> Hash {
            let genesis = SkipBlock::genesis(
                ChainParams::new(2, 8).expect("params"),
                self.roster.clone(),
                payload,
            )
            .expect("genesis");
            let certificate = LinkRequest::for_genesis(&genesis)
                .expect("request")
                .sign_locally(
                    genesis.chain_id(),
                    &self.roster,
                    &[&self.secret],
                    &mut rand::rng(),
                )
                .expect("certificate");
            self.store
                .create_chain(&genesis, &certificate)
                .expect("create");
            genesis.chain_id()
        }

        fn extend(&self, chain_id: &Hash) {
            let store = &self.store;
            let head = store.head(chain_id).expect("read").expect("head");
            let previous = store.block(&head.hash).expect("read").expect("block");
            let block = SkipBlock::successor(&previous, &self.roster, None, vec![], |i| {
                store.block_at(chain_id, i).ok().flatten().map(|b| b.hash())
            })
            .expect("block");
            let links: Vec<_> = store
                .link_requests(&block)
                .expect("requests")
                .into_iter()
                .map(|request| {
                    request
                        .sign_locally(*chain_id, &self.roster, &[&self.secret], &mut rand::rng())
                        .expect("link")
                })
                .collect();
            store.append(&block, &links).expect("append");
        }

        fn head(&self, chain_id: &Hash) -> TimelineEntry {
            TimelineEntry {
                chain_id: *chain_id,
                head: self.store.head(chain_id).expect("read").expect("head").hash,
            }
        }
    }

    /// What a leader read before the index of head changes: every head in the store.
    fn changes_by_full_scan(store: &Store, previous: &TimelineTree) -> Vec<TimelineEntry> {
        let timelines: Vec<Hash> = timeline_chains(store).into_iter().map(|t| t.0).collect();
        let mut changes = Vec::new();
        for head in store.chains(usize::MAX).expect("heads") {
            if timelines.contains(&head.chain_id) {
                continue;
            }
            if let Some(change) = unrecorded_head(store, previous, &head.chain_id).expect("head") {
                changes.push(change);
            }
        }
        changes
    }

    /// The figures of docs/benchmarks.md ("Scale", the leader's reads):
    /// `CHAINIAC_BENCH_CHAINS=100000` chains (default), 1,000 of them moved.
    #[test]
    #[ignore = "creates 100,000 chains; run with --ignored --nocapture"]
    #[allow(clippy::print_stdout)] // its output is the figure
    fn leader_reads_at_scale() {
        let n: u32 = std::env::var("CHAINIAC_BENCH_CHAINS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        let chains = Chains::new();
        let timeline = chains
            .create(ChainGenesis::timeline(10, &chains.roster.hash(), &chains.secret).to_bytes());
        let ids: Vec<Hash> = (0..n)
            .map(|i| chains.create(i.to_le_bytes().to_vec()))
            .collect();
        let store = &chains.store;
        let tree =
            TimelineTree::build(ids.iter().map(|id| chains.head(id)).collect()).expect("tree");
        let settled = timeline_changes(store, &timeline, &tree).expect("changes");
        assert!(settled.changes.is_empty());
        store
            .advance_timeline_cursor(&timeline, settled.recorded_through)
            .expect("cursor");
        let moved: Vec<&Hash> = ids.iter().step_by((n as usize / 1000).max(1)).collect();
        for id in &moved {
            chains.extend(id);
        }
        let started = std::time::Instant::now();
        let mut scanned = changes_by_full_scan(store, &tree);
        let scan = started.elapsed();
        let started = std::time::Instant::now();
        let indexed = timeline_changes(store, &timeline, &tree).expect("changes");
        let index = started.elapsed();
        let mut from_index = indexed.changes;
        scanned.sort();
        from_index.sort();
        assert_eq!(scanned, from_index);
        assert_eq!(from_index.len(), moved.len());
        println!(
            "{n} chains, {} moved: every head scanned {scan:.1?}, changed heads from the index {index:.1?}",
            moved.len()
        );
    }

    #[test]
    fn a_leader_reads_only_the_heads_changed_since_its_timeline_recorded_them() {
        let chains = Chains::new();
        let ids: Vec<Hash> = (0..3u8).map(|i| chains.create(vec![i])).collect();
        let timeline = chains
            .create(ChainGenesis::timeline(10, &chains.roster.hash(), &chains.secret).to_bytes());
        let store = &chains.store;
        let sorted = |mut changes: Vec<TimelineEntry>| {
            changes.sort();
            changes
        };
        // Nothing recorded yet: every chain but the timeline itself, and the cursor stays
        // before the first of them.
        let first = timeline_changes(store, &timeline, &TimelineTree::empty()).expect("changes");
        let expected: Vec<TimelineEntry> = ids.iter().map(|id| chains.head(id)).collect();
        assert_eq!(sorted(first.changes.clone()), sorted(expected.clone()));
        assert_eq!(first.recorded_through, 0);
        // Once a tree records them, nothing is left and the cursor passes them all.
        let recorded = TimelineTree::build(expected).expect("tree");
        let none = timeline_changes(store, &timeline, &recorded).expect("changes");
        assert_eq!(
            none,
            TimelineChanges {
                changes: vec![],
                recorded_through: 4
            }
        );
        store
            .advance_timeline_cursor(&timeline, none.recorded_through)
            .expect("cursor");
        // One chain moves: only it is read and proposed; the cursor waits for it.
        chains.extend(&ids[1]);
        let moved = timeline_changes(store, &timeline, &recorded).expect("changes");
        assert_eq!(
            moved,
            TimelineChanges {
                changes: vec![chains.head(&ids[1])],
                recorded_through: 4
            }
        );
        // A tree newer than this node's head (the node is behind): nothing to propose.
        let ahead = recorded
            .with_changes(&[chains.head(&ids[1])])
            .expect("tree");
        let caught_up = timeline_changes(store, &timeline, &ahead).expect("changes");
        assert_eq!(caught_up.changes, vec![]);
        assert_eq!(caught_up.recorded_through, 5);
        // A tree recording a head this node does not hold yet: no rollback is proposed.
        chains.extend(&ids[2]);
        let foreign = ahead
            .with_changes(&[TimelineEntry {
                chain_id: ids[2],
                head: Hash([7; 32]),
            }])
            .expect("tree");
        let behind = timeline_changes(store, &timeline, &foreign).expect("changes");
        assert_eq!(
            behind,
            TimelineChanges {
                changes: vec![],
                recorded_through: 6
            }
        );
    }

    #[test]
    fn the_first_member_leads_then_the_others_take_over_in_turn() {
        // Epoch 9 with 4 members: member 1 first (9 mod 4), then 2, 3, 0, one slot apart.
        let times = (10_000, 1_000);
        let slot = 10_000 / 4;
        assert_eq!(duty(Some(8), 9, 0, times, 1, 4), Duty::Lead { epoch: 9 });
        assert_eq!(duty(Some(8), 9, 0, times, 2, 4), Duty::Wait);
        assert_eq!(duty(Some(8), 9, slot, times, 2, 4), Duty::Lead { epoch: 9 });
        assert_eq!(duty(Some(8), 9, 2 * slot, times, 0, 4), Duty::Wait);
        assert_eq!(
            duty(Some(8), 9, 3 * slot, times, 0, 4),
            Duty::Lead { epoch: 9 }
        );
        // Nothing to do once the epoch has its block, or before the first one is due.
        assert_eq!(duty(Some(9), 9, 9_999, times, 1, 4), Duty::Wait);
        assert_eq!(duty(None, 9, 0, times, 1, 4), Duty::Lead { epoch: 9 });
        assert_eq!(duty(None, 9, 0, times, 1, 0), Duty::Wait);
    }

    #[test]
    fn a_slot_lasts_at_least_the_first_leaders_commit_phase() {
        let rounds = RoundConfig::default();
        let min = min_slot(&rounds).as_millis() as u64;
        assert_eq!(min, 5_500);
        // Default epochs of 10 s with 4 members: slots of 5.5 s, so only the first two
        // members can lead within the epoch (the next epoch's leader covers the rest).
        assert_eq!(duty(Some(8), 9, 5_499, (10_000, min), 2, 4), Duty::Wait);
        assert_eq!(
            duty(Some(8), 9, 5_500, (10_000, min), 2, 4),
            Duty::Lead { epoch: 9 }
        );
        assert_eq!(duty(Some(8), 9, 9_999, (10_000, min), 3, 4), Duty::Wait);
        // Epochs shorter than a slot: only the first choice leads.
        for me in [0, 1, 3] {
            assert_eq!(duty(Some(1), 2, 999, (1_000, min), me, 4), Duty::Wait);
        }
        assert_eq!(
            duty(Some(1), 2, 0, (1_000, min), 2, 4),
            Duty::Lead { epoch: 2 }
        );
        // A round is assumed in flight for two full attempts, never less than 10 s.
        assert_eq!(round_in_flight(&rounds), Duration::from_secs(20));
        let quick = RoundConfig {
            commit_timeout: Duration::from_secs(1),
            respond_timeout: Duration::from_secs(1),
            ..rounds
        };
        assert_eq!(round_in_flight(&quick), Duration::from_secs(10));
    }
}
