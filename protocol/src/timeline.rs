//! The timeline: each epoch, a Merkle tree over the (chain id, head hash) of every chain, and
//! the checks a client makes with it: the timeline block is fresh, and the head it is shown is
//! the one the timeline commits to (no freeze, no rollback, no split view).
//!
//! Leaves are one per chain, in the order chains entered the timeline: those of the first block
//! sorted by chain id, then the chains each later block adds, sorted by chain id, after the
//! others (so an epoch hashes only its changed paths again). A leaf is BLAKE3 under
//! [`domain::TIMELINE_LEAF`] of `chain_id || head`; an inner node is BLAKE3 under
//! [`domain::TIMELINE_NODE`] of `left || right`; a node without a right sibling is promoted to the
//! next level unchanged; the root of no leaves is BLAKE3 under [`domain::TIMELINE_EMPTY`] of
//! nothing.

use crate::cosi::{MAX_ROSTER_SIZE, Roster};
use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::hash::domain;
use crate::keys::{KeySignature, PublicKey, count_valid_signers};
use crate::{Error, Hash, Result};

mod shared;

use shared::{SharedIndex, SharedVec};

/// Most chains one timeline may cover (2^32).
pub const MAX_TIMELINE_CHAINS: u64 = 1 << 32;
/// Most sibling hashes in an inclusion proof (the depth of a tree of 2^32 leaves).
pub const MAX_PROOF_DEPTH: usize = 32;

/// One chain's head as the timeline records it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct TimelineEntry {
    /// The chain id.
    pub chain_id: Hash,
    /// Hash of the chain's latest block.
    pub head: Hash,
}

impl TimelineEntry {
    fn leaf(&self) -> Hash {
        Hash::of(
            domain::TIMELINE_LEAF,
            &[self.chain_id.as_bytes(), self.head.as_bytes()],
        )
    }
}

impl Encode for TimelineEntry {
    fn encode_to(&self, writer: &mut Writer) {
        writer.value(&self.chain_id).value(&self.head);
    }
}

impl Decode for TimelineEntry {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            chain_id: Hash::decode_from(reader)?,
            head: Hash::decode_from(reader)?,
        })
    }
}

fn node(left: &Hash, right: &Hash) -> Hash {
    Hash::of(domain::TIMELINE_NODE, &[left.as_bytes(), right.as_bytes()])
}

/// The Merkle tree of one epoch, kept whole so that inclusion proofs can be served.
///
/// Leaves are in the order chains entered the timeline: the next tree appends the chains a
/// block adds and hashes again only the paths of the leaves that changed. Clones share their
/// storage ([`shared`]), so the trees of consecutive epochs cost what their changed paths cost.
#[derive(Clone, Debug)]
pub struct TimelineTree {
    /// In leaf order.
    entries: SharedVec<TimelineEntry>,
    /// Chain id to leaf position.
    positions: SharedIndex,
    /// `levels[0]` are the leaves, the last level is the root.
    levels: Vec<SharedVec<Hash>>,
}

impl TimelineTree {
    /// Builds the tree of a timeline that recorded `entries` in one block: leaves sorted by
    /// chain id (given in any order; one entry per chain).
    pub fn build(mut entries: Vec<TimelineEntry>) -> Result<Self> {
        entries.sort_unstable_by_key(|entry| entry.chain_id);
        Self::in_leaf_order(entries)
    }

