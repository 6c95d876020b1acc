//! Tree rounds: the layout a leader sends down an aggregation tree, the tree every node derives
//! from it (with bounds on its shape), the time each level gives the next, and the rules a
//! parent applies to a child's answers. The leader and every interior node apply the same rules,
//! so a subtree that lies is caught by its parent, and a parent that lies by the leader.

use core::time::Duration;

use crate::encoding::{Decode, Encode, Reader, Writer};
use crate::{Error, Result};

use super::{AggregationTree, Aggregator, Contribution, ParticipationMask};

/// Largest branching factor of an aggregation tree a node takes part in (each tree request
/// makes an interior node send at most this many requests).
pub const MAX_TREE_BRANCHING: u32 = 256;
/// Deepest aggregation tree a node takes part in (levels below the leader).
pub const MAX_TREE_DEPTH: usize = 16;

/// The shape of a tree round, as sent to every node of the tree: the leader's roster index, the
/// candidates (a mask over the roster, the leader included) and the branching factor. The tree
/// is the [`AggregationTree`] over the leader followed by the other candidates in ascending
/// roster order, so every node derives the same tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeLayout {
    /// Roster index of the leader (the root).
    pub leader: u32,
    /// Roster members asked to take part, the leader included.
    pub candidates: ParticipationMask,
    /// Children per interior node.
    pub branching: u32,
}

impl Encode for TreeLayout {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u32(self.leader)
            .value(&self.candidates)
            .u32(self.branching);
    }
}

impl Decode for TreeLayout {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let leader = reader.u32("tree leader")?;
        let candidates = ParticipationMask::decode_from(reader)?;
        let branching = reader.u32("tree branching")?;
        if !(2..=MAX_TREE_BRANCHING).contains(&branching) {
            return Err(Error::InvalidTree {
                reason: "branching factor out of range",
            });
        }
        Ok(Self {
            leader,
            candidates,
            branching,
        })
    }
}

/// The aggregation tree of one round, checked against the roster's size.
#[derive(Clone, Debug)]
pub struct RoundTree {
    tree: AggregationTree,
    branching: usize,
    roster_len: usize,
    layout: TreeLayout,
}

impl RoundTree {
    /// The tree a layout describes over a roster of `roster_len` members. Refuses a layout
    /// whose mask is over another roster size, whose leader is not a candidate, or whose
    /// branching or depth is out of bounds.
    pub fn new(layout: TreeLayout, roster_len: usize) -> Result<Self> {
        let leader = layout.leader as usize;
        if layout.candidates.len() != roster_len {
            return Err(Error::MaskLengthMismatch {
                mask: layout.candidates.len(),
                roster: roster_len,
            });
        }
        if !layout.candidates.contains(leader) {
            return Err(Error::InvalidTree {
                reason: "the tree's leader is not among its candidates",
            });
        }
        if !(2..=MAX_TREE_BRANCHING).contains(&layout.branching) {
            return Err(Error::InvalidTree {
                reason: "branching factor out of range",
            });
        }
        let branching = layout.branching as usize;
        let participants: Vec<usize> = core::iter::once(leader)
            .chain(layout.candidates.present().filter(|&i| i != leader))
            .collect();
        let tree = AggregationTree::new(participants, branching)?;
        if tree.depth() > MAX_TREE_DEPTH {
            return Err(Error::InvalidTree {
                reason: "the tree is deeper than 16 levels",
            });
        }
        Ok(Self {
            tree,
            branching,
            roster_len,
            layout,
        })
    }

    /// The tree a leader lays out over `candidates` (which include it).
    pub fn for_leader(
        leader: usize,
        candidates: ParticipationMask,
        branching: usize,
    ) -> Result<Self> {
        let roster_len = candidates.len();
        let out_of_range = Error::InvalidTree {
            reason: "index or branching factor out of range",
        };
        let layout = TreeLayout {
            leader: u32::try_from(leader).map_err(|_| out_of_range.clone())?,
            candidates,
            branching: u32::try_from(branching).map_err(|_| out_of_range)?,
        };
        Self::new(layout, roster_len)
    }

    /// The layout to send.
    pub fn layout(&self) -> &TreeLayout {
        &self.layout
    }

    /// The underlying aggregation tree.
    pub fn tree(&self) -> &AggregationTree {
        &self.tree
    }

    /// The leader.
    pub fn root(&self) -> usize {
        self.tree.root()
    }

    /// The members that report to `member`.
    pub fn children(&self, member: usize) -> Vec<usize> {
        self.tree.children(member)
    }

    /// The member `member` reports to.
    pub fn parent(&self, member: usize) -> Option<usize> {
        self.tree.parent(member)
    }

