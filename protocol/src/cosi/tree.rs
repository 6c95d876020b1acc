//! The shape of an aggregation tree: which witness sends its commitments and responses to which.

use crate::{Error, Result};

/// A complete tree of the given branching factor over the participants, in heap order: the
/// participant at position `p` has the ones at positions `p·k + 1 ..= p·k + k` as children. The
/// first participant is the root (the leader). Branching `n - 1` or more is the star.
///
/// Each interior node runs an [`super::Aggregator`] over its subtree; since commitments and
/// responses are sums, the signature is the same as with a star.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregationTree {
    participants: Vec<usize>,
    branching: usize,
}

impl AggregationTree {
    /// A tree over `participants` (roster indices, leader first) with `branching` children per
    /// node.
    pub fn new(participants: Vec<usize>, branching: usize) -> Result<Self> {
        if participants.is_empty() {
            return Err(Error::InvalidTree {
                reason: "no participants",
            });
        }
        if branching == 0 {
            return Err(Error::InvalidTree {
                reason: "branching factor must be at least 1",
            });
        }
        let mut sorted = participants.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Error::InvalidTree {
                reason: "a participant appears twice",
            });
        }
        Ok(Self {
            participants,
            branching,
        })
    }

    /// The star: every participant reports to the leader.
    pub fn star(participants: Vec<usize>) -> Result<Self> {
        let branching = participants.len().saturating_sub(1).max(1);
        Self::new(participants, branching)
    }

    /// The leader.
    pub fn root(&self) -> usize {
        self.participants[0]
    }

    /// Every participant, leader first.
    pub fn participants(&self) -> &[usize] {
        &self.participants
    }

    fn position(&self, witness: usize) -> Option<usize> {
        self.participants.iter().position(|&p| p == witness)
    }

    /// The witnesses that report to `witness`.
    pub fn children(&self, witness: usize) -> Vec<usize> {
        let Some(position) = self.position(witness) else {
            return Vec::new();
        };
        let first = position.saturating_mul(self.branching).saturating_add(1);
        let last = first
            .saturating_add(self.branching)
            .min(self.participants.len());
        self.participants
            .get(first..last)
            .map(<[usize]>::to_vec)
            .unwrap_or_default()
    }

    /// The witness `witness` reports to; `None` for the root and non-participants.
    pub fn parent(&self, witness: usize) -> Option<usize> {
        let position = self.position(witness)?;
        if position == 0 {
            return None;
        }
        Some(self.participants[(position - 1) / self.branching])
    }

    /// Number of levels below the root (0 for a lone leader, 1 for a star).
    pub fn depth(&self) -> usize {
        let mut depth = 0;
        let mut position = self.participants.len() - 1;
        while position > 0 {
            position = (position - 1) / self.branching;
            depth += 1;
        }
        depth
    }

    /// `witness` and everybody below it, in pre-order.
    pub fn subtree(&self, witness: usize) -> Vec<usize> {
        let mut out = vec![witness];
        let mut next = 0;
        while next < out.len() {
            let children = self.children(out[next]);
            out.extend(children);
            next += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_layout() {
        let Ok(tree) = AggregationTree::new((10..17).collect(), 2) else {
            panic!()
        };
        assert_eq!(tree.root(), 10);
        assert_eq!(tree.children(10), vec![11, 12]);
        assert_eq!(tree.children(11), vec![13, 14]);
        assert_eq!(tree.children(12), vec![15, 16]);
        assert!(tree.children(13).is_empty());
        assert_eq!(tree.parent(16), Some(12));
        assert_eq!(tree.parent(10), None);
        assert_eq!(tree.depth(), 2);
        assert_eq!(tree.subtree(11), vec![11, 13, 14]);
        assert_eq!(tree.subtree(10).len(), 7);
    }

    #[test]
    fn star_and_depth() {
        let Ok(star) = AggregationTree::star((0..100).collect()) else {
            panic!()
        };
        assert_eq!(star.depth(), 1);
        assert_eq!(star.children(0).len(), 99);
        let Ok(alone) = AggregationTree::star(vec![3]) else {
            panic!()
        };
        assert_eq!(alone.depth(), 0);
        let Ok(deep) = AggregationTree::new((0..1024).collect(), 4) else {
            panic!()
        };
        assert_eq!(deep.depth(), 5);
    }

    #[test]
    fn invalid_trees_are_rejected() {
        assert!(AggregationTree::new(vec![], 2).is_err());
        assert!(AggregationTree::new(vec![1, 2], 0).is_err());
        assert!(AggregationTree::new(vec![1, 2, 1], 2).is_err());
    }

    #[test]
    fn every_participant_is_in_exactly_one_subtree_of_the_root_children() {
        for branching in 1..6 {
            let Ok(tree) = AggregationTree::new((0..50).collect(), branching) else {
                panic!()
            };
            let mut seen: Vec<usize> = tree
                .children(0)
                .iter()
                .flat_map(|&child| tree.subtree(child))
                .collect();
            seen.push(0);
            seen.sort_unstable();
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
        }
    }
}
