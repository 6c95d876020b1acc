//! Test vectors for every object a light client checks (docs/vectors/objects.json): policies
//! (the genesis and each kind of change, one with reordered root keys), releases with developer
//! signatures and build attestations, timeline blocks with their changes and commitments,
//! inclusion proofs over odd numbers of leaves, and the anchor calldata. Every valid object has
//! at least one tampered twin that must be refused.
//!
//! The file is generated here from fixed seeds (Ed25519 signing is deterministic) and must be
//! current: a change to a format fails `objects_json_is_current` until the file is regenerated
//! with `CHAINIAC_WRITE_VECTORS=1 cargo test --workspace -- objects_json`. Digests are
//! recomputed with `blake3::derive_key` and the context strings of protocol §2, and signatures
//! checked with ed25519-compact, not with the code that made them.

use std::path::{Path, PathBuf};

use chainiac_protocol::Hash;
use chainiac_protocol::anchor::{AnchorRequest, anchor_calldata};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::{KeySignature, SecretKey};
use chainiac_protocol::policy::{Policy, SignedPolicy};
use chainiac_protocol::release::{
    ArtifactRef, BinaryArtifact, BuildAttestation, BuildOutcome, BuildRecipe, Release,
    ReleaseManifest,
};
use chainiac_protocol::timeline::{InclusionProof, TimelineBlock, TimelineEntry, TimelineTree};
use serde_json::{Value, json};

type Failure = Box<dyn std::error::Error>;
type TestResult<T = ()> = Result<T, Failure>;

const FILE: &str = "objects.json";

fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/vectors")
        .join(FILE)
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn hash(byte: u8) -> Hash {
    Hash([byte; 32])
}

fn hex_of(value: &Value, field: &str) -> TestResult<Vec<u8>> {
    let text = value[field]
        .as_str()
        .ok_or_else(|| format!("missing field {field} in {value}"))?;
    Ok(hex::decode(text)?)
}

fn flip(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = at.min(out.len() - 1);
    out[at] ^= 0x01;
    out
}

// ---------------------------------------------------------------- generation

