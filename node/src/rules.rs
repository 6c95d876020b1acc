//! The payload rules witnesses apply before cosigning a block of a project chain: a policy
//! change must be signed as the policy in force requires; a release must pass every release rule
//! against the policy in force (the head of the project's policy chain, as this witness's store
//! holds it) and the previous release. Opaque chains carry payloads without rules.

use std::time::{SystemTime, UNIX_EPOCH};

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Decode;
use chainiac_protocol::project::{
    ChainGenesis, check_policy_change, check_release, policy_of_block,
};
use chainiac_protocol::release::{PolicyInForce, Release, ReleaseManifest, TimeBounds};
use chainiac_protocol::skipchain::SkipBlock;
use chainiac_protocol::timeline::{TimelineBlock, TimelineEntry};

use crate::rounds::PayloadRules;
use crate::store::{Store, StoreError};

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
    Ok(store
        .block_at(chain_id, 0)?
        .and_then(|genesis| ChainGenesis::of_payload(genesis.payload())))
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
    let Some(ChainGenesis::Timeline { epoch_seconds }) =
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
    let previous_tree = store.timeline_tree(chain_id, previous_index)?;
    let tree = proposed
        .check_changes(chain_id, &previous_tree, store)
        .map_err(|e| refused(e.to_string()))?;
    store.remember_timeline_tree(block.hash(), std::sync::Arc::new(tree));
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

/// The release and policy rules, with the time bounds for release timestamps.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProjectRules {
    /// Bounds on release timestamps.
    pub bounds: TimeBounds,
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
            return match ChainGenesis::of_payload(block.payload()) {
                Some(genesis) => genesis.check().map_err(|e| e.to_string()),
                None => Ok(()),
            };
        }
        let previous_index = block.index() - 1;
        match chain_kind(store, &chain_id).map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(ChainGenesis::Policy(_)) => {
                let previous = store
                    .block_at(&chain_id, previous_index)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("policy block {previous_index} missing"))?;
                let in_force = policy_of_block(previous.index(), previous.payload())
                    .map_err(|e| e.to_string())?;
                check_policy_change(&in_force.policy, block.payload())
                    .map(|_| ())
                    .map_err(|e| format!("policy change refused: {e}"))
            }
            Some(ChainGenesis::Timeline { .. }) => {
                check_timeline(store, &chain_id, block, previous_index, self.bounds)
            }
            Some(ChainGenesis::Release {
                project,
                policy_chain,
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
                .map(|_| ())
                .map_err(|e| format!("release refused: {e}"))
            }
        }
    }
}
