//! The entries each stored timeline block commits to. A timeline block carries only the heads
//! that changed since the previous one, so the entries of block `i` are the changes of blocks
//! `1..=i` folded together. The store keeps the trees of the newest blocks it computed in
//! memory, keyed by block hash, and a checkpoint of the tree of every
//! [`TIMELINE_CHECKPOINT_INTERVAL`]-th block on disk, so that any tree (an inclusion proof of
//! an old index, the head's tree after a restart) is at most that many blocks of folding away.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Decode;
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::skipchain::SkipBlock;
use chainiac_protocol::timeline::{HeadSource, TimelineBlock, TimelineEntry, TimelineTree};

use super::{Batch, Column, StorageUsage, Store, StoreError, StoreResult};

/// Timeline blocks between two trees checkpointed on disk.
pub const TIMELINE_CHECKPOINT_INTERVAL: u64 = 1024;
/// Most trees kept in memory.
const MAX_TREES: usize = 8;
/// Most entries kept in memory over all trees (about 128 bytes each with the tree's nodes);
/// the tree of the highest index is always kept.
const MAX_CACHED_ENTRIES: usize = 1 << 22;
/// Key prefix of checkpointed trees in the meta column: `timeline-tree/` ‖ timeline chain id
/// ‖ index (u64 big-endian); the value is the block's hash ‖ its entries (chain id ‖ head).
const CHECKPOINT_PREFIX: &[u8] = b"timeline-tree/";
/// Bytes of one entry in a checkpoint.
const ENTRY_LEN: usize = 64;

