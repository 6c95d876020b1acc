//! Project chains: what a genesis payload says about the chain it starts, and what the payload of
//! every later block of such a chain must be.
//!
//! A project has two skipchains. Its **policy chain** starts with the genesis policy (signed by
//! its root keys: the project's root of trust) and carries every later policy change. Its
//! **release chain** starts with a genesis naming the project and its policy chain, and carries
//! the releases, and is created by a threshold of the project's root keys. The timeline and
//! data chains ([`crate::data_chain`]) are the other kinds; every genesis says what its chain
//! is and who created it, and witnesses cosign no genesis that does not.

use crate::data_chain::DataGenesis;
use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::hash::domain;
use crate::keys::{KeySignature, PublicKey, SecretKey, count_valid_signers};
use crate::policy::{
    MAX_POLICY_KEYS, MAX_PROJECT_NAME_LEN, Policy, SignedPolicy, check_project_name,
};
use crate::release::{PolicyInForce, Release, ReleaseManifest, TimeBounds};
use crate::{Error, Hash, Result};

const POLICY_CHAIN: u8 = 1;
const RELEASE_CHAIN: u8 = 2;
const TIMELINE_CHAIN: u8 = 3;
const DATA_CHAIN: u8 = 4;
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
        /// Signatures of a threshold of the root keys of the policy in force over
        /// [`release_genesis_digest`] (checked by the witnesses, who hold the policy chain).
        signatures: Vec<KeySignature>,
    },
    /// The global timeline, extended by its witnesses every `epoch_seconds`.
    Timeline {
        /// Length of an epoch.
        epoch_seconds: u64,
        /// Who created it: a signature over [`timeline_genesis_digest`] for the genesis roster.
        creator: KeySignature,
    },
    /// A data chain: payloads without protocol meaning, signed by the chain's owners.
    Data(DataGenesis),
}

/// What a threshold of a project's root keys sign to create its release chain: BLAKE3 under
/// [`domain::RELEASE_CHAIN_GENESIS`] of `version ‖ string project ‖ policy_chain`.
pub fn release_genesis_digest(project: &str, policy_chain: &Hash) -> Hash {
    let mut writer = Writer::new();
    writer.u8(VERSION).str(project).value(policy_chain);
    Hash::of(domain::RELEASE_CHAIN_GENESIS, &[&writer.finish()])
}

/// What the creator of a timeline signs: BLAKE3 under [`domain::TIMELINE_GENESIS`] of
/// `version ‖ u64 epoch_seconds ‖ roster`, the hash of the genesis roster.
pub fn timeline_genesis_digest(epoch_seconds: u64, roster: &Hash) -> Hash {
    let mut writer = Writer::new();
    writer.u8(VERSION).u64(epoch_seconds).value(roster);
    Hash::of(domain::TIMELINE_GENESIS, &[&writer.finish()])
}

impl ChainGenesis {
    /// What a genesis payload declares, or `None` if it is not a chain genesis (witnesses
    /// cosign no such chain).
    pub fn of_payload(payload: &[u8]) -> Option<Self> {
        Self::from_bytes(payload).ok()
    }

    /// The genesis of `project`'s release chain following `policy_chain`, signed by `roots`
    /// (root keys of the project's policy in force).
    pub fn release(project: &str, policy_chain: Hash, roots: &[&SecretKey]) -> Self {
        let digest = release_genesis_digest(project, &policy_chain);
        Self::Release {
            project: project.to_owned(),
            policy_chain,
            signatures: roots
                .iter()
                .map(|secret| KeySignature::sign(secret, &digest))
                .collect(),
        }
    }

    /// The genesis of a timeline with `epoch_seconds` under the roster with hash `roster`,
    /// created by `creator`.
    pub fn timeline(epoch_seconds: u64, roster: &Hash, creator: &SecretKey) -> Self {
        Self::Timeline {
            epoch_seconds,
            creator: KeySignature::sign(creator, &timeline_genesis_digest(epoch_seconds, roster)),
        }
    }

    /// The key that created the chain, once [`ChainGenesis::check`] passed: the first root
    /// signer of a policy or release genesis, the timeline's creator, the first owner that
    /// signed a data chain. Admission policies and quotas count chains by it.
    pub fn creator(&self) -> Option<PublicKey> {
        match self {
            Self::Policy(signed) => signed.signatures.first().map(|s| s.signer),
            Self::Release { signatures, .. } => signatures.first().map(|s| s.signer),
            Self::Timeline { creator, .. } => Some(creator.signer),
            Self::Data(genesis) => genesis.signatures.first().map(|s| s.signer),
        }
    }

