//! Admission: the operator's policy on who may create chains this node witnesses, and how much
//! disk their chains may take. A witness cosigns a genesis (its certificate) only if the chain's
//! creator key is admitted: listed in the configuration, or, in open mode, below its quota of
//! chains on this node. A block of an unlisted creator's chain is cosigned and kept only while
//! the chain, and all the creator's chains together, stay within their storage quotas.

use chainiac_protocol::keys::PublicKey;

use crate::config::{AdmissionConfig, AdmissionMode};
use chainiac_protocol::encoding::Decode;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::skipchain::SkipBlock;
use chainiac_protocol::timeline::TimelineBlock;

use crate::store::{StorageUsage, Store, storage_cost};

/// The admission policy in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    mode: AdmissionMode,
    quota: u64,
    creators: Vec<PublicKey>,
    max_chain_bytes: u64,
    max_creator_bytes: u64,
    max_timeline_chains: u64,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            mode: AdmissionMode::Open,
            quota: AdmissionConfig::default().quota,
            creators: Vec::new(),
            max_chain_bytes: AdmissionConfig::default().max_chain_mib << 20,
            max_creator_bytes: AdmissionConfig::default().max_creator_mib << 20,
            max_timeline_chains: AdmissionConfig::default().max_timeline_chains,
        }
    }
}

