//! The disk each chain and each creator's chains take, counted as blocks are stored, for the
//! storage quotas of admission (docs/operator.md). Counters live in the meta column:
//! `chain-bytes/ ‖ chain id` and `creator-bytes/ ‖ creator key`, u64 little-endian. A store
//! written before the counters existed counts a chain (or a creator's chains) once, the first
//! time it is asked, and keeps the count from the next block on.

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::skipchain::SkipBlock;

use super::{Batch, Column, Store, StoreResult};

const CHAIN_BYTES_PREFIX: &[u8] = b"chain-bytes/";
const CREATOR_BYTES_PREFIX: &[u8] = b"creator-bytes/";

/// The disk a chain and its creator take on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Bytes of the chain's blocks.
    pub chain_bytes: u64,
    /// Bytes of the blocks of every chain of its creator.
    pub creator_bytes: u64,
}

fn key(prefix: &[u8], id: &[u8; 32]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id);
    key
}

fn counter(value: Option<Vec<u8>>) -> Option<u64> {
    value
        .and_then(|value| <[u8; 8]>::try_from(value.as_slice()).ok())
        .map(u64::from_le_bytes)
}

/// The creator a genesis payload declares.
fn creator_in(genesis: &SkipBlock) -> Option<PublicKey> {
    ChainGenesis::of_payload(genesis.payload()).and_then(|declared| declared.creator())
}

impl Store {
    /// The creator of a stored chain, if its genesis names one.
    pub fn creator_of(&self, chain_id: &Hash) -> StoreResult<Option<PublicKey>> {
        Ok(self.block_at(chain_id, 0)?.as_ref().and_then(creator_in))
    }

    /// Bytes of the blocks of `chain_id` stored here.
    pub fn chain_bytes(&self, chain_id: &Hash) -> StoreResult<u64> {
        if let Some(bytes) = counter(
            self.kv
                .get(Column::Meta, &key(CHAIN_BYTES_PREFIX, &chain_id.0))?,
        ) {
            return Ok(bytes);
        }
        let Some(head) = self.head(chain_id)? else {
            return Ok(0);
        };
        let mut bytes = 0u64;
        for index in 0..=head.index {
            if let Some(block) = self.block_at(chain_id, index)? {
                bytes += block.to_bytes().len() as u64;
            }
        }
        Ok(bytes)
    }

    /// Bytes of the blocks of every chain `creator` created stored here.
    pub fn creator_bytes(&self, creator: &PublicKey) -> StoreResult<u64> {
        if let Some(bytes) = counter(
            self.kv
                .get(Column::Meta, &key(CREATOR_BYTES_PREFIX, creator.as_bytes()))?,
        ) {
            return Ok(bytes);
        }
        if self.chains_created_by(creator)? == 0 {
            return Ok(0);
        }
        let mut bytes = 0u64;
        for head in self.chains(usize::MAX)? {
            if self.creator_of(&head.chain_id)?.as_ref() == Some(creator) {
                bytes += self.chain_bytes(&head.chain_id)?;
            }
        }
        Ok(bytes)
    }

    /// The creator of a stored chain and the disk it and its creator's chains take.
    pub fn storage_usage(&self, chain_id: &Hash) -> StoreResult<(Option<PublicKey>, StorageUsage)> {
        let creator = self.creator_of(chain_id)?;
        let creator_bytes = match &creator {
            Some(creator) => self.creator_bytes(creator)?,
            None => 0,
        };
        Ok((
            creator,
            StorageUsage {
                chain_bytes: self.chain_bytes(chain_id)?,
                creator_bytes,
            },
        ))
    }

    /// Adds the counter updates for storing `block` (of `len` encoded bytes) to `batch`.
    pub(super) fn count_block(
        &self,
        batch: &mut Batch,
        block: &SkipBlock,
        len: u64,
    ) -> StoreResult<()> {
        let chain_id = block.chain_id();
        let (creator, chain_bytes) = if block.index() == 0 {
            (creator_in(block), 0)
        } else {
            (self.creator_of(&chain_id)?, self.chain_bytes(&chain_id)?)
        };
        batch.put(
            Column::Meta,
            key(CHAIN_BYTES_PREFIX, &chain_id.0),
            chain_bytes.saturating_add(len).to_le_bytes(),
        );
        if let Some(creator) = creator {
            let creator_bytes = self.creator_bytes(&creator)?;
            batch.put(
                Column::Meta,
                key(CREATOR_BYTES_PREFIX, creator.as_bytes()),
                creator_bytes.saturating_add(len).to_le_bytes(),
            );
        }
        Ok(())
    }
}
