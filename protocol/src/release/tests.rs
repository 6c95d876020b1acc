use proptest::prelude::*;

use super::*;
use crate::keys::SecretKey;

const NOW: u64 = 1_800_000_000;

struct Project {
    developers: Vec<SecretKey>,
    verifiers: Vec<SecretKey>,
    policy: Policy,
    policy_block: Hash,
}

fn project() -> Project {
    let developers: Vec<SecretKey> = (1..=3).map(|i| SecretKey::from_seed(&[i; 32])).collect();
    let verifiers: Vec<SecretKey> = (10..=12).map(|i| SecretKey::from_seed(&[i; 32])).collect();
    let policy = Policy {
        project: "hello".into(),
        sequence: 0,
        previous: None,
        root_keys: vec![SecretKey::from_seed(&[99; 32]).public_key()],
        root_threshold: 1,
        developer_keys: developers.iter().map(SecretKey::public_key).collect(),
        developer_threshold: 2,
        build_verifiers: verifiers.iter().map(SecretKey::public_key).collect(),
        attestations_required: 2,
        witnesses: Hash([0x57; 32]),
        timeline: None,
    };
    Project {
        developers,
        verifiers,
        policy,
        policy_block: Hash::of(crate::hash::domain::SKIPBLOCK, &[b"policy"]),
    }
}

const BINARY: &[u8] = b"\x7fELF hello binary";

fn manifest(p: &Project, version: &str, sequence: u64) -> ReleaseManifest {
    ReleaseManifest {
        project: "hello".into(),
        version: version.into(),
        sequence,
        source: ArtifactRef::of("hello-src.tar.gz", b"source tarball"),
        recipe: BuildRecipe {
            script: "make".into(),
            outputs: vec![("x86_64-linux".into(), "build/hello".into())],
        },
        binaries: vec![BinaryArtifact {
            platform: "x86_64-linux".into(),
            artifact: ArtifactRef::of("hello", BINARY),
        }],
        policy: p.policy_block,
        timestamp: NOW - 60,
    }
}

fn attest(verifier: &SecretKey, manifest: &ReleaseManifest, binary: &[u8]) -> BuildAttestation {
    BuildAttestation::sign(
        verifier,
        manifest.digest(),
        BuildOutcome::Built,
        vec![("x86_64-linux".into(), Hash::of_artifact(binary))],
        Hash::of_artifact(b"build log"),
    )
}

fn release(
    p: &Project,
    manifest: ReleaseManifest,
    signers: &[usize],
    verifiers: &[usize],
) -> Release {
    let digest = manifest.digest();
    Release {
        signatures: signers
            .iter()
            .map(|&i| KeySignature::sign(&p.developers[i], &digest))
            .collect(),
        attestations: verifiers
            .iter()
            .map(|&i| attest(&p.verifiers[i], &manifest, BINARY))
            .collect(),
        manifest,
    }
}

fn in_force(p: &Project) -> PolicyInForce<'_> {
    PolicyInForce {
        policy: &p.policy,
        block: p.policy_block,
    }
}

fn check(p: &Project, r: &Release, previous: Option<&ReleaseManifest>) -> Result<()> {
    r.validate(in_force(p), previous, NOW, TimeBounds::default())
}

#[test]
fn a_valid_release_passes() {
    let p = project();
    let first = release(&p, manifest(&p, "1.0.0", 1), &[0, 1], &[0, 1]);
    assert_eq!(check(&p, &first, None), Ok(()));
    let second = release(&p, manifest(&p, "1.0.1", 2), &[1, 2], &[1, 2]);
    assert_eq!(check(&p, &second, Some(&first.manifest)), Ok(()));
}

#[test]
fn too_few_developer_signatures_are_refused() {
    let p = project();
    let r = release(&p, manifest(&p, "1.0.0", 1), &[0], &[0, 1]);
    assert_eq!(
        check(&p, &r, None),
        Err(Error::NotEnoughSignatures {
            role: "developer",
            valid: 1,
            threshold: 2
        })
    );
    let none = release(&p, manifest(&p, "1.0.0", 1), &[], &[0, 1]);
    assert!(matches!(
        check(&p, &none, None),
        Err(Error::NotEnoughSignatures { valid: 0, .. })
    ));
}

