//! The payload rules witnesses apply before cosigning a block of a project chain: a policy
//! change must be signed as the policy in force requires; a release must pass every release rule
//! against the policy in force (the head of the project's policy chain, as this witness's store
//! holds it) and the previous release; a timeline block must follow the clock and carry its
//! members' approvals of a roster change; a data-chain block must be signed by the chain's
//! owners. A genesis must declare its kind, check on its own, and have a creator this node's
//! admission policy admits.

use std::time::{SystemTime, UNIX_EPOCH};

use chainiac_protocol::Hash;
use chainiac_protocol::data_chain::DataBlock;
use chainiac_protocol::encoding::Decode;
use chainiac_protocol::project::{
    ChainGenesis, check_policy_change, check_release, check_witnesses, policy_of_block,
};
use chainiac_protocol::release::{PolicyInForce, Release, ReleaseManifest, TimeBounds};
use chainiac_protocol::skipchain::SkipBlock;
use chainiac_protocol::timeline::{TimelineBlock, TimelineEntry};

use crate::admission::Admission;
use crate::rounds::PayloadRules;
use crate::store::{StorageUsage, Store, StoreError, storage_cost};

/// The release a block carries, if it is a block of a release chain.
pub fn release_in(store: &Store, block: &SkipBlock) -> Result<Option<Release>, StoreError> {
    if block.index() == 0 {
        return Ok(None);
    }
    match chain_kind(store, &block.chain_id())? {
        Some(ChainGenesis::Release { .. }) => Ok(Release::from_bytes(block.payload()).ok()),
        _ => Ok(None),
    }
}

/// What a chain is, from its genesis payload.
pub fn chain_kind(store: &Store, chain_id: &Hash) -> Result<Option<ChainGenesis>, StoreError> {
    store.chain_genesis(chain_id)
}

/// Why a node does not take a new chain.
#[derive(Debug)]
pub enum GenesisRefusal {
    /// Not yet checkable: the policy chain a release genesis names is not stored here.
    PolicyUnknown(String),
    /// The genesis breaks a rule, or its creator is not admitted here.
    Refused(String),
    /// The store failed.
    Store(StoreError),
}

/// Whether this node takes the chain `genesis` starts (a witness certifies it, a node keeps it
/// from a peer): it declares its kind and checks on its own (signed by its creator for its
/// roster), a release chain is created by the roots of the policy in force and run by its
/// witnesses, and the creator, counted only once those signatures verify, is admitted and
/// within its storage quota.
pub fn admit_genesis(
    admission: &Admission,
    store: &Store,
    genesis: &SkipBlock,
) -> Result<(), GenesisRefusal> {
    let refused = GenesisRefusal::Refused;
    let declared = ChainGenesis::of_payload(genesis.payload()).ok_or_else(|| {
        refused("its genesis payload does not declare a chain kind (policy, release, timeline or data chain); witnesses cosign no chain whose rules they cannot tell".into())
    })?;
    let roster = genesis.roster().hash();
    declared.check(roster).map_err(|e| refused(e.to_string()))?;
    if let ChainGenesis::Release { policy_chain, .. } = &declared {
        let (policy, _) =
            policy_in_force(store, policy_chain).map_err(GenesisRefusal::PolicyUnknown)?;
        declared
            .check_release_chain(&policy.policy, roster)
            .map_err(|e| refused(e.to_string()))?;
    }
    let creator = declared
        .creator()
        .ok_or_else(|| refused("its genesis names no creator".into()))?;
    let created = store
        .chains_created_by(&creator)
        .map_err(GenesisRefusal::Store)?;
    admission.admit(&creator, created).map_err(refused)?;
    let usage = StorageUsage {
        chain_bytes: 0,
        creator_bytes: store
            .creator_bytes(&creator)
            .map_err(GenesisRefusal::Store)?,
    };
    admission
        .admit_block(
            Some(&creator),
            usage,
            storage_cost(Some(&declared), genesis),
        )
        .map_err(refused)
}

/// The policy in force for a project: the head of its policy chain, with that block's hash.
pub fn policy_in_force(
    store: &Store,
    policy_chain: &Hash,
) -> Result<(chainiac_protocol::policy::SignedPolicy, Hash), String> {
    let head = store
        .head(policy_chain)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!("this node does not hold the project's policy chain {policy_chain}")
        })?;
    let block = store
        .block(&head.hash)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("policy block {} missing from the store", head.hash))?;
    let policy = policy_of_block(block.index(), block.payload())
        .map_err(|e| format!("policy chain {policy_chain} holds an invalid policy: {e}"))?;
    Ok((policy, head.hash))
}

