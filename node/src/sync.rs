//! Sync: fetching the blocks a node lacks from a peer that has them, and storing each one only
//! after the store's rules accept it (a valid successor of the head, a level-0 forward link
//! signed by the roster of the block before it).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use chainiac_net::wire::{
    LinkedBlock, MAX_BLOCKS_ANSWER_BYTES, MAX_BLOCKS_PER_REQUEST, Request, Response,
};
use chainiac_net::{NetHandle, RequestError};
use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::skipchain::MAX_PAYLOAD_LEN;
use chainiac_protocol::skipchain::SkipBlock;
use libp2p::PeerId;

use crate::admission::Admission;
use crate::metrics::Metrics;
use crate::replicate::Replicator;
use crate::rules::{GenesisRefusal, admit_genesis};
use crate::store::{Store, StoreError};

/// Why a sync from a peer stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The peer did not answer.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The peer refused.
    #[error("the peer refused: {0}")]
    Refused(String),
    /// The peer answered something else than blocks of the chain asked for.
    #[error("the peer {0}")]
    Misbehaved(&'static str),
    /// A block did not pass the store's rules, or the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking task storing the blocks failed.
    #[error("internal error while storing synced blocks")]
    Internal,
}

/// The sync service: stores blocks from peers and fetches the missing ones.
#[derive(Debug)]
pub struct Syncer {
    store: Store,
    net: NetHandle,
    metrics: Arc<Metrics>,
    replicator: Arc<Replicator>,
    /// (peer, chain) pairs being synced, so a burst of gossip starts one sync, not many.
    syncing: Mutex<HashSet<(PeerId, Hash)>>,
    /// Whose chains this node keeps.
    admission: Admission,
    /// Chains this node's admission policy refused, not fetched again (bounded).
    not_admitted: Mutex<HashSet<Hash>>,
}

/// Most refused chains remembered; the set starts over when full.
const MAX_NOT_ADMITTED: usize = 10_000;

impl Syncer {
    /// A syncer over `store`, fetching through `net`, mirroring releases with `replicator`.
    pub fn new(
        store: Store,
        net: NetHandle,
        metrics: Arc<Metrics>,
        replicator: Arc<Replicator>,
        admission: Admission,
    ) -> Self {
        Self {
            store,
            net,
            metrics,
            replicator,
            syncing: Mutex::default(),
            admission,
            not_admitted: Mutex::default(),
        }
    }

    /// Whether this node keeps the chain that `genesis` starts: the witness's rule
    /// ([`admit_genesis`]; the roster's certificate is checked by the store). A node keeps what
    /// it relays, so the same rule bounds what it spreads.
    fn admit(&self, genesis: &SkipBlock) -> Result<(), StoreError> {
        match admit_genesis(&self.admission, &self.store, genesis) {
            Ok(()) => Ok(()),
            Err(GenesisRefusal::Refused(reason)) => {
                self.metrics.chains_not_admitted.inc();
                let mut refused = self
                    .not_admitted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if refused.len() >= MAX_NOT_ADMITTED {
                    refused.clear();
                }
                refused.insert(genesis.chain_id());
                Err(StoreError::NotAdmitted(reason))
            }
            // Not marked as refused: the policy chain may arrive later.
            Err(GenesisRefusal::PolicyUnknown(reason)) => Err(StoreError::NotAdmitted(format!(
                "its policy chain is not stored here yet ({reason})"
            ))),
            Err(GenesisRefusal::Store(error)) => Err(error),
        }
    }

    /// Whether this node keeps `block` of a stored chain: within the storage quotas of the
    /// chain and its creator (for a release, counting the artifacts it would mirror; for a
    /// timeline, within the tree size kept for its creator). The
    /// chain is not marked as refused: the block may be a forgery that never verifies, which
    /// must not stop the chain's honest blocks.
    fn admit_block(&self, block: &SkipBlock) -> Result<(), StoreError> {
        self.admission
            .admit_stored_block(&self.store, block)
            .map_err(|reason| {
                self.metrics.blocks_over_quota.inc();
                StoreError::NotAdmitted(reason)
            })
    }

