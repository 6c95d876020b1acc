//! The typed store: chains, blocks, rosters and forward links over a [`KeyValue`] backend.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::Roster;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::skipchain::{
    BlockRoster, ChainParams, ChainSource, ForwardLink, LinkRequest, SkipBlock, SkipChain,
    SkipProof, TrustedBlock,
};

use super::{Batch, Column, KeyValue, MemoryBackend, RocksBackend, StoreError, StoreResult};

/// Most rosters kept decoded in memory. Decoding a roster checks every member's proof of
/// possession, so rounds, which read the roster of a chain several times per block, use the
/// cache; rosters are content-addressed and never change.
const ROSTER_CACHE: usize = 64;

/// Context of the checksums guarding values that are not content-addressed.
const CHECKSUM_CONTEXT: &str = "chainiac v1 store checksum";

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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn checksummed(value: &[u8]) -> Vec<u8> {
    let mut out = Hash::of(CHECKSUM_CONTEXT, &[value]).0.to_vec();
    out.extend_from_slice(value);
    out
}

fn verify_checksum<'a>(what: &'static str, stored: &'a [u8]) -> StoreResult<&'a [u8]> {
    if stored.len() < 32 || Hash::of(CHECKSUM_CONTEXT, &[&stored[32..]]).0 != stored[..32] {
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

/// Prefix of the equivocation guard's entries in [`Column::Meta`].
const SIGNED_PREFIX: &[u8] = b"signed/";

/// Most guard entries looked at for pruning per recorded share.
const SIGNED_PRUNE_SCAN: usize = 64;

fn signed_chain_prefix(chain_id: &Hash) -> Vec<u8> {
    let mut key = SIGNED_PREFIX.to_vec();
    key.extend_from_slice(chain_id.as_bytes());
    key
}

/// `signed/ ‖ chain id ‖ index (u64 big-endian) ‖ level (u32 big-endian)`: ordered by index
/// within a chain, so settled positions come first in a prefix scan.
fn signed_key(chain_id: &Hash, index: u64, level: u32) -> Vec<u8> {
    let mut key = signed_chain_prefix(chain_id);
    key.extend_from_slice(&index.to_be_bytes());
    key.extend_from_slice(&level.to_be_bytes());
    key
}

fn head_value(index: u64, hash: &Hash) -> Vec<u8> {
    let mut value = index.to_le_bytes().to_vec();
    value.extend_from_slice(hash.as_bytes());
    checksummed(&value)
}

fn hash_from(what: &'static str, bytes: &[u8]) -> StoreResult<Hash> {
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
        Ok(Self::with_backend(Arc::new(RocksBackend::open(path)?)))
    }

    /// An empty store in memory.
    pub fn in_memory() -> Self {
        Self::with_backend(Arc::new(MemoryBackend::new()))
    }

    /// A store over any backend.
    pub fn with_backend(kv: Arc<dyn KeyValue>) -> Self {
        Self {
            kv,
            write_lock: Arc::new(Mutex::new(())),
            rosters: Arc::default(),
            timelines: Arc::default(),
        }
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

    /// The block this node released a response share for at position (`chain_id`, `index`,
    /// link `level`), if it recorded one (see [`Store::record_signed`]).
    pub fn signed_block(
        &self,
        chain_id: &Hash,
        index: u64,
        level: u32,
    ) -> StoreResult<Option<Hash>> {
        let Some(record) = self.signed_record(chain_id, index, level)? else {
            return Ok(None);
        };
        Ok(Some(hash_from(
            "signed position",
            record.get(..32).unwrap_or(&record),
        )?))
    }

    /// The checked value of a guard record: `block hash ‖ encoded block` (the block only when
    /// it was kept).
    fn signed_record(
        &self,
        chain_id: &Hash,
        index: u64,
        level: u32,
    ) -> StoreResult<Option<Vec<u8>>> {
        let Some(mut stored) = self
            .kv
            .get(Column::Meta, &signed_key(chain_id, index, level))?
        else {
            return Ok(None);
        };
        verify_checksum("signed position", &stored)?;
        Ok(Some(stored.split_off(32)))
    }

    /// The whole block this node released a level-0 response share for at `index` of
    /// `chain_id`, if it kept it (see [`Store::record_signed`]): what a leader needs to
    /// complete that block instead of competing with it.
    pub fn signed_proposal(&self, chain_id: &Hash, index: u64) -> StoreResult<Option<SkipBlock>> {
        let Some(value) = self.signed_record(chain_id, index, 0)? else {
            return Ok(None);
        };
        let Some(body) = value.get(32..).filter(|body| !body.is_empty()) else {
            return Ok(None);
        };
        let corrupt = |detail: String| StoreError::Corrupt {
            what: "signed proposal",
            detail,
        };
        let block = SkipBlock::from_bytes(body).map_err(|e| corrupt(e.to_string()))?;
        if block.hash().0 != value[..32] || block.chain_id() != *chain_id || block.index() != index
        {
            return Err(corrupt("the kept block is not the one recorded".into()));
        }
        Ok(Some(block))
    }

    // ------------------------------------------------------------------ writes

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a chain from its genesis block.
    pub fn create_chain(&self, genesis: &SkipBlock) -> StoreResult<ChainHead> {
        let trusted = TrustedBlock::genesis(genesis.clone())?;
        let _guard = self.lock();
        let chain_id = genesis.chain_id();
        if self.head(&chain_id)?.is_some() {
            return Err(StoreError::ChainExists(chain_id));
        }
        let mut batch = Batch::new();
        batch.put(
            Column::Rosters,
            trusted.roster().hash().0,
            trusted.roster().to_bytes(),
        );
        self.put_block(&mut batch, genesis);
        self.kv.write(batch)?;
        Ok(ChainHead {
            chain_id,
            index: 0,
            hash: genesis.hash(),
        })
    }

    fn put_block(&self, batch: &mut Batch, block: &SkipBlock) {
        let chain_id = block.chain_id();
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
        if !links.iter().any(|link| link.level == 0) {
            return Err(chainiac_protocol::Error::MissingForwardLink {
                from: block.index().saturating_sub(1),
                level: 0,
            }
            .into());
        }
        let mut batch = Batch::new();
        for link in links {
            let request = requests
                .iter()
                .find(|request| request.level == link.level)
                .ok_or(chainiac_protocol::Error::LinkMismatch {
                    reason: "no link at this level points to the block",
                })?;
            self.check_link(&block.chain_id(), request, link)?;
            batch.put(
                Column::ForwardLinks,
                link_key(&link.from, link.level),
                checksummed(&link.to_bytes()),
            );
        }
        if let BlockRoster::Full(roster) = block.roster() {
            batch.put(Column::Rosters, roster.hash().0, roster.to_bytes());
        }
        self.put_block(&mut batch, block);
        if durable {
            self.kv.write(batch)?;
        } else {
            self.kv.write_relaxed(batch)?;
        }
        Ok(ChainHead {
            chain_id: block.chain_id(),
            index: block.index(),
            hash: block.hash(),
        })
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

    /// The equivocation guard: records, durably (one synced write), that this node releases a
    /// response share for `block` at position (`chain_id`, `index`, link `level`). Must be
    /// called, and succeed, before the share leaves the node.
    ///
    /// Returns the block already recorded at that position if it is another one; nothing is
    /// written then and the share must not be released. Recording the same block again is a
    /// no-op. Entries at or below the chain's head are settled by the chain itself and are
    /// pruned in the same write. `body`, the encoded block, is kept with the record when given
    /// (see [`Store::signed_proposal`]).
    pub fn record_signed(
        &self,
        chain_id: &Hash,
        index: u64,
        level: u32,
        block: &Hash,
        body: Option<&[u8]>,
    ) -> StoreResult<Option<Hash>> {
        let _guard = self.lock();
        match self.signed_block(chain_id, index, level)? {
            Some(recorded) if recorded == *block => return Ok(None),
            Some(recorded) => return Ok(Some(recorded)),
            None => {}
        }
        let mut batch = Batch::new();
        if let Some(head) = self.head(chain_id)? {
            let prefix = signed_chain_prefix(chain_id);
            for (key, _) in self
                .kv
                .scan_prefix(Column::Meta, &prefix, SIGNED_PRUNE_SCAN)?
            {
                let settled = key
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                    .is_some_and(|bytes| u64::from_be_bytes(bytes) <= head.index);
                if !settled {
                    break;
                }
                batch.delete(Column::Meta, key);
            }
        }
        batch.put(
            Column::Meta,
            signed_key(chain_id, index, level),
            checksummed(&[&block.as_bytes()[..], body.unwrap_or_default()].concat()),
        );
        self.kv.write(batch)?;
        Ok(None)
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
        let request = requests
            .iter()
            .find(|request| request.level == link.level)
            .ok_or(chainiac_protocol::Error::LinkMismatch {
                reason: "no link at this level points to the block",
            })?;
        self.check_link(&target.chain_id(), request, link)?;
        let mut batch = Batch::new();
        batch.put(
            Column::ForwardLinks,
            link_key(&link.from, link.level),
            checksummed(&link.to_bytes()),
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

/// Key prefix of anchor proofs in the meta column: `anchor/` ‖ timeline chain id ‖ index (BE).
const ANCHOR_PREFIX: &[u8] = b"anchor/";

fn anchor_key(timeline: &Hash, index: u64) -> Vec<u8> {
    let mut key = ANCHOR_PREFIX.to_vec();
    key.extend_from_slice(timeline.as_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

impl Store {
    /// Records (or replaces, after a reorganisation) the anchor proof of timeline block `index`.
    pub fn put_anchor(
        &self,
        timeline: &Hash,
        index: u64,
        proof: &chainiac_anchor::AnchorProof,
    ) -> StoreResult<()> {
        let mut batch = Batch::new();
        batch.put(Column::Meta, anchor_key(timeline, index), proof.to_bytes());
        self.kv.write(batch)
    }

    /// The anchor proofs of `timeline`, newest first, at most `limit`.
    pub fn anchors(
        &self,
        timeline: &Hash,
        limit: usize,
    ) -> StoreResult<Vec<chainiac_anchor::AnchorProof>> {
        let mut prefix = ANCHOR_PREFIX.to_vec();
        prefix.extend_from_slice(timeline.as_bytes());
        let mut proofs = self
            .kv
            .scan_prefix(Column::Meta, &prefix, usize::MAX)?
            .into_iter()
            .map(|(_, value)| {
                chainiac_anchor::AnchorProof::from_bytes(&value).map_err(|e| StoreError::Corrupt {
                    what: "anchor proof",
                    detail: e.to_string(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        proofs.reverse();
        proofs.truncate(limit);
        Ok(proofs)
    }
}
