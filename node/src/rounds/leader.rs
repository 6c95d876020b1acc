//! The leader side of an append: propose the next block, run one signing round per forward link
//! with the roster of the link's source block, exclude witnesses that time out or answer wrongly
//! and restart without them, then store the block.
//!
//! Small rosters sign in a star (the leader talks to every witness). Rosters of at least
//! [`RoundConfig::tree_min_roster`] members sign along an aggregation tree (see
//! [`super::tree`]) when the leader is one of them; if the tree cannot gather enough
//! witnesses, the leader falls back to a star round.

use std::collections::BTreeSet;
use std::time::Duration;

use chainiac_net::wire::{MAX_TREE_BRANCHING, MAX_TREE_BUDGET_MS, Request, Response};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Aggregator, Contribution, ParticipationMask, Roster, RoundTree};
use chainiac_protocol::hash::domain;
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::{ForwardLink, LinkRequest, SkipBlock};
use futures::future::join_all;

use super::transport::{WitnessTransport, call};
use super::tree::{accept_commit, accept_response};

/// Timeouts, retry bounds and the shape of signing rounds.
#[derive(Clone, Copy, Debug)]
pub struct RoundConfig {
    /// How long to wait for a commitment (in a tree round: for a whole subtree's).
    pub commit_timeout: Duration,
    /// How long to wait for a response share (in a tree round: for a whole subtree's).
    pub respond_timeout: Duration,
    /// Children per interior node in tree rounds (at least 2, at most
    /// [`MAX_TREE_BRANCHING`]).
    pub tree_branching: usize,
    /// Smallest roster signed along a tree; smaller rosters sign in a star.
    pub tree_min_roster: usize,
    /// How long a member of a deciding roster stays in view 0 of agreement; each later view
    /// waits twice as long as the one before, up to 64 times this (docs/protocol.md §9.5).
    pub view_base: Duration,
    /// How long an append waits for its block to be decided and logged before it reports
    /// failure (the block stays offered: it may still be logged later).
    pub decision_timeout: Duration,
}

impl Default for RoundConfig {
    fn default() -> Self {
        Self {
            commit_timeout: Duration::from_secs(5),
            respond_timeout: Duration::from_secs(5),
            tree_branching: 8,
            tree_min_roster: 32,
            view_base: Duration::from_secs(2),
            decision_timeout: Duration::from_secs(120),
        }
    }
}

impl RoundConfig {
    /// The agreement's view timing.
    pub fn timing(&self) -> chainiac_protocol::agreement::Timing {
        chainiac_protocol::agreement::Timing {
            base_ms: u64::try_from(self.view_base.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            ..Default::default()
        }
    }

    /// Whether a roster of `members` signs along a tree: large enough, and more than one level
    /// deep (a one-level tree is a star).
    pub fn uses_tree(&self, members: usize) -> bool {
        (2..=MAX_TREE_BRANCHING as usize).contains(&self.tree_branching)
            && members >= self.tree_min_roster
            && members > self.tree_branching + 1
    }
}

/// Tree rounds tried before the leader falls back to a star round, besides up to two more for
/// each faulty member the roster tolerates, as long as each attempt reveals a fault.
pub const MAX_TREE_ATTEMPTS: u32 = 3;

/// Why an append failed. Nothing is stored when it does.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Too few witnesses could sign.
    #[error(
        "not enough witnesses for block {index} (link level {level}): {available} of {roster} can sign but {threshold} must; unreachable or refusing: {unreachable}; excluded for wrong answers: {wrong}. Bring witnesses back online and retry"
    )]
    NotEnoughWitnesses {
        index: u64,
        level: u32,
        available: usize,
        roster: usize,
        threshold: usize,
        unreachable: String,
        wrong: String,
    },
    /// Witnesses already released shares for another block at this position. Since blocks are
    /// decided by agreement before they are signed this can only come from a round run before
    /// (a store upgraded from an earlier version), or from more faulty witnesses than the
    /// roster tolerates.
    #[error(
        "block {index} cannot be signed: {witnesses} witness(es) already signed block {} at that position in a round before agreement decided it; more witnesses than the roster tolerates are faulty, or their stores predate agreement", .block.hash()
    )]
    Locked {
        index: u64,
        block: Box<SkipBlock>,
        witnesses: usize,
    },
    /// The block was not decided and logged in time: too few members of its deciding roster
    /// are reachable, they are still changing views, or too few witnesses sign its links.
    #[error(
        "block {index} was not decided and logged within {seconds} s (this node's view: {view:?}): at least {threshold} of the {members} members of the roster deciding it must be reachable, agree and sign its links. Bring witnesses back online and retry; the block stays offered and may still be logged"
    )]
    Undecided {
        index: u64,
        seconds: u64,
        view: Option<u32>,
        threshold: usize,
        members: usize,
    },
    /// Other blocks kept winning the positions this append proposed at.
    #[error(
        "{positions} blocks by other publishers were decided before this one; the chain is busy, retry later"
    )]
    Contended { positions: usize },
    /// The block or store refused.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The round's own arithmetic failed (a bug or a corrupt roster).
    #[error(transparent)]
    Protocol(#[from] chainiac_protocol::Error),
}

