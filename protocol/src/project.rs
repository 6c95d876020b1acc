//! Project chains: what a genesis payload says about the chain it starts, and what the payload of
//! every later block of such a chain must be.
//!
//! A project has two skipchains. Its **policy chain** starts with the genesis policy (signed by
//! its root keys: the project's root of trust) and carries every later policy change. Its
//! **release chain** starts with a genesis naming the project and its policy chain, and carries
//! the releases. Chains whose genesis payload is not a [`ChainGenesis`] are opaque: the protocol
//! gives their payloads no meaning.

use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::policy::{MAX_PROJECT_NAME_LEN, Policy, SignedPolicy, check_project_name};
use crate::release::{PolicyInForce, Release, ReleaseManifest, TimeBounds};
use crate::{Error, Hash, Result};

const POLICY_CHAIN: u8 = 1;
const RELEASE_CHAIN: u8 = 2;
const TIMELINE_CHAIN: u8 = 3;
/// Longest timeline epoch (one day).
pub const MAX_EPOCH_SECONDS: u64 = 86_400;

/// The payload of a project chain's genesis block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChainGenesis {
    /// A policy chain, starting with the project's genesis policy.
    Policy(SignedPolicy),
    /// A release chain of `project`, following the policies of the chain `policy_chain`.
    Release {
        /// The project's name.
        project: String,
        /// Id of the project's policy chain.
        policy_chain: Hash,
    },
    /// The global timeline, extended by its witnesses every `epoch_seconds`.
    Timeline {
        /// Length of an epoch.
        epoch_seconds: u64,
    },
}

impl ChainGenesis {
    /// What a genesis payload declares: a project chain, or `None` for an opaque chain.
    pub fn of_payload(payload: &[u8]) -> Option<Self> {
        Self::from_bytes(payload).ok()
    }

    /// Checks the genesis on its own: a policy genesis must verify (valid policy, sequence 0,
    /// signed by a threshold of its root keys); a release genesis needs a valid project name.
    pub fn check(&self) -> Result<()> {
        match self {
            Self::Policy(signed) => signed.verify_genesis(),
            Self::Release { project, .. } => check_project_name(project),
            Self::Timeline { epoch_seconds } => check_epoch(*epoch_seconds),
        }
    }

    /// The project the chain belongs to (none for the timeline).
    pub fn project(&self) -> Option<&str> {
        match self {
            Self::Policy(signed) => Some(&signed.policy.project),
            Self::Release { project, .. } => Some(project),
            Self::Timeline { .. } => None,
        }
    }
}

impl Encode for ChainGenesis {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(VERSION);
        match self {
            Self::Policy(signed) => writer.u8(POLICY_CHAIN).value(signed),
            Self::Release {
                project,
                policy_chain,
            } => writer.u8(RELEASE_CHAIN).str(project).value(policy_chain),
            Self::Timeline { epoch_seconds } => writer.u8(TIMELINE_CHAIN).u64(*epoch_seconds),
        };
    }
}

impl Decode for ChainGenesis {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("chain genesis")?;
        match reader.u8("chain kind")? {
            POLICY_CHAIN => Ok(Self::Policy(SignedPolicy::decode_from(reader)?)),
            RELEASE_CHAIN => {
                let project = reader.string(MAX_PROJECT_NAME_LEN, "project name")?;
                check_project_name(&project)?;
                Ok(Self::Release {
                    project,
                    policy_chain: Hash::decode_from(reader)?,
                })
            }
            TIMELINE_CHAIN => {
                let epoch_seconds = reader.u64("epoch seconds")?;
                check_epoch(epoch_seconds)?;
                Ok(Self::Timeline { epoch_seconds })
            }
            tag => Err(Error::InvalidTag {
                what: "chain kind",
                tag,
            }),
        }
    }
}

fn check_epoch(epoch_seconds: u64) -> Result<()> {
    if epoch_seconds == 0 || epoch_seconds > MAX_EPOCH_SECONDS {
        return Err(Error::InvalidTimeline {
            reason: format!("an epoch lasts 1 to {MAX_EPOCH_SECONDS} seconds, not {epoch_seconds}"),
        });
    }
    Ok(())
}

/// The policy a policy-chain block establishes: the genesis policy for block 0, the signed
/// change for later blocks.
pub fn policy_of_block(index: u64, payload: &[u8]) -> Result<SignedPolicy> {
    if index == 0 {
        match ChainGenesis::from_bytes(payload)? {
            ChainGenesis::Policy(signed) => Ok(signed),
            _ => Err(Error::InvalidBlock {
                index,
                reason: "not a policy-chain genesis".into(),
            }),
        }
    } else {
        SignedPolicy::from_bytes(payload)
    }
}

/// The rule for a proposed policy-chain block `index` with `payload`, given the policy in force
/// (the one established by the previous block): a valid change signed as [`SignedPolicy::verify_change`] requires.
pub fn check_policy_change(previous: &Policy, payload: &[u8]) -> Result<SignedPolicy> {
    let signed = SignedPolicy::from_bytes(payload)?;
    signed.verify_change(previous)?;
    Ok(signed)
}