    /// Builds the tree whose leaves are `entries` in this order (as [`TimelineTree::entries`]
    /// lists them; one entry per chain).
    pub fn in_leaf_order(entries: Vec<TimelineEntry>) -> Result<Self> {
        if entries.len() as u64 > MAX_TIMELINE_CHAINS {
            return Err(Error::TooLong {
                what: "timeline",
                len: entries.len(),
                max: MAX_TIMELINE_CHAINS as usize,
            });
        }
        let mut positions: Vec<(Hash, u32)> = entries
            .iter()
            .enumerate()
            .map(|(position, entry)| (entry.chain_id, position as u32))
            .collect();
        positions.sort_unstable_by_key(|(chain_id, _)| *chain_id);
        if let Some(pair) = positions.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(Error::DuplicateTimelineChain {
                chain_id: pair[0].0,
            });
        }
        let mut levels = vec![entries.iter().map(TimelineEntry::leaf).collect::<Vec<_>>()];
        while levels.last().is_some_and(|level| level.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node(left, right),
                    [single] => *single,
                    _ => Hash::default(),
                })
                .collect();
            levels.push(above);
        }
        Ok(Self {
            entries: entries.into_iter().collect(),
            positions: SharedIndex::from_sorted(&positions),
            levels: levels
                .into_iter()
                .map(|level| level.into_iter().collect())
                .collect(),
        })
    }

    /// The tree of no chains.
    pub fn empty() -> Self {
        Self {
            entries: SharedVec::default(),
            positions: SharedIndex::default(),
            levels: vec![SharedVec::default()],
        }
    }

    /// This tree with `changes` (sorted by chain id, once each) applied: each change either
    /// gives a recorded chain another head or adds a chain, whose leaf goes after the others.
    /// Only the paths from the changed and added leaves to the root are hashed again; the
    /// rest is shared with `self`.
    pub fn with_changes(&self, changes: &[TimelineEntry]) -> Result<Self> {
        if let Some(pair) = changes
            .windows(2)
            .find(|pair| pair[0].chain_id >= pair[1].chain_id)
        {
            return Err(Error::DuplicateTimelineChain {
                chain_id: pair[1].chain_id,
            });
        }
        let mut tree = self.clone();
        let mut changed = Vec::with_capacity(changes.len());
        for change in changes {
            match tree.positions.get(&change.chain_id) {
                Some(position) => {
                    let position = position as usize;
                    if tree
                        .entries
                        .get(position)
                        .is_some_and(|entry| entry.head == change.head)
                    {
                        return Err(Error::InvalidTimeline {
                            reason: format!(
                                "the change of chain {} repeats the head already recorded",
                                change.chain_id
                            ),
                        });
                    }
                    tree.entries.set(position, *change);
                    tree.levels[0].set(position, change.leaf());
                    changed.push(position);
                }
                None => {
                    let position = tree.entries.len();
                    if position as u64 >= MAX_TIMELINE_CHAINS {
                        return Err(Error::TooLong {
                            what: "timeline",
                            len: position + 1,
                            max: MAX_TIMELINE_CHAINS as usize,
                        });
                    }
                    tree.entries.push(*change);
                    tree.positions.insert(change.chain_id, position as u32);
                    tree.levels[0].push(change.leaf());
                    changed.push(position);
                }
            }
        }
        changed.sort_unstable();
        changed.dedup();
        tree.hash_paths(changed);
        Ok(tree)
    }

    /// Hashes again the parents of the nodes at `changed` (ascending leaf positions) up to the
    /// root, adding the nodes (and levels) that added leaves need.
    fn hash_paths(&mut self, mut changed: Vec<usize>) {
        let mut level = 0;
        while self.levels[level].len() > 1 {
            if self.levels.len() == level + 1 {
                self.levels.push(SharedVec::default());
            }
            // Positions are ascending: parents come out ascending, deduplicated; new parents
            // are the last ones, in order.
            changed.dedup_by_key(|position| *position / 2);
            let (below, above) = self.levels.split_at_mut(level + 1);
            let (below, above) = (&below[level], &mut above[0]);
            for position in &mut changed {
                *position /= 2;
                let left = 2 * *position;
                let hash = match (below.get(left), below.get(left + 1)) {
                    (Some(left), Some(right)) => node(left, right),
                    (Some(single), None) => *single,
                    _ => Hash::default(),
                };
                if *position < above.len() {
                    above.set(*position, hash);
                } else {
                    above.push(hash);
                }
            }
            level += 1;
        }
    }

    /// The head recorded for `chain_id`.
    pub fn head_of(&self, chain_id: &Hash) -> Option<Hash> {
        let position = self.positions.get(chain_id)?;
        self.entries.get(position as usize).map(|entry| entry.head)
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|level| level.get(0)) {
            Some(root) => *root,
            None => Hash::of(domain::TIMELINE_EMPTY, &[]),
        }
    }

    /// The entries, in leaf order (the order chains entered the timeline).
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &TimelineEntry> + '_ {
        self.entries.iter()
    }

    /// Number of chains.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree has no chains.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// The head recorded for `chain_id`, with its inclusion proof.
    pub fn prove(&self, chain_id: &Hash) -> Option<(TimelineEntry, InclusionProof)> {
        let index = self.positions.get(chain_id)? as usize;
        let entry = *self.entries.get(index)?;
        let mut siblings = Vec::new();
        let mut position = index;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(position ^ 1) {
                siblings.push(*sibling);
            }
            position /= 2;
        }
        let proof = InclusionProof {
            leaf_index: index as u64,
            leaf_count: self.entries.len() as u64,
            siblings,
        };
        Some((entry, proof))
    }
}

/// The path from a leaf to the root.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InclusionProof {
    /// Position of the leaf among the leaves (in the order chains entered the timeline).
    pub leaf_index: u64,
    /// Number of leaves in the tree.
    pub leaf_count: u64,
    /// Sibling hashes from the leaf level up, skipping levels where the node was promoted.
    pub siblings: Vec<Hash>,
}

impl InclusionProof {
    /// Checks that `entry` is a leaf of the tree with root `root`.
    pub fn verify(&self, root: &Hash, entry: &TimelineEntry) -> Result<()> {
        if self.leaf_index >= self.leaf_count || self.leaf_count > MAX_TIMELINE_CHAINS {
            return Err(Error::InvalidInclusionProof {
                reason: "leaf index out of range",
            });
        }
        let mut hash = entry.leaf();
        let mut index = self.leaf_index;
        let mut count = self.leaf_count;
        let mut siblings = self.siblings.iter();
        while count > 1 {
            if index % 2 == 1 {
                let sibling = siblings.next().ok_or(Error::InvalidInclusionProof {
                    reason: "too few siblings",
                })?;
                hash = node(sibling, &hash);
            } else if index + 1 < count {
                let sibling = siblings.next().ok_or(Error::InvalidInclusionProof {
                    reason: "too few siblings",
                })?;
                hash = node(&hash, sibling);
            }
            index /= 2;
            count = count.div_ceil(2);
        }
        if siblings.next().is_some() {
            return Err(Error::InvalidInclusionProof {
                reason: "too many siblings",
            });
        }
        if hash != *root {
            return Err(Error::NotInTimeline {
                chain_id: entry.chain_id,
                head: entry.head,
            });
        }
        Ok(())
    }
}

impl Encode for InclusionProof {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .u64(self.leaf_index)
            .u64(self.leaf_count)
            .list(&self.siblings);
    }
}

