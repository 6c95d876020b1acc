//! Release policies: who may sign a project's releases (t of n developer keys), how many build
//! attestations a release needs, and who may change that (the root keys).
//!
//! A project's policy chain holds one [`SignedPolicy`] per block. The genesis policy is signed by
//! a threshold of its own root keys; every later policy names the digest of the one before and is
//! signed by a threshold of that previous policy's developers, or of its root keys. Changing the
//! root keys, the root threshold, the witness roster or the timeline needs the previous root keys.

use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::hash::domain;
use crate::keys::{KeySignature, PublicKey};
use crate::{Error, Hash, Result};

/// Most keys in any one role of a policy.
pub const MAX_POLICY_KEYS: usize = 256;
/// Longest project name, in bytes.
pub const MAX_PROJECT_NAME_LEN: usize = 64;

/// Checks a project name: 1 to 64 bytes of lower-case ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit.
pub fn check_project_name(name: &str) -> Result<()> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if name.is_empty() || name.len() > MAX_PROJECT_NAME_LEN {
        return Err(Error::InvalidName {
            what: "project name",
            reason: "must be 1 to 64 bytes long",
        });
    }
    if !name.chars().all(valid_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::InvalidName {
            what: "project name",
            reason: "use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit",
        });
    }
    Ok(())
}

/// The release policy of a project at one point of its policy chain.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Policy {
    /// The project's name.
    pub project: String,
    /// 0 for the genesis policy, then +1 per change.
    pub sequence: u64,
    /// Digest of the previous policy; `None` for the genesis policy.
    pub previous: Option<Hash>,
    /// Keys that may change anything, including themselves (usually kept offline).
    pub root_keys: Vec<PublicKey>,
    /// How many root keys must sign.
    pub root_threshold: u32,
    /// Keys that sign releases.
    pub developer_keys: Vec<PublicKey>,
    /// How many developer keys must sign a release (the t of t-of-n).
    pub developer_threshold: u32,
    /// Build verifiers whose attestations count.
    pub build_verifiers: Vec<PublicKey>,
    /// How many matching attestations from distinct verifiers a release needs (k).
    pub attestations_required: u32,
    /// Hash of the witness roster the project's chains run under. The policy chain moves to
    /// another roster only with a policy change naming it, approved by the root threshold;
    /// the release chain follows at its next release. Nobody else can move the project.
    pub witnesses: Hash,
    /// The timeline chain that commits the project's chains: clients check the heads of both
    /// chains against it (protocol §6.1, §10). Changing it is a root change, so nobody but the
    /// roots can point clients at a timeline of their choosing.
    pub timeline: Option<Hash>,
}

impl Policy {
    /// Checks the policy on its own: name, non-empty key sets without duplicates, thresholds
    /// between 1 and the number of keys, and no more attestations required than verifiers.
    pub fn check(&self) -> Result<()> {
        check_project_name(&self.project)?;
        check_keys(&self.root_keys, self.root_threshold, "root")?;
        check_keys(&self.developer_keys, self.developer_threshold, "developer")?;
        if self.build_verifiers.len() > MAX_POLICY_KEYS {
            return Err(Error::TooLong {
                what: "build verifier keys",
                len: self.build_verifiers.len(),
                max: MAX_POLICY_KEYS,
            });
        }
        if has_duplicates(&self.build_verifiers) {
            return Err(Error::InvalidPolicy {
                reason: "a build verifier key appears twice".into(),
            });
        }
        if self.attestations_required as usize > self.build_verifiers.len() {
            return Err(Error::InvalidPolicy {
                reason: format!(
                    "{} build attestations required but only {} verifiers listed",
                    self.attestations_required,
                    self.build_verifiers.len()
                ),
            });
        }
        if (self.sequence == 0) != self.previous.is_none() {
            return Err(Error::InvalidPolicy {
                reason: "the genesis policy (sequence 0), and only it, has no previous policy"
                    .into(),
            });
        }
        Ok(())
    }

    /// What policy signers sign: BLAKE3 under [`domain::POLICY`] of the encoding.
    pub fn digest(&self) -> Hash {
        Hash::of(domain::POLICY, &[&self.to_bytes()])
    }

    /// Whether this policy changes what only the roots may change: the root keys (as a set),
    /// the root threshold, the witness roster or the timeline.
    fn roots_changed(&self, previous: &Policy) -> bool {
        let mut old = previous.root_keys.clone();
        let mut new = self.root_keys.clone();
        old.sort_unstable();
        new.sort_unstable();
        old != new
            || previous.root_threshold != self.root_threshold
            || previous.witnesses != self.witnesses
            || previous.timeline != self.timeline
    }
}