#[test]
fn replayed_and_reordered_releases_are_refused() {
    let p = project();
    let first = release(&p, manifest(&p, "1.0.0", 1), &[0, 1], &[0, 1]);
    let second = release(&p, manifest(&p, "1.1.0", 2), &[0, 1], &[0, 1]);
    // replay of the first release after the second
    assert_eq!(
        check(&p, &first, Some(&second.manifest)),
        Err(Error::ReplayedRelease {
            sequence: 1,
            expected: 3
        })
    );
    // a lower version with the next sequence (downgrade)
    let downgrade = release(&p, manifest(&p, "1.0.5", 3), &[0, 1], &[0, 1]);
    assert!(matches!(
        check(&p, &downgrade, Some(&second.manifest)),
        Err(Error::VersionNotIncreasing { .. })
    ));
    // same version again
    let same = release(&p, manifest(&p, "1.1.0", 3), &[0, 1], &[0, 1]);
    assert!(matches!(
        check(&p, &same, Some(&second.manifest)),
        Err(Error::VersionNotIncreasing { .. })
    ));
    // skipping a sequence number
    let gap = release(&p, manifest(&p, "2.0.0", 4), &[0, 1], &[0, 1]);
    assert_eq!(
        check(&p, &gap, Some(&second.manifest)),
        Err(Error::SequenceGap {
            sequence: 4,
            expected: 3
        })
    );
    // semver order, not string order: 1.10.0 > 1.9.0
    let nine = manifest(&p, "1.9.0", 2);
    let ten = release(&p, manifest(&p, "1.10.0", 3), &[0, 1], &[0, 1]);
    assert_eq!(check(&p, &ten, Some(&nine)), Ok(()));
}

#[test]
fn an_old_policy_is_refused() {
    let p = project();
    let mut m = manifest(&p, "1.0.0", 1);
    m.policy = Hash::of(crate::hash::domain::SKIPBLOCK, &[b"older policy block"]);
    let r = release(&p, m, &[0, 1], &[0, 1]);
    assert!(matches!(
        check(&p, &r, None),
        Err(Error::StalePolicy { .. })
    ));
}

#[test]
fn a_rotated_out_key_is_refused() {
    let mut p = project();
    let departed = SecretKey::from_seed(&[1; 32]);
    p.policy.developer_keys[0] = SecretKey::from_seed(&[50; 32]).public_key();
    let m = manifest(&p, "1.0.0", 1);
    let digest = m.digest();
    let mut r = release(&p, m, &[1, 2], &[0, 1]);
    r.signatures.push(KeySignature::sign(&departed, &digest));
    let result = check(&p, &r, None);
    assert!(
        matches!(
            result,
            Err(Error::UnknownSigner {
                role: "developer",
                ..
            })
        ),
        "{result:?}"
    );
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains(&departed.public_key().to_hex()),
        "{message}"
    );
}

#[test]
fn timestamps_are_bounded() {
    let p = project();
    let mut future = manifest(&p, "1.0.0", 1);
    future.timestamp = NOW + 301;
    assert!(matches!(
        check(&p, &release(&p, future, &[0, 1], &[0, 1]), None),
        Err(Error::TimestampOutOfBounds {
            reason: "in the future",
            ..
        })
    ));
    let mut old = manifest(&p, "1.0.0", 1);
    old.timestamp = NOW - 8 * 24 * 3600;
    assert!(matches!(
        check(&p, &release(&p, old, &[0, 1], &[0, 1]), None),
        Err(Error::TimestampOutOfBounds {
            reason: "too old",
            ..
        })
    ));
    let mut previous = manifest(&p, "0.9.0", 1);
    previous.timestamp = NOW - 10;
    let before = release(&p, manifest(&p, "1.0.0", 2), &[0, 1], &[0, 1]);
    assert!(matches!(
        check(&p, &before, Some(&previous)),
        Err(Error::TimestampOutOfBounds {
            reason: "before the previous release",
            ..
        })
    ));
}