fn sign_policy(policy: &Policy, signers: &[&SecretKey]) -> SignedPolicy {
    let digest = policy.digest();
    SignedPolicy {
        policy: policy.clone(),
        signatures: signers
            .iter()
            .map(|k| KeySignature::sign(k, &digest))
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

fn policy_case(
    name: &str,
    previous: Option<&str>,
    signed: &SignedPolicy,
    refused: Option<&str>,
) -> Value {
    json!({
        "name": name,
        "previous": previous,
        "signed_policy": hex::encode(signed.to_bytes()),
        "policy": hex::encode(signed.policy.to_bytes()),
        "policy_digest": signed.policy.digest().to_hex(),
        "valid": refused.is_none(),
        "refused_because": refused,
    })
}

/// The policies: genesis, a developer-signed change, a change that only reorders the root
/// keys (not a root change), a root change, and tampered twins.
fn policies() -> (Vec<Value>, Policy) {
    let (root_1, root_2) = (key(1), key(2));
    let developers = [key(11), key(12), key(13)];
    let genesis = Policy {
        project: "hello".into(),
        sequence: 0,
        previous: None,
        root_keys: vec![root_1.public_key(), root_2.public_key()],
        root_threshold: 2,
        developer_keys: developers.iter().map(SecretKey::public_key).collect(),
        developer_threshold: 2,
        build_verifiers: vec![key(21).public_key(), key(22).public_key()],
        attestations_required: 1,
        witnesses: hash(0x57),
        timeline: Some(hash(0x7e)),
    };
    let signed_genesis = sign_policy(&genesis, &[&root_1, &root_2]);
    let mut rotated = successor(&genesis);
    rotated.developer_keys[2] = key(14).public_key();
    let signed_rotated = sign_policy(&rotated, &[&developers[0], &developers[1]]);
    let mut reordered = successor(&rotated);
    reordered.root_keys.reverse();
    let signed_reordered = sign_policy(&reordered, &[&developers[0], &developers[1]]);
    let mut root_change = successor(&reordered);
    root_change.root_threshold = 1;
    let signed_root_change = sign_policy(&root_change, &[&root_1, &root_2]);
    let by_developers = sign_policy(&root_change, &[&developers[0], &developers[1]]);
    let mut other_timeline = successor(&reordered);
    other_timeline.timeline = Some(hash(0x7f));
    let timeline_by_developers = sign_policy(&other_timeline, &[&developers[0], &developers[1]]);
    let mut forged_genesis = signed_genesis.clone();
    forged_genesis.policy.developer_threshold = 1;
    let cases = vec![
        policy_case("genesis", None, &signed_genesis, None),
        policy_case("developer_rotation", Some("genesis"), &signed_rotated, None),
        policy_case(
            "reordered_roots",
            Some("developer_rotation"),
            &signed_reordered,
            None,
        ),
        policy_case(
            "root_change",
            Some("reordered_roots"),
            &signed_root_change,
            None,
        ),
        policy_case(
            "tampered_genesis",
            None,
            &forged_genesis,
            Some("the developer threshold was lowered after the roots signed"),
        ),
        policy_case(
            "root_change_signed_by_developers",
            Some("reordered_roots"),
            &by_developers,
            Some("a root change needs root_threshold root keys of the previous policy"),
        ),
        policy_case(
            "timeline_change_signed_by_developers",
            Some("reordered_roots"),
            &timeline_by_developers,
            Some("naming another timeline is a root change"),
        ),
        policy_case(
            "change_that_skips_a_policy",
            Some("genesis"),
            &signed_reordered,
            Some("previous must be the digest of the policy before, sequence +1"),
        ),
    ];
    (cases, rotated)
}

fn manifest(version: &str) -> ReleaseManifest {
    let binary = ArtifactRef::of("hello", b"hello binary for x86_64-linux");
    ReleaseManifest {
        project: "hello".into(),
        version: version.into(),
        sequence: 1,
        source: ArtifactRef::of("hello-1.0.0.tar", b"hello source archive"),
        recipe: BuildRecipe {
            script: "make".into(),
            outputs: vec![("x86_64-linux".into(), "out/hello".into())],
        },
        binaries: vec![BinaryArtifact {
            platform: "x86_64-linux".into(),
            artifact: binary,
        }],
        policy: hash(0x90),
        timestamp: 1_790_000_000,
    }
}

fn release_case(name: &str, release: &Release, refused: Option<&str>) -> Value {
    json!({
        "name": name,
        "policy": "developer_rotation",
        "policy_block": hash(0x90).to_hex(),
        "release": hex::encode(release.to_bytes()),
        "manifest": hex::encode(release.manifest.to_bytes()),
        "manifest_digest": release.manifest.digest().to_hex(),
        "attestation_digests": release.attestations.iter().map(|a| a.digest().to_hex()).collect::<Vec<_>>(),
        "valid": refused.is_none(),
        "refused_because": refused,
    })
}

/// Releases under the `developer_rotation` policy (2 of its developers, 1 reproducing
/// attestation), and tampered twins.
fn releases() -> Vec<Value> {
    let manifest = manifest("1.0.0");
    let digest = manifest.digest();
    let binary_hash = manifest.binaries[0].artifact.hash;
    let attest = |outputs: Vec<(String, Hash)>| {
        BuildAttestation::sign(
            &key(21),
            digest,
            BuildOutcome::Built,
            outputs,
            Hash::of_artifact(b"build log"),
        )
    };
    let signed = |signers: &[u8], attestations: Vec<BuildAttestation>| Release {
        manifest: manifest.clone(),
        signatures: signers
            .iter()
            .map(|&s| KeySignature::sign(&key(s), &digest))
            .collect(),
        attestations,
    };
    let good = signed(
        &[11, 12],
        vec![attest(vec![("x86_64-linux".into(), binary_hash)])],
    );
    let mut altered = good.clone();
    altered.manifest.version = "1.0.1".into();
    vec![
        release_case("release", &good, None),
        release_case(
            "signed_by_a_rotated_out_key",
            &signed(
                &[11, 13],
                vec![attest(vec![("x86_64-linux".into(), binary_hash)])],
            ),
            Some("key 13 left the developers in the policy named"),
        ),
        release_case(
            "attestation_with_another_binary",
            &signed(
                &[11, 12],
                vec![attest(vec![("x86_64-linux".into(), hash(0xee))])],
            ),
            Some("no attestation reproduces the manifest's binary hashes"),
        ),
        release_case(
            "manifest_changed_after_signing",
            &altered,
            Some("the signatures are over the manifest digest before the change"),
        ),
    ]
}

fn entry(chain: u8, head: u8) -> TimelineEntry {
    TimelineEntry {
        chain_id: hash(chain),
        head: hash(head),
    }
}

fn entries_json(tree: &TimelineTree) -> Value {
    tree.entries()
        .map(|e| json!({"chain_id": e.chain_id.to_hex(), "head": e.head.to_hex()}))
        .collect()
}

/// Two timeline blocks (10 s epochs): the first adds three chains, the second moves one head
/// and adds a chain; and tampered twins.
fn timeline() -> TestResult<Vec<Value>> {
    let (first, tree_1) = TimelineBlock::new(
        None,
        179_000_000,
        1_790_000_000,
        vec![entry(0xa3, 0x13), entry(0xa1, 0x11), entry(0xa2, 0x12)],
    )?;
    let (second, tree_2) = TimelineBlock::new(
        Some(&tree_1),
        179_000_001,
        1_790_000_010,
        // Chain a0 is new: its leaf goes after a1..a3 although its id is smaller (§8).
        vec![entry(0xa0, 0x10), entry(0xa2, 0x22)],
    )?;
    let mut wrong_root = second.clone();
    wrong_root.commit.root = flip_hash(&wrong_root.commit.root);
    let mut repeated_head = second.clone();
    repeated_head.changes = vec![entry(0xa1, 0x11)];
    let case = |name: &str,
                previous: Option<&str>,
                block: &TimelineBlock,
                tree: Option<&TimelineTree>,
                refused: Option<&str>| {
        json!({
            "name": name,
            "previous": previous,
            "block": hex::encode(block.to_bytes()),
            "epoch": block.commit.epoch,
            "timestamp": block.commit.timestamp,
            "root": block.commit.root.to_hex(),
            "chain_count": block.commit.chain_count,
            "entries_after": tree.map(entries_json),
            "valid": refused.is_none(),
            "refused_because": refused,
        })
    };
    Ok(vec![
        case("first", None, &first, Some(&tree_1), None),
        case("second", Some("first"), &second, Some(&tree_2), None),
        case(
            "second_with_another_root",
            Some("first"),
            &wrong_root,
            None,
            Some("the commitment does not match the entries with the changes applied"),
        ),
        case(
            "second_repeating_a_recorded_head",
            Some("first"),
            &repeated_head,
            None,
            Some("a change must add a chain or move its head"),
        ),
    ])
}

fn flip_hash(h: &Hash) -> Hash {
    let mut bytes = h.0;
    bytes[0] ^= 0x01;
    Hash(bytes)
}

/// Inclusion proofs for every leaf of trees of 3, 5 and 7 leaves, and tampered twins.
fn inclusion_proofs() -> TestResult<Vec<Value>> {
    let mut cases = Vec::new();
    for count in [3u8, 5, 7] {
        let tree = TimelineTree::build((0..count).map(|i| entry(0x30 + i, 0x60 + i)).collect())?;
        let root = tree.root();
        for e in tree.entries() {
            let (_, proof) = tree.prove(&e.chain_id).ok_or("no proof")?;
            cases.push(json!({
                "leaf_count": count,
                "chain_id": e.chain_id.to_hex(),
                "head": e.head.to_hex(),
                "root": root.to_hex(),
                "proof": hex::encode(proof.to_bytes()),
                "valid": true,
            }));
        }
        let last = *tree.entries().last().ok_or("no entries")?;
        let (_, proof) = tree.prove(&last.chain_id).ok_or("no proof")?;
        let mut sibling = proof.clone();
        sibling.siblings[0] = flip_hash(&sibling.siblings[0]);
        let mut fewer = proof.clone();
        fewer.leaf_count -= 1;
        for (tampered, why) in [
            (sibling, "a sibling hash was changed"),
            (fewer, "the proof claims fewer leaves than the tree has"),
        ] {
            cases.push(json!({
                "leaf_count": count,
                "chain_id": last.chain_id.to_hex(),
                "head": last.head.to_hex(),
                "root": root.to_hex(),
                "proof": hex::encode(tampered.to_bytes()),
                "valid": false,
                "refused_because": why,
            }));
        }
    }
    Ok(cases)
}

fn anchors() -> Vec<Value> {
    let request = AnchorRequest {
        timeline: hash(0x7e),
        index: 42,
        block: hash(0xb1),
    };
    let good = anchor_calldata(&request);
    let mut little_endian = good.clone();
    little_endian[48..56].copy_from_slice(&42u64.to_le_bytes());
    let case = |name: &str, calldata: &[u8], refused: Option<&str>| {
        json!({
            "name": name,
            "timeline": request.timeline.to_hex(),
            "index": request.index,
            "timeline_block": request.block.to_hex(),
            "calldata": hex::encode(calldata),
            "valid": refused.is_none(),
            "refused_because": refused,
        })
    };
    vec![
        case("anchor", &good, None),
        case(
            "index_in_little_endian",
            &little_endian,
            Some("the index is big-endian"),
        ),
    ]
}

fn generate() -> TestResult<Value> {
    let (policies, _) = policies();
    let keys: Vec<Value> = [1u8, 2, 11, 12, 13, 14, 21, 22]
        .iter()
        .map(|&s| json!({"seed": hex::encode([s; 32]), "public_key": key(s).public_key().to_hex()}))
        .collect();
    Ok(json!({
        "description": "chainiac v1 objects a client checks; see docs/protocol.md §6-§8 and docs/client.md. Keys are Ed25519 with seed 32 bytes of the key's number: roots 1 and 2, developers 11, 12, 13 (rotated to 14), build verifiers 21 and 22. Every case with valid=false must be refused.",
        "keys": keys,
        "policies": policies,
        "releases": releases(),
        "timeline_blocks": timeline()?,
        "inclusion_proofs": inclusion_proofs()?,
        "anchor_calldata": anchors(),
    }))
}

// ---------------------------------------------------------------- checking

fn independent_verify(key: &[u8], message: &[u8], signature: &[u8]) -> TestResult {
    let key = ed25519_compact::PublicKey::from_slice(key)?;
    let signature = ed25519_compact::Signature::from_slice(signature)?;
    key.verify(message, &signature)?;
    Ok(())
}

/// Runs `check` on a case and compares the outcome with the case's `valid` flag.
fn expect(case: &Value, outcome: TestResult) -> TestResult {
    let valid = case["valid"].as_bool().ok_or("missing valid")?;
    match (valid, outcome) {
        (true, Ok(())) | (false, Err(_)) => Ok(()),
        (true, Err(error)) => Err(format!("valid case refused: {error}: {case}").into()),
        (false, Ok(())) => Err(format!("tampered case accepted: {case}").into()),
    }
}

fn find<'a>(cases: &'a [Value], name: &str) -> TestResult<&'a Value> {
    cases
        .iter()
        .find(|c| c["name"] == name)
        .ok_or_else(|| format!("no case named {name}").into())
}