    /// Checks a release-chain genesis against `policy`, the policy in force of the policy
    /// chain it names, for a genesis running under the roster with hash `roster`: same
    /// project, signed by the root threshold of `policy`, and run by the policy's witnesses.
    pub fn check_release_chain(&self, policy: &Policy, roster: Hash) -> Result<()> {
        let Self::Release {
            project,
            policy_chain,
            signatures,
        } = self
        else {
            return Err(Error::InvalidBlock {
                index: 0,
                reason: "not a release-chain genesis".into(),
            });
        };
        if policy.project != *project {
            return Err(Error::WrongProject {
                expected: policy.project.clone(),
                found: project.clone(),
            });
        }
        let digest = release_genesis_digest(project, policy_chain);
        let roots = count_valid_signers(signatures, &policy.root_keys, &digest, "root")?;
        if roots < policy.root_threshold as usize {
            return Err(Error::NotEnoughSignatures {
                role: "root",
                valid: roots,
                threshold: policy.root_threshold as usize,
            });
        }
        check_witnesses(policy, roster)
    }

    /// Checks the genesis on its own, for a genesis block running under the roster with hash
    /// `roster`: a policy genesis must verify (valid policy, sequence 0, signed by a threshold
    /// of its root keys) and name that roster as the project's witnesses; a release genesis
    /// needs a valid project name and at least one signature (its signers and roster are
    /// checked against the policy chain by [`ChainGenesis::check_release_chain`]); a
    /// timeline's creator must have signed it for that roster; a data chain's owners too.
    pub fn check(&self, roster: Hash) -> Result<()> {
        match self {
            Self::Policy(signed) => {
                signed.verify_genesis()?;
                check_witnesses(&signed.policy, roster)
            }
            Self::Release {
                project,
                signatures,
                ..
            } => {
                check_project_name(project)?;
                if signatures.is_empty() {
                    return Err(Error::NotEnoughSignatures {
                        role: "root",
                        valid: 0,
                        threshold: 1,
                    });
                }
                Ok(())
            }
            Self::Timeline {
                epoch_seconds,
                creator,
            } => {
                check_epoch(*epoch_seconds)?;
                creator.verify(&timeline_genesis_digest(*epoch_seconds, &roster))
            }
            Self::Data(genesis) => genesis.check(&roster),
        }
    }

    /// The project the chain belongs to (none for the timeline).
    pub fn project(&self) -> Option<&str> {
        match self {
            Self::Policy(signed) => Some(&signed.policy.project),
            Self::Release { project, .. } => Some(project),
            Self::Timeline { .. } | Self::Data(_) => None,
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
                signatures,
            } => writer
                .u8(RELEASE_CHAIN)
                .str(project)
                .value(policy_chain)
                .list(signatures),
            Self::Timeline {
                epoch_seconds,
                creator,
            } => writer.u8(TIMELINE_CHAIN).u64(*epoch_seconds).value(creator),
            Self::Data(genesis) => {
                writer.u8(DATA_CHAIN);
                genesis.encode_body(writer);
                writer
            }
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
                    signatures: reader.list(MAX_POLICY_KEYS, "root signatures")?,
                })
            }
            TIMELINE_CHAIN => {
                let epoch_seconds = reader.u64("epoch seconds")?;
                check_epoch(epoch_seconds)?;
                Ok(Self::Timeline {
                    epoch_seconds,
                    creator: KeySignature::decode_from(reader)?,
                })
            }
            DATA_CHAIN => Ok(Self::Data(DataGenesis::decode_body(reader)?)),
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

/// The rule for a proposed policy-chain block with `payload`, given the policy in force (the
/// one established by the previous block) and the hash of the roster the chain runs under after
/// the block (`roster_after`: the block's new roster, or the unchanged one): a valid change
/// signed as [`SignedPolicy::verify_change`] requires, naming that roster as the project's
/// witnesses. A roster change is thus a root-approved policy change, and a leader cannot attach
/// a roster of its own to a policy the roots signed.
pub fn check_policy_change(
    previous: &Policy,
    payload: &[u8],
    roster_after: Hash,
) -> Result<SignedPolicy> {
    let signed = SignedPolicy::from_bytes(payload)?;
    signed.verify_change(previous)?;
    check_witnesses(&signed.policy, roster_after)?;
    Ok(signed)
}

