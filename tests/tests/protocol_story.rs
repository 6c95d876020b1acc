//! The whole release story on the protocol alone (no network): a project's policy and release
//! chains witnessed by a roster, releases checked against the policy in force, a developer key
//! rotation, a witness roster change, and a light client that catches up with skip proofs and a
//! timeline inclusion proof, then checks the binary it fetched.

use chainiac_protocol::cosi::{Roster, RosterMember, local_round};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::{KeySignature, SecretKey};
use chainiac_protocol::policy::{Policy, SignedPolicy};
use chainiac_protocol::release::{
    ArtifactRef, BinaryArtifact, BuildAttestation, BuildOutcome, BuildRecipe, PolicyInForce,
    Release, ReleaseManifest, TimeBounds,
};
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, SkipBlock, SkipChain, TrustedBlock};
use chainiac_protocol::timeline::{Freshness, TimelineCommit, TimelineEntry, TimelineTree};
use chainiac_protocol::{Error, Hash};
use rand::SeedableRng;
use rand::rngs::StdRng;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const START: u64 = 1_800_000_000;

/// Every key of the story, and a seeded RNG for signing rounds.
struct World {
    witnesses: Vec<SecretKey>,
    roots: Vec<SecretKey>,
    developers: Vec<SecretKey>,
    verifiers: Vec<SecretKey>,
    rng: StdRng,
}

impl World {
    fn new() -> Self {
        let mut rng = StdRng::seed_from_u64(2017);
        let mut keys = |n| {
            (0..n)
                .map(|_| SecretKey::generate(&mut rng))
                .collect::<Vec<_>>()
        };
        let witnesses = keys(7);
        let roots = keys(2);
        let developers = keys(4);
        let verifiers = keys(2);
        Self {
            witnesses,
            roots,
            developers,
            verifiers,
            rng: StdRng::seed_from_u64(2018),
        }
    }

    fn roster(&self, members: std::ops::Range<usize>) -> Result<Roster, Error> {
        Roster::with_default_threshold(
            self.witnesses[members]
                .iter()
                .map(RosterMember::from_secret)
                .collect(),
        )
    }

    /// Witnesses validate nothing here beyond the chain rules (the callers check payload rules
    /// first, as the node's witnesses do), then sign every link into the block.
    fn append(
        &mut self,
        chain: &mut SkipChain,
        roster: Option<Roster>,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        let block = chain.propose(roster, payload)?;
        let mut links = Vec::new();
        for request in chain.link_requests(&block)? {
            let roster = chain
                .roster(request.from_index)
                .ok_or(Error::MissingBlock {
                    index: request.from_index,
                })?
                .clone();
            let signers: Vec<&SecretKey> = roster
                .members()
                .iter()
                .filter_map(|m| self.witnesses.iter().find(|w| w.public_key() == m.key))
                .collect();
            // One witness of each round is offline: the threshold still signs.
            let participants: Vec<usize> = (1..roster.len()).collect();
            let signature = local_round(
                &roster,
                &signers,
                request.message.as_bytes(),
                &participants,
                &mut self.rng,
            )?;
            links.push(ForwardLink {
                chain_id: chain.id(),
                from: request.from,
                to: request.to,
                level: request.level,
                signature,
            });
        }
        chain.append(block, links)
    }
}

fn policy_of(chain: &SkipChain) -> Result<Policy, Error> {
    Ok(SignedPolicy::from_bytes(chain.head().payload())?.policy)
}

fn sign_policy(policy: Policy, signers: &[&SecretKey]) -> SignedPolicy {
    let digest = policy.digest();
    SignedPolicy {
        policy,
        signatures: signers
            .iter()
            .map(|s| KeySignature::sign(s, &digest))
            .collect(),
    }
}

fn binary(version: &str) -> Vec<u8> {
    format!("\x7fELF hello {version}").into_bytes()
}

fn make_release(
    world: &World,
    policy_chain: &SkipChain,
    version: &str,
    sequence: u64,
    signers: &[&SecretKey],
    time: u64,
) -> Release {
    let manifest = ReleaseManifest {
        project: "hello".into(),
        version: version.into(),
        sequence,
        source: ArtifactRef::of("hello.tar.gz", format!("source {version}").as_bytes()),
        recipe: BuildRecipe {
            script: "./configure && make".into(),
            outputs: vec![("x86_64-linux".into(), "hello".into())],
        },
        binaries: vec![BinaryArtifact {
            platform: "x86_64-linux".into(),
            artifact: ArtifactRef::of("hello", &binary(version)),
        }],
        policy: policy_chain.head().hash(),
        timestamp: time,
    };
    let digest = manifest.digest();
    let attestations = world
        .verifiers
        .iter()
        .map(|v| {
            BuildAttestation::sign(
                v,
                digest,
                BuildOutcome::Built,
                manifest.binary_hashes(),
                Hash::of_artifact(b"log"),
            )
        })
        .collect();
    Release {
        signatures: signers
            .iter()
            .map(|s| KeySignature::sign(s, &digest))
            .collect(),
        attestations,
        manifest,
    }
}