fn check_policies(cases: &[Value]) -> TestResult<Policy> {
    let decode = |case: &Value| -> TestResult<SignedPolicy> {
        Ok(SignedPolicy::from_bytes(&hex_of(case, "signed_policy")?)?)
    };
    for case in cases {
        let outcome = (|| -> TestResult {
            let signed = decode(case)?;
            let policy_bytes = hex_of(case, "policy")?;
            if signed.policy.to_bytes() != policy_bytes {
                return Err("the policy field is not the signed policy's policy".into());
            }
            let digest = blake3::derive_key("chainiac v1 policy", &policy_bytes);
            if hex::encode(digest) != case["policy_digest"] {
                return Err(
                    "policy_digest is not derive_key(\"chainiac v1 policy\", policy)".into(),
                );
            }
            for signature in &signed.signatures {
                independent_verify(signature.signer.as_bytes(), &digest, &signature.signature.0)?;
            }
            match case["previous"].as_str() {
                None => signed.verify_genesis()?,
                Some(previous) => {
                    let previous = decode(find(cases, previous)?)?;
                    signed.verify_change(&previous.policy)?;
                }
            }
            Ok(())
        })();
        expect(case, outcome)?;
    }
    Ok(decode(find(cases, "developer_rotation")?)?.policy)
}