impl Decode for InclusionProof {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("inclusion proof")?;
        Ok(Self {
            leaf_index: reader.u64("leaf index")?,
            leaf_count: reader.u64("leaf count")?,
            siblings: reader.list(MAX_PROOF_DEPTH, "inclusion proof siblings")?,
        })
    }
}

/// The payload of a timeline block: one epoch's commitment to every chain's head.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimelineCommit {
    /// Epoch number: the timestamp divided by the timeline's epoch length (integer division),
    /// greater than the previous block's (epochs with no block are skipped).
    pub epoch: u64,
    /// Unix time in seconds when the epoch was closed.
    pub timestamp: u64,
    /// Root of the epoch's [`TimelineTree`].
    pub root: Hash,
    /// Number of chains in the tree.
    pub chain_count: u64,
}

impl TimelineCommit {
    /// The commitment for `tree`.
    pub fn new(epoch: u64, timestamp: u64, tree: &TimelineTree) -> Self {
        Self {
            epoch,
            timestamp,
            root: tree.root(),
            chain_count: tree.len() as u64,
        }
    }

    /// What a client checks before accepting a head: this commitment is fresh, and `entry` is
    /// in it (`proof` must also be over this commitment's number of chains).
    pub fn check_head(
        &self,
        entry: &TimelineEntry,
        proof: &InclusionProof,
        now: u64,
        freshness: Freshness,
    ) -> Result<()> {
        freshness.check(self.timestamp, now)?;
        if proof.leaf_count != self.chain_count {
            return Err(Error::InvalidInclusionProof {
                reason: "proof is for a tree of another size",
            });
        }
        proof.verify(&self.root, entry)
    }
}

impl Encode for TimelineCommit {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .u64(self.epoch)
            .u64(self.timestamp)
            .value(&self.root)
            .u64(self.chain_count);
    }
}

impl Decode for TimelineCommit {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("timeline commit")?;
        Ok(Self {
            epoch: reader.u64("epoch")?,
            timestamp: reader.u64("timestamp")?,
            root: Hash::decode_from(reader)?,
            chain_count: reader.u64("chain count")?,
        })
    }
}

/// Most head changes one timeline block carries (64 bytes each, so the payload fits in a
/// block). When more chains moved in one epoch, the rest are recorded in the next epochs.
pub const MAX_BLOCK_CHANGES: usize = 60_000;

/// The payload of a timeline-chain block: the epoch's commitment and the changes since the
/// previous timeline block (chains whose head moved, and chains new to the timeline), sorted by
/// chain id. The entries the commitment covers are those of the previous block with these
/// changes applied ([`TimelineBlock::apply`]); a chain never leaves the timeline. Carrying
/// changes only keeps a block small whatever the number of chains.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TimelineBlock {
    /// The commitment clients check.
    pub commit: TimelineCommit,
    /// The heads that changed since the previous timeline block, sorted by chain id.
    pub changes: Vec<TimelineEntry>,
    /// When the block moves the timeline to another roster: the approvals of a threshold of
    /// the current roster's members ([`roster_change_digest`]). Empty otherwise.
    pub approvals: Vec<KeySignature>,
}

/// What a member of a timeline's roster signs to approve moving the timeline `timeline` from
/// the roster with hash `from` to the roster with hash `to`.
pub fn roster_change_digest(timeline: &Hash, from: &Hash, to: &Hash) -> Hash {
    Hash::of(
        domain::ROSTER_CHANGE,
        &[timeline.as_bytes(), from.as_bytes(), to.as_bytes()],
    )
}

/// Checks one member's approval of moving `timeline` from `current` to the roster with hash
/// `to`: it must be a valid signature of [`roster_change_digest`] by a member of `current`, and
/// `to` another roster. What a node checks before it keeps an approval a peer sent.
pub fn check_roster_approval(
    timeline: &Hash,
    current: &Roster,
    to: &Hash,
    approval: &KeySignature,
) -> Result<()> {
    if *to == current.hash() {
        return Err(Error::InvalidTimeline {
            reason: "the approved roster is the current one".into(),
        });
    }
    if current.index_of(&approval.signer).is_none() {
        return Err(Error::UnknownSigner {
            signer: approval.signer.id(),
            role: "timeline member",
        });
    }
    approval.verify(&roster_change_digest(timeline, &current.hash(), to))
}

impl TimelineBlock {
    /// The block for epoch `epoch` closed at `timestamp` that moves the timeline from
    /// `previous` (`None`: the empty timeline before the first block) by `changes` (any
    /// order). Returns the block and the tree it commits to.
    pub fn new(
        previous: Option<&TimelineTree>,
        epoch: u64,
        timestamp: u64,
        mut changes: Vec<TimelineEntry>,
    ) -> Result<(Self, TimelineTree)> {
        changes.sort_unstable_by_key(|entry| entry.chain_id);
        let tree = apply_changes(previous, &changes)?;
        let block = Self {
            commit: TimelineCommit::new(epoch, timestamp, &tree),
            changes,
            approvals: Vec::new(),
        };
        Ok((block, tree))
    }

    /// The tree this block commits to: `previous` (the tree of the previous timeline block,
    /// `None` for the first) with this block's changes applied. Refused if a change names a
    /// chain twice or repeats the head already recorded, or if the commitment does not match.
    pub fn apply(&self, previous: Option<&TimelineTree>) -> Result<TimelineTree> {
        let tree = apply_changes(previous, &self.changes)?;
        if tree.root() != self.commit.root || tree.len() as u64 != self.commit.chain_count {
            return Err(Error::InvalidTimeline {
                reason: format!(
                    "the commitment (root {}, {} chains) does not match the previous timeline with these changes (root {}, {} chains)",
                    self.commit.root,
                    self.commit.chain_count,
                    tree.root(),
                    tree.len()
                ),
            });
        }
        Ok(tree)
    }