fn checkpoint_key(timeline: &Hash, index: u64) -> Vec<u8> {
    let mut key = CHECKPOINT_PREFIX.to_vec();
    key.extend_from_slice(timeline.as_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// A cached tree: its timeline, the index and hash of its block, the tree.
type CachedTree = (Hash, u64, Hash, Arc<TimelineTree>);

/// Whether a checkpoint of `cost` bytes may be written for a timeline of `creator` that takes
/// `usage` (the node's storage quotas; without one, every checkpoint is written).
pub type CheckpointBudget =
    Arc<dyn Fn(Option<&PublicKey>, StorageUsage, u64) -> bool + Send + Sync>;

/// Most checkpoints remembered as written in this run (beyond, they are compared again).
const MAX_CHECKPOINTED: usize = 4096;

/// Timeline trees of recent blocks, how often trees are checkpointed, and what may be.
pub(super) struct TimelineTrees {
    trees: Mutex<VecDeque<CachedTree>>,
    checkpoint_interval: AtomicU64,
    /// Blocks whose checkpoint is known to be on disk.
    checkpointed: Mutex<HashSet<Hash>>,
    /// One fold at a time: concurrent requests for a tree wait and find it folded.
    folding: Mutex<()>,
    budget: Mutex<Option<CheckpointBudget>>,
}

impl Default for TimelineTrees {
    fn default() -> Self {
        Self {
            trees: Mutex::default(),
            checkpoint_interval: AtomicU64::new(TIMELINE_CHECKPOINT_INTERVAL),
            checkpointed: Mutex::default(),
            folding: Mutex::default(),
            budget: Mutex::default(),
        }
    }
}

impl TimelineTrees {
    fn interval(&self) -> u64 {
        self.checkpoint_interval.load(Ordering::Relaxed).max(1)
    }

    fn get(&self, block: &Hash) -> Option<Arc<TimelineTree>> {
        let trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
        trees
            .iter()
            .rev()
            .find(|(_, _, hash, _)| hash == block)
            .map(|(_, _, _, tree)| tree.clone())
    }

    /// Keeps `tree`, forgetting the oldest trees when over the limits. A tree older than every
    /// cached tree of its timeline is not kept when the cache is full, so that a request for an
    /// old index never pushes out the trees the witnesses are working on.
    fn insert(&self, timeline: Hash, index: u64, block: Hash, tree: Arc<TimelineTree>) {
        let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
        if trees.iter().any(|(_, _, hash, _)| *hash == block) {
            return;
        }
        let full = trees.len() >= MAX_TREES;
        let older_than_its_timeline = trees
            .iter()
            .filter(|(cached, ..)| *cached == timeline)
            .all(|(_, cached_index, ..)| *cached_index > index);
        if full && older_than_its_timeline && trees.iter().any(|(t, ..)| *t == timeline) {
            return;
        }
        trees.push_back((timeline, index, block, tree));
        while trees.len() > 1
            && (trees.len() > MAX_TREES
                || trees.iter().map(|(.., t)| t.len()).sum::<usize>() > MAX_CACHED_ENTRIES)
        {
            trees.pop_front();
        }
    }

    fn is_checkpointed(&self, block: &Hash) -> bool {
        self.checkpointed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(block)
    }

    fn mark_checkpointed(&self, block: Hash) {
        let mut checkpointed = self
            .checkpointed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if checkpointed.len() >= MAX_CHECKPOINTED {
            checkpointed.clear();
        }
        checkpointed.insert(block);
    }
}

impl Store {
    /// The tree timeline block `index` of `timeline` commits to (the empty tree for the
    /// genesis). Folds the changes of the blocks after the nearest tree in memory or on disk,
    /// checks each checkpoint it passes and the result against their blocks' commitments, and
    /// checkpoints every [`TIMELINE_CHECKPOINT_INTERVAL`]-th tree it computes.
    pub fn timeline_tree(&self, timeline: &Hash, index: u64) -> Result<Arc<TimelineTree>, String> {
        if index == 0 {
            return Ok(Arc::new(TimelineTree::empty()));
        }
        let target_block = self.timeline_block(timeline, index)?;
        let target = target_block.hash();
        if let Some(tree) = self.timelines.get(&target) {
            self.checkpoint_if_due(timeline, index, &target, &tree)?;
            return Ok(tree);
        }
        let _folding = self
            .timelines
            .folding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another request may have folded it meanwhile.
        if let Some(tree) = self.timelines.get(&target) {
            return Ok(tree);
        }
        let interval = self.timelines.interval();
        if index.is_multiple_of(interval)
            && let Some(tree) = self.checkpoint(timeline, &target_block)?
        {
            let tree = Arc::new(tree);
            self.timelines.mark_checkpointed(target);
            self.timelines
                .insert(*timeline, index, target, tree.clone());
            return Ok(tree);
        }
        // Walk back to the newest block whose tree is in memory or checkpointed.
        let mut base = (0, Arc::new(TimelineTree::empty()));
        for earlier in (1..index).rev() {
            let block = self.timeline_block(timeline, earlier)?;
            if let Some(tree) = self.timelines.get(&block.hash()) {
                base = (earlier, tree);
                break;
            }
            if earlier.is_multiple_of(interval)
                && let Some(tree) = self.checkpoint(timeline, &block)?
            {
                base = (earlier, Arc::new(tree));
                break;
            }
        }
        // Fold forward block by block, reading each block again (memory holds one block's
        // changes at a time): chains a block adds go after those of the blocks before it, and
        // each step hashes only its changed paths. The commitment is checked at checkpoints
        // and at the target, where the tree is kept.
        let (base_index, mut folded) = base;
        let mut tree = folded.as_ref().clone();
        for at in base_index + 1..=index {
            let block = if at == index {
                target_block.clone()
            } else {
                self.timeline_block(timeline, at)?
            };
            let decoded = decode_timeline(at, &block)?;
            tree = tree
                .with_changes(&decoded.changes)
                .map_err(|e| format!("timeline block {at} does not fold: {e}"))?;
            if at != index && !at.is_multiple_of(interval) {
                continue;
            }
            if tree.root() != decoded.commit.root || tree.len() as u64 != decoded.commit.chain_count
            {
                return Err(format!(
                    "timeline block {at} does not commit to the changes of the blocks before it"
                ));
            }
            folded = Arc::new(tree.clone());
            self.checkpoint_if_due(timeline, at, &block.hash(), &folded)?;
        }
        self.timelines
            .insert(*timeline, index, target, folded.clone());
        Ok(folded)
    }

    /// Limits the checkpoints written to what `budget` admits (the node's storage quotas).
    pub fn limit_timeline_checkpoints(&self, budget: CheckpointBudget) {
        *self
            .timelines
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(budget);
    }

    /// Keeps `tree` as the tree of timeline block `block` at `index` (a block a witness just
    /// checked, or a leader just built), so that it is not folded again.
    pub fn remember_timeline_tree(
        &self,
        timeline: Hash,
        index: u64,
        block: Hash,
        tree: Arc<TimelineTree>,
    ) {
        self.timelines.insert(timeline, index, block, tree);
    }

    /// Checkpoints every `interval`-th tree instead (tests use small intervals).
    #[cfg(test)]
    pub(super) fn set_timeline_checkpoint_interval(&self, interval: u64) {
        self.timelines
            .checkpoint_interval
            .store(interval, Ordering::Relaxed);
    }

    fn timeline_block(&self, timeline: &Hash, at: u64) -> Result<SkipBlock, String> {
        self.block_at(timeline, at)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("timeline block {at} is not stored here"))
    }

    /// The checkpointed tree of timeline block `block`, if one is stored and it matches the
    /// block's commitment (one that does not is ignored, and replaced once folded again).
    fn checkpoint(
        &self,
        timeline: &Hash,
        block: &SkipBlock,
    ) -> Result<Option<TimelineTree>, String> {
        let index = block.index();
        let Some(value) = self
            .kv
            .get(Column::Meta, &checkpoint_key(timeline, index))
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let Some((hash, entries)) = value.split_first_chunk::<32>() else {
            return Ok(None);
        };
        let mismatch = || {
            self.timelines
                .checkpointed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&block.hash());
            tracing::warn!(
                index,
                "ignoring a timeline checkpoint that does not match its block"
            );
        };
        if *hash != *block.hash().as_bytes() || entries.len() % ENTRY_LEN != 0 {
            mismatch();
            return Ok(None);
        }
        let entries = entries
            .chunks_exact(ENTRY_LEN)
            .map(|entry| {
                let (chain_id, head) = entry.split_at(32);
                TimelineEntry {
                    chain_id: Hash(chain_id.try_into().unwrap_or_default()),
                    head: Hash(head.try_into().unwrap_or_default()),
                }
            })
            .collect();
        let commit = decode_timeline(index, block)?.commit;
        match TimelineTree::in_leaf_order(entries) {
            Ok(tree) if tree.root() == commit.root && tree.len() as u64 == commit.chain_count => {
                Ok(Some(tree))
            }
            _ => {
                mismatch();
                Ok(None)
            }
        }
    }

    /// Writes the checkpoint of the tree of block `index` when the index is a checkpoint's,
    /// none is stored yet, and the timeline's storage quotas admit it; its bytes count as the
    /// timeline's.
    fn checkpoint_if_due(
        &self,
        timeline: &Hash,
        index: u64,
        block: &Hash,
        tree: &TimelineTree,
    ) -> Result<(), String> {
        if index == 0
            || !index.is_multiple_of(self.timelines.interval())
            || self.timelines.is_checkpointed(block)
        {
            return Ok(());
        }
        let key = checkpoint_key(timeline, index);
        let mut value = Vec::with_capacity(32 + tree.len() * ENTRY_LEN);
        value.extend_from_slice(block.as_bytes());
        for entry in tree.entries() {
            value.extend_from_slice(entry.chain_id.as_bytes());
            value.extend_from_slice(entry.head.as_bytes());
        }
        let _guard = self.lock();
        // Written again only when absent or different (one found not to match its block).
        let stored = self.kv.get(Column::Meta, &key).map_err(|e| e.to_string())?;
        if stored.as_deref() == Some(value.as_slice()) {
            self.timelines.mark_checkpointed(*block);
            return Ok(());
        }
        let cost = value.len() as u64;
        let (creator, usage) = self.storage_usage(timeline).map_err(|e| e.to_string())?;
        let budget = self
            .timelines
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if budget.is_some_and(|admits| !admits(creator.as_ref(), usage, cost)) {
            tracing::debug!(%timeline, index, "timeline checkpoint not written: over the storage quota");
            return Ok(());
        }
        let mut batch = Batch::new();
        if stored.is_none() {
            self.charge(&mut batch, timeline, creator.as_ref(), cost)
                .map_err(|e| e.to_string())?;
        }
        batch.put(Column::Meta, key, value);
        self.kv.write(batch).map_err(|e| e.to_string())?;
        self.timelines.mark_checkpointed(*block);
        Ok(())
    }
}

