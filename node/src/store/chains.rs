//! The typed store: chains, blocks, rosters and forward links over a [`KeyValue`] backend.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chainiac_net::wire::LinkedBlock;
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::Roster;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::hash::domain;
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::skipchain::{
    BlockRoster, ChainParams, ChainSource, ForwardLink, LinkRequest, SkipBlock, SkipChain,
    SkipProof, TrustedBlock,
};

use super::digest::HeadsDigest;
use super::{Batch, Column, KeyValue, MemoryBackend, RocksBackend, StoreError, StoreResult};

/// Most rosters kept decoded in memory. Decoding a roster checks every member's proof of
/// possession, so rounds, which read the roster of a chain several times per block, use the
/// cache; rosters are content-addressed and never change.
const ROSTER_CACHE: usize = 64;

/// The latest block of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain id.
    pub chain_id: Hash,
    /// Index of the head.
    pub index: u64,
    /// Hash of the head.
    pub hash: Hash,
}

/// The node's store. Cheap to clone; writes are serialized and each is one atomic batch.
#[derive(Clone)]
pub struct Store {
    pub(super) kv: Arc<dyn KeyValue>,
    write_lock: Arc<Mutex<()>>,
    rosters: Arc<Mutex<HashMap<Hash, Roster>>>,
    pub(super) timelines: Arc<super::timelines::TimelineTrees>,
    /// The heads digest, computed at first use and then kept up to date by every write.
    digest: Arc<Mutex<Option<HeadsDigest>>>,
    /// Counts blocks stored, so that tasks can wait for a chain to move.
    appended: Arc<tokio::sync::watch::Sender<u64>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

pub(super) fn checksummed(value: &[u8]) -> Vec<u8> {
    let mut out = Hash::of(domain::STORE_CHECKSUM, &[value]).0.to_vec();
    out.extend_from_slice(value);
    out
}

pub(super) fn verify_checksum<'a>(what: &'static str, stored: &'a [u8]) -> StoreResult<&'a [u8]> {
    if stored.len() < 32 || Hash::of(domain::STORE_CHECKSUM, &[&stored[32..]]).0 != stored[..32] {
        return Err(StoreError::Corrupt {
            what,
            detail: "checksum mismatch".into(),
        });
    }
    Ok(&stored[32..])
}

fn index_key(chain_id: &Hash, index: u64) -> Vec<u8> {
    let mut key = chain_id.0.to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn link_key(from: &Hash, level: u32) -> Vec<u8> {
    let mut key = from.0.to_vec();
    key.extend_from_slice(&level.to_be_bytes());
    key
}

/// Key of a chain's genesis certificate in [`Column::ForwardLinks`]: the bare chain id (32
/// bytes), which no forward-link key (36 bytes) can equal.
fn certificate_key(chain_id: &Hash) -> Vec<u8> {
    chain_id.0.to_vec()
}

/// Prefix, in [`Column::Meta`], of the number of chains each creator key created (u64 LE).
const CREATOR_PREFIX: &[u8] = b"creator/";

fn creator_key(creator: &PublicKey) -> Vec<u8> {
    let mut key = CREATOR_PREFIX.to_vec();
    key.extend_from_slice(creator.as_bytes());
    key
}

fn head_value(index: u64, hash: &Hash) -> Vec<u8> {
    let mut value = index.to_le_bytes().to_vec();
    value.extend_from_slice(hash.as_bytes());
    checksummed(&value)
}

pub(super) fn hash_from(what: &'static str, bytes: &[u8]) -> StoreResult<Hash> {
    <[u8; 32]>::try_from(bytes)
        .map(Hash)
        .map_err(|_| StoreError::Corrupt {
            what,
            detail: format!("{} bytes where a hash has 32", bytes.len()),
        })
}

impl Store {
    /// Opens (or creates) the RocksDB store at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let store = Self::with_backend(Arc::new(RocksBackend::open(path)?));
        store.count_usage_once()?;
        store.index_heads_once()?;
        Ok(store)
    }

    /// An empty store in memory.
    pub fn in_memory() -> Self {
        let store = Self::with_backend(Arc::new(MemoryBackend::new()));
        // Nothing to count in an empty store: only the marker is written.
        let _ = store.count_usage_once();
        let _ = store.index_heads_once();
        store
    }

    /// A store over any backend.
    pub fn with_backend(kv: Arc<dyn KeyValue>) -> Self {
        Self {
            kv,
            write_lock: Arc::new(Mutex::new(())),
            rosters: Arc::default(),
            timelines: Arc::default(),
            digest: Arc::default(),
            appended: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Changes whenever a block is stored: wait on it, then read the heads.
    pub fn watch_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// How many handles share this store's database (it closes when the last is dropped).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.kv)
    }

    // ------------------------------------------------------------------ reads

    /// Reads a content-addressed value and checks that it hashes to the key it is stored under.
    fn read_addressed<T: Decode>(
        &self,
        column: Column,
        what: &'static str,
        hash: &Hash,
        hash_of: impl Fn(&T) -> Hash,
    ) -> StoreResult<Option<T>> {
        let Some(bytes) = self.kv.get(column, hash.as_bytes())? else {
            return Ok(None);
        };
        let value = T::from_bytes(&bytes).map_err(|error| StoreError::Corrupt {
            what,
            detail: error.to_string(),
        })?;
        let actual = hash_of(&value);
        if actual != *hash {
            return Err(StoreError::Corrupt {
                what,
                detail: format!("stored under {hash} but hashes to {actual}"),
            });
        }
        Ok(Some(value))
    }

    /// The block with hash `hash`, checked against it.
    pub fn block(&self, hash: &Hash) -> StoreResult<Option<SkipBlock>> {
        self.read_addressed(Column::Blocks, "block", hash, SkipBlock::hash)
    }

    /// Block `index` of chain `chain_id`.
    pub fn block_at(&self, chain_id: &Hash, index: u64) -> StoreResult<Option<SkipBlock>> {
        let Some(hash) = self
            .kv
            .get(Column::ChainIndex, &index_key(chain_id, index))?
        else {
            return Ok(None);
        };
        let hash = hash_from("chain index", &hash)?;
        let block = self.block(&hash)?.ok_or(StoreError::Corrupt {
            what: "chain index",
            detail: format!("names missing block {hash}"),
        })?;
        if block.chain_id() != *chain_id || block.index() != index {
            return Err(StoreError::Corrupt {
                what: "chain index",
                detail: format!("entry for block {index} names another block"),
            });
        }
        Ok(Some(block))
    }

    /// The head of chain `chain_id`.
    pub fn head(&self, chain_id: &Hash) -> StoreResult<Option<ChainHead>> {
        let Some(stored) = self.kv.get(Column::Heads, chain_id.as_bytes())? else {
            return Ok(None);
        };
        Ok(Some(Self::decode_head(chain_id, &stored)?))
    }

    fn decode_head(chain_id: &Hash, stored: &[u8]) -> StoreResult<ChainHead> {
        let value = verify_checksum("chain head", stored)?;
        if value.len() != 40 {
            return Err(StoreError::Corrupt {
                what: "chain head",
                detail: "wrong length".into(),
            });
        }
        let mut index = [0u8; 8];
        index.copy_from_slice(&value[..8]);
        Ok(ChainHead {
            chain_id: *chain_id,
            index: u64::from_le_bytes(index),
            hash: hash_from("chain head", &value[8..])?,
        })
    }

    /// The heads of up to `limit` chains, ordered by chain id.
    pub fn chains(&self, limit: usize) -> StoreResult<Vec<ChainHead>> {
        self.kv
            .scan_prefix(Column::Heads, &[], limit)?
            .into_iter()
            .map(|(key, value)| Self::decode_head(&hash_from("chain head key", &key)?, &value))
            .collect()
    }

    /// The digest of every head (anti-entropy). Computed from the heads at first use (one scan),
    /// then kept up to date by every write.
    pub fn heads_digest(&self) -> StoreResult<HeadsDigest> {
        if let Some(digest) = self
            .digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Ok(digest.clone());
        }
        // No write may slip between the scan and keeping its result.
        let _guard = self.lock();
        let digest = HeadsDigest::of(self.chains(usize::MAX)?);
        *self.digest.lock().unwrap_or_else(PoisonError::into_inner) = Some(digest.clone());
        Ok(digest)
    }

    /// The heads of the chains in bucket `bucket` of the heads digest (at most `limit`).
    pub fn heads_in_bucket(&self, bucket: u8, limit: usize) -> StoreResult<Vec<ChainHead>> {
        self.kv
            .scan_prefix(Column::Heads, &[bucket], limit)?
            .into_iter()
            .map(|(key, value)| Self::decode_head(&hash_from("chain head key", &key)?, &value))
            .collect()
    }

    /// Records a head change in the digest (with the write lock held, after the write).
    fn update_digest(&self, previous: Option<ChainHead>, head: &ChainHead) {
        self.appended
            .send_modify(|count| *count = count.wrapping_add(1));
        if let Some(digest) = self
            .digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            match previous {
                Some(previous) => digest.advance(&previous, head),
                None => digest.add(head),
            }
        }
    }

