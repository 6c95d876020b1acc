//! The heads digest nodes compare to find what they miss (anti-entropy), kept up to date with
//! every head change instead of recomputed: chains are spread over 256 buckets by the first byte
//! of their id; a bucket's digest is the XOR of `derive_key("chainiac v1 heads entry", chain id ‖
//! index ‖ head)` over its chains, so a head change is two XORs; the summary is the hash of the
//! 256 bucket digests. XOR is not collision resistant against a chosen set of heads, and need
//! not be: a digest only tells a node which peer to ask for heads, never what to trust.

use chainiac_net::wire::HEAD_BUCKETS;
use chainiac_protocol::Hash;
use chainiac_protocol::hash::domain;

use super::ChainHead;

/// The digest of every head of a store.
#[derive(Clone, Debug)]
pub struct HeadsDigest {
    buckets: Vec<Hash>,
    chains: u64,
}

fn entry(chain_id: &Hash, index: u64, head: &Hash) -> Hash {
    Hash::of(
        domain::HEADS_ENTRY,
        &[chain_id.as_bytes(), &index.to_le_bytes(), head.as_bytes()],
    )
}

fn xor(into: &mut Hash, value: &Hash) {
    for (a, b) in into.0.iter_mut().zip(value.0) {
        *a ^= b;
    }
}

impl HeadsDigest {
    /// The digest of `heads`.
    pub fn of(heads: impl IntoIterator<Item = ChainHead>) -> Self {
        let mut digest = Self {
            buckets: vec![Hash::default(); HEAD_BUCKETS],
            chains: 0,
        };
        for head in heads {
            digest.add(&head);
        }
        digest
    }

    /// The bucket of `chain_id`.
    pub fn bucket_of(chain_id: &Hash) -> u8 {
        chain_id.0[0]
    }

    /// Records a new chain's genesis.
    pub fn add(&mut self, head: &ChainHead) {
        let bucket = &mut self.buckets[usize::from(Self::bucket_of(&head.chain_id))];
        xor(bucket, &entry(&head.chain_id, head.index, &head.hash));
        self.chains += 1;
    }

    /// Moves a chain's head from `previous` to `head`.
    pub fn advance(&mut self, previous: &ChainHead, head: &ChainHead) {
        let bucket = &mut self.buckets[usize::from(Self::bucket_of(&head.chain_id))];
        xor(
            bucket,
            &entry(&previous.chain_id, previous.index, &previous.hash),
        );
        xor(bucket, &entry(&head.chain_id, head.index, &head.hash));
    }

    /// The summary: one hash over every bucket.
    pub fn root(&self) -> Hash {
        let bytes: Vec<u8> = self.buckets.iter().flat_map(|b| b.0).collect();
        Hash::of(domain::HEADS_SUMMARY, &[&bytes])
    }

    /// The bucket digests, in bucket order.
    pub fn buckets(&self) -> &[Hash] {
        &self.buckets
    }

    /// How many chains it covers.
    pub fn chains(&self) -> u64 {
        self.chains
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(chain: u8, index: u64) -> ChainHead {
        ChainHead {
            chain_id: Hash([chain; 32]),
            index,
            hash: Hash::of("test head", &[&[chain], &index.to_le_bytes()]),
        }
    }

    #[test]
    fn incremental_updates_match_a_fresh_digest_and_changes_show() {
        let mut digest = HeadsDigest::of([head(1, 0), head(2, 0)]);
        let mut other = digest.clone();
        assert_eq!(digest.root(), other.root());
        digest.advance(&head(1, 0), &head(1, 1));
        assert_ne!(digest.root(), other.root());
        assert_ne!(digest.buckets()[1], other.buckets()[1]);
        assert_eq!(
            digest.buckets()[2],
            other.buckets()[2],
            "only bucket 1 moved"
        );
        other.advance(&head(1, 0), &head(1, 1));
        assert_eq!(digest.root(), other.root());
        assert_eq!(
            digest.root(),
            HeadsDigest::of([head(2, 0), head(1, 1)]).root(),
            "independent of order and history"
        );
        assert_eq!(digest.chains(), 2);
    }
}
