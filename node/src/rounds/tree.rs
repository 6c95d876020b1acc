//! Tree rounds: the leader sends a round down an aggregation tree instead of to every witness.
//! Each interior node commits itself, forwards the round to its children in parallel (with the
//! time budget shrinking per level), checks and sums their contributions with an [`Aggregator`],
//! and answers with its subtree's aggregate and the members that failed; the same for the
//! responses. The leader's side is in [`super::leader`]; the layout and the rules for a child's
//! answers are in `chainiac_protocol::cosi` ([`RoundTree`]); this module holds the interior
//! node's state machine ([`SubtreeRounds`]) and reads children's answers off the wire.
//!
//! Bounds: a tree request is answered only if it comes from the requester's parent in the tree
//! the request itself describes, the tree's branching and depth are bounded
//! ([`MAX_TREE_BRANCHING`](chainiac_net::wire::MAX_TREE_BRANCHING),
//! [`MAX_TREE_DEPTH`](chainiac_net::wire::MAX_TREE_DEPTH)), so one request makes a node send at
//! most `branching` requests, and at most [`MAX_SUBTREE_ROUNDS`] rounds are kept, each for at
//! most [`ROUND_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chainiac_net::wire::{MAX_TREE_BUDGET_MS, Request, Response};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{
    Aggregator, Challenge, Contribution, ParticipationMask, ResponseShare, Roster, RoundTree,
    TreeLayout, blame_for_incomplete_subtree, child_budget,
};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::SkipBlock;
use futures::future::join_all;
use tokio::time::Instant;

use super::transport::{BoxFuture, WitnessTransport, call};
use super::witness::{Asker, Committed, ROUND_TTL};

/// Most tree rounds an interior node keeps state for at once.
pub const MAX_SUBTREE_ROUNDS: usize = 1024;

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis())
        .unwrap_or(u32::MAX)
        .min(MAX_TREE_BUDGET_MS)
}

/// Reads a child's answer to a tree commit and adds its contribution to `aggregator` by the
/// tree's rules ([`RoundTree::accept_child_commitment`]). Returns the contribution and the
/// members below the child that failed, or why the child is left out.
pub fn accept_commit(
    tree: &RoundTree,
    child: usize,
    aggregator: &mut Aggregator<'_>,
    answer: Result<Response, String>,
) -> Result<(Contribution, ParticipationMask), String> {
    let (contribution, failed) = match answer? {
        Response::SubtreeCommitted {
            contribution,
            failed,
        } => (contribution, failed),
        Response::Refused(reason) => return Err(format!("refused: {reason}")),
        _ => return Err("unexpected answer to a tree commit".into()),
    };
    tree.accept_child_commitment(child, &contribution, &failed, aggregator)
        .map_err(|e| e.to_string())?;
    Ok((contribution, failed))
}

/// Reads a child's answer to a tree respond and adds its share to `aggregator` (shares are
/// checked, with the others, when the aggregator sums them). On failure returns the culprits
/// ([`blame_for_incomplete_subtree`]) and why.
pub fn accept_response(
    child: usize,
    covered: &ParticipationMask,
    aggregator: &mut Aggregator<'_>,
    answer: Result<Response, String>,
) -> Result<(), (ParticipationMask, String)> {
    let blame_child = |why: String| Err((blame_for_incomplete_subtree(child, covered, None), why));
    match answer {
        Ok(Response::SubtreeResponded(share)) if share.origin as usize == child => {
            match aggregator.add_response(&share) {
                Ok(()) => Ok(()),
                Err(error) => blame_child(format!("invalid response: {error}")),
            }
        }
        Ok(Response::SubtreeIncomplete { culprits }) => Err((
            blame_for_incomplete_subtree(child, covered, Some(&culprits)),
            format!("reported by member {child}"),
        )),
        Ok(Response::Refused(reason)) => blame_child(format!("refused: {reason}")),
        Ok(_) => blame_child("unexpected answer to a tree respond".into()),
        Err(error) => blame_child(error),
    }
}

