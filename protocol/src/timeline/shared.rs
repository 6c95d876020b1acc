//! Collections whose clones share their storage, for timeline trees: each epoch's tree is the
//! previous one with a few paths changed, and a node keeps the trees of recent epochs. A clone
//! costs one pointer per chunk of [`CHUNK`] elements; a write copies only the chunk it changes
//! (if another clone still holds it).

use std::sync::Arc;

use crate::Hash;

/// Elements per chunk: a chunk of hashes is 4 KiB.
pub(crate) const CHUNK: usize = 128;

/// A vector that grows at the end and whose clones share their chunks.
#[derive(Clone, Debug)]
pub(crate) struct SharedVec<T> {
    /// Every chunk full but the last.
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for SharedVec<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> SharedVec<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        self.chunks[index / CHUNK].get(index % CHUNK)
    }

    /// Replaces the element at `index` (which must exist).
    pub(crate) fn set(&mut self, index: usize, value: T) {
        debug_assert!(index < self.len);
        if let Some(chunk) = self.chunks.get_mut(index / CHUNK)
            && let Some(slot) = Arc::make_mut(chunk).get_mut(index % CHUNK)
        {
            *slot = value;
        }
    }

    pub(crate) fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        if let Some(last) = self.chunks.last_mut() {
            Arc::make_mut(last).push(value);
            self.len += 1;
        }
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        SharedIter {
            inner: self.chunks.iter().flat_map(|chunk| chunk.iter()),
            left: self.len,
        }
    }
}

impl<T: Clone> FromIterator<T> for SharedVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut vec = Self::default();
        for item in items {
            vec.push(item);
        }
        vec
    }
}

struct SharedIter<I> {
    inner: I,
    left: usize,
}

impl<'a, T: 'a, I: Iterator<Item = &'a T>> Iterator for SharedIter<I> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let item = self.inner.next()?;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a, T: 'a, I: Iterator<Item = &'a T>> ExactSizeIterator for SharedIter<I> {}

/// A map from chain id to a leaf position, sorted by chain id in chunks of `CHUNK` to
/// `2·CHUNK` entries, whose clones share their chunks.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedIndex {
    chunks: Vec<Arc<Vec<(Hash, u32)>>>,
    /// The first key of each chunk.
    firsts: Vec<Hash>,
    len: usize,
}

impl SharedIndex {
    /// The index of `pairs` sorted by key, keys distinct.
    pub(crate) fn from_sorted(pairs: &[(Hash, u32)]) -> Self {
        let len = pairs.len();
        let chunks: Vec<Arc<Vec<(Hash, u32)>>> = pairs
            .chunks(CHUNK)
            .map(|chunk| Arc::new(chunk.to_vec()))
            .collect();
        let firsts = chunks.iter().map(|chunk| chunk[0].0).collect();
        Self {
            chunks,
            firsts,
            len,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// The chunk where `key` is or would go.
    fn chunk_of(&self, key: &Hash) -> usize {
        self.firsts
            .partition_point(|first| first <= key)
            .saturating_sub(1)
    }

    pub(crate) fn get(&self, key: &Hash) -> Option<u32> {
        let chunk = self.chunks.get(self.chunk_of(key))?;
        chunk
            .binary_search_by(|(k, _)| k.cmp(key))
            .ok()
            .map(|at| chunk[at].1)
    }

    /// Adds `key` (not in the map yet) at `position`.
    pub(crate) fn insert(&mut self, key: Hash, position: u32) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![(key, position)]));
            self.firsts.push(key);
            self.len = 1;
            return;
        }
        let at = self.chunk_of(&key);
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        match chunk.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(existing) => {
                chunk[existing].1 = position;
                return;
            }
            Err(slot) => chunk.insert(slot, (key, position)),
        }
        self.firsts[at] = chunk[0].0;
        self.len += 1;
        if chunk.len() > 2 * CHUNK {
            let upper = chunk.split_off(CHUNK);
            self.firsts.insert(at + 1, upper[0].0);
            self.chunks.insert(at + 1, Arc::new(upper));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn key(n: u32) -> Hash {
        Hash::of("test", &[&n.to_le_bytes()])
    }

    #[test]
    fn clones_share_chunks_until_written() {
        let original: SharedVec<u32> = (0..1000).collect();
        let mut copy = original.clone();
        copy.set(500, 7);
        copy.push(1000);
        assert_eq!(original.get(500), Some(&500));
        assert_eq!(copy.get(500), Some(&7));
        assert_eq!((original.len(), copy.len()), (1000, 1001));
        assert_eq!(original.get(1000), None);
        // Only the chunk written was copied.
        let shared = original
            .chunks
            .iter()
            .zip(&copy.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(
            shared,
            original.chunks.len() - 2,
            "the written chunk and the last"
        );
        assert_eq!(copy.iter().len(), 1001);
        assert!(
            copy.iter()
                .copied()
                .eq((0..1001).map(|i| if i == 500 { 7 } else { i }))
        );
    }

    proptest! {
        #[test]
        fn the_index_answers_as_a_sorted_map(
            initial in proptest::collection::btree_set(0u32..5000, 0..600),
            added in proptest::collection::vec(0u32..5000, 0..600),
        ) {
            let mut model: BTreeMap<Hash, u32> = initial.iter().map(|&n| (key(n), n)).collect();
            let mut index = SharedIndex::from_sorted(&model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            let before = index.clone();
            for n in added {
                model.insert(key(n), n + 1);
                index.insert(key(n), n + 1);
            }
            prop_assert_eq!(index.len(), model.len());
            for n in 0..5000 {
                prop_assert_eq!(index.get(&key(n)), model.get(&key(n)).copied());
                // The clone taken before is unchanged.
                let was = initial.contains(&n).then_some(n);
                prop_assert_eq!(before.get(&key(n)), was);
            }
            for chunk in &index.chunks {
                prop_assert!(!chunk.is_empty() && chunk.len() <= 2 * CHUNK);
            }
        }
    }
}