/// What happened to each witness in a round, for logs and errors.
#[derive(Debug, Default, Clone)]
pub struct RoundReport {
    /// Witnesses that did not answer or refused, with the reason.
    pub unreachable: Vec<(PublicKey, String)>,
    /// Witnesses excluded because their share was wrong.
    pub wrong: Vec<PublicKey>,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the signature was gathered along an aggregation tree.
    pub tree: bool,
    /// Witnesses that refused because they already signed another block at this position,
    /// with that block.
    pub locked: Vec<(PublicKey, Box<SkipBlock>)>,
}

impl RoundReport {
    /// The block most witnesses are locked on, with their number, if any witness is.
    fn most_locked(&self) -> Option<(&SkipBlock, usize)> {
        let mut counted: Vec<(&SkipBlock, usize)> = Vec::new();
        for (_, block) in &self.locked {
            match counted.iter_mut().find(|(b, _)| b.hash() == block.hash()) {
                Some((_, count)) => *count += 1,
                None => counted.push((block, 1)),
            }
        }
        counted.into_iter().max_by_key(|&(_, count)| count)
    }
}

/// The most faulty witnesses a roster of `members` tolerates: `f` of `3f + 1`.
pub fn max_faulty(members: usize) -> usize {
    members.saturating_sub(1) / 3
}

/// Who is left out of the next attempt, and why.
struct Exclusions {
    excluded: BTreeSet<usize>,
    report: RoundReport,
}

impl Exclusions {
    fn unreachable(&mut self, index: usize, key: PublicKey, reason: String) {
        self.excluded.insert(index);
        self.report.unreachable.push((key, reason));
    }

    fn wrong(&mut self, index: usize, key: PublicKey) {
        self.excluded.insert(index);
        self.report.wrong.push(key);
    }
}