    /// The members of the subtree rooted at `member`, and its height (levels below `member`).
    /// In heap order each level of a subtree is a contiguous range of positions, so this costs
    /// the subtree's size.
    pub fn subtree(&self, member: usize) -> (ParticipationMask, usize) {
        let order = self.tree.participants();
        let mut mask = ParticipationMask::empty(self.roster_len);
        let Some(position) = order.iter().position(|&m| m == member) else {
            return (mask, 0);
        };
        let (mut low, mut high) = (position, position + 1);
        let mut height = 0;
        loop {
            for &m in &order[low..high] {
                mask.set(m);
            }
            let next_low = low.saturating_mul(self.branching).saturating_add(1);
            let next_high = (high - 1)
                .saturating_mul(self.branching)
                .saturating_add(self.branching + 1)
                .min(order.len());
            if next_low >= next_high {
                return (mask, height);
            }
            (low, high) = (next_low, next_high);
            height += 1;
        }
    }

    /// The rule for `child`'s answer to a tree commit: an aggregate `contribution` for its own
    /// subtree (origin the child, participants inside its subtree) and the members below it that
    /// `failed` (inside its subtree, not among the participants, not the child itself). The
    /// contribution is added to `aggregator`, which refuses points that do not decode and
    /// overlaps with contributions already added.
    pub fn accept_child_commitment(
        &self,
        child: usize,
        contribution: &Contribution,
        failed: &ParticipationMask,
        aggregator: &mut Aggregator<'_>,
    ) -> Result<()> {
        let refuse = |reason: &'static str| Err(Error::InvalidSubtreeAnswer { child, reason });
        if contribution.origin as usize != child {
            return refuse("answered for another member");
        }
        let (subtree, _) = self.subtree(child);
        if !subtree.contains_all(&contribution.participants) {
            return refuse("claims members outside its subtree");
        }
        if !subtree.contains_all(failed)
            || !failed.is_disjoint(&contribution.participants)
            || failed.contains(child)
        {
            return refuse("reports failures outside its subtree or among its participants");
        }
        aggregator.add_commitment(contribution)
    }
}

/// Whom a parent blames when `child`, which committed for the members `covered`, cannot answer
/// the challenge for all of them: the members the child reports (`reported`), if that is a
/// non-empty set of members it committed for; otherwise the child itself, since it either lies
/// about its subtree or failed.
pub fn blame_for_incomplete_subtree(
    child: usize,
    covered: &ParticipationMask,
    reported: Option<&ParticipationMask>,
) -> ParticipationMask {
    match reported {
        Some(culprits) if culprits.count() > 0 && covered.contains_all(culprits) => {
            culprits.clone()
        }
        _ => ParticipationMask::from_indices(covered.len(), [child]),
    }
}

