//! The entries each stored timeline block commits to. A timeline block carries only the heads
//! that changed since the previous one, so the entries of block `i` are the changes of blocks
//! `1..=i` folded together. The store keeps the trees of the newest blocks it computed, keyed by
//! block hash, and folds forward from the nearest one it has (or from the genesis).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Decode;
use chainiac_protocol::timeline::{HeadSource, TimelineBlock, TimelineEntry, TimelineTree};

use super::{Store, StoreError, StoreResult};

/// Most trees kept in memory.
const MAX_TREES: usize = 8;
/// Most entries kept in memory over all trees (about 128 bytes each with the tree's nodes);
/// the newest tree is always kept.
const MAX_CACHED_ENTRIES: usize = 1 << 22;

/// Timeline trees of recent blocks, newest last.
#[derive(Default)]
pub(super) struct TimelineTrees {
    trees: Mutex<VecDeque<(Hash, Arc<TimelineTree>)>>,
}

impl TimelineTrees {
    fn get(&self, block: &Hash) -> Option<Arc<TimelineTree>> {
        let trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
        trees
            .iter()
            .rev()
            .find(|(hash, _)| hash == block)
            .map(|(_, tree)| tree.clone())
    }

    fn insert(&self, block: Hash, tree: Arc<TimelineTree>) {
        let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
        if trees.iter().any(|(hash, _)| *hash == block) {
            return;
        }
        trees.push_back((block, tree));
        while trees.len() > 1
            && (trees.len() > MAX_TREES
                || trees.iter().map(|(_, t)| t.len()).sum::<usize>() > MAX_CACHED_ENTRIES)
        {
            trees.pop_front();
        }
    }
}

impl Store {
    /// The tree timeline block `index` of `timeline` commits to (the empty tree for the
    /// genesis). Folds the changes of the blocks after the nearest tree in memory, and checks
    /// the result against the block's commitment.
    pub fn timeline_tree(&self, timeline: &Hash, index: u64) -> Result<Arc<TimelineTree>, String> {
        if index == 0 {
            return Ok(Arc::new(TimelineTree::empty()));
        }
        let read = |at: u64| -> Result<chainiac_protocol::skipchain::SkipBlock, String> {
            self.block_at(timeline, at)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("timeline block {at} is not stored here"))
        };
        let decode = |at: u64, payload: &[u8]| {
            TimelineBlock::from_bytes(payload)
                .map_err(|e| format!("timeline block {at} is invalid: {e}"))
        };
        let target_block = read(index)?;
        let target = target_block.hash();
        if let Some(tree) = self.timelines.get(&target) {
            return Ok(tree);
        }
        // Walk back to the newest block whose tree is in memory, keeping the blocks after it
        // (newest first), so that each block is read once.
        let mut unfolded = vec![decode(index, target_block.payload())?];
        let mut base = Arc::new(TimelineTree::empty());
        for earlier in (1..index).rev() {
            let block = read(earlier)?;
            if let Some(tree) = self.timelines.get(&block.hash()) {
                base = tree;
                break;
            }
            unfolded.push(decode(earlier, block.payload())?);
        }
        // Later changes override earlier ones; the tree is built once.
        let mut changes: BTreeMap<Hash, Hash> = BTreeMap::new();
        for decoded in unfolded.iter().rev() {
            for change in &decoded.changes {
                changes.insert(change.chain_id, change.head);
            }
        }
        let changes: Vec<TimelineEntry> = changes
            .into_iter()
            .filter(|(chain_id, head)| base.head_of(chain_id) != Some(*head))
            .map(|(chain_id, head)| TimelineEntry { chain_id, head })
            .collect();
        let tree = base
            .with_changes(&changes)
            .map_err(|e| format!("timeline blocks up to {index} do not fold: {e}"))?;
        let commit = unfolded[0].commit;
        if tree.root() != commit.root || tree.len() as u64 != commit.chain_count {
            return Err(format!(
                "timeline block {index} does not commit to the changes of the blocks before it"
            ));
        }
        let tree = Arc::new(tree);
        self.timelines.insert(target, tree.clone());
        Ok(tree)
    }

    /// Keeps `tree` as the tree of timeline block `block` (a block a witness just checked, or a
    /// leader just built), so that it is not folded again.
    pub fn remember_timeline_tree(&self, block: Hash, tree: Arc<TimelineTree>) {
        self.timelines.insert(block, tree);
    }
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