/// What an interior node needs from its node: its own witness, and the network to reach its
/// children (the [`WitnessTransport`] supertrait).
pub trait SubtreeHost: WitnessTransport {
    /// This node's witness checks `block` and commits (syncing first if it is behind).
    /// Errors are refusal texts.
    fn commit_own(
        &self,
        round: Hash,
        block: Arc<SkipBlock>,
        level: u32,
    ) -> BoxFuture<'_, Result<Committed, String>>;

    /// This node's witness answers the challenge (recording the position first).
    fn respond_own(
        &self,
        round: Hash,
        challenge: Challenge,
    ) -> BoxFuture<'_, Result<ResponseShare, String>>;

    /// Drops this node's nonces for `round`.
    fn abandon_own(&self, round: Hash);

    /// Whether the request being answered was sent by the node with key `key`.
    fn sent_by(&self, key: &PublicKey) -> bool;

    /// Who sent the request being answered: tree rounds are kept per asker, so that a peer
    /// replaying a round id cannot take it from the real parent.
    fn asker(&self) -> Asker;
}

struct SubtreeRound {
    roster: Roster,
    message: Hash,
    me: usize,
    parent: PublicKey,
    tree: RoundTree,
    /// This node's own contribution first, then each accepted child's.
    contributions: Vec<Contribution>,
    created: Instant,
}

/// The tree rounds an interior node takes part in, between their commit and respond steps.
#[derive(Default)]
pub struct SubtreeRounds {
    rounds: Mutex<HashMap<(Asker, Hash), SubtreeRound>>,
}

impl std::fmt::Debug for SubtreeRounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rounds = self.rounds.lock().map(|r| r.len()).unwrap_or_default();
        f.debug_struct("SubtreeRounds")
            .field("rounds", &rounds)
            .finish()
    }
}