/// The manifest of the release in block `index` of a release chain (`None` for the genesis).
pub fn release_at(
    store: &Store,
    chain_id: &Hash,
    index: u64,
) -> Result<Option<ReleaseManifest>, String> {
    if index == 0 {
        return Ok(None);
    }
    let block = store
        .block_at(chain_id, index)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("release block {index} missing from the store"))?;
    let release = Release::from_bytes(block.payload())
        .map_err(|e| format!("release block {index} holds an invalid release: {e}"))?;
    Ok(Some(release.manifest))
}

/// The timeline block in block `index` of a timeline chain (`None` for the genesis).
pub fn timeline_at(
    store: &Store,
    chain_id: &Hash,
    index: u64,
) -> Result<Option<TimelineBlock>, String> {
    if index == 0 {
        return Ok(None);
    }
    let block = store
        .block_at(chain_id, index)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("timeline block {index} missing from the store"))?;
    TimelineBlock::from_bytes(block.payload())
        .map(Some)
        .map_err(|e| format!("timeline block {index} is invalid: {e}"))
}

/// The roster a timeline chain runs under now (the roster of its head).
pub fn timeline_roster(
    store: &Store,
    timeline: &Hash,
) -> Result<chainiac_protocol::cosi::Roster, String> {
    if !matches!(
        chain_kind(store, timeline),
        Ok(Some(ChainGenesis::Timeline { .. }))
    ) {
        return Err(format!(
            "{timeline} is not a timeline chain this node holds"
        ));
    }
    let head = store
        .head(timeline)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("timeline {timeline} has no head"))?;
    let block = store
        .block(&head.hash)
        .map_err(|e| e.to_string())?
        .ok_or("the timeline head is missing from the store")?;
    store.roster_of(&block).map_err(|e| e.to_string())
}

/// A proposed timeline block: the protocol's successor rules (epoch, timestamp) and change
/// rules ([`TimelineBlock::check_changes`]) against this witness's store and its own previous
/// timeline tree. The tree is kept for the next block.
fn check_timeline(
    store: &Store,
    chain_id: &Hash,
    block: &SkipBlock,
    previous_index: u64,
    bounds: TimeBounds,
) -> Result<(), String> {
    let refused = |reason: String| format!("timeline block refused: {reason}");
    let proposed =
        TimelineBlock::from_bytes(block.payload()).map_err(|e| refused(e.to_string()))?;
    let previous = timeline_at(store, chain_id, previous_index)?;
    let Some(ChainGenesis::Timeline { epoch_seconds, .. }) =
        chain_kind(store, chain_id).map_err(|e| e.to_string())?
    else {
        return Err(refused("not a timeline chain".into()));
    };
    proposed
        .check_successor(
            previous.as_ref().map(|p| &p.commit),
            epoch_seconds,
            now(),
            bounds.max_future_skew,
        )
        .map_err(|e| refused(e.to_string()))?;
    let current = store
        .block_at(chain_id, previous_index)
        .map_err(|e| e.to_string())?
        .map(|previous| store.roster_of(&previous))
        .transpose()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| refused(format!("block {previous_index} is missing")))?;
    proposed
        .check_roster_change(chain_id, &current, &block.roster().hash())
        .map_err(|e| refused(e.to_string()))?;
    let previous_tree = store.timeline_tree(chain_id, previous_index)?;
    let tree = proposed
        .check_changes(chain_id, &previous_tree, store)
        .map_err(|e| refused(e.to_string()))?;
    store.remember_timeline_tree(
        *chain_id,
        block.index(),
        block.hash(),
        std::sync::Arc::new(tree),
    );
    Ok(())
}

fn holds_as_head(store: &Store, entry: &TimelineEntry) -> bool {
    store
        .head(&entry.chain_id)
        .ok()
        .flatten()
        .is_some_and(|head| head.hash == entry.head)
}