/// What witnesses do with a release: check it against the policy in force and the previous
/// release, then log it.
fn publish(
    world: &mut World,
    policy_chain: &SkipChain,
    releases: &mut SkipChain,
    release: &Release,
    now: u64,
) -> Result<(), Error> {
    publish_with_roster(world, policy_chain, releases, release, now, None)
}

/// Publishes a release, optionally with a new witness roster for the release chain.
fn publish_with_roster(
    world: &mut World,
    policy_chain: &SkipChain,
    releases: &mut SkipChain,
    release: &Release,
    now: u64,
    roster: Option<Roster>,
) -> Result<(), Error> {
    let policy = policy_of(policy_chain)?;
    let previous = match releases.len() {
        1 => None,
        _ => Some(Release::from_bytes(releases.head().payload())?.manifest),
    };
    release.validate(
        PolicyInForce {
            policy: &policy,
            block: policy_chain.head().hash(),
        },
        previous.as_ref(),
        now,
        TimeBounds::default(),
    )?;
    world.append(releases, roster, release.to_bytes())
}

#[test]
fn publish_rotate_and_catch_up() -> TestResult {
    let mut world = World::new();
    let params = ChainParams::new(2, 32)?;

    // The project: policy genesis signed by both root keys; developers 0..3, 2 of 3 must sign.
    let genesis_policy = Policy {
        project: "hello".into(),
        sequence: 0,
        previous: None,
        root_keys: world.roots.iter().map(SecretKey::public_key).collect(),
        root_threshold: 2,
        developer_keys: world.developers[..3]
            .iter()
            .map(SecretKey::public_key)
            .collect(),
        developer_threshold: 2,
        build_verifiers: world.verifiers.iter().map(SecretKey::public_key).collect(),
        attestations_required: 2,
        witnesses: world.roster(0..4)?.hash(),
        timeline: None,
    };
    let signed = sign_policy(genesis_policy, &[&world.roots[0], &world.roots[1]]);
    signed.verify_genesis()?;
    let mut policy_chain = SkipChain::new(SkipBlock::genesis(
        params,
        world.roster(0..4)?,
        signed.to_bytes(),
    )?)?;
    let mut releases = SkipChain::new(SkipBlock::genesis(
        params,
        world.roster(0..4)?,
        policy_chain.id().0.to_vec(),
    )?)?;

    // A client pins both genesis blocks (as a package manager ships them) and goes offline.
    let client_policy = TrustedBlock::genesis(policy_chain.genesis().clone())?;
    let client_releases = TrustedBlock::genesis(releases.genesis().clone())?;

    // Three releases, each by two developers.
    let mut now = START;
    let devs = &world.developers;
    let r1 = make_release(
        &world,
        &policy_chain,
        "1.0.0",
        1,
        &[&devs[0], &devs[1]],
        now,
    );
    let r2 = make_release(
        &world,
        &policy_chain,
        "1.1.0",
        2,
        &[&devs[1], &devs[2]],
        now + 10,
    );
    let r3 = make_release(
        &world,
        &policy_chain,
        "1.2.0",
        3,
        &[&devs[0], &devs[2]],
        now + 20,
    );
    for release in [&r1, &r2, &r3] {
        publish(&mut world, &policy_chain, &mut releases, release, now + 30)?;
    }
    // A replay of release 2 and a release with a single signature are refused; nothing is logged.
    assert!(matches!(
        publish(&mut world, &policy_chain, &mut releases, &r2, now + 30),
        Err(Error::ReplayedRelease { .. })
    ));
    let lonely = make_release(
        &world,
        &policy_chain,
        "1.3.0",
        4,
        &[&world.developers[0]],
        now + 30,
    );
    assert!(matches!(
        publish(&mut world, &policy_chain, &mut releases, &lonely, now + 30),
        Err(Error::NotEnoughSignatures { .. })
    ));
    assert_eq!(releases.len(), 4);

    // Developer 0 leaves, developer 3 joins: approved by developers 1 and 2 under the old policy.
    let old = policy_of(&policy_chain)?;
    let mut rotated = old.clone();
    rotated.sequence = 1;
    rotated.previous = Some(old.digest());
    rotated.developer_keys = vec![
        world.developers[1].public_key(),
        world.developers[2].public_key(),
        world.developers[3].public_key(),
    ];
    let change = sign_policy(rotated, &[&world.developers[1], &world.developers[2]]);
    change.verify_change(&old)?;
    world.append(&mut policy_chain, None, change.to_bytes())?;

    // The witnesses also change (witnesses 3..7, approved by the old roster) with the next release.
    let new_roster = world.roster(3..7)?;

    now += 3600;
    // A release signed by the departed developer is refused, naming the key.
    let stale_key = make_release(
        &world,
        &policy_chain,
        "2.0.0",
        4,
        &[&world.developers[0], &world.developers[1]],
        now,
    );
    let refused = publish(&mut world, &policy_chain, &mut releases, &stale_key, now);
    assert!(matches!(
        refused,
        Err(Error::UnknownSigner {
            role: "developer",
            ..
        })
    ));
    // A release made against the old policy block is refused too.
    let old_policy_block = policy_chain
        .block(0)
        .map(SkipBlock::hash)
        .ok_or("no policy genesis")?;
    let mut against_old = make_release(
        &world,
        &policy_chain,
        "2.0.0",
        4,
        &[&world.developers[1], &world.developers[3]],
        now,
    );
    against_old.manifest.policy = old_policy_block;
    let digest = against_old.manifest.digest();
    against_old.signatures = [&world.developers[1], &world.developers[3]]
        .iter()
        .map(|s| KeySignature::sign(s, &digest))
        .collect();
    assert!(matches!(
        publish(&mut world, &policy_chain, &mut releases, &against_old, now),
        Err(Error::StalePolicy { .. })
    ));
    // The right one goes through.
    let r4 = make_release(
        &world,
        &policy_chain,
        "2.0.0",
        4,
        &[&world.developers[1], &world.developers[3]],
        now,
    );
    publish_with_roster(
        &mut world,
        &policy_chain,
        &mut releases,
        &r4,
        now,
        Some(new_roster.clone()),
    )?;
    assert_eq!(releases.len(), 5);

    // The timeline of this epoch commits to both heads.
    let entries = vec![
        TimelineEntry {
            chain_id: policy_chain.id(),
            head: policy_chain.head().hash(),
        },
        TimelineEntry {
            chain_id: releases.id(),
            head: releases.head().hash(),
        },
    ];
    let tree = TimelineTree::build(entries)?;
    let commit = TimelineCommit::new(1, now + 5, &tree);

    // The client comes back: skip proofs from what it trusts to the heads, checked with nothing
    // but its pinned blocks.
    let policy_head = policy_chain
        .skip_proof(0, policy_chain.len() - 1)?
        .verify(&client_policy)?;
    let release_proof = releases.skip_proof(0, releases.len() - 1)?;
    let proof_bytes = release_proof.to_bytes();
    let release_head = chainiac_protocol::skipchain::SkipProof::from_bytes(&proof_bytes)?
        .verify(&client_releases)?;
    assert!(
        release_proof.steps.len() <= 3,
        "{} steps",
        release_proof.steps.len()
    );
    assert_eq!(
        release_head.roster().hash(),
        new_roster.hash(),
        "the client followed the roster change"
    );

    // The heads it got are the ones in a fresh timeline.
    let (entry, inclusion) = tree
        .prove(&releases.id())
        .ok_or("release chain not in timeline")?;
    assert_eq!(entry.head, release_head.block().hash());
    commit.check_head(&entry, &inclusion, now + 60, Freshness::default())?;
    // A timeline older than the bound is refused.
    assert!(matches!(
        commit.check_head(&entry, &inclusion, now + 2 * 3600, Freshness::default()),
        Err(Error::StaleTimeline { .. })
    ));

    // The client reads the latest release, checks it is signed under the current policy, and
    // checks the binary it downloaded from an untrusted mirror.
    let latest = Release::from_bytes(release_head.block().payload())?;
    let current_policy = SignedPolicy::from_bytes(policy_head.block().payload())?.policy;
    assert_eq!(latest.manifest.version, "2.0.0");
    assert_eq!(latest.manifest.policy, policy_head.block().hash());
    let signers = chainiac_protocol::keys::count_valid_signers(
        &latest.signatures,
        &current_policy.developer_keys,
        &latest.manifest.digest(),
        "developer",
    )?;
    assert!(signers >= current_policy.developer_threshold as usize);
    let artifact = &latest.manifest.binaries[0].artifact;
    artifact.check(&binary("2.0.0"))?;
    assert!(matches!(
        artifact.check(&binary("2.0.1")),
        Err(Error::ArtifactMismatch { .. })
    ));
    Ok(())
}

#[test]
fn a_client_far_behind_needs_a_logarithmic_proof() -> TestResult {
    let mut world = World::new();
    let params = ChainParams::new(2, 32)?;
    let mut chain = SkipChain::new(SkipBlock::genesis(
        params,
        world.roster(0..4)?,
        b"log".to_vec(),
    )?)?;
    for index in 1..=300u64 {
        // three roster changes along the way
        let change = match index {
            50 => Some(world.roster(1..5)?),
            150 => Some(world.roster(2..6)?),
            250 => Some(world.roster(3..7)?),
            _ => None,
        };
        world.append(&mut chain, change, index.to_le_bytes().to_vec())?;
    }
    let trusted = chain.trusted(1)?;
    let proof = chain.skip_proof(1, 300)?;
    let head = proof.verify(&trusted)?;
    assert_eq!(head.block().index(), 300);
    assert_eq!(head.roster().hash(), world.roster(3..7)?.hash());
    // 2·(base-1)·(ceil(log2(300)) + 1) = 20
    assert!(
        proof.steps.len() <= 20,
        "{} steps for 299 blocks",
        proof.steps.len()
    );
    Ok(())
}