fn check_releases(cases: &[Value], policy: &Policy) -> TestResult {
    for case in cases {
        let outcome = (|| -> TestResult {
            let release = Release::from_bytes(&hex_of(case, "release")?)?;
            let manifest = hex_of(case, "manifest")?;
            if release.manifest.to_bytes() != manifest {
                return Err("the manifest field is not the release's manifest".into());
            }
            let digest = blake3::derive_key("chainiac v1 release manifest", &manifest);
            if hex::encode(digest) != case["manifest_digest"] {
                return Err("manifest_digest is not the manifest's derive-key hash".into());
            }
            for attestation in &release.attestations {
                if attestation.manifest.0 != digest {
                    return Err("an attestation for another manifest".into());
                }
            }
            release.check_approvals(policy)?;
            Ok(())
        })();
        expect(case, outcome)?;
    }
    Ok(())
}

fn check_timeline(cases: &[Value]) -> TestResult {
    let tree_of = |case: &Value| -> TestResult<TimelineTree> {
        let mut tree: Option<TimelineTree> = None;
        let mut chain = vec![case];
        while let Some(previous) = chain.last().and_then(|c| c["previous"].as_str()) {
            chain.push(find(cases, previous)?);
        }
        for case in chain.iter().rev() {
            let block = TimelineBlock::from_bytes(&hex_of(case, "block")?)?;
            tree = Some(block.apply(tree.as_ref())?);
        }
        tree.ok_or_else(|| "no block".into())
    };
    for case in cases {
        let outcome = (|| -> TestResult {
            let tree = tree_of(case)?;
            let block = TimelineBlock::from_bytes(&hex_of(case, "block")?)?;
            if block.commit.epoch != case["epoch"] || block.commit.root.to_hex() != case["root"] {
                return Err("the commitment fields do not match the block".into());
            }
            if entries_json(&tree) != case["entries_after"] {
                return Err("entries_after is not the tree the block commits to".into());
            }
            Ok(())
        })();
        expect(case, outcome)?;
    }
    Ok(())
}