impl SubtreeRounds {
    /// No rounds.
    pub fn new() -> Self {
        Self::default()
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, HashMap<(Asker, Hash), SubtreeRound>> {
        self.rounds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers a [`Request::TreeCommit`]: commits, forwards to the children, and returns the
    /// subtree's aggregate commitment with the members that failed.
    pub async fn commit(
        &self,
        host: &dyn SubtreeHost,
        round: Hash,
        block: SkipBlock,
        level: u32,
        layout: TreeLayout,
        budget_ms: u32,
    ) -> Response {
        let started = Instant::now();
        let block = Arc::new(block);
        let budget = Duration::from_millis(u64::from(budget_ms.min(MAX_TREE_BUDGET_MS)));
        let committed = match host.commit_own(round, block.clone(), level).await {
            Ok(committed) => committed,
            Err(reason) => return Response::Refused(reason),
        };
        let refuse = |reason: String| {
            host.abandon_own(round);
            Response::Refused(reason)
        };
        let roster = &committed.roster;
        let me = committed.index;
        let tree = match RoundTree::new(layout, roster.len()) {
            Ok(tree) => tree,
            Err(reason) => return refuse(format!("invalid tree: {reason}")),
        };
        let Some(parent) = tree.parent(me) else {
            return refuse("this node is not below the root of the tree".into());
        };
        let parent = roster.members()[parent].key;
        if !host.sent_by(&parent) {
            return refuse("tree requests are answered only for the parent in the tree".into());
        }
        {
            let mut rounds = self.rounds();
            rounds.retain(|_, round| round.created.elapsed() < ROUND_TTL);
            if rounds.len() >= MAX_SUBTREE_ROUNDS || rounds.contains_key(&(host.asker(), round)) {
                return refuse("too many tree rounds in progress, or a repeated round".into());
            }
        }
        let (_, height) = tree.subtree(me);
        let children = tree.children(me);
        let budget = child_budget(budget.saturating_sub(started.elapsed()), height);
        let answers = join_all(children.iter().map(|&child| {
            let key = roster.members()[child].key;
            let request = Request::TreeCommit {
                round,
                block: Box::new(block.as_ref().clone()),
                level,
                layout: tree.layout().clone(),
                budget_ms: millis(budget),
            };
            async move { (child, call(host, key, request, budget).await) }
        }))
        .await;
        let mut aggregator = Aggregator::new(roster, committed.message.as_bytes());
        let own = Contribution::single(roster, me, &committed.commitment);
        if let Err(error) = aggregator.add_commitment(&own) {
            return refuse(format!("own commitment: {error}"));
        }
        let mut failed = ParticipationMask::empty(roster.len());
        let mut contributions = vec![own];
        for (child, answer) in answers {
            match accept_commit(&tree, child, &mut aggregator, answer) {
                Ok((contribution, below)) => {
                    contributions.push(contribution);
                    failed.union_with(&below);
                }
                Err(reason) => {
                    tracing::debug!(child, %reason, "child left out of the subtree");
                    failed.set(child);
                }
            }
        }
        let contribution = aggregator.commitment(me);
        drop(aggregator);
        let Committed {
            roster, message, ..
        } = committed;
        self.rounds().insert(
            (host.asker(), round),
            SubtreeRound {
                roster,
                message,
                me,
                parent,
                tree,
                contributions,
                created: Instant::now(),
            },
        );
        Response::SubtreeCommitted {
            contribution,
            failed,
        }
    }

    /// Answers a [`Request::TreeRespond`]: responds, collects the responses of the children
    /// that committed, and returns the subtree's checked response, or the culprits.
    pub async fn respond(
        &self,
        host: &dyn SubtreeHost,
        round: Hash,
        challenge: Challenge,
        budget_ms: u32,
    ) -> Response {
        let started = Instant::now();
        let budget = Duration::from_millis(u64::from(budget_ms.min(MAX_TREE_BUDGET_MS)));
        let state = {
            let mut rounds = self.rounds();
            let key = (host.asker(), round);
            let from_parent = rounds
                .get(&key)
                .is_some_and(|state| host.sent_by(&state.parent));
            if from_parent {
                rounds.remove(&key)
            } else {
                None
            }
        };
        let Some(state) = state else {
            return Response::Refused("unknown or expired tree round".into());
        };
        let mut aggregator = Aggregator::new(&state.roster, state.message.as_bytes());
        for contribution in &state.contributions {
            if let Err(error) = aggregator.add_commitment(contribution) {
                host.abandon_own(round);
                return Response::Refused(format!("stored contribution: {error}"));
            }
        }
        if let Err(error) = aggregator.set_challenge(challenge.clone()) {
            host.abandon_own(round);
            return Response::Refused(format!("invalid challenge: {error}"));
        }
        let (_, height) = state.tree.subtree(state.me);
        let budget = child_budget(budget.saturating_sub(started.elapsed()), height);
        let children = join_all(state.contributions.iter().skip(1).map(|contribution| {
            let child = contribution.origin as usize;
            let key = state.roster.members()[child].key;
            let request = Request::TreeRespond {
                round,
                challenge: challenge.clone(),
                budget_ms: millis(budget),
            };
            async move { call(host, key, request, budget).await }
        }));
        let (own, answers) = futures::join!(host.respond_own(round, challenge), children);
        let own = match own {
            Ok(share) => share,
            Err(reason) => return Response::Refused(reason),
        };
        let mut culprits = ParticipationMask::empty(state.roster.len());
        for (contribution, answer) in state.contributions.iter().skip(1).zip(answers) {
            let child = contribution.origin as usize;
            if let Err((blamed, reason)) =
                accept_response(child, &contribution.participants, &mut aggregator, answer)
            {
                tracing::debug!(child, %reason, "subtree response failed");
                culprits.union_with(&blamed);
            }
        }
        if culprits.count() > 0 {
            return Response::SubtreeIncomplete { culprits };
        }
        if let Err(error) = aggregator.add_response(&own) {
            return Response::Refused(format!("own response: {error}"));
        }
        match aggregator.response(state.me) {
            Ok(share) => Response::SubtreeResponded(share),
            Err(chainiac_protocol::Error::InvalidResponses { culprits }) => {
                Response::SubtreeIncomplete {
                    culprits: ParticipationMask::from_indices(state.roster.len(), culprits),
                }
            }
            Err(error) => Response::Refused(format!("subtree response: {error}")),
        }
    }
}

#[cfg(test)]
mod tests;
