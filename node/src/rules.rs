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

use crate::store::{Store, StoreError};
use crate::witness::PayloadRules;

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