fn describe(keys: impl Iterator<Item = String>) -> String {
    let list: Vec<String> = keys.collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

fn round_id(request: &LinkRequest, attempt: u32) -> Hash {
    Hash::of(
        domain::ROUND_ID,
        &[
            request.message.as_bytes(),
            &attempt.to_le_bytes(),
            &rand_bytes(),
        ],
    )
}

/// Runs signing rounds for the link `request` into `block`, signed by `roster`, until a
/// signature is produced or too few witnesses remain: along a tree if the roster is large
/// enough (see [`RoundConfig::uses_tree`]) and this node is in it, falling back to a star.
pub async fn sign_link(
    transport: &dyn WitnessTransport,
    roster: &Roster,
    block: &SkipBlock,
    request: &LinkRequest,
    config: RoundConfig,
) -> Result<(ForwardLink, RoundReport), AppendError> {
    let mut report = RoundReport::default();
    let leader = transport
        .local_key()
        .and_then(|key| roster.index_of(&key))
        .filter(|_| config.uses_tree(roster.len()));
    if let Some(leader) = leader {
        let mut out = Exclusions {
            excluded: BTreeSet::new(),
            report: RoundReport::default(),
        };
        match sign_link_tree(transport, roster, block, request, config, leader, &mut out).await {
            Some(link) => {
                out.report.tree = true;
                return Ok((link, out.report));
            }
            None => {
                tracing::info!(
                    block = block.index(),
                    level = request.level,
                    attempts = out.report.attempts,
                    "tree round could not gather enough witnesses; falling back to a star round"
                );
                report.attempts = out.report.attempts;
            }
        }
    }
    sign_link_star(transport, roster, block, request, config, report).await
}

/// Star rounds: the leader talks to every witness.
async fn sign_link_star(
    transport: &dyn WitnessTransport,
    roster: &Roster,
    block: &SkipBlock,
    request: &LinkRequest,
    config: RoundConfig,
    report: RoundReport,
) -> Result<(ForwardLink, RoundReport), AppendError> {
    let mut out = Exclusions {
        excluded: BTreeSet::new(),
        report,
    };
    loop {
        out.report.attempts += 1;
        let round = round_id(request, out.report.attempts);
        // The leader's own witness last: it answers synchronously, the others over the network.
        let local = transport.local_key().and_then(|key| roster.index_of(&key));
        let mut candidates: Vec<usize> = (0..roster.len())
            .filter(|i| !out.excluded.contains(i) && Some(*i) != local)
            .collect();
        candidates.extend(local.filter(|i| !out.excluded.contains(i)));
        let not_enough = |report: &RoundReport, available: usize| {
            // A block is worth completing only on the word of more witnesses than may be
            // faulty: then at least one honest witness checked it and released a share for it.
            // Fewer claims prove nothing (a faulty witness can claim a lock on any block it
            // made up), and fewer locked witnesses cannot stall the position anyway.
            if let Some((locked, witnesses)) = report.most_locked()
                && witnesses > max_faulty(roster.len())
            {
                return AppendError::Locked {
                    index: block.index(),
                    block: Box::new(locked.clone()),
                    witnesses,
                };
            }
            not_enough_witnesses(block, request, roster, report, available)
        };
        if candidates.len() < roster.threshold() {
            return Err(not_enough(&out.report, candidates.len()));
        }
        // Commit.
        let commits = join_all(candidates.iter().map(|&index| {
            let key = roster.members()[index].key;
            let request = Request::Commit {
                round,
                block: Box::new(block.clone()),
                level: request.level,
            };
            async move {
                (
                    index,
                    key,
                    call(transport, key, request, config.commit_timeout).await,
                )
            }
        }))
        .await;
        let message = request.message;
        let mut aggregator = Aggregator::new(roster, message.as_bytes());
        let mut committed = Vec::new();
        for (index, key, answer) in commits {
            match answer {
                Ok(Response::Committed(commitment)) => {
                    if aggregator
                        .add_commitment(&Contribution::single(roster, index, &commitment))
                        .is_ok()
                    {
                        committed.push((index, key));
                    } else {
                        out.wrong(index, key);
                    }
                }
                // A lock is only evidence for the position proposed, on another block.
                Ok(Response::Locked(locked))
                    if locked.chain_id() == block.chain_id()
                        && locked.index() == block.index()
                        && locked.hash() != block.hash() =>
                {
                    out.unreachable(
                        index,
                        key,
                        format!("already signed block {} here", locked.hash()),
                    );
                    out.report.locked.push((key, locked));
                }
                Ok(other) => {
                    out.unreachable(index, key, refusal_text(&other));
                }
                Err(error) => {
                    out.unreachable(index, key, error);
                }
            }
        }
        if committed.len() < roster.threshold() {
            return Err(not_enough(&out.report, committed.len()));
        }
        let challenge = aggregator.challenge()?;
        // Respond.
        let answers = join_all(committed.iter().map(|&(index, key)| {
            let request = Request::Respond {
                round,
                challenge: challenge.clone(),
            };
            async move {
                (
                    index,
                    key,
                    call(transport, key, request, config.respond_timeout).await,
                )
            }
        }))
        .await;
        for (index, key, answer) in answers {
            match answer {
                Ok(Response::Responded(share)) if share.origin as usize == index => {
                    if aggregator.add_response(&share).is_err() {
                        out.wrong(index, key);
                    }
                }
                Ok(other) => {
                    out.unreachable(index, key, refusal_text(&other));
                }
                Err(error) => {
                    out.unreachable(index, key, error);
                }
            }
        }
        if aggregator
            .missing()
            .iter()
            .any(|index| out.excluded.contains(index))
        {
            tracing::info!(
                block = block.index(),
                level = request.level,
                "restarting the round without unresponsive witnesses"
            );
            continue;
        }
        match aggregator.finish() {
            Ok(signature) => {
                let link = ForwardLink {
                    chain_id: block.chain_id(),
                    from: request.from,
                    to: request.to,
                    level: request.level,
                    signature,
                };
                return Ok((link, out.report));
            }
            Err(chainiac_protocol::Error::InvalidResponses { culprits }) => {
                for index in culprits {
                    let key = roster.members()[index].key;
                    tracing::warn!(witness = %key, block = block.index(), "witness answered with a wrong response share; excluded");
                    out.wrong(index, key);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn not_enough_witnesses(
    block: &SkipBlock,
    request: &LinkRequest,
    roster: &Roster,
    report: &RoundReport,
    available: usize,
) -> AppendError {
    AppendError::NotEnoughWitnesses {
        index: block.index(),
        level: request.level,
        available,
        roster: roster.len(),
        threshold: roster.threshold(),
        unreachable: describe(
            report
                .unreachable
                .iter()
                .map(|(k, why)| format!("{} ({why})", &k.to_hex()[..16])),
        ),
        wrong: describe(report.wrong.iter().map(|k| k.to_hex()[..16].to_string())),
    }
}

fn refusal_text(response: &Response) -> String {
    match response {
        Response::Refused(reason) => format!("refused: {reason}"),
        _ => "unexpected answer".into(),
    }
}

/// Tree rounds: the leader commits itself, sends the round to its children in the tree, and
/// aggregates their subtrees' answers.
///
/// Nobody is excluded on another member's word. A member its parent reports as failed (when
/// committing) or as a culprit (when responding) is asked by the leader itself: at once, if the
/// round needs it to reach the threshold, and in every later attempt, outside the tree; so is
/// every ancestor of it below the leader (one of them reported it), so that as a leaf the liar
/// cannot accuse anyone again. Only what the leader sees itself (no answer, a refusal, a wrong
/// share) excludes a member. Attempts go on while each one excludes or makes direct another
/// member: at most [`MAX_TREE_ATTEMPTS`] + 2f (a faulty member can cost one attempt in the
/// tree and one more as a direct member). `None` when the tree cannot gather a threshold: the
/// caller falls back to a star round.
async fn sign_link_tree(
    transport: &dyn WitnessTransport,
    roster: &Roster,
    block: &SkipBlock,
    request: &LinkRequest,
    config: RoundConfig,
    leader: usize,
    out: &mut Exclusions,
) -> Option<ForwardLink> {
    let leader_key = roster.members()[leader].key;
    let key = |index: usize| roster.members()[index].key;
    let budget = |timeout: Duration| {
        u32::try_from(timeout.as_millis())
            .unwrap_or(u32::MAX)
            .min(MAX_TREE_BUDGET_MS)
    };
    // Members the leader talks to itself, outside the tree.
    let mut direct: BTreeSet<usize> = BTreeSet::new();
    let attempts = MAX_TREE_ATTEMPTS.saturating_add(
        u32::try_from(max_faulty(roster.len()).saturating_mul(2)).unwrap_or(u32::MAX),
    );
    while out.report.attempts < attempts {
        out.report.attempts += 1;
        direct.retain(|member| !out.excluded.contains(member) && *member != leader);
        let progress_before = (out.excluded.len(), direct.len());
        let round = round_id(request, out.report.attempts);
        let available = (0..roster.len())
            .filter(|i| !out.excluded.contains(i))
            .count();
        let in_tree = ParticipationMask::from_indices(
            roster.len(),
            (0..roster.len()).filter(|i| !out.excluded.contains(i) && !direct.contains(i)),
        );
        if available < roster.threshold() || !in_tree.contains(leader) {
            return None;
        }
        let tree = match RoundTree::for_leader(leader, in_tree, config.tree_branching) {
            Ok(tree) => tree,
            Err(reason) => {
                tracing::warn!(%reason, "cannot lay out a tree round");
                return None;
            }
        };
        let commit_directly = |members: Vec<usize>| {
            join_all(members.into_iter().map(|member| {
                let request = Request::Commit {
                    round,
                    block: Box::new(block.clone()),
                    level: request.level,
                };
                async move {
                    (
                        member,
                        call(transport, key(member), request, config.commit_timeout).await,
                    )
                }
            }))
        };
        // Commit: the leader itself, each child for its subtree, and the direct members.
        let own = Request::Commit {
            round,
            block: Box::new(block.clone()),
            level: request.level,
        };
        let children = tree.children(leader);
        // Children first: the leader's own witness answers synchronously.
        let (answers, direct_answers, own) = futures::join!(
            join_all(children.iter().map(|&child| {
                let request = Request::TreeCommit {
                    round,
                    block: Box::new(block.clone()),
                    level: request.level,
                    layout: tree.layout().clone(),
                    budget_ms: budget(config.commit_timeout),
                };
                async move {
                    (
                        child,
                        call(transport, key(child), request, config.commit_timeout).await,
                    )
                }
            })),
            commit_directly(direct.iter().copied().collect()),
            call(transport, leader_key, own, config.commit_timeout),
        );
        let Ok(Response::Committed(own)) = own else {
            tracing::warn!("the leader's own witness did not commit");
            return None;
        };
        let message = request.message;
        let mut aggregator = Aggregator::new(roster, message.as_bytes());
        if aggregator
            .add_commitment(&Contribution::single(roster, leader, &own))
            .is_err()
        {
            return None;
        }
        let mut committed = Vec::new();
        // Members the children report as failed.
        let mut accused: Vec<usize> = Vec::new();
        // (Each accused member's ancestors, the accuser among them, are direct from the next
        // attempt: the leader cannot tell which of them lied, and a leaf accuses no one.)
        for (child, answer) in answers {
            match accept_commit(&tree, child, &mut aggregator, answer) {
                Ok((contribution, failed)) => {
                    accused.extend(failed.present());
                    committed.push((child, contribution.participants));
                }
                Err(reason) => out.unreachable(child, key(child), reason),
            }
        }
        let mut direct_committed = Vec::new();
        add_direct_commitments(
            roster,
            &mut aggregator,
            direct_answers,
            &mut direct_committed,
            out,
        );
        if !accused.is_empty() {
            tracing::debug!(
                block = block.index(),
                accused = accused.len(),
                "members reported as failed by their parent are asked directly"
            );
            if aggregator.covered().count() < roster.threshold() {
                let answers = commit_directly(accused.clone()).await;
                add_direct_commitments(
                    roster,
                    &mut aggregator,
                    answers,
                    &mut direct_committed,
                    out,
                );
            }
            for member in accused {
                direct.insert(member);
                demote_path_to(&tree, member, &mut direct);
            }
        }
        if aggregator.covered().count() < roster.threshold() {
            if (out.excluded.len(), direct.len()) == progress_before {
                return None;
            }
            tracing::info!(
                block = block.index(),
                level = request.level,
                covered = aggregator.covered().count(),
                "tree round below the threshold; restarting without the failed witnesses"
            );
            continue;
        }
        let challenge = aggregator.challenge().ok()?;
        // Respond: the leader itself, each child that committed for its subtree, and the
        // direct members that committed.
        let own = Request::Respond {
            round,
            challenge: challenge.clone(),
        };
        let (answers, direct_answers, own) = futures::join!(
            join_all(committed.iter().map(|(child, _)| {
                let request = Request::TreeRespond {
                    round,
                    challenge: challenge.clone(),
                    budget_ms: budget(config.respond_timeout),
                };
                call(transport, key(*child), request, config.respond_timeout)
            })),
            join_all(direct_committed.iter().map(|&member| {
                let request = Request::Respond {
                    round,
                    challenge: challenge.clone(),
                };
                async move {
                    (
                        member,
                        call(transport, key(member), request, config.respond_timeout).await,
                    )
                }
            })),
            call(transport, leader_key, own, config.respond_timeout),
        );
        let Ok(Response::Responded(own)) = own else {
            tracing::warn!("the leader's own witness did not respond");
            return None;
        };
        if aggregator.add_response(&own).is_err() {
            return None;
        }
        let mut failed = false;
        for ((child, covered), answer) in committed.iter().zip(answers) {
            if let Err((culprits, reason)) =
                accept_response(*child, covered, &mut aggregator, answer)
            {
                failed = true;
                if culprits.count() == 1 && culprits.contains(*child) {
                    // The leader saw the child fail itself.
                    out.unreachable(*child, key(*child), reason);
                } else {
                    tracing::debug!(
                        block = block.index(),
                        child,
                        culprits = culprits.count(),
                        "members blamed by their parent are asked directly in the next attempt"
                    );
                    for culprit in culprits.present() {
                        direct.insert(culprit);
                        demote_path_to(&tree, culprit, &mut direct);
                    }
                }
            }
        }
        for (member, answer) in direct_answers {
            match answer {
                Ok(Response::Responded(share)) if share.origin as usize == member => {
                    if aggregator.add_response(&share).is_err() {
                        failed = true;
                        out.wrong(member, key(member));
                    }
                }
                Ok(other) => {
                    failed = true;
                    out.unreachable(member, key(member), refusal_text(&other));
                }
                Err(error) => {
                    failed = true;
                    out.unreachable(member, key(member), error);
                }
            }
        }
        if failed {
            if (out.excluded.len(), direct.len()) == progress_before {
                return None;
            }
            continue;
        }
        match aggregator.finish() {
            Ok(signature) => {
                return Some(ForwardLink {
                    chain_id: block.chain_id(),
                    from: request.from,
                    to: request.to,
                    level: request.level,
                    signature,
                });
            }
            Err(chainiac_protocol::Error::InvalidResponses { culprits }) => {
                for index in culprits {
                    tracing::warn!(witness = %key(index), block = block.index(), "subtree answered with a wrong response; excluded");
                    out.wrong(index, key(index));
                }
            }
            Err(_) => return None,
        }
    }
    None
}

/// Makes direct every ancestor of `member` in `tree` below the root: one of them reported it.
fn demote_path_to(tree: &RoundTree, member: usize, direct: &mut BTreeSet<usize>) {
    let mut at = member;
    while let Some(parent) = tree.parent(at) {
        if parent == tree.root() || !direct.insert(parent) {
            break;
        }
        at = parent;
    }
}

/// Adds the commitments of members the leader asked directly; those that do not commit are
/// excluded (the leader saw it itself).
fn add_direct_commitments(
    roster: &Roster,
    aggregator: &mut Aggregator<'_>,
    answers: Vec<(usize, Result<Response, String>)>,
    committed: &mut Vec<usize>,
    out: &mut Exclusions,
) {
    for (member, answer) in answers {
        let key = roster.members()[member].key;
        match answer {
            Ok(Response::Committed(commitment)) => {
                if aggregator
                    .add_commitment(&Contribution::single(roster, member, &commitment))
                    .is_ok()
                {
                    committed.push(member);
                } else {
                    out.wrong(member, key);
                }
            }
            Ok(other) => out.unreachable(member, key, refusal_text(&other)),
            Err(error) => out.unreachable(member, key, error),
        }
    }
}

fn rand_bytes() -> [u8; 16] {
    use rand::RngExt;
    rand::rng().random()
}