    /// The admission policy the node keeps chains by.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Validates and stores a block received from a peer. Returns whether it was new. If not
    /// `durable`, without waiting for the disk (the caller persists the store once for a batch).
    pub fn accept_block(&self, linked: &LinkedBlock, durable: bool) -> Result<bool, StoreError> {
        let block = &linked.block;
        if self.store.block(&block.hash())?.is_some() {
            return Ok(false);
        }
        let stored = if block.index() == 0 {
            self.admit(block)?;
            match linked.links.as_slice() {
                [certificate] => self.store.create_chain(block, certificate),
                _ => Err(StoreError::Rejected(
                    chainiac_protocol::Error::InvalidBlock {
                        index: 0,
                        reason: "a genesis travels with exactly one link: its certificate, signed by its roster".into(),
                    },
                )),
            }
        } else if let Err(reason) = self.admit_block(block) {
            Err(reason)
        } else if durable {
            self.store.append(block, &linked.links)
        } else {
            self.store.append_relaxed(block, &linked.links)
        };
        if let Err(error) = stored {
            // The same block may have arrived meanwhile by the other path (gossip or sync).
            if self.store.block(&block.hash())?.is_some() {
                return Ok(false);
            }
            return Err(error);
        }
        self.metrics.blocks_received.inc();
        tracing::debug!(chain = %block.chain_id(), index = block.index(), "stored block from a peer");
        Ok(true)
    }

    /// Mirrors the artifacts of a block just stored, if it is a release.
    pub fn replicate(&self, block: &SkipBlock, hint: Option<PeerId>) {
        self.replicator.replicate(block, hint);
    }

    /// Starts syncing `chain_id` from `peer` in the background, unless that sync already runs.
    pub fn spawn_sync(self: &Arc<Self>, peer: PeerId, chain_id: Hash) {
        if self
            .not_admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&chain_id)
        {
            return;
        }
        let key = (peer, chain_id);
        if !self
            .syncing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(error) = this.sync_chain(peer, chain_id).await {
                tracing::info!(%peer, chain = %chain_id, %error, "sync stopped");
            }
            this.syncing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }

    /// Fetches a chain's missing blocks from `peer`, verifying each before storing it. Returns
    /// how many blocks were stored.
    pub async fn sync_chain(
        self: &Arc<Self>,
        peer: PeerId,
        chain_id: Hash,
    ) -> Result<u64, SyncError> {
        let mut stored = 0;
        loop {
            let from = self.store.head(&chain_id)?.map_or(0, |h| h.index + 1);
            let request = Request::Blocks {
                chain_id,
                from,
                count: MAX_BLOCKS_PER_REQUEST,
            };
            let blocks = match self.net.request(peer, request).await? {
                Response::Blocks(blocks) => blocks,
                Response::Refused(reason) => return Err(SyncError::Refused(reason)),
                _ => {
                    return Err(SyncError::Misbehaved(
                        "answered a blocks request with something else",
                    ));
                }
            };
            if blocks.is_empty() {
                return Ok(stored);
            }
            // A full answer (by count, or by bytes: it stopped at its budget before a block
            // that did not fit) may have more behind it; any other answer is the peer's head.
            let full = blocks.len() >= MAX_BLOCKS_PER_REQUEST as usize
                || blocks.iter().map(|b| b.to_bytes().len()).sum::<usize>()
                    >= MAX_BLOCKS_ANSWER_BYTES.saturating_sub(MAX_PAYLOAD_LEN + (64 << 10));
            let this = self.clone();
            let accepted = tokio::task::spawn_blocking(move || this.store_batch(chain_id, blocks))
                .await
                .map_err(|_| SyncError::Internal)??;
            stored += accepted.len() as u64;
            for block in &accepted {
                self.replicate(block, Some(peer));
            }
            if !full || accepted.is_empty() {
                return Ok(stored);
            }
        }
    }

    /// Stores a batch of blocks in order with one disk sync: each block is written without
    /// waiting for the disk, so a crash keeps a prefix of the batch, and the batch is persisted
    /// before the next is asked for.
    fn store_batch(
        &self,
        chain_id: Hash,
        blocks: Vec<LinkedBlock>,
    ) -> Result<Vec<SkipBlock>, SyncError> {
        let mut accepted = Vec::new();
        let mut result = Ok(());
        for linked in blocks {
            if linked.block.chain_id() != chain_id {
                result = Err(SyncError::Misbehaved("sent a block of another chain"));
                break;
            }
            match self.accept_block(&linked, false) {
                Ok(true) => accepted.push(linked.block),
                Ok(false) => {}
                Err(error) => {
                    result = Err(error.into());
                    break;
                }
            }
        }
        self.store.persist()?;
        result.map(|()| accepted)
    }

    /// Asks `peer` for its heads and syncs every chain where it is ahead.
    pub async fn sync_with(self: &Arc<Self>, peer: PeerId) {
        let Ok(Response::Heads(heads)) = self.net.request(peer, Request::Heads).await else {
            return;
        };
        for head in heads {
            let ours = self.store.head(&head.chain_id).ok().flatten();
            if ours.is_none_or(|ours| ours.index < head.index) {
                self.spawn_sync(peer, head.chain_id);
            }
        }
    }
}