fn decode_timeline(at: u64, block: &SkipBlock) -> Result<TimelineBlock, String> {
    TimelineBlock::from_bytes(block.payload())
        .map_err(|e| format!("timeline block {at} is invalid: {e}"))
}

/// What the timeline rules ask of a witness's store.
impl HeadSource for Store {
    type Error = StoreError;

    fn own_head(&self, chain_id: &Hash) -> StoreResult<Option<Hash>> {
        Ok(self.head(chain_id)?.map(|head| head.hash))
    }

    fn index_in_chain(&self, chain_id: &Hash, block: &Hash) -> StoreResult<Option<u64>> {
        Ok(self
            .block(block)?
            .filter(|block| block.chain_id() == *chain_id)
            .map(|block| block.index()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(chains: u8) -> Arc<TimelineTree> {
        let entries = (0..chains)
            .map(|chain| TimelineEntry {
                chain_id: Hash([chain; 32]),
                head: Hash([1; 32]),
            })
            .collect();
        Arc::new(TimelineTree::build(entries).expect("tree"))
    }

    #[test]
    fn an_old_tree_never_pushes_out_the_newest_ones() {
        let trees = TimelineTrees::default();
        let timeline = Hash([0xee; 32]);
        for index in 100..100 + MAX_TREES as u64 {
            trees.insert(timeline, index, Hash([index as u8; 32]), tree_of(2));
        }
        // A request for an old index is answered, but its tree is the first to go.
        trees.insert(timeline, 3, Hash([3; 32]), tree_of(2));
        assert!(trees.get(&Hash([3; 32])).is_none());
        for index in 100..100 + MAX_TREES as u64 {
            assert!(trees.get(&Hash([index as u8; 32])).is_some(), "{index}");
        }
        // A newer tree replaces the lowest.
        trees.insert(timeline, 200, Hash([200; 32]), tree_of(2));
        assert!(trees.get(&Hash([100; 32])).is_none());
        assert!(trees.get(&Hash([200; 32])).is_some());
    }
}