fn check_keys(keys: &[PublicKey], threshold: u32, role: &'static str) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::InvalidPolicy {
            reason: format!("at least one {role} key is needed"),
        });
    }
    if keys.len() > MAX_POLICY_KEYS {
        return Err(Error::TooLong {
            what: "policy keys",
            len: keys.len(),
            max: MAX_POLICY_KEYS,
        });
    }
    if has_duplicates(keys) {
        return Err(Error::InvalidPolicy {
            reason: format!("a {role} key appears twice"),
        });
    }
    if threshold == 0 || threshold as usize > keys.len() {
        return Err(Error::InvalidPolicy {
            reason: format!(
                "{role} threshold {threshold} must be between 1 and {}",
                keys.len()
            ),
        });
    }
    Ok(())
}

fn has_duplicates(keys: &[PublicKey]) -> bool {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).any(|pair| pair[0] == pair[1])
}

impl Encode for Policy {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(VERSION).str(&self.project).u64(self.sequence);
        match &self.previous {
            None => writer.u8(0),
            Some(hash) => writer.u8(1).value(hash),
        };
        writer
            .list(&self.root_keys)
            .u32(self.root_threshold)
            .list(&self.developer_keys)
            .u32(self.developer_threshold)
            .list(&self.build_verifiers)
            .u32(self.attestations_required)
            .value(&self.witnesses);
        match &self.timeline {
            None => writer.u8(0),
            Some(hash) => writer.u8(1).value(hash),
        };
    }
}

impl Decode for Policy {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("policy")?;
        let project = reader.string(MAX_PROJECT_NAME_LEN, "project name")?;
        let sequence = reader.u64("policy sequence")?;
        let previous = match reader.bool("previous policy flag")? {
            false => None,
            true => Some(Hash::decode_from(reader)?),
        };
        let policy = Self {
            project,
            sequence,
            previous,
            root_keys: reader.list(MAX_POLICY_KEYS, "root keys")?,
            root_threshold: reader.u32("root threshold")?,
            developer_keys: reader.list(MAX_POLICY_KEYS, "developer keys")?,
            developer_threshold: reader.u32("developer threshold")?,
            build_verifiers: reader.list(MAX_POLICY_KEYS, "build verifiers")?,
            attestations_required: reader.u32("attestations required")?,
            witnesses: Hash::decode_from(reader)?,
            timeline: match reader.bool("timeline flag")? {
                false => None,
                true => Some(Hash::decode_from(reader)?),
            },
        };
        policy.check()?;
        Ok(policy)
    }
}

/// A policy with the signatures that approve it: the payload of a policy-chain block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedPolicy {
    /// The policy.
    pub policy: Policy,
    /// Signatures over [`Policy::digest`].
    pub signatures: Vec<KeySignature>,
}

impl SignedPolicy {
    /// Checks a genesis policy: valid, sequence 0, signed by at least the root threshold of its
    /// own root keys and by nobody else.
    pub fn verify_genesis(&self) -> Result<()> {
        self.policy.check()?;
        if self.policy.sequence != 0 {
            return Err(Error::InvalidPolicy {
                reason: "a genesis policy has sequence 0".into(),
            });
        }
        let digest = self.policy.digest();
        let roots = crate::keys::count_valid_signers(
            &self.signatures,
            &self.policy.root_keys,
            &digest,
            "root",
        )?;
        if roots < self.policy.root_threshold as usize {
            return Err(Error::NotEnoughSignatures {
                role: "root",
                valid: roots,
                threshold: self.policy.root_threshold as usize,
            });
        }
        Ok(())
    }

    /// Checks this policy as the successor of `previous`: same project, next sequence, names
    /// the previous digest, and signed by a threshold of the previous root keys, or, when the
    /// root keys (as a set), the root threshold, the witnesses and the timeline stay the same,
    /// alternatively by a threshold of the previous developer keys.
    pub fn verify_change(&self, previous: &Policy) -> Result<()> {
        let policy = &self.policy;
        policy.check()?;
        if policy.project != previous.project {
            return Err(Error::WrongProject {
                expected: previous.project.clone(),
                found: policy.project.clone(),
            });
        }
        if Some(policy.sequence) != previous.sequence.checked_add(1) {
            return Err(Error::InvalidPolicy {
                reason: format!(
                    "sequence {} does not follow the policy in force ({})",
                    policy.sequence, previous.sequence
                ),
            });
        }
        if policy.previous != Some(previous.digest()) {
            return Err(Error::InvalidPolicy {
                reason: "does not name the policy in force as its previous policy".into(),
            });
        }
        let digest = policy.digest();
        let mut roots = 0;
        let mut developers = 0;
        let mut seen = Vec::with_capacity(self.signatures.len());
        for signature in &self.signatures {
            let is_root = previous.root_keys.contains(&signature.signer);
            let is_developer = previous.developer_keys.contains(&signature.signer);
            if !is_root && !is_developer {
                return Err(Error::UnknownSigner {
                    signer: signature.signer.id(),
                    role: "root or developer",
                });
            }
            if seen.contains(&signature.signer) {
                return Err(Error::DuplicateSigner {
                    signer: signature.signer.id(),
                });
            }
            signature.verify(&digest)?;
            seen.push(signature.signer);
            roots += usize::from(is_root);
            developers += usize::from(is_developer);
        }
        let roots_suffice = roots >= previous.root_threshold as usize;
        if policy.roots_changed(previous) {
            if !roots_suffice {
                return Err(Error::NotEnoughSignatures {
                    role: "root (root keys, root threshold, witnesses or timeline change)",
                    valid: roots,
                    threshold: previous.root_threshold as usize,
                });
            }
            return Ok(());
        }
        if roots_suffice || developers >= previous.developer_threshold as usize {
            return Ok(());
        }
        Err(Error::NotEnoughSignatures {
            role: "developer",
            valid: developers,
            threshold: previous.developer_threshold as usize,
        })
    }
}