/// The time a node whose subtree has `height` levels below it gives its children, out of its
/// own `budget`: it keeps one equal share per level for its own work and the way back.
pub fn child_budget(budget: Duration, height: usize) -> Duration {
    let height = u32::try_from(height).unwrap_or(u32::MAX).min(64);
    if height == 0 {
        return Duration::ZERO;
    }
    budget * height / (height + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(leader: u32, candidates: ParticipationMask, branching: u32) -> TreeLayout {
        TreeLayout {
            leader,
            candidates,
            branching,
        }
    }

    #[test]
    fn layouts_are_checked() {
        assert!(RoundTree::new(layout(0, ParticipationMask::full(9), 2), 9).is_ok());
        assert!(RoundTree::new(layout(0, ParticipationMask::full(9), 2), 10).is_err());
        let without_leader = ParticipationMask::from_indices(9, 1..9);
        assert!(RoundTree::new(layout(0, without_leader, 2), 9).is_err());
        assert!(RoundTree::new(layout(9, ParticipationMask::full(9), 2), 9).is_err());
        assert!(RoundTree::new(layout(0, ParticipationMask::full(9), 1), 9).is_err());
        assert!(
            RoundTree::new(
                layout(0, ParticipationMask::full(9), MAX_TREE_BRANCHING + 1),
                9
            )
            .is_err()
        );
        // The leader is the root, the other candidates follow in roster order.
        let Ok(tree) = RoundTree::new(layout(3, ParticipationMask::full(100), 2), 100) else {
            panic!("tree")
        };
        assert_eq!(tree.root(), 3);
        assert_eq!(tree.children(3), vec![0, 1]);
        assert_eq!(tree.parent(0), Some(3));
    }

    #[test]
    fn layouts_round_trip_and_bounds_hold() {
        let good = layout(3, ParticipationMask::from_indices(9, [0, 1, 3, 5, 8]), 2);
        let bytes = good.to_bytes();
        assert_eq!(TreeLayout::from_bytes(&bytes).ok(), Some(good.clone()));
        for branching in [0u32, 1, MAX_TREE_BRANCHING + 1] {
            let bad = TreeLayout {
                branching,
                ..good.clone()
            };
            assert!(
                TreeLayout::from_bytes(&bad.to_bytes()).is_err(),
                "{branching}"
            );
        }
    }

    #[test]
    fn subtrees_by_ranges_match_the_aggregation_tree() {
        for n in [1usize, 2, 5, 9, 31, 64, 100] {
            for branching in [2usize, 3, 8] {
                let candidates = ParticipationMask::from_indices(n, (0..n).filter(|i| i % 7 != 6));
                let leader = candidates.present().last().unwrap_or(0);
                let Ok(tree) = RoundTree::for_leader(leader, candidates, branching) else {
                    panic!("tree n={n} k={branching}")
                };
                for &member in tree.tree().participants() {
                    let (mask, height) = tree.subtree(member);
                    let mut expected: Vec<usize> = tree.tree().subtree(member);
                    expected.sort_unstable();
                    assert_eq!(
                        mask.present().collect::<Vec<_>>(),
                        expected,
                        "n={n} k={branching}"
                    );
                    if member == tree.root() {
                        assert_eq!(height, tree.tree().depth());
                    }
                    assert_eq!(height == 0, tree.children(member).is_empty());
                }
            }
        }
    }

    #[test]
    fn budgets_shrink_per_level() {
        let second = Duration::from_secs(1);
        assert_eq!(child_budget(second, 0), Duration::ZERO);
        assert_eq!(child_budget(second, 1), Duration::from_millis(500));
        assert_eq!(child_budget(second, 3), Duration::from_millis(750));
    }

    #[test]
    fn a_child_is_blamed_unless_it_names_members_it_committed_for() {
        let covered = ParticipationMask::from_indices(9, [1, 3, 4]);
        let inside = ParticipationMask::from_indices(9, [3]);
        let outside = ParticipationMask::from_indices(9, [5]);
        let child = ParticipationMask::from_indices(9, [1]);
        assert_eq!(
            blame_for_incomplete_subtree(1, &covered, Some(&inside)),
            inside
        );
        assert_eq!(
            blame_for_incomplete_subtree(1, &covered, Some(&outside)),
            child
        );
        assert_eq!(
            blame_for_incomplete_subtree(1, &covered, Some(&ParticipationMask::empty(9))),
            child
        );
        assert_eq!(blame_for_incomplete_subtree(1, &covered, None), child);
    }

    #[test]
    fn child_commitments_must_stay_inside_their_subtree() {
        use crate::cosi::{Roster, RosterMember, commit};
        use crate::keys::SecretKey;
        let keys: Vec<SecretKey> = (1..=9u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let roster =
            Roster::with_default_threshold(keys.iter().map(RosterMember::from_secret).collect())
                .expect("roster");
        let tree =
            RoundTree::for_leader(0, ParticipationMask::full(9), 2).expect("tree over 9 members");
        let message = b"layout test";
        let single = |index: usize| {
            let (_, commitment) = commit(&keys[index], message, &mut rand::rng());
            Contribution::single(&roster, index, &commitment)
        };
        let child = tree.children(0)[0];
        let none = ParticipationMask::empty(9);
        // Its own commitment is fine.
        let mut aggregator = Aggregator::new(&roster, message);
        let own = single(child);
        tree.accept_child_commitment(child, &own, &none, &mut aggregator)
            .expect("own subtree");
        // Another member's commitment, a member outside the subtree, failures outside it.
        let other_child = tree.children(0)[1];
        let mut aggregator = Aggregator::new(&roster, message);
        let foreign = single(other_child);
        assert!(matches!(
            tree.accept_child_commitment(child, &foreign, &none, &mut aggregator),
            Err(Error::InvalidSubtreeAnswer { .. })
        ));
        let (subtree, _) = tree.subtree(child);
        let outsider = (0..9).find(|&m| !subtree.contains(m)).expect("outsider");
        let failed = ParticipationMask::from_indices(9, [outsider]);
        assert!(matches!(
            tree.accept_child_commitment(child, &own, &failed, &mut aggregator),
            Err(Error::InvalidSubtreeAnswer { .. })
        ));
        let itself = ParticipationMask::from_indices(9, [child]);
        assert!(matches!(
            tree.accept_child_commitment(child, &own, &itself, &mut aggregator),
            Err(Error::InvalidSubtreeAnswer { .. })
        ));
    }
}