    /// The head this block changes for `chain_id`, if it changes it.
    pub fn change_of(&self, chain_id: &Hash) -> Option<Hash> {
        self.changes
            .binary_search_by(|entry| entry.chain_id.cmp(chain_id))
            .ok()
            .map(|index| self.changes[index].head)
    }

    /// The rules for a timeline block of a timeline with epochs of `epoch_seconds`, following
    /// the one committing to `previous` (`None` after the genesis), at the witness's local time
    /// `now`, with clocks that may differ by `max_skew` seconds:
    ///
    /// * the epoch is the timestamp's: `epoch = timestamp / epoch_seconds`;
    /// * the timestamp is within `max_skew` of `now` (neither a block from the future nor a
    ///   stale proposal), so the epoch is at most the witness's current epoch plus one: a block
    ///   with a far-future epoch, which would stop every honest leader (whose epochs could never
    ///   exceed it), is refused;
    /// * a later epoch than the previous block's, and a timestamp not before it.
    ///
    /// The changes are checked by [`TimelineBlock::check_changes`].
    pub fn check_successor(
        &self,
        previous: Option<&TimelineCommit>,
        epoch_seconds: u64,
        now: u64,
        max_skew: u64,
    ) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidTimeline { reason });
        let commit = &self.commit;
        if epoch_seconds == 0 || commit.epoch != commit.timestamp / epoch_seconds {
            return invalid(format!(
                "epoch {} is not the epoch of timestamp {} ({epoch_seconds}-second epochs)",
                commit.epoch, commit.timestamp
            ));
        }
        if commit.timestamp > now.saturating_add(max_skew) {
            return invalid(format!(
                "timestamp {} is ahead of the local clock ({now})",
                commit.timestamp
            ));
        }
        if commit.timestamp < now.saturating_sub(max_skew) {
            return invalid(format!(
                "timestamp {} is older than the local clock ({now}) allows",
                commit.timestamp
            ));
        }
        if commit.epoch > (now / epoch_seconds).saturating_add(1) {
            return invalid(format!(
                "epoch {} is beyond the current epoch {} plus one",
                commit.epoch,
                now / epoch_seconds
            ));
        }
        let Some(previous) = previous else {
            return Ok(());
        };
        if commit.epoch <= previous.epoch {
            return invalid(format!(
                "epoch {} does not follow epoch {}",
                commit.epoch, previous.epoch
            ));
        }
        if commit.timestamp < previous.timestamp {
            return invalid("timestamp goes back in time".into());
        }
        Ok(())
    }
}

impl TimelineBlock {
    /// The roster rule of the timeline `timeline`, for a block after which it runs under
    /// `roster_after` while it ran under `current`: nobody moves a timeline alone. A block that
    /// keeps the roster carries no approvals; a block that changes it carries approvals of
    /// [`roster_change_digest`] by at least the threshold of `current`'s members (distinct,
    /// valid, no other signer). Each operator approves with their node's key.
    pub fn check_roster_change(
        &self,
        timeline: &Hash,
        current: &Roster,
        roster_after: &Hash,
    ) -> Result<()> {
        if *roster_after == current.hash() {
            if !self.approvals.is_empty() {
                return Err(Error::InvalidTimeline {
                    reason: "approvals of a roster change in a block that changes no roster".into(),
                });
            }
            return Ok(());
        }
        let digest = roster_change_digest(timeline, &current.hash(), roster_after);
        let members: Vec<PublicKey> = current.members().iter().map(|m| m.key).collect();
        let approved = count_valid_signers(&self.approvals, &members, &digest, "timeline member")?;
        if approved < current.threshold() {
            return Err(Error::NotEnoughSignatures {
                role: "timeline member (roster change)",
                valid: approved,
                threshold: current.threshold(),
            });
        }
        Ok(())
    }
}

/// What a witness holds of the chains a proposed timeline block names: its store, for the
/// node. The timeline rules ask it two questions.
pub trait HeadSource {
    /// Errors of the source (the protocol's own errors must convert into it).
    type Error: From<Error>;

    /// The head of `chain_id` this witness holds, if it holds the chain.
    fn own_head(&self, chain_id: &Hash) -> core::result::Result<Option<Hash>, Self::Error>;

    /// The index of block `block` if this witness holds it as a block of `chain_id`.
    fn index_in_chain(
        &self,
        chain_id: &Hash,
        block: &Hash,
    ) -> core::result::Result<Option<u64>, Self::Error>;
}