impl Admission {
    /// The policy a configuration describes; an invalid creator key is an error naming it.
    pub fn from_config(config: &AdmissionConfig) -> Result<Self, String> {
        let creators = config
            .creators
            .iter()
            .map(|hex| {
                PublicKey::from_hex(hex.trim()).map_err(|error| {
                    format!("admission.creators: {hex:?} is not a public key ({error})")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            mode: config.mode,
            quota: config.quota,
            creators,
            max_chain_bytes: config.max_chain_mib.saturating_mul(1 << 20),
            max_creator_bytes: config.max_creator_mib.saturating_mul(1 << 20),
            max_timeline_chains: config.max_timeline_chains,
        })
    }

    /// Whether this node cosigns or keeps `block` of a chain it stores: within the storage
    /// quotas of the chain and its creator, and, for a timeline, within the size of tree this
    /// node builds for an unlisted creator.
    pub fn admit_stored_block(&self, store: &Store, block: &SkipBlock) -> Result<(), String> {
        let chain_id = block.chain_id();
        let genesis = store.chain_genesis(&chain_id).map_err(|e| e.to_string())?;
        let (creator, usage) = store
            .usage_under(&chain_id, genesis.as_ref())
            .map_err(|e| e.to_string())?;
        self.admit_block(
            creator.as_ref(),
            usage,
            storage_cost(genesis.as_ref(), block),
        )?;
        if matches!(genesis, Some(ChainGenesis::Timeline { .. })) && block.index() > 0 {
            // An undecodable payload is the timeline rules' to refuse.
            if let Ok(proposed) = TimelineBlock::from_bytes(block.payload()) {
                self.admit_timeline_tree(creator.as_ref(), proposed.commit.chain_count)?;
            }
        }
        Ok(())
    }

    /// Whether this node builds the tree of a timeline of `creator` recording `chain_count`
    /// chains (what every witness check and inclusion proof of the timeline needs in memory:
    /// about 100 bytes per chain).
    pub fn admit_timeline_tree(
        &self,
        creator: Option<&PublicKey>,
        chain_count: u64,
    ) -> Result<(), String> {
        if creator.is_some_and(|creator| self.creators.contains(creator))
            || chain_count <= self.max_timeline_chains
        {
            return Ok(());
        }
        Err(format!(
            "the timeline records {chain_count} chains, more than the {} this node keeps a tree of for a creator it does not list (admission.max_timeline_chains); its operator can raise it or list the creator in admission.creators",
            self.max_timeline_chains
        ))
    }

    /// Whether a block of `block_len` bytes may be added to a chain of `creator` (`None`: a
    /// chain that names none) that takes `usage` now; the error says which quota it would
    /// pass and what the operator can do.
    pub fn admit_block(
        &self,
        creator: Option<&PublicKey>,
        usage: StorageUsage,
        block_len: u64,
    ) -> Result<(), String> {
        if creator.is_some_and(|creator| self.creators.contains(creator)) {
            return Ok(());
        }
        let chain_after = usage.chain_bytes.saturating_add(block_len);
        if chain_after > self.max_chain_bytes {
            return Err(format!(
                "the chain takes {} on this node and a block of {} would pass its storage quota of {} per chain (admission.max_chain_mib); its operator can raise it or list the creator in admission.creators",
                mib(usage.chain_bytes),
                mib(block_len),
                mib(self.max_chain_bytes)
            ));
        }
        let creator_after = usage.creator_bytes.saturating_add(block_len);
        if let Some(creator) = creator
            && creator_after > self.max_creator_bytes
        {
            return Err(format!(
                "the chains of creator {creator} take {} on this node and a block of {} would pass its storage quota of {} per creator (admission.max_creator_mib); its operator can raise it or list the creator in admission.creators",
                mib(usage.creator_bytes),
                mib(block_len),
                mib(self.max_creator_bytes)
            ));
        }
        Ok(())
    }

    /// Whether `creator`, who already created `created` chains on this node, may create
    /// another; the error says why not and what the operator can do.
    pub fn admit(&self, creator: &PublicKey, created: u64) -> Result<(), String> {
        if self.creators.contains(creator) {
            return Ok(());
        }
        match self.mode {
            AdmissionMode::AllowList => Err(format!(
                "this node admits new chains only from the creators its operator listed, and {creator} is not one (admission.creators in its config.toml)"
            )),
            AdmissionMode::Open if created >= self.quota => Err(format!(
                "creator {creator} already created {created} chains on this node, its quota (admission.quota); its operator can list the key in admission.creators"
            )),
            AdmissionMode::Open => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainiac_protocol::keys::SecretKey;

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_seed(&[seed; 32]).public_key()
    }

    #[test]
    fn open_admission_applies_the_quota_except_to_listed_creators() {
        let admission = Admission::from_config(&AdmissionConfig {
            mode: AdmissionMode::Open,
            quota: 2,
            creators: vec![key(1).to_hex()],
            ..AdmissionConfig::default()
        })
        .expect("valid");
        assert!(admission.admit(&key(2), 0).is_ok());
        assert!(admission.admit(&key(2), 1).is_ok());
        let refused = admission.admit(&key(2), 2).unwrap_err();
        assert!(refused.contains("quota"), "{refused}");
        assert!(admission.admit(&key(1), 1000).is_ok());
    }

    #[test]
    fn an_allow_list_admits_only_its_creators() {
        let admission = Admission::from_config(&AdmissionConfig {
            mode: AdmissionMode::AllowList,
            quota: 16,
            creators: vec![key(1).to_hex()],
            ..AdmissionConfig::default()
        })
        .expect("valid");
        assert!(admission.admit(&key(1), 0).is_ok());
        let refused = admission.admit(&key(2), 0).unwrap_err();
        assert!(refused.contains("admission.creators"), "{refused}");
    }

    #[test]
    fn blocks_are_admitted_within_the_chain_and_creator_storage_quotas() {
        let admission = Admission::from_config(&AdmissionConfig {
            creators: vec![key(1).to_hex()],
            max_chain_mib: 2,
            max_creator_mib: 3,
            ..AdmissionConfig::default()
        })
        .expect("valid");
        let mib = 1u64 << 20;
        let usage = |chain: u64, creator: u64| StorageUsage {
            chain_bytes: chain,
            creator_bytes: creator,
        };
        assert!(
            admission
                .admit_block(Some(&key(2)), usage(mib, mib), mib)
                .is_ok()
        );
        let chain = admission
            .admit_block(Some(&key(2)), usage(mib, mib), mib + 1)
            .unwrap_err();
        assert!(chain.contains("admission.max_chain_mib"), "{chain}");
        let creator = admission
            .admit_block(Some(&key(2)), usage(mib, 5 * mib / 2), mib)
            .unwrap_err();
        assert!(creator.contains("admission.max_creator_mib"), "{creator}");
        // Listed creators have no quota; a chain without a creator has the chain quota only.
        assert!(
            admission
                .admit_block(Some(&key(1)), usage(9 * mib, 9 * mib), mib)
                .is_ok()
        );
        assert!(
            admission
                .admit_block(None, usage(mib, 9 * mib), mib)
                .is_ok()
        );
        assert!(admission.admit_block(None, usage(2 * mib, 0), 1).is_err());
    }

    #[test]
    fn timeline_trees_are_built_up_to_a_size_for_unlisted_creators() {
        let admission = Admission::from_config(&AdmissionConfig {
            creators: vec![key(1).to_hex()],
            max_timeline_chains: 10,
            ..AdmissionConfig::default()
        })
        .expect("valid");
        assert!(admission.admit_timeline_tree(Some(&key(2)), 10).is_ok());
        let refused = admission
            .admit_timeline_tree(Some(&key(2)), 11)
            .unwrap_err();
        assert!(
            refused.contains("admission.max_timeline_chains"),
            "{refused}"
        );
        assert!(admission.admit_timeline_tree(None, 11).is_err());
        assert!(
            admission
                .admit_timeline_tree(Some(&key(1)), 1 << 30)
                .is_ok()
        );
    }

    #[test]
    fn a_bad_creator_key_is_named() {
        let error = Admission::from_config(&AdmissionConfig {
            mode: AdmissionMode::AllowList,
            quota: 16,
            creators: vec!["zz".into()],
            ..AdmissionConfig::default()
        })
        .unwrap_err();
        assert!(error.contains("\"zz\""), "{error}");
    }
}