    /// The roster with hash `hash` (checked against it when first read, then cached).
    pub fn roster(&self, hash: &Hash) -> StoreResult<Option<Roster>> {
        let cached = self
            .rosters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(hash)
            .cloned();
        if cached.is_some() {
            return Ok(cached);
        }
        let roster = self.read_addressed(Column::Rosters, "roster", hash, Roster::hash)?;
        if let Some(roster) = &roster {
            let mut cache = self.rosters.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= ROSTER_CACHE {
                cache.clear();
            }
            cache.insert(*hash, roster.clone());
        }
        Ok(roster)
    }

    /// The roster `block` runs under.
    pub fn roster_of(&self, block: &SkipBlock) -> StoreResult<Roster> {
        match block.roster() {
            BlockRoster::Full(roster) => Ok(roster.clone()),
            BlockRoster::Unchanged(hash) => self.roster(hash)?.ok_or(StoreError::Corrupt {
                what: "roster",
                detail: format!("roster {hash} of block {} is missing", block.index()),
            }),
        }
    }

    /// The forward link at `level` from the block with hash `from`.
    pub fn forward_link(&self, from: &Hash, level: u32) -> StoreResult<Option<ForwardLink>> {
        let Some(stored) = self.kv.get(Column::ForwardLinks, &link_key(from, level))? else {
            return Ok(None);
        };
        let link = ForwardLink::from_bytes(verify_checksum("forward link", &stored)?).map_err(
            |error| StoreError::Corrupt {
                what: "forward link",
                detail: error.to_string(),
            },
        )?;
        if link.from != *from || link.level != level {
            return Err(StoreError::Corrupt {
                what: "forward link",
                detail: "stored under another key".into(),
            });
        }
        Ok(Some(link))
    }