impl TimelineBlock {
    /// The rules a witness applies to the changes of a proposed block of the timeline chain
    /// `timeline`, whose previous block commits to `previous`: no change names the timeline
    /// itself; each new head is a block of its chain that the witness holds (its own head, or a
    /// block it stored) and not older than the head recorded before (no rollback); and the
    /// commitment is `previous` with the changes applied. Returns that tree. The epoch and
    /// timestamp rules are [`TimelineBlock::check_successor`].
    pub fn check_changes<S: HeadSource>(
        &self,
        timeline: &Hash,
        previous: &TimelineTree,
        heads: &S,
    ) -> core::result::Result<TimelineTree, S::Error> {
        let refuse = |reason: String| Error::InvalidTimeline { reason };
        for entry in &self.changes {
            if entry.chain_id == *timeline {
                return Err(refuse("the timeline cannot list itself".into()).into());
            }
            // Fast path, without reading blocks: the witness's own head of the chain (a block
            // it holds, at least as new as any head it signed into an earlier timeline block).
            if heads.own_head(&entry.chain_id)? == Some(entry.head) {
                continue;
            }
            let index = heads
                .index_in_chain(&entry.chain_id, &entry.head)?
                .ok_or_else(|| {
                    refuse(format!(
                        "this witness does not hold head {} of chain {}",
                        entry.head, entry.chain_id
                    ))
                })?;
            let earlier = match previous.head_of(&entry.chain_id) {
                Some(earlier) => heads.index_in_chain(&entry.chain_id, &earlier)?,
                None => None,
            };
            if earlier.is_some_and(|earlier| earlier > index) {
                return Err(refuse(format!(
                    "chain {} goes back to block {index} (rollback)",
                    entry.chain_id
                ))
                .into());
            }
        }
        Ok(self.apply(Some(previous))?)
    }
}

/// `previous` with `changes` (sorted by chain id) applied: each change either adds a chain or
/// gives a recorded chain another head.
fn apply_changes(
    previous: Option<&TimelineTree>,
    changes: &[TimelineEntry],
) -> Result<TimelineTree> {
    if changes.len() > MAX_BLOCK_CHANGES {
        return Err(Error::TooLong {
            what: "timeline changes",
            len: changes.len(),
            max: MAX_BLOCK_CHANGES,
        });
    }
    if let Some(pair) = changes
        .windows(2)
        .find(|pair| pair[0].chain_id >= pair[1].chain_id)
    {
        return Err(Error::DuplicateTimelineChain {
            chain_id: pair[1].chain_id,
        });
    }
    let empty = TimelineTree::empty();
    previous.unwrap_or(&empty).with_changes(changes)
}

impl Encode for TimelineBlock {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .value(&self.commit)
            .list(&self.changes)
            .list(&self.approvals);
    }
}

impl Decode for TimelineBlock {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("timeline block")?;
        let commit = TimelineCommit::decode_from(reader)?;
        let changes: Vec<TimelineEntry> = reader.list(MAX_BLOCK_CHANGES, "timeline changes")?;
        if changes
            .windows(2)
            .any(|pair| pair[0].chain_id >= pair[1].chain_id)
        {
            return Err(Error::NonCanonical {
                what: "timeline changes (must be sorted by chain id, once each)",
            });
        }
        let approvals = reader.list(MAX_ROSTER_SIZE, "roster change approvals")?;
        Ok(Self {
            commit,
            changes,
            approvals,
        })
    }
}

/// How recent a timeline block must be for a client to accept what it says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Freshness {
    /// Oldest acceptable age, in seconds.
    pub max_age: u64,
    /// How far in the future a timestamp may be (clock skew), in seconds.
    pub max_future_skew: u64,
}

impl Default for Freshness {
    /// One hour, with 5 minutes of clock skew.
    fn default() -> Self {
        Self {
            max_age: 3600,
            max_future_skew: 300,
        }
    }
}