fn check_inclusion_proofs(cases: &[Value]) -> TestResult {
    for case in cases {
        let outcome = (|| -> TestResult {
            let proof = InclusionProof::from_bytes(&hex_of(case, "proof")?)?;
            let entry = TimelineEntry {
                chain_id: Hash::from_hex(case["chain_id"].as_str().ok_or("chain_id")?)?,
                head: Hash::from_hex(case["head"].as_str().ok_or("head")?)?,
            };
            let root = Hash::from_hex(case["root"].as_str().ok_or("root")?)?;
            if case["leaf_count"] != proof.leaf_count {
                return Err(format!("the proof is over {} leaves", proof.leaf_count).into());
            }
            proof.verify(&root, &entry)?;
            Ok(())
        })();
        expect(case, outcome)?;
    }
    Ok(())
}

fn check_anchors(cases: &[Value]) -> TestResult {
    for case in cases {
        let outcome = (|| -> TestResult {
            let request = AnchorRequest {
                timeline: Hash::from_hex(case["timeline"].as_str().ok_or("timeline")?)?,
                index: case["index"].as_u64().ok_or("index")?,
                block: Hash::from_hex(case["timeline_block"].as_str().ok_or("block")?)?,
            };
            let calldata = hex_of(case, "calldata")?;
            let mut expected = b"chainiac anchor1".to_vec();
            expected.extend_from_slice(request.timeline.as_bytes());
            expected.extend_from_slice(&request.index.to_be_bytes());
            expected.extend_from_slice(request.block.as_bytes());
            if calldata != expected || calldata != anchor_calldata(&request) {
                return Err("the calldata is not the request's".into());
            }
            Ok(())
        })();
        expect(case, outcome)?;
    }
    Ok(())
}