/// The rule for a proposed release-chain block: the payload is a [`Release`] that passes
/// [`Release::validate`] against the policy in force and the previous release (`None` when the
/// previous block is the genesis).
pub fn check_release(
    payload: &[u8],
    policy: PolicyInForce<'_>,
    previous: Option<&ReleaseManifest>,
    now: u64,
    bounds: TimeBounds,
) -> Result<Release> {
    let release = Release::from_bytes(payload)?;
    release.validate(policy, previous, now, bounds)?;
    Ok(release)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeySignature, SecretKey};

    fn genesis_policy() -> (SignedPolicy, Vec<SecretKey>) {
        let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let policy = Policy {
            project: "hello".into(),
            sequence: 0,
            previous: None,
            root_keys: vec![keys[0].public_key()],
            root_threshold: 1,
            developer_keys: keys[1..].iter().map(SecretKey::public_key).collect(),
            developer_threshold: 2,
            build_verifiers: Vec::new(),
            attestations_required: 0,
        };
        let signatures = vec![KeySignature::sign(&keys[0], &policy.digest())];
        (SignedPolicy { policy, signatures }, keys)
    }

    #[test]
    fn genesis_round_trips_and_checks() {
        let (signed, _) = genesis_policy();
        let policy = ChainGenesis::Policy(signed.clone());
        let bytes = policy.to_bytes();
        assert_eq!(ChainGenesis::of_payload(&bytes), Some(policy.clone()));
        policy.check().unwrap();
        assert_eq!(policy.project(), Some("hello"));
        let timeline = ChainGenesis::Timeline { epoch_seconds: 10 };
        assert_eq!(
            ChainGenesis::of_payload(&timeline.to_bytes()),
            Some(timeline.clone())
        );
        assert_eq!(timeline.project(), None);
        assert_eq!(hex::encode(timeline.to_bytes()), "01030a00000000000000");
        assert!(
            ChainGenesis::of_payload(&ChainGenesis::Timeline { epoch_seconds: 0 }.to_bytes())
                .is_none()
        );
        assert_eq!(policy_of_block(0, &bytes).unwrap(), signed);

        let release = ChainGenesis::Release {
            project: "hello".into(),
            policy_chain: Hash::of_artifact(b"policy chain"),
        };
        let bytes = release.to_bytes();
        assert_eq!(ChainGenesis::of_payload(&bytes), Some(release.clone()));
        release.check().unwrap();
        assert!(policy_of_block(0, &bytes).is_err());
    }

    #[test]
    fn release_genesis_vector() {
        let genesis = ChainGenesis::Release {
            project: "hello".into(),
            policy_chain: Hash([0x11; 32]),
        };
        let expected = format!("010205000000{}{}", hex::encode("hello"), "11".repeat(32));
        assert_eq!(hex::encode(genesis.to_bytes()), expected);
    }

    #[test]
    fn opaque_payloads_are_not_project_chains() {
        for payload in [&b""[..], b"block 0", &[1], &[1, 3], &[2, 1]] {
            assert_eq!(ChainGenesis::of_payload(payload), None);
        }
    }

    #[test]
    fn unsigned_genesis_policy_fails_its_check() {
        let (mut signed, _) = genesis_policy();
        signed.signatures.clear();
        let genesis = ChainGenesis::Policy(signed);
        assert!(matches!(
            genesis.check(),
            Err(Error::NotEnoughSignatures { role: "root", .. })
        ));
    }

    #[test]
    fn bad_release_genesis_name_is_refused_when_decoding() {
        let mut writer = Writer::new();
        writer
            .u8(VERSION)
            .u8(RELEASE_CHAIN)
            .str("Not A Name")
            .value(&Hash::of_artifact(b""));
        assert!(ChainGenesis::from_bytes(&writer.finish()).is_err());
    }

    #[test]
    fn policy_change_needs_the_previous_developers() {
        let (genesis, keys) = genesis_policy();
        let mut next = genesis.policy.clone();
        next.sequence = 1;
        next.previous = Some(genesis.policy.digest());
        next.developer_keys[2] = SecretKey::from_seed(&[9; 32]).public_key();
        let digest = next.digest();
        let one = SignedPolicy {
            policy: next.clone(),
            signatures: vec![KeySignature::sign(&keys[1], &digest)],
        };
        assert!(matches!(
            check_policy_change(&genesis.policy, &one.to_bytes()),
            Err(Error::NotEnoughSignatures {
                role: "developer",
                ..
            })
        ));
        let two = SignedPolicy {
            policy: next,
            signatures: vec![
                KeySignature::sign(&keys[1], &digest),
                KeySignature::sign(&keys[2], &digest),
            ],
        };
        let accepted = check_policy_change(&genesis.policy, &two.to_bytes()).unwrap();
        assert_eq!(policy_of_block(1, &two.to_bytes()).unwrap(), accepted);
    }
}
