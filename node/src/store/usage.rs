//! The disk each chain and each creator's chains take, counted as blocks are stored, for the
//! storage quotas of admission (docs/operator.md). Counters live in the meta column:
//! `chain-bytes/ ‖ chain id` and `creator-bytes/ ‖ creator key`, u64 little-endian.
//!
//! What a block costs is its encoding and its forward links, plus, for a release, the sizes of
//! the artifacts it names (every node mirrors them), plus the timeline checkpoints written for a
//! timeline. A store
//! written before the counters existed is counted once when it is opened.

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::Release;
use chainiac_protocol::skipchain::SkipBlock;

use super::{Batch, Column, Store, StoreResult};

const CHAIN_BYTES_PREFIX: &[u8] = b"chain-bytes/";
const CREATOR_BYTES_PREFIX: &[u8] = b"creator-bytes/";
/// Present once every chain of the store is counted.
const COUNTED_KEY: &[u8] = b"usage-counted";

/// The disk a chain and its creator take on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Bytes of the chain's blocks (and what they bring: artifacts, checkpoints).
    pub chain_bytes: u64,
    /// The same over every chain of its creator.
    pub creator_bytes: u64,
}

fn key(prefix: &[u8], id: &[u8; 32]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(id);
    key
}

fn counter(value: Option<Vec<u8>>) -> u64 {
    value
        .and_then(|value| <[u8; 8]>::try_from(value.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

/// What storing `block` costs, for a chain declared by `genesis`: its encoding, and for a
/// release (past its genesis) the artifacts it names.
pub fn storage_cost(genesis: Option<&ChainGenesis>, block: &SkipBlock) -> u64 {
    let encoded = block.to_bytes().len() as u64;
    let artifacts = match genesis {
        Some(ChainGenesis::Release { .. }) if block.index() > 0 => {
            Release::from_bytes(block.payload())
                .map(|release| {
                    release
                        .manifest
                        .artifacts()
                        .iter()
                        .fold(0u64, |sum, artifact| sum.saturating_add(artifact.size))
                })
                .unwrap_or(0)
        }
        _ => 0,
    };
    encoded.saturating_add(artifacts)
}

impl Store {
    /// The declared kind of a stored chain (its genesis payload), if any.
    pub fn chain_genesis(&self, chain_id: &Hash) -> StoreResult<Option<ChainGenesis>> {
        Ok(self
            .block_at(chain_id, 0)?
            .and_then(|genesis| ChainGenesis::of_payload(genesis.payload())))
    }

    /// Bytes `chain_id` takes here.
    pub fn chain_bytes(&self, chain_id: &Hash) -> StoreResult<u64> {
        Ok(counter(self.kv.get(
            Column::Meta,
            &key(CHAIN_BYTES_PREFIX, &chain_id.0),
        )?))
    }

    /// Bytes every chain `creator` created takes here.
    pub fn creator_bytes(&self, creator: &PublicKey) -> StoreResult<u64> {
        Ok(counter(self.kv.get(
            Column::Meta,
            &key(CREATOR_BYTES_PREFIX, creator.as_bytes()),
        )?))
    }

    /// The creator of a stored chain and the disk it and its creator's chains take.
    pub fn storage_usage(&self, chain_id: &Hash) -> StoreResult<(Option<PublicKey>, StorageUsage)> {
        let genesis = self.chain_genesis(chain_id)?;
        self.usage_under(chain_id, genesis.as_ref())
    }

    /// [`Store::storage_usage`] for a chain whose declared kind the caller already read.
    pub fn usage_under(
        &self,
        chain_id: &Hash,
        genesis: Option<&ChainGenesis>,
    ) -> StoreResult<(Option<PublicKey>, StorageUsage)> {
        let creator = genesis.and_then(ChainGenesis::creator);
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

    /// Adds `cost` to the counters of `chain_id` and its `creator`, in `batch` (the caller
    /// holds the write lock).
    pub(super) fn charge(
        &self,
        batch: &mut Batch,
        chain_id: &Hash,
        creator: Option<&PublicKey>,
        cost: u64,
    ) -> StoreResult<()> {
        let chain_bytes = self.chain_bytes(chain_id)?;
        batch.put(
            Column::Meta,
            key(CHAIN_BYTES_PREFIX, &chain_id.0),
            chain_bytes.saturating_add(cost).to_le_bytes(),
        );
        if let Some(creator) = creator {
            let creator_bytes = self.creator_bytes(creator)?;
            batch.put(
                Column::Meta,
                key(CREATOR_BYTES_PREFIX, creator.as_bytes()),
                creator_bytes.saturating_add(cost).to_le_bytes(),
            );
        }
        Ok(())
    }

    /// Adds the counter updates for storing `block` and `links_len` bytes of its links to
    /// `batch`.
    pub(super) fn count_block(
        &self,
        batch: &mut Batch,
        block: &SkipBlock,
        links_len: u64,
    ) -> StoreResult<()> {
        let chain_id = block.chain_id();
        let genesis = if block.index() == 0 {
            ChainGenesis::of_payload(block.payload())
        } else {
            self.chain_genesis(&chain_id)?
        };
        let creator = genesis.as_ref().and_then(ChainGenesis::creator);
        let cost = storage_cost(genesis.as_ref(), block);
        self.charge(
            batch,
            &chain_id,
            creator.as_ref(),
            cost.saturating_add(links_len),
        )
    }

    /// Counts every chain of a store written before the counters existed (once: a marker
    /// records it). Reads every block.
    pub(super) fn count_usage_once(&self) -> StoreResult<()> {
        if self.kv.get(Column::Meta, COUNTED_KEY)?.is_some() {
            return Ok(());
        }
        let _guard = self.lock();
        let mut creators: std::collections::HashMap<PublicKey, u64> = Default::default();
        let mut batch = Batch::new();
        let heads = self.chains(usize::MAX)?;
        if !heads.is_empty() {
            tracing::info!(
                chains = heads.len(),
                "counting the disk each chain takes (once, after an upgrade)"
            );
        }
        for head in heads {
            let genesis = self.chain_genesis(&head.chain_id)?;
            let mut bytes = 0u64;
            for index in 0..=head.index {
                if let Some(linked) = self.linked_block(&head.chain_id, index)? {
                    let links: u64 = linked
                        .links
                        .iter()
                        .map(|link| link.to_bytes().len() as u64)
                        .sum();
                    bytes = bytes
                        .saturating_add(storage_cost(genesis.as_ref(), &linked.block))
                        .saturating_add(links);
                }
            }
            batch.put(
                Column::Meta,
                key(CHAIN_BYTES_PREFIX, &head.chain_id.0),
                bytes.to_le_bytes(),
            );
            if let Some(creator) = genesis.as_ref().and_then(ChainGenesis::creator) {
                let total = creators.entry(creator).or_default();
                *total = total.saturating_add(bytes);
            }
        }
        for (creator, bytes) in creators {
            batch.put(
                Column::Meta,
                key(CREATOR_BYTES_PREFIX, creator.as_bytes()),
                bytes.to_le_bytes(),
            );
        }
        batch.put(Column::Meta, COUNTED_KEY, [1u8]);
        self.kv.write(batch)
    }
}