/// The roster rule of a project chain: after a block, the chain runs under the roster the
/// policy in force names as the project's witnesses. For the policy chain the policy is the
/// block's own; for the release chain it is the policy in force, so the release chain follows
/// a witness change at its next release and can move nowhere else.
pub fn check_witnesses(policy: &Policy, roster_after: Hash) -> Result<()> {
    if policy.witnesses != roster_after {
        return Err(Error::WitnessesMismatch {
            named: policy.witnesses,
            roster: roster_after,
        });
    }
    Ok(())
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
            witnesses: Hash([0x57; 32]),
            timeline: None,
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
        policy.check(Hash([0x57; 32])).unwrap();
        assert!(
            policy.check(Hash([0x58; 32])).is_err(),
            "witnesses must be the genesis roster"
        );
        assert_eq!(policy.project(), Some("hello"));
        let creator = SecretKey::from_seed(&[9; 32]);
        let roster = Hash([0x57; 32]);
        let timeline = ChainGenesis::timeline(10, &roster, &creator);
        assert_eq!(
            ChainGenesis::of_payload(&timeline.to_bytes()),
            Some(timeline.clone())
        );
        assert_eq!(timeline.project(), None);
        assert_eq!(timeline.creator(), Some(creator.public_key()));
        timeline.check(roster).unwrap();
        assert!(
            timeline.check(Hash([0x58; 32])).is_err(),
            "a creator's signature is for one roster"
        );
        assert!(hex::encode(timeline.to_bytes()).starts_with("01030a00000000000000"));
        assert!(
            ChainGenesis::of_payload(&ChainGenesis::timeline(0, &roster, &creator).to_bytes())
                .is_none()
        );
        assert_eq!(policy_of_block(0, &bytes).unwrap(), signed);

        let (_, keys) = genesis_policy();
        let release =
            ChainGenesis::release("hello", Hash::of_artifact(b"policy chain"), &[&keys[0]]);
        let bytes = release.to_bytes();
        assert_eq!(ChainGenesis::of_payload(&bytes), Some(release.clone()));
        release.check(Hash([0x57; 32])).unwrap();
        assert_eq!(release.creator(), Some(keys[0].public_key()));
        assert!(policy_of_block(0, &bytes).is_err());
        let unsigned = ChainGenesis::release("hello", Hash([1; 32]), &[]);
        assert!(unsigned.check(Hash([0x57; 32])).is_err());
    }

    #[test]
    fn a_release_chain_is_created_by_the_roots_under_the_policy_witnesses() {
        let (signed, keys) = genesis_policy();
        let policy = &signed.policy;
        let witnesses = policy.witnesses;
        let by_root = ChainGenesis::release("hello", Hash([1; 32]), &[&keys[0]]);
        by_root.check_release_chain(policy, witnesses).unwrap();
        assert!(matches!(
            by_root.check_release_chain(policy, Hash([0x58; 32])),
            Err(Error::WitnessesMismatch { .. })
        ));
        // A developer (or anyone else) cannot create the project's release chain.
        let by_developer = ChainGenesis::release("hello", Hash([1; 32]), &[&keys[1]]);
        assert!(matches!(
            by_developer.check_release_chain(policy, witnesses),
            Err(Error::UnknownSigner { .. })
        ));
        let other_project = ChainGenesis::release("other", Hash([1; 32]), &[&keys[0]]);
        assert!(matches!(
            other_project.check_release_chain(policy, witnesses),
            Err(Error::WrongProject { .. })
        ));
    }

    #[test]
    fn release_genesis_vector() {
        let root = SecretKey::from_seed(&[1; 32]);
        let genesis = ChainGenesis::release("hello", Hash([0x11; 32]), &[&root]);
        let signature =
            KeySignature::sign(&root, &release_genesis_digest("hello", &Hash([0x11; 32])));
        let expected = format!(
            "010205000000{}{}01000000{}{}",
            hex::encode("hello"),
            "11".repeat(32),
            hex::encode(signature.signer.as_bytes()),
            hex::encode(signature.signature.0),
        );
        assert_eq!(hex::encode(genesis.to_bytes()), expected);
        assert_eq!(
            release_genesis_digest("hello", &Hash([0x11; 32])).to_hex(),
            "ac1d14540cb60b199b44cc71153764c211eed6deb6138b749598b4de3fc79b0b"
        );
    }

    #[test]
    fn other_payloads_are_not_chain_geneses() {
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
            genesis.check(Hash([0x57; 32])),
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
            check_policy_change(&genesis.policy, &one.to_bytes(), Hash([0x57; 32])),
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
        let accepted =
            check_policy_change(&genesis.policy, &two.to_bytes(), Hash([0x57; 32])).unwrap();
        assert!(matches!(
            check_policy_change(&genesis.policy, &two.to_bytes(), Hash([0x58; 32])),
            Err(Error::WitnessesMismatch { .. })
        ));
        assert_eq!(policy_of_block(1, &two.to_bytes()).unwrap(), accepted);
    }
}