    /// The genesis certificate of a chain (none for chains stored before certificates existed).
    pub fn genesis_certificate(&self, chain_id: &Hash) -> StoreResult<Option<ForwardLink>> {
        let Some(stored) = self
            .kv
            .get(Column::ForwardLinks, &certificate_key(chain_id))?
        else {
            return Ok(None);
        };
        ForwardLink::from_bytes(verify_checksum("genesis certificate", &stored)?)
            .map(Some)
            .map_err(|error| StoreError::Corrupt {
                what: "genesis certificate",
                detail: error.to_string(),
            })
    }

    /// How many chains this store holds that `creator` created (counted as they are stored).
    pub fn chains_created_by(&self, creator: &PublicKey) -> StoreResult<u64> {
        Ok(self
            .kv
            .get(Column::Meta, &creator_key(creator))?
            .and_then(|value| value.try_into().ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Block `index` of a chain with the forward links into it that this store holds (for the
    /// genesis, its certificate): what sync and gossip move around.
    pub fn linked_block(&self, chain_id: &Hash, index: u64) -> StoreResult<Option<LinkedBlock>> {
        let Some(block) = self.block_at(chain_id, index)? else {
            return Ok(None);
        };
        if index == 0 {
            let links = self.genesis_certificate(chain_id)?.into_iter().collect();
            return Ok(Some(LinkedBlock { block, links }));
        }
        let mut links = Vec::new();
        for (level, from) in (0u32..).zip(block.back_links()) {
            if let Some(link) = self.forward_link(from, level)?
                && link.to == block.hash()
            {
                links.push(link);
            }
        }
        Ok(Some(LinkedBlock { block, links }))
    }

    /// Block `index` of a chain with its roster, as a client would trust it.
    pub fn trusted(&self, chain_id: &Hash, index: u64) -> StoreResult<TrustedBlock> {
        let block = self
            .block_at(chain_id, index)?
            .ok_or(chainiac_protocol::Error::MissingBlock { index })?;
        let roster = self.roster_of(&block)?;
        Ok(TrustedBlock::new(block, roster)?)
    }

    /// A skip proof between two blocks of a chain.
    pub fn skip_proof(&self, chain_id: &Hash, from: u64, to: u64) -> StoreResult<SkipProof> {
        let head = self
            .head(chain_id)?
            .ok_or(StoreError::UnknownChain(*chain_id))?;
        if to > head.index {
            return Err(chainiac_protocol::Error::MissingBlock { index: to }.into());
        }
        let view = ChainView::new(self, chain_id)?;
        view.skip_proof(from, to)
    }

    // ------------------------------------------------------------------ writes

    /// Adds to `batch` the deletion of the entries of [`Column::Meta`] keyed
    /// `prefix ‖ u64 index (big-endian) ‖ …` whose index is at or below `head` (settled by the
    /// chain), looking at no more than `scan` entries; keys are ordered by index, so the scan
    /// stops at the first unsettled one.
    pub(super) fn delete_settled(
        &self,
        batch: &mut Batch,
        prefix: &[u8],
        head: u64,
        scan: usize,
    ) -> StoreResult<()> {
        for (key, _) in self.kv.scan_prefix(Column::Meta, prefix, scan)? {
            let settled = key
                .get(prefix.len()..prefix.len() + 8)
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .is_some_and(|bytes| u64::from_be_bytes(bytes) <= head);
            if !settled {
                break;
            }
            batch.delete(Column::Meta, key);
        }
        Ok(())
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a chain from its genesis block and the genesis certificate its roster signed
    /// ([`LinkRequest::check_genesis`]): a chain its own roster did not admit is never stored.
    pub fn create_chain(
        &self,
        genesis: &SkipBlock,
        certificate: &ForwardLink,
    ) -> StoreResult<ChainHead> {
        let trusted = TrustedBlock::genesis(genesis.clone())?;
        LinkRequest::check_genesis(genesis, certificate)?;
        let _guard = self.lock();
        let chain_id = genesis.chain_id();
        if self.head(&chain_id)?.is_some() {
            return Err(StoreError::ChainExists(chain_id));
        }
        let mut batch = Batch::new();
        batch.put(
            Column::ForwardLinks,
            certificate_key(&chain_id),
            checksummed(&certificate.to_bytes()),
        );
        if let Some(creator) =
            ChainGenesis::of_payload(genesis.payload()).and_then(|genesis| genesis.creator())
        {
            let count = self.chains_created_by(&creator)?.saturating_add(1);
            batch.put(Column::Meta, creator_key(&creator), count.to_le_bytes());
        }
        batch.put(
            Column::Rosters,
            trusted.roster().hash().0,
            trusted.roster().to_bytes(),
        );
        self.put_block(&mut batch, genesis, certificate.to_bytes().len() as u64)?;
        self.kv.write(batch)?;
        let head = ChainHead {
            chain_id,
            index: 0,
            hash: genesis.hash(),
        };
        self.update_digest(None, &head);
        Ok(head)
    }

    /// Adds `block` to `batch`, counting its cost and `links_len` bytes of links stored with
    /// it against its chain and creator.
    fn put_block(&self, batch: &mut Batch, block: &SkipBlock, links_len: u64) -> StoreResult<()> {
        let chain_id = block.chain_id();
        self.count_block(batch, block, links_len)?;
        batch.put(Column::Blocks, block.hash().0, block.to_bytes());
        batch.put(
            Column::ChainIndex,
            index_key(&chain_id, block.index()),
            block.hash().0,
        );
        batch.put(
            Column::Heads,
            chain_id.0,
            head_value(block.index(), &block.hash()),
        );
        let genesis = if block.index() == 0 {
            ChainGenesis::of_payload(block.payload())
        } else {
            None
        };
        self.index_head_change(batch, &chain_id, genesis.as_ref())
    }

    /// The forward links a proposed next block of its chain needs, after checking it as the
    /// successor of the head.
    pub fn link_requests(&self, candidate: &SkipBlock) -> StoreResult<Vec<LinkRequest>> {
        let chain_id = candidate.chain_id();
        let head = self
            .head(&chain_id)?
            .ok_or(StoreError::UnknownChain(chain_id))?;
        let previous = self.block(&head.hash)?.ok_or(StoreError::Corrupt {
            what: "chain head",
            detail: "head block is missing".into(),
        })?;
        let roster = self.roster_of(&previous)?;
        SkipChain::check_successor(&previous, &roster, candidate, |index| {
            self.block_at(&chain_id, index)
                .ok()
                .flatten()
                .map(|block| block.hash())
        })?;
        Ok(LinkRequest::for_block(candidate))
    }

    /// Appends `block` to its chain with its forward links, in one atomic, synced batch, after
    /// the append rules: a valid successor of the head, a level-0 link, and every link signed
    /// by the roster of its source block.
    pub fn append(&self, block: &SkipBlock, links: &[ForwardLink]) -> StoreResult<ChainHead> {
        self.append_with(block, links, true)
    }

    /// [`Store::append`] without waiting for the disk (for blocks fetched by sync, which
    /// persists once per batch with [`Store::persist`]): the block survives the process being
    /// killed; after a power loss the chain comes back as a prefix of what was appended.
    pub fn append_relaxed(
        &self,
        block: &SkipBlock,
        links: &[ForwardLink],
    ) -> StoreResult<ChainHead> {
        self.append_with(block, links, false)
    }

    /// Makes every write so far durable.
    pub fn persist(&self) -> StoreResult<()> {
        self.kv.persist()
    }

    fn append_with(
        &self,
        block: &SkipBlock,
        links: &[ForwardLink],
        durable: bool,
    ) -> StoreResult<ChainHead> {
        let _guard = self.lock();
        let requests = self.link_requests(block)?;
        let mut batch = Batch::new();
        let mut links_len = 0u64;
        for (request, link) in
            LinkRequest::for_append(&requests, links, block.index().saturating_sub(1))?
        {
            self.check_link(&block.chain_id(), request, link)?;
            let encoded = link.to_bytes();
            links_len += encoded.len() as u64;
            batch.put(
                Column::ForwardLinks,
                link_key(&link.from, link.level),
                checksummed(&encoded),
            );
        }
        if let BlockRoster::Full(roster) = block.roster() {
            batch.put(Column::Rosters, roster.hash().0, roster.to_bytes());
        }
        self.put_block(&mut batch, block, links_len)?;
        if durable {
            self.kv.write(batch)?;
        } else {
            self.kv.write_relaxed(batch)?;
        }
        let head = ChainHead {
            chain_id: block.chain_id(),
            index: block.index(),
            hash: block.hash(),
        };
        // `link_requests` checked that the block follows the head: its level-0 back link.
        let previous = block.back_links().first().map(|hash| ChainHead {
            index: block.index() - 1,
            hash: *hash,
            ..head
        });
        self.update_digest(previous, &head);
        Ok(head)
    }

    fn check_link(
        &self,
        chain_id: &Hash,
        request: &LinkRequest,
        link: &ForwardLink,
    ) -> StoreResult<()> {
        let source = self.block_at(chain_id, request.from_index)?.ok_or(
            chainiac_protocol::Error::MissingBlock {
                index: request.from_index,
            },
        )?;
        request.check(link, &self.roster_of(&source)?)?;
        Ok(())
    }

    /// Adds a forward link into a block already stored (a higher-level link signed late).
    pub fn add_forward_link(&self, link: &ForwardLink) -> StoreResult<()> {
        let _guard = self.lock();
        let target = self
            .block(&link.to)?
            .ok_or(chainiac_protocol::Error::LinkMismatch {
                reason: "target block is not stored",
            })?;
        let requests = LinkRequest::for_block(&target);
        let request = LinkRequest::matching(&requests, link)?;
        self.check_link(&target.chain_id(), request, link)?;
        let mut batch = Batch::new();
        let encoded = link.to_bytes();
        let chain_id = target.chain_id();
        let creator = self
            .chain_genesis(&chain_id)?
            .and_then(|genesis| genesis.creator());
        self.charge(
            &mut batch,
            &chain_id,
            creator.as_ref(),
            encoded.len() as u64,
        )?;
        batch.put(
            Column::ForwardLinks,
            link_key(&link.from, link.level),
            checksummed(&encoded),
        );
        self.kv.write(batch)
    }
}

/// One chain of the store seen through [`ChainSource`], for skip proofs.
struct ChainView<'a> {
    store: &'a Store,
    chain_id: Hash,
    params: ChainParams,
}

impl<'a> ChainView<'a> {
    fn new(store: &'a Store, chain_id: &Hash) -> StoreResult<Self> {
        let genesis = store
            .block(chain_id)?
            .ok_or(StoreError::UnknownChain(*chain_id))?;
        Ok(Self {
            store,
            chain_id: *chain_id,
            params: genesis.params(),
        })
    }
}

impl ChainSource for ChainView<'_> {
    type Error = StoreError;

    fn params(&self) -> ChainParams {
        self.params
    }

    fn block_at(&self, index: u64) -> StoreResult<Option<SkipBlock>> {
        self.store.block_at(&self.chain_id, index)
    }

    fn roster_at(&self, index: u64) -> StoreResult<Option<Roster>> {
        match self.store.block_at(&self.chain_id, index)? {
            Some(block) => Ok(Some(self.store.roster_of(&block)?)),
            None => Ok(None),
        }
    }

    fn link_at(&self, from: u64, level: u32) -> StoreResult<Option<ForwardLink>> {
        let Some(hash) = self
            .store
            .kv
            .get(Column::ChainIndex, &index_key(&self.chain_id, from))?
        else {
            return Ok(None);
        };
        self.store
            .forward_link(&hash_from("chain index", &hash)?, level)
    }
}