/// Chains a witness must sync before it can check `block`: the policy chain a release names
/// when the policy block is unknown here, or the chains whose heads a timeline block lists and
/// this node does not hold (at most 32, to bound the work one proposal causes).
pub fn dependencies(store: &Store, block: &SkipBlock) -> Vec<Hash> {
    if block.index() == 0 {
        return match ChainGenesis::of_payload(block.payload()) {
            Some(ChainGenesis::Release { policy_chain, .. })
                if !matches!(store.head(&policy_chain), Ok(Some(_))) =>
            {
                vec![policy_chain]
            }
            _ => Vec::new(),
        };
    }
    match chain_kind(store, &block.chain_id()) {
        Ok(Some(ChainGenesis::Release { policy_chain, .. })) => {
            let named = Release::from_bytes(block.payload()).map(|r| r.manifest.policy);
            match named.map(|hash| store.block(&hash)) {
                Ok(Ok(Some(_))) | Err(_) => Vec::new(),
                Ok(_) => vec![policy_chain],
            }
        }
        Ok(Some(ChainGenesis::Timeline { .. })) => TimelineBlock::from_bytes(block.payload())
            .map(|timeline| {
                timeline
                    .changes
                    .iter()
                    .filter(|entry| {
                        !holds_as_head(store, entry)
                            && !matches!(store.block(&entry.head), Ok(Some(_)))
                    })
                    .map(|entry| entry.chain_id)
                    .take(32)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The payload rules of every chain kind, with the time bounds for release and timeline
/// timestamps and the operator's admission policy for new chains.
#[derive(Clone, Debug, Default)]
pub struct ProjectRules {
    /// Bounds on release timestamps.
    pub bounds: TimeBounds,
    /// Whose new chains this node cosigns.
    pub admission: Admission,
}

impl ProjectRules {
    /// A proposed genesis: see [`admit_genesis`].
    fn check_genesis(&self, store: &Store, genesis: &SkipBlock) -> Result<(), String> {
        admit_genesis(&self.admission, store, genesis).map_err(|refusal| match refusal {
            GenesisRefusal::PolicyUnknown(reason) | GenesisRefusal::Refused(reason) => {
                format!("new chain refused: {reason}")
            }
            GenesisRefusal::Store(error) => error.to_string(),
        })
    }

    /// A proposed block of a stored chain: within the storage quotas of the chain and its
    /// creator (counting, for a release, the artifacts every node will mirror), and for a
    /// timeline within the tree size kept for its creator.
    fn check_storage(&self, store: &Store, block: &SkipBlock) -> Result<(), String> {
        self.admission
            .admit_stored_block(store, block)
            .map_err(|reason| format!("block refused: {reason}"))
    }
}

/// A proposed data-chain block: a [`DataBlock`] signed by the owners, with a sequence above
/// the previous block's.
fn check_data(
    store: &Store,
    chain_id: &Hash,
    owners: &chainiac_protocol::data_chain::Owners,
    block: &SkipBlock,
) -> Result<(), String> {
    let refused = |reason: String| format!("data block refused: {reason}");
    let proposed = DataBlock::from_bytes(block.payload()).map_err(|e| refused(e.to_string()))?;
    let previous_index = block.index() - 1;
    let previous_sequence = if previous_index == 0 {
        0
    } else {
        let previous = store
            .block_at(chain_id, previous_index)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("data block {previous_index} missing"))?;
        DataBlock::from_bytes(previous.payload())
            .map_err(|e| format!("data block {previous_index} is invalid: {e}"))?
            .sequence
    };
    proposed
        .check(owners, chain_id, previous_sequence, &block.roster().hash())
        .map_err(|e| refused(e.to_string()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PayloadRules for ProjectRules {
    fn check(&self, store: &Store, block: &SkipBlock) -> Result<(), String> {
        let chain_id = block.chain_id();
        if block.index() == 0 {
            return self.check_genesis(store, block);
        }
        self.check_storage(store, block)?;
        let previous_index = block.index() - 1;
        let roster_after = block.roster().hash();
        match chain_kind(store, &chain_id).map_err(|e| e.to_string())? {
            // A chain created before chain kinds were declared names nobody who could
            // authorize a block.
            None => Err(
                "this chain's genesis declares no chain kind, so nobody is entitled to extend it"
                    .into(),
            ),
            Some(ChainGenesis::Data(genesis)) => {
                check_data(store, &chain_id, &genesis.owners, block)
            }
            Some(ChainGenesis::Policy(_)) => {
                let previous = store
                    .block_at(&chain_id, previous_index)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("policy block {previous_index} missing"))?;
                let in_force = policy_of_block(previous.index(), previous.payload())
                    .map_err(|e| e.to_string())?;
                check_policy_change(&in_force.policy, block.payload(), roster_after)
                    .map(|_| ())
                    .map_err(|e| format!("policy change refused: {e}"))
            }
            Some(ChainGenesis::Timeline { .. }) => {
                check_timeline(store, &chain_id, block, previous_index, self.bounds)
            }
            Some(ChainGenesis::Release {
                project,
                policy_chain,
                ..
            }) => {
                let (policy, policy_block) = policy_in_force(store, &policy_chain)?;
                if policy.policy.project != project {
                    return Err(format!(
                        "the policy chain is for project {}, not {project}",
                        policy.policy.project
                    ));
                }
                let previous = release_at(store, &chain_id, previous_index)?;
                check_release(
                    block.payload(),
                    PolicyInForce {
                        policy: &policy.policy,
                        block: policy_block,
                    },
                    previous.as_ref(),
                    now(),
                    self.bounds,
                )
                .map_err(|e| format!("release refused: {e}"))?;
                check_witnesses(&policy.policy, roster_after)
                    .map_err(|e| format!("release refused: {e}"))
            }
        }
    }
}