impl Freshness {
    /// Checks a timeline timestamp against the client's clock.
    pub fn check(&self, timestamp: u64, now: u64) -> Result<()> {
        if timestamp > now.saturating_add(self.max_future_skew) {
            return Err(Error::TimelineFromFuture { timestamp, now });
        }
        let age = now.saturating_sub(timestamp);
        if age > self.max_age {
            return Err(Error::StaleTimeline {
                age,
                max_age: self.max_age,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(chain: u8, head: u8) -> TimelineEntry {
        TimelineEntry {
            chain_id: Hash([chain; 32]),
            head: Hash([head; 32]),
        }
    }

    #[test]
    fn timeline_blocks_round_trip_and_commit_to_their_changes() {
        let (first, tree) =
            TimelineBlock::new(None, 7, 1000, vec![pair(3, 1), pair(1, 2), pair(2, 9)])
                .expect("block");
        assert_eq!(first.changes[0].chain_id, Hash([1; 32]));
        let bytes = first.to_bytes();
        let decoded = TimelineBlock::from_bytes(&bytes).expect("decodes");
        assert_eq!(decoded, first);
        assert_eq!(decoded.apply(None).expect("applies").root(), tree.root());
        let (found, proof) = tree.prove(&Hash([2; 32])).expect("in");
        assert_eq!(found.head, Hash([9; 32]));
        proof.verify(&first.commit.root, &found).expect("proof");
        assert_eq!(tree.head_of(&Hash([3; 32])), Some(Hash([1; 32])));
        assert_eq!(first.change_of(&Hash([4; 32])), None);

        // The next block carries only what moved; the others keep their heads.
        let (second, next_tree) =
            TimelineBlock::new(Some(&tree), 8, 1010, vec![pair(2, 10), pair(4, 1)]).expect("block");
        assert_eq!(second.changes.len(), 2);
        assert_eq!(next_tree.len(), 4);
        assert_eq!(next_tree.head_of(&Hash([1; 32])), Some(Hash([2; 32])));
        assert_eq!(next_tree.head_of(&Hash([2; 32])), Some(Hash([10; 32])));
        assert_eq!(
            second.apply(Some(&tree)).expect("applies").root(),
            next_tree.root()
        );
        // Applied to another previous timeline (a split view), the commitment does not match.
        assert!(matches!(
            second.apply(None),
            Err(Error::InvalidTimeline { .. })
        ));

        // A forged change, a no-op change, unsorted changes: refused.
        let mut forged = second.clone();
        forged.changes[0].head = Hash([8; 32]);
        assert!(forged.apply(Some(&tree)).is_err());
        let (noop, _) = TimelineBlock::new(Some(&tree), 8, 1010, vec![pair(4, 1)]).expect("block");
        let mut repeated = noop;
        repeated.changes.insert(0, pair(1, 2));
        assert!(matches!(
            repeated.apply(Some(&tree)),
            Err(Error::InvalidTimeline { .. })
        ));
        let mut unsorted = second;
        unsorted.changes.swap(0, 1);
        assert!(TimelineBlock::from_bytes(&unsorted.to_bytes()).is_err());
        assert!(unsorted.apply(Some(&tree)).is_err());
    }

    #[test]
    fn timeline_successor_rules() {
        // 10-second epochs; the witness's clock reads 1000 (epoch 100).
        let block = |epoch, timestamp| {
            TimelineBlock::new(None, epoch, timestamp, Vec::new())
                .expect("block")
                .0
        };
        let first = block(99, 990);
        first.check_successor(None, 10, 1000, 300).expect("first");
        block(100, 1000)
            .check_successor(Some(&first.commit), 10, 1000, 300)
            .expect("next");
        for (epoch, timestamp) in [
            (99, 995),                 // not a later epoch
            (100, 985),                // timestamp before the previous one (and not its epoch)
            (101, 1000),               // epoch not the timestamp's
            (130, 1300),               // timestamp beyond the skew
            (u64::MAX / 10, u64::MAX), // the freeze: a far-future epoch
            (30, 300),                 // a stale proposal
        ] {
            assert!(
                matches!(
                    block(epoch, timestamp).check_successor(Some(&first.commit), 10, 1000, 300),
                    Err(Error::InvalidTimeline { .. })
                ),
                "epoch {epoch} at {timestamp}"
            );
        }
        // Epoch bound: at most the witness's current epoch plus one, even within the skew.
        assert!(
            block(101, 1010)
                .check_successor(Some(&first.commit), 10, 1000, 300)
                .is_ok()
        );
        assert!(
            block(102, 1020)
                .check_successor(Some(&first.commit), 10, 1000, 300)
                .is_err()
        );
    }

    #[test]
    fn a_timeline_moves_to_another_roster_only_with_its_members_approvals() {
        use crate::cosi::RosterMember;
        use crate::keys::SecretKey;
        let keys: Vec<SecretKey> = (1..=5u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let roster = |range: std::ops::Range<usize>| {
            Roster::with_default_threshold(
                keys[range].iter().map(RosterMember::from_secret).collect(),
            )
            .expect("roster")
        };
        let (current, next) = (roster(0..4), roster(1..5));
        let timeline = Hash([9; 32]);
        let digest = roster_change_digest(&timeline, &current.hash(), &next.hash());
        let mut block = TimelineBlock::new(None, 1, 10, Vec::new())
            .expect("block")
            .0;
        // Unchanged roster, no approvals: fine; a change without approvals: refused.
        assert!(
            block
                .check_roster_change(&timeline, &current, &current.hash())
                .is_ok()
        );
        assert!(matches!(
            block.check_roster_change(&timeline, &current, &next.hash()),
            Err(Error::NotEnoughSignatures { .. })
        ));
        // Two of four members (threshold 3): refused; three: accepted.
        block.approvals = keys[..2]
            .iter()
            .map(|k| KeySignature::sign(k, &digest))
            .collect();
        assert!(
            block
                .check_roster_change(&timeline, &current, &next.hash())
                .is_err()
        );
        block.approvals.push(KeySignature::sign(&keys[2], &digest));
        assert!(
            block
                .check_roster_change(&timeline, &current, &next.hash())
                .is_ok()
        );
        // One approval at a time, as a node checks what a peer sends it.
        check_roster_approval(&timeline, &current, &next.hash(), &block.approvals[0]).unwrap();
        assert!(
            check_roster_approval(&timeline, &current, &current.hash(), &block.approvals[0])
                .is_err()
        );
        assert!(
            check_roster_approval(&timeline, &next, &current.hash(), &block.approvals[0]).is_err()
        );
        // A new member's approval does not count; approvals for another move do not either.
        let outsider = vec![KeySignature::sign(&keys[4], &digest)];
        let mut bad = block.clone();
        bad.approvals = outsider;
        assert!(
            bad.check_roster_change(&timeline, &current, &next.hash())
                .is_err()
        );
        let elsewhere = roster(0..3);
        assert!(
            block
                .check_roster_change(&timeline, &current, &elsewhere.hash())
                .is_err()
        );
        // Approvals in a block that keeps its roster are refused; they round-trip.
        assert!(
            block
                .check_roster_change(&timeline, &current, &current.hash())
                .is_err()
        );
        assert_eq!(
            TimelineBlock::from_bytes(&block.to_bytes()).ok(),
            Some(block)
        );
    }

    use proptest::prelude::*;

    fn entry(i: u64) -> TimelineEntry {
        TimelineEntry {
            chain_id: Hash::of(domain::SKIPBLOCK, &[&i.to_le_bytes()]),
            head: Hash::of(domain::SKIPBLOCK, &[b"head", &i.to_le_bytes()]),
        }
    }

    fn tree(n: u64) -> TimelineTree {
        let Ok(tree) = TimelineTree::build((0..n).map(entry).collect()) else {
            panic!()
        };
        tree
    }

    #[test]
    fn small_trees_have_the_documented_shape() {
        assert_eq!(tree(0).root(), Hash::of(domain::TIMELINE_EMPTY, &[]));
        let one = tree(1);
        assert_eq!(one.root(), entry(0).leaf());
        let three = tree(3);
        let mut sorted: Vec<TimelineEntry> = (0..3).map(entry).collect();
        sorted.sort();
        let leaves: Vec<Hash> = sorted.iter().map(TimelineEntry::leaf).collect();
        assert_eq!(
            three.root(),
            node(&node(&leaves[0], &leaves[1]), &leaves[2])
        );
    }

    #[test]
    fn order_of_input_does_not_matter() {
        let mut entries: Vec<TimelineEntry> = (0..50).map(entry).collect();
        let Ok(a) = TimelineTree::build(entries.clone()) else {
            panic!()
        };
        entries.reverse();
        let Ok(b) = TimelineTree::build(entries) else {
            panic!()
        };
        assert_eq!(a.root(), b.root());
    }

    #[test]
    fn duplicate_chains_are_refused() {
        let entries = vec![
            entry(1),
            entry(2),
            TimelineEntry {
                head: Hash::default(),
                ..entry(1)
            },
        ];
        assert!(matches!(
            TimelineTree::build(entries),
            Err(Error::DuplicateTimelineChain { .. })
        ));
    }

    #[test]
    fn every_leaf_proves_and_others_do_not() {
        for n in [1u64, 2, 3, 5, 8, 13, 100] {
            let t = tree(n);
            for i in 0..n {
                let Some((recorded, proof)) = t.prove(&entry(i).chain_id) else {
                    panic!()
                };
                assert_eq!(recorded, entry(i));
                assert_eq!(proof.verify(&t.root(), &entry(i)), Ok(()), "n {n} i {i}");
                // another head for the same chain (rollback or split view) is refused
                let forked = TimelineEntry {
                    head: Hash::default(),
                    ..entry(i)
                };
                assert!(matches!(
                    proof.verify(&t.root(), &forked),
                    Err(Error::NotInTimeline { .. })
                ));
            }
            assert!(t.prove(&entry(n + 1).chain_id).is_none());
        }
    }

    #[test]
    fn malformed_proofs_are_refused() {
        let t = tree(10);
        let Some((e, proof)) = t.prove(&entry(4).chain_id) else {
            panic!()
        };
        let mut short = proof.clone();
        short.siblings.pop();
        assert!(short.verify(&t.root(), &e).is_err());
        let mut long = proof.clone();
        long.siblings.push(Hash::default());
        assert!(matches!(
            long.verify(&t.root(), &e),
            Err(Error::InvalidInclusionProof { .. })
        ));
        let mut moved = proof.clone();
        moved.leaf_index = (moved.leaf_index + 1) % 10;
        assert!(moved.verify(&t.root(), &e).is_err());
        let mut out_of_range = proof.clone();
        out_of_range.leaf_index = 10;
        assert!(out_of_range.verify(&t.root(), &e).is_err());
        let bytes = proof.to_bytes();
        assert_eq!(InclusionProof::from_bytes(&bytes).as_ref(), Ok(&proof));
        assert!(InclusionProof::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn freshness_and_head_checks() {
        let t = tree(20);
        let commit = TimelineCommit::new(7, 1_000_000, &t);
        let Some((e, proof)) = t.prove(&entry(3).chain_id) else {
            panic!()
        };
        let fresh = Freshness {
            max_age: 60,
            max_future_skew: 5,
        };
        assert_eq!(commit.check_head(&e, &proof, 1_000_030, fresh), Ok(()));
        assert_eq!(
            commit.check_head(&e, &proof, 1_000_061, fresh),
            Err(Error::StaleTimeline {
                age: 61,
                max_age: 60
            })
        );
        assert!(matches!(
            commit.check_head(&e, &proof, 999_990, fresh),
            Err(Error::TimelineFromFuture { .. })
        ));
        let absent = TimelineEntry {
            head: Hash::default(),
            ..e
        };
        assert!(matches!(
            commit.check_head(&absent, &proof, 1_000_000, fresh),
            Err(Error::NotInTimeline { .. })
        ));
        // a proof from a tree of another size is refused outright
        let other = tree(21);
        let Some((e2, p2)) = other.prove(&entry(3).chain_id) else {
            panic!()
        };
        assert!(matches!(
            commit.check_head(&e2, &p2, 1_000_000, fresh),
            Err(Error::InvalidInclusionProof { .. })
        ));
        let message = Error::StaleTimeline {
            age: 61,
            max_age: 60,
        }
        .to_string();
        assert!(message.contains("61"), "{message}");
        assert_eq!(TimelineCommit::from_bytes(&commit.to_bytes()), Ok(commit));
    }

    /// A witness's view of three chains: chain 1 at block 5, chain 2 at block 3 (with older
    /// blocks stored), chain 3 unknown.
    struct Held;

    fn block_hash(chain: u8, index: u64) -> Hash {
        Hash::of(domain::SKIPBLOCK, &[&[chain], &index.to_le_bytes()])
    }

    impl HeadSource for Held {
        type Error = Error;

        fn own_head(&self, chain_id: &Hash) -> Result<Option<Hash>> {
            Ok(match chain_id.0[0] {
                1 => Some(block_hash(1, 5)),
                2 => Some(block_hash(2, 3)),
                _ => None,
            })
        }

        fn index_in_chain(&self, chain_id: &Hash, block: &Hash) -> Result<Option<u64>> {
            let chain = chain_id.0[0];
            let last = match chain {
                1 => 5,
                2 => 3,
                _ => return Ok(None),
            };
            Ok((0..=last).find(|&i| block_hash(chain, i) == *block))
        }
    }

    fn change(chain: u8, index: u64) -> TimelineEntry {
        TimelineEntry {
            chain_id: Hash([chain; 32]),
            head: block_hash(chain, index),
        }
    }

    #[test]
    fn a_witness_accepts_held_heads_and_refuses_rollbacks_and_unknown_heads() {
        let timeline = Hash([9; 32]);
        let (first, tree) =
            TimelineBlock::new(None, 1, 100, vec![change(1, 4), change(2, 3)]).expect("first");
        assert_eq!(
            first
                .check_changes(&timeline, &TimelineTree::empty(), &Held)
                .expect("held heads")
                .root(),
            tree.root()
        );
        // Chain 1 moves to its own head; chain 2 to an older stored block: a rollback.
        let (forward, _) =
            TimelineBlock::new(Some(&tree), 2, 110, vec![change(1, 5)]).expect("block");
        assert!(forward.check_changes(&timeline, &tree, &Held).is_ok());
        let (back, _) = TimelineBlock::new(Some(&tree), 2, 110, vec![change(2, 1)]).expect("block");
        let error = back
            .check_changes(&timeline, &tree, &Held)
            .expect_err("rollback");
        assert!(error.to_string().contains("rollback"), "{error}");
        // A head this witness does not hold, and the timeline listing itself.
        let (unknown, _) =
            TimelineBlock::new(Some(&tree), 2, 110, vec![change(3, 1)]).expect("block");
        assert!(unknown.check_changes(&timeline, &tree, &Held).is_err());
        let (itself, _) = TimelineBlock::new(
            Some(&tree),
            2,
            110,
            vec![TimelineEntry {
                chain_id: timeline,
                head: Hash([1; 32]),
            }],
        )
        .expect("block");
        assert!(itself.check_changes(&timeline, &tree, &Held).is_err());
        // A commitment that does not match the changes.
        let mut forged = forward;
        forged.commit.chain_count += 1;
        assert!(forged.check_changes(&timeline, &tree, &Held).is_err());
    }

    proptest! {
        #[test]
        fn random_trees_prove_every_member(n in 1u64..300, pick in any::<u64>()) {
            let t = tree(n);
            let i = pick % n;
            let (e, proof) = t.prove(&entry(i).chain_id).ok_or_else(|| TestCaseError::fail("no proof"))?;
            prop_assert_eq!(proof.verify(&t.root(), &e), Ok(()));
            prop_assert!(proof.siblings.len() <= 64 - (n.leading_zeros() as usize) + 1);
        }

        #[test]
        fn changes_applied_in_place_give_the_tree_built_from_scratch(
            n in 0u64..200,
            epochs in proptest::collection::vec(proptest::collection::vec((0u64..260, any::<u8>()), 0..40), 1..6),
        ) {
            let mut tree = tree(n);
            // The model: entries in leaf order, moved in place, added at the end by chain id.
            let mut leaves: Vec<TimelineEntry> = tree.entries().copied().collect();
            let before = tree.clone();
            let before_root = before.root();
            for changes in epochs {
                let mut batch = std::collections::BTreeMap::new();
                for (chain, head) in changes {
                    let chain_id = entry(chain).chain_id;
                    let head = Hash::of(domain::SKIPBLOCK, &[&[head], &chain.to_le_bytes()]);
                    if tree.head_of(&chain_id) != Some(head) {
                        batch.insert(chain_id, head);
                    }
                }
                let changes: Vec<TimelineEntry> = batch
                    .iter()
                    .map(|(chain_id, head)| TimelineEntry { chain_id: *chain_id, head: *head })
                    .collect();
                for change in &changes {
                    match leaves.iter_mut().find(|leaf| leaf.chain_id == change.chain_id) {
                        Some(leaf) => leaf.head = change.head,
                        None => leaves.push(*change),
                    }
                }
                tree = tree.with_changes(&changes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let scratch = TimelineTree::in_leaf_order(leaves.clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(tree.root(), scratch.root());
                prop_assert!(tree.entries().eq(scratch.entries()));
                for leaf in &leaves {
                    let (found, proof) = tree.prove(&leaf.chain_id).ok_or_else(|| TestCaseError::fail("no proof"))?;
                    prop_assert_eq!(found, *leaf);
                    prop_assert_eq!(proof.verify(&tree.root(), leaf), Ok(()));
                }
            }
            // The tree the changes started from is untouched (the trees share their storage).
            prop_assert_eq!(before.root(), before_root);
            prop_assert_eq!(before.len() as u64, n);
            for i in 0..n {
                let (found, proof) = before.prove(&entry(i).chain_id).ok_or_else(|| TestCaseError::fail("no proof"))?;
                prop_assert_eq!(proof.verify(&before_root, &found), Ok(()));
            }
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = InclusionProof::from_bytes(&bytes);
            let _ = TimelineCommit::from_bytes(&bytes);
            let _ = TimelineBlock::from_bytes(&bytes);
        }
    }
}