fn array<'a>(vectors: &'a Value, field: &str) -> TestResult<&'a [Value]> {
    Ok(vectors[field]
        .as_array()
        .ok_or_else(|| format!("missing {field}"))?)
}

fn check(vectors: &Value) -> TestResult {
    let policy = check_policies(array(vectors, "policies")?)?;
    check_releases(array(vectors, "releases")?, &policy)?;
    check_timeline(array(vectors, "timeline_blocks")?)?;
    check_inclusion_proofs(array(vectors, "inclusion_proofs")?)?;
    check_anchors(array(vectors, "anchor_calldata")?)
}

fn load() -> TestResult<Value> {
    let text = std::fs::read_to_string(path()).map_err(|e| format!("{}: {e}", path().display()))?;
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn objects_json_is_current() -> TestResult {
    let fresh = generate()?;
    if std::env::var_os("CHAINIAC_WRITE_VECTORS").is_some() {
        std::fs::write(path(), serde_json::to_string_pretty(&fresh)? + "\n")?;
    }
    if load()? != fresh {
        return Err(format!(
            "docs/vectors/{FILE} is not what this version generates; regenerate it with CHAINIAC_WRITE_VECTORS=1 cargo test --workspace -- objects_json"
        )
        .into());
    }
    Ok(())
}

#[test]
fn every_object_vector_verifies_and_every_tampered_twin_is_refused() -> TestResult {
    let vectors = load()?;
    check(&vectors)?;
    // Each section has valid cases and refused ones.
    for section in [
        "policies",
        "releases",
        "timeline_blocks",
        "inclusion_proofs",
        "anchor_calldata",
    ] {
        let cases = array(&vectors, section)?;
        assert!(cases.iter().any(|c| c["valid"] == true), "{section}");
        assert!(cases.iter().any(|c| c["valid"] == false), "{section}");
    }
    Ok(())
}

#[test]
fn the_checker_notices_a_case_whose_verdict_is_wrong() -> TestResult {
    let vectors = generate()?;
    for (section, index) in [
        ("policies", 0),
        ("policies", 5),
        ("releases", 1),
        ("timeline_blocks", 2),
        ("inclusion_proofs", 3),
        ("anchor_calldata", 1),
    ] {
        let mut wrong = vectors.clone();
        let verdict = wrong[section][index]["valid"].as_bool().ok_or("valid")?;
        wrong[section][index]["valid"] = json!(!verdict);
        assert!(check(&wrong).is_err(), "{section}[{index}]");
    }
    // A flipped byte in a valid object is refused too.
    let mut wrong = vectors;
    let bytes = hex_of(&wrong["releases"][0], "release")?;
    wrong["releases"][0]["release"] = json!(hex::encode(flip(&bytes, bytes.len() - 40)));
    assert!(check(&wrong).is_err());
    Ok(())
}