#[test]
fn attestations_must_match_k_times() {
    let p = project();
    let m = manifest(&p, "1.0.0", 1);
    // one matching, one rebuilt a binary that differs by one byte
    let mut tweaked = BINARY.to_vec();
    tweaked[5] ^= 1;
    let mut r = release(&p, m.clone(), &[0, 1], &[0]);
    r.attestations.push(attest(&p.verifiers[1], &m, &tweaked));
    let result = check(&p, &r, None);
    let Err(Error::NotEnoughAttestations {
        matching: 1,
        required: 2,
        mismatches,
    }) = &result
    else {
        panic!("{result:?}")
    };
    assert_eq!(mismatches.len(), 1);
    assert!(mismatches[0].contains(&p.verifiers[1].public_key().to_hex()));
    assert!(mismatches[0].contains(&Hash::of_artifact(&tweaked).to_hex()));
    let text = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("x86_64-linux="), "{text}");

    // a failed build does not count
    let mut failed = release(&p, m.clone(), &[0, 1], &[0]);
    failed.attestations.push(BuildAttestation::sign(
        &p.verifiers[2],
        m.digest(),
        BuildOutcome::Failed,
        vec![],
        Hash::default(),
    ));
    assert!(matches!(
        check(&p, &failed, None),
        Err(Error::NotEnoughAttestations { matching: 1, .. })
    ));

    // the same verifier twice
    let twice = release(&p, m.clone(), &[0, 1], &[0, 0]);
    assert!(matches!(
        check(&p, &twice, None),
        Err(Error::DuplicateSigner { .. })
    ));

    // a verifier the policy does not list
    let mut stranger = release(&p, m.clone(), &[0, 1], &[0]);
    stranger
        .attestations
        .push(attest(&SecretKey::from_seed(&[66; 32]), &m, BINARY));
    assert!(matches!(
        check(&p, &stranger, None),
        Err(Error::UnknownSigner {
            role: "build verifier",
            ..
        })
    ));

    // an attestation for another manifest
    let other = manifest(&p, "9.9.9", 1);
    let mut misdirected = release(&p, m.clone(), &[0, 1], &[0]);
    misdirected
        .attestations
        .push(attest(&p.verifiers[1], &other, BINARY));
    assert!(matches!(
        check(&p, &misdirected, None),
        Err(Error::InvalidManifest { .. })
    ));

    // a forged attestation (outputs changed after signing)
    let mut forged = release(&p, m, &[0, 1], &[0, 1]);
    forged.attestations[1].log_digest = Hash::of_artifact(b"another log");
    assert!(matches!(
        check(&p, &forged, None),
        Err(Error::InvalidSignature { .. })
    ));
}

#[test]
fn manifest_rules() {
    let p = project();
    let mut bad_version = manifest(&p, "1.0", 1);
    assert!(matches!(
        bad_version.check(),
        Err(Error::InvalidVersion { .. })
    ));
    bad_version.version = "v1.0.0".into();
    assert!(bad_version.check().is_err());
    let mut twice = manifest(&p, "1.0.0", 1);
    twice.binaries.push(twice.binaries[0].clone());
    assert!(matches!(twice.check(), Err(Error::InvalidManifest { .. })));
    let mut unbuilt = manifest(&p, "1.0.0", 1);
    unbuilt.recipe.outputs.clear();
    assert!(matches!(
        unbuilt.check(),
        Err(Error::InvalidManifest { .. })
    ));
    let mut other_project = manifest(&p, "1.0.0", 1);
    other_project.project = "other".into();
    let r = release(&p, other_project, &[0, 1], &[0, 1]);
    assert!(matches!(
        check(&p, &r, None),
        Err(Error::WrongProject { .. })
    ));
}

#[test]
fn artifact_check() {
    let a = ArtifactRef::of("f", b"bytes");
    assert_eq!(a.check(b"bytes"), Ok(()));
    assert!(matches!(
        a.check(b"bytez"),
        Err(Error::ArtifactMismatch { .. })
    ));
}

#[test]
fn encodings_round_trip() {
    let p = project();
    let r = release(&p, manifest(&p, "1.2.3-rc.1", 1), &[0, 1], &[0, 1, 2]);
    let bytes = r.to_bytes();
    assert_eq!(Release::from_bytes(&bytes).as_ref(), Ok(&r));
    let mut longer = bytes.clone();
    longer.push(1);
    assert!(Release::from_bytes(&longer).is_err());
    assert!(Release::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    // a changed manifest changes the digest the signatures cover
    let mut changed = r.manifest.clone();
    changed.timestamp += 1;
    assert_ne!(changed.digest(), r.manifest.digest());
}

proptest! {
    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Release::from_bytes(&bytes);
        let _ = BuildAttestation::from_bytes(&bytes);
    }

    #[test]
    fn any_single_byte_change_is_caught(position in any::<usize>(), flip in 1u8..=255) {
        let p = project();
        let r = release(&p, manifest(&p, "1.0.0", 1), &[0, 1], &[0, 1]);
        let mut bytes = r.to_bytes();
        let at = position % bytes.len();
        bytes[at] ^= flip;
        if let Ok(decoded) = Release::from_bytes(&bytes) {
            prop_assert!(check(&p, &decoded, None).is_err());
        }
    }
}