impl Encode for SignedPolicy {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .value(&self.policy)
            .list(&self.signatures);
    }
}

impl Decode for SignedPolicy {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("signed policy")?;
        Ok(Self {
            policy: Policy::decode_from(reader)?,
            signatures: reader.list(2 * MAX_POLICY_KEYS, "policy signatures")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use proptest::prelude::*;

    pub(crate) struct Keys {
        pub roots: Vec<SecretKey>,
        pub developers: Vec<SecretKey>,
        pub verifiers: Vec<SecretKey>,
    }

    fn keys(seed: u8) -> Keys {
        let make = |offset: u8, n: u8| {
            (0..n)
                .map(|i| SecretKey::from_seed(&[seed.wrapping_add(offset + i); 32]))
                .collect()
        };
        Keys {
            roots: make(0, 2),
            developers: make(10, 3),
            verifiers: make(20, 3),
        }
    }

    fn genesis(k: &Keys) -> Policy {
        Policy {
            project: "hello-world".into(),
            sequence: 0,
            previous: None,
            root_keys: k.roots.iter().map(SecretKey::public_key).collect(),
            root_threshold: 2,
            developer_keys: k.developers.iter().map(SecretKey::public_key).collect(),
            developer_threshold: 2,
            build_verifiers: k.verifiers.iter().map(SecretKey::public_key).collect(),
            attestations_required: 2,
            witnesses: Hash([0x57; 32]),
            timeline: None,
        }
    }

    fn sign(policy: Policy, signers: &[&SecretKey]) -> SignedPolicy {
        let digest = policy.digest();
        SignedPolicy {
            policy,
            signatures: signers
                .iter()
                .map(|s| KeySignature::sign(s, &digest))
                .collect(),
        }
    }

    fn successor(previous: &Policy) -> Policy {
        Policy {
            sequence: previous.sequence + 1,
            previous: Some(previous.digest()),
            ..previous.clone()
        }
    }

    #[test]
    fn genesis_needs_root_threshold() {
        let k = keys(1);
        let p = genesis(&k);
        assert_eq!(
            sign(p.clone(), &[&k.roots[0], &k.roots[1]]).verify_genesis(),
            Ok(())
        );
        assert!(matches!(
            sign(p.clone(), &[&k.roots[0]]).verify_genesis(),
            Err(Error::NotEnoughSignatures {
                valid: 1,
                threshold: 2,
                ..
            })
        ));
        assert!(matches!(
            sign(p, &[&k.roots[0], &k.developers[0]]).verify_genesis(),
            Err(Error::UnknownSigner { role: "root", .. })
        ));
    }

    #[test]
    fn developer_rotation_by_developer_threshold() {
        let k = keys(2);
        let g = genesis(&k);
        let newcomer = SecretKey::from_seed(&[77; 32]);
        let mut next = successor(&g);
        next.developer_keys[0] = newcomer.public_key();
        assert_eq!(
            sign(next.clone(), &[&k.developers[1], &k.developers[2]]).verify_change(&g),
            Ok(())
        );
        // roots can always approve
        assert_eq!(
            sign(next.clone(), &[&k.roots[0], &k.roots[1]]).verify_change(&g),
            Ok(())
        );
        // one developer is not enough
        assert!(matches!(
            sign(next.clone(), &[&k.developers[1]]).verify_change(&g),
            Err(Error::NotEnoughSignatures {
                role: "developer",
                valid: 1,
                threshold: 2
            })
        ));
        // the newcomer does not count for its own admission
        assert!(matches!(
            sign(next, &[&k.developers[1], &newcomer]).verify_change(&g),
            Err(Error::UnknownSigner { .. })
        ));
    }

    #[test]
    fn root_changes_need_roots() {
        let k = keys(3);
        let g = genesis(&k);
        let mut next = successor(&g);
        next.root_threshold = 1;
        assert!(matches!(
            sign(
                next.clone(),
                &[&k.developers[0], &k.developers[1], &k.developers[2]]
            )
            .verify_change(&g),
            Err(Error::NotEnoughSignatures {
                role: "root (root keys, root threshold, witnesses or timeline change)",
                ..
            })
        ));
        assert_eq!(
            sign(next, &[&k.roots[0], &k.roots[1]]).verify_change(&g),
            Ok(())
        );
    }

    #[test]
    fn changes_must_chain() {
        let k = keys(4);
        let g = genesis(&k);
        let signers = [&k.developers[0], &k.developers[1]];
        let mut skip = successor(&g);
        skip.sequence = 2;
        assert!(sign(skip, &signers).verify_change(&g).is_err());
        let mut unlinked = successor(&g);
        unlinked.previous = Some(Hash::default());
        assert!(sign(unlinked, &signers).verify_change(&g).is_err());
        let mut renamed = successor(&g);
        renamed.project = "other".into();
        assert!(matches!(
            sign(renamed, &signers).verify_change(&g),
            Err(Error::WrongProject { .. })
        ));
        // an old policy replayed as a change of a newer one
        let second = successor(&g);
        let replay = sign(g.clone(), &signers);
        assert!(replay.verify_change(&second).is_err());
        // a valid change signed twice by the same developer
        let twice = sign(successor(&g), &[&k.developers[0], &k.developers[0]]);
        assert!(matches!(
            twice.verify_change(&g),
            Err(Error::DuplicateSigner { .. })
        ));
    }

    #[test]
    fn structural_rules() {
        let k = keys(5);
        let g = genesis(&k);
        let mut p = g.clone();
        p.developer_threshold = 4;
        assert!(matches!(p.check(), Err(Error::InvalidPolicy { .. })));
        let mut p = g.clone();
        p.attestations_required = 4;
        assert!(p.check().is_err());
        let mut p = g.clone();
        p.developer_keys.push(p.developer_keys[0]);
        assert!(p.check().is_err());
        let mut p = g.clone();
        p.project = "Hello World".into();
        assert!(matches!(p.check(), Err(Error::InvalidName { .. })));
        let mut p = g.clone();
        p.root_keys.clear();
        assert!(p.check().is_err());
        let mut p = g;
        p.previous = Some(Hash::default());
        assert!(p.check().is_err());
        assert!(check_project_name("-lead").is_err());
        assert!(check_project_name(&"a".repeat(65)).is_err());
        assert!(check_project_name("libfoo.rs_2").is_ok());
    }

    #[test]
    fn encoding_round_trips() {
        let k = keys(6);
        let signed = sign(genesis(&k), &[&k.roots[0], &k.roots[1]]);
        let bytes = signed.to_bytes();
        assert_eq!(SignedPolicy::from_bytes(&bytes).as_ref(), Ok(&signed));
        let mut bad = bytes;
        bad[1] = 9;
        assert!(SignedPolicy::from_bytes(&bad).is_err());
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SignedPolicy::from_bytes(&bytes);
        }
    }
    #[test]
    fn moving_to_another_witness_roster_needs_the_roots() {
        let k = keys(40);
        let g = genesis(&k);
        let mut next = successor(&g);
        next.witnesses = Hash([0x58; 32]);
        assert!(matches!(
            sign(
                next.clone(),
                &[&k.developers[0], &k.developers[1], &k.developers[2]]
            )
            .verify_change(&g),
            Err(Error::NotEnoughSignatures { .. })
        ));
        assert_eq!(
            sign(next, &[&k.roots[0], &k.roots[1]]).verify_change(&g),
            Ok(())
        );
    }

    #[test]
    fn committing_the_project_to_another_timeline_needs_the_roots() {
        let k = keys(41);
        let g = genesis(&k);
        for timeline in [Some(Hash([0x71; 32])), None] {
            let mut start = g.clone();
            start.timeline = Some(Hash([0x70; 32]));
            let mut next = successor(&start);
            next.timeline = timeline;
            assert!(matches!(
                sign(
                    next.clone(),
                    &[&k.developers[0], &k.developers[1], &k.developers[2]]
                )
                .verify_change(&start),
                Err(Error::NotEnoughSignatures { .. })
            ));
            assert_eq!(
                sign(next, &[&k.roots[0], &k.roots[1]]).verify_change(&start),
                Ok(())
            );
        }
    }
}
