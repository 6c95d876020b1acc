//! Build verifiers on a real third-party project: the `itoa` crate, as published on crates.io
//! (tests/fixtures), is released through a 4-node network whose policy requires two matching
//! build attestations. The publisher builds the binary with the recipe in the sandbox; two
//! verifiers rebuild it from the source in different directories and agree; the release is
//! logged and a client fetches the binary. The same release with a binary one byte off is
//! refused, naming which verifier got which hash, and nothing is logged.
//!
//! And a C project, GNU hello as Debian distributes its source (tests/fixtures), built with
//! the documented autoconf recipe by a publisher and by a verifier in separate sandboxes.

use std::time::Duration;

use chainiac_client::{Connection, select_artifact};
use chainiac_node::builder::{BuildLimits, Rebuild, Sandbox, rebuild, rebuild_keeping};
use chainiac_protocol::keys::{KeySignature, SecretKey};
use chainiac_protocol::release::{
    ArtifactRef, BinaryArtifact, BuildRecipe, Release, ReleaseManifest,
};
use chainiac_tests::{Cluster, PreparedRelease, Project, TestResult};

const CRATE: &[u8] = include_bytes!("../fixtures/itoa-1.0.19.crate");
const PLATFORM: &str = "rlib-x86_64-linux";
/// The recipe: unpack the published crate and compile it with the toolchain of the verifier's
/// host (the crate has no dependencies, so no network and no registry are needed). The demo
/// (`chainiac testnet demo`) publishes the same.
const RECIPE: &str = include_str!("../fixtures/itoa-1.0.19.recipe.sh");

fn manifest(project: &Project, version: &str, sequence: u64, binary: &[u8]) -> ReleaseManifest {
    ReleaseManifest {
        project: project.name.clone(),
        version: version.into(),
        sequence,
        source: ArtifactRef::of("itoa-1.0.19.crate", CRATE),
        recipe: BuildRecipe {
            script: RECIPE.into(),
            outputs: vec![(PLATFORM.into(), "out/libitoa.rlib".into())],
        },
        binaries: vec![BinaryArtifact {
            platform: PLATFORM.into(),
            artifact: ArtifactRef::of("libitoa.rlib", binary),
        }],
        policy: project.policy_block,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    }
}

/// A verifier's rebuild of `manifest` from `source`, in a fresh directory.
fn verify(sandbox: &Sandbox, manifest: &ReleaseManifest, source: &[u8]) -> TestResult<Rebuild> {
    let work = tempfile::tempdir()?;
    Ok(rebuild(
        sandbox,
        &BuildLimits {
            time: Duration::from_secs(300),
            ..BuildLimits::default()
        },
        manifest,
        source,
        work.path(),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_verifiers_reproduce_a_real_crate_and_a_one_byte_difference_is_refused() -> TestResult {
    let sandbox = Sandbox::system()?.with_host_rust();
    let cluster = Cluster::start(4, &[]).await?;
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let verifiers: Vec<SecretKey> = (0..2)
        .map(|_| SecretKey::generate(&mut rand::rng()))
        .collect();
    let leader = cluster.core(0);
    let mut project = Project::create_with_verifiers(
        &leader,
        "itoa",
        2,
        2,
        &roster,
        &verifiers
            .iter()
            .map(SecretKey::public_key)
            .collect::<Vec<_>>(),
        2,
    )
    .await?;
    cluster.wait_everywhere(&project.release_chain, 0).await?;

    // The publisher builds the binary with the recipe, in the sandbox, as verifiers will.
    let binary = publisher_build(&sandbox, &project)?;
    let manifest = manifest(&project, "1.0.19", 1, &binary);

    // Two verifiers rebuild it, each in its own fresh directory, and agree.
    let rebuilds = [
        verify(&sandbox, &manifest, CRATE)?,
        verify(&sandbox, &manifest, CRATE)?,
    ];
    for rebuilt in &rebuilds {
        assert!(
            rebuilt.reproduces(&manifest),
            "{:?}\n{}",
            rebuilt.failure,
            rebuilt.log_tail
        );
    }
    eprintln!(
        "verifier rebuilds took {:.1} s and {:.1} s",
        rebuilds[0].elapsed.as_secs_f64(),
        rebuilds[1].elapsed.as_secs_f64()
    );
    let release = release_of(&project, manifest, &verifiers, &rebuilds);
    with_files(release, &binary)
        .publish(&leader, project.release_chain, None)
        .await?;
    project.sequence = 1;
    cluster.wait_everywhere(&project.release_chain, 1).await?;

    // A client follows the project and fetches the verified binary.
    let connection =
        Connection::open(&[cluster.address(2).await?], Duration::from_secs(20)).await?;
    let mut followed = connection.follow(project.release_chain).await?;
    connection.sync(&mut followed, None).await?;
    let latest = followed.verify_latest()?.ok_or("no release")?;
    assert_eq!(latest.attestations.len(), 2);
    let artifact = select_artifact(&latest, Some(PLATFORM))?;
    let mirror = cluster.core(2);
    chainiac_tests::wait_for("node 2 to mirror the binary", || async {
        mirror.artifacts().has(&artifact.hash)
    })
    .await?;
    let download = connection.fetch(&artifact, &|_, _| {}).await?;
    assert_eq!(download.bytes, binary);
    connection.close().await;

    // The same release with a binary one byte off: the verifiers attest what they built, which
    // is not what the release declares; the witnesses refuse it, and nothing is logged.
    let mut tampered = binary.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    let manifest = self::manifest(&project, "1.0.20-tampered", 2, &tampered);
    let rebuilds = [
        verify(&sandbox, &manifest, CRATE)?,
        verify(&sandbox, &manifest, CRATE)?,
    ];
    assert!(rebuilds.iter().all(|r| !r.reproduces(&manifest)));
    let release = release_of(&project, manifest, &verifiers, &rebuilds);
    let refused = with_files(release, &tampered)
        .publish(&leader, project.release_chain, None)
        .await
        .err()
        .ok_or("a release whose binary no verifier reproduced was logged")?
        .to_string();
    eprintln!("refused: {refused}");
    assert!(refused.contains("reproduced the binaries"), "{refused}");
    for verifier in &verifiers {
        assert!(
            refused.contains(&verifier.public_key().to_hex()[..16]),
            "the refusal names every verifier: {refused}"
        );
    }
    assert!(
        refused.contains(&rebuilds[0].outputs[0].1.to_hex()[..16]),
        "the refusal says which hash they got: {refused}"
    );
    for node in 0..4 {
        assert_eq!(
            cluster
                .core(node)
                .store()
                .head(&project.release_chain)?
                .map(|h| h.index),
            Some(1)
        );
    }
    Ok(())
}

fn release_of(
    project: &Project,
    manifest: ReleaseManifest,
    verifiers: &[SecretKey],
    rebuilds: &[Rebuild],
) -> Release {
    let digest = manifest.digest();
    let attestations = verifiers
        .iter()
        .zip(rebuilds)
        .map(|(key, rebuilt)| rebuilt.attest(key, &manifest))
        .collect();
    Release {
        signatures: project
            .developers
            .iter()
            .take(2)
            .map(|k| KeySignature::sign(k, &digest))
            .collect(),
        manifest,
        attestations,
    }
}

/// Verifier nodes (`[verifier] enabled`): the leader of a release that lacks attestations asks
/// the policy's verifiers over libp2p; they fetch the source from the network, rebuild it in
/// their queue and answer; the release is logged with their attestations. A verifier's queue
/// survives a restart: a rebuild queued while the node was down is done when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verifier_nodes_rebuild_on_request_and_resume_their_queue_after_a_restart() -> TestResult {
    let sandbox = Sandbox::system()?.with_host_rust();
    let mut cluster = Cluster::start_with(4, &[], |i, config| {
        config.verifier.enabled = i >= 2;
    })
    .await?;
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let verifier_keys = vec![cluster.core(2).key(), cluster.core(3).key()];
    let leader = cluster.core(0);
    let mut project =
        Project::create_with_verifiers(&leader, "itoa", 2, 2, &roster, &verifier_keys, 2).await?;
    cluster.wait_everywhere(&project.release_chain, 0).await?;

    let binary = publisher_build(&sandbox, &project)?;
    let manifest = manifest(&project, "1.0.19", 1, &binary);
    // Published with developer signatures only: the leader gathers the attestations.
    let publishing = std::time::Instant::now();
    let release = release_of(&project, manifest, &[], &[]);
    with_files(release, &binary)
        .publish(&leader, project.release_chain, None)
        .await?;
    project.sequence = 1;
    eprintln!(
        "release latency with k = 2 verifier nodes (attestations gathered, source fetched, two rebuilds, signing round): {:.2} s",
        publishing.elapsed().as_secs_f64()
    );
    cluster.wait_everywhere(&project.release_chain, 1).await?;
    let logged = cluster
        .core(1)
        .store()
        .block_at(&project.release_chain, 1)?
        .ok_or("release block")?;
    let logged = <Release as chainiac_protocol::encoding::Decode>::from_bytes(logged.payload())?;
    let attesters: Vec<_> = logged.attestations.iter().map(|a| a.verifier).collect();
    assert_eq!(logged.attestations.len(), 2, "{attesters:?}");
    assert!(
        logged
            .attestations
            .iter()
            .all(|a| a.reproduces(&logged.manifest))
    );
    assert!(verifier_keys.iter().all(|k| attesters.contains(k)));

    // A verifier builds only what a policy it holds lists it for; a plain node builds nothing.
    let mut stranger = self::manifest(&project, "9.9.9", 9, &binary);
    stranger.policy = chainiac_protocol::Hash([7; 32]);
    // And it builds only what the developer threshold of the policy in force signed: a peer
    // cannot make it run a recipe nobody approved.
    let unsigned = next_manifest(&project, &binary);
    let one_signature = vec![chainiac_protocol::keys::KeySignature::sign(
        &project.developers[0],
        &unsigned.digest(),
    )];
    for (node, manifest, signatures, expected) in [
        (2, stranger, Vec::new(), "does not hold policy block"),
        (
            1,
            next_manifest(&project, &binary),
            Vec::new(),
            "not a build verifier",
        ),
        (
            2,
            unsigned.clone(),
            Vec::new(),
            "not approved by its developers",
        ),
        (2, unsigned, one_signature, "not approved by its developers"),
    ] {
        let peer = chainiac_net::peer_id_of(&cluster.core(node).key())?;
        let answer = leader
            .net()
            .request(
                peer,
                chainiac_net::wire::Request::Attest {
                    manifest: Box::new(manifest),
                    signatures,
                },
            )
            .await?;
        match answer {
            chainiac_net::wire::Response::Refused(reason) => {
                assert!(reason.contains(expected), "node {node}: {reason}");
            }
            other => return Err(format!("node {node} answered {other:?}").into()),
        }
    }

    // Node 3 is down when the next release is queued in its store; back up, it rebuilds it
    // without being asked again.
    cluster.stop_node(3).await;
    let next = next_manifest(&project, &binary);
    let db = cluster.data_dir(3).join("db");
    let started = std::time::Instant::now();
    chainiac_tests::wait_for("node 3's store to close", || async {
        chainiac_node::store::Store::open(&db).is_ok()
    })
    .await?;
    eprintln!("store closed after {:?}", started.elapsed());
    {
        let store = chainiac_node::store::Store::open(&db)?;
        store.queue_build(&next)?;
    }
    cluster.start_node(3).await?;
    let restarted = cluster.core(3);
    chainiac_tests::wait_for(
        "the queued rebuild to be attested after the restart",
        || async {
            restarted
                .store()
                .build_attestation(&next.digest())
                .ok()
                .flatten()
                .is_some()
        },
    )
    .await?;
    let attestation = restarted
        .store()
        .build_attestation(&next.digest())?
        .ok_or("attestation")?;
    assert!(attestation.reproduces(&next));
    assert!(!restarted.store().build_queued(&next.digest())?);
    Ok(())
}

fn next_manifest(project: &Project, binary: &[u8]) -> ReleaseManifest {
    manifest(project, "1.0.20", 2, binary)
}

/// The publisher's build of the crate: the recipe run in the sandbox, as verifiers will run it;
/// the binary.
fn publisher_build(sandbox: &Sandbox, project: &Project) -> TestResult<Vec<u8>> {
    let draft = manifest(project, "1.0.19", 1, b"not built yet");
    Ok(build_as_publisher(sandbox, &draft, CRATE)?.1)
}

/// Runs `draft`'s recipe on `source` in the sandbox and returns the build with the binary of
/// the first platform the manifest declares.
fn build_as_publisher(
    sandbox: &Sandbox,
    draft: &ReleaseManifest,
    source: &[u8],
) -> TestResult<(Rebuild, Vec<u8>)> {
    let kept = tempfile::tempdir()?;
    let built = rebuild_keeping(
        sandbox,
        &BuildLimits::default(),
        draft,
        source,
        tempfile::tempdir()?.path(),
        Some(kept.path()),
    )?;
    assert!(
        built.failure.is_none(),
        "{:?}\n{}",
        built.failure,
        built.log_tail
    );
    let platform = &draft.binaries.first().ok_or("no binary declared")?.platform;
    let binary = std::fs::read(kept.path().join(platform))?;
    Ok((built, binary))
}

/// `release` with the files it names: the crate and `binary`.
fn with_files(release: Release, binary: &[u8]) -> PreparedRelease {
    PreparedRelease {
        files: vec![
            (release.manifest.source.clone(), CRATE.to_vec()),
            (
                release.manifest.binaries[0].artifact.clone(),
                binary.to_vec(),
            ),
        ],
        release,
    }
}

const HELLO: &[u8] = include_bytes!("../fixtures/hello_2.10.orig.tar.gz");
/// The C recipe of docs/verifiers.md: configure and make with the host's C compiler.
const HELLO_RECIPE: &str = "tar xzf \"$SOURCE\"\n\
    cd hello-2.10\n\
    ./configure --disable-nls\n\
    make CFLAGS=\"-O2 -ffile-prefix-map=/build=.\"\n";

fn hello_manifest(binary: &[u8]) -> ReleaseManifest {
    ReleaseManifest {
        project: "hello".into(),
        version: "2.10".into(),
        sequence: 1,
        source: ArtifactRef::of("hello_2.10.orig.tar.gz", HELLO),
        recipe: BuildRecipe {
            script: HELLO_RECIPE.into(),
            outputs: vec![("linux-x86_64".into(), "hello-2.10/hello".into())],
        },
        binaries: vec![BinaryArtifact {
            platform: "linux-x86_64".into(),
            artifact: ArtifactRef::of("hello", binary),
        }],
        policy: chainiac_protocol::Hash([0; 32]),
        timestamp: 1_700_000_000,
    }
}

#[test]
fn a_c_project_from_debian_is_rebuilt_identically_by_publisher_and_verifier() -> TestResult {
    // No host Rust: a C build needs only /usr (gcc, make, sh).
    let sandbox = Sandbox::system()?;
    let (published, binary) =
        build_as_publisher(&sandbox, &hello_manifest(b"not built yet"), HELLO)?;
    assert!(
        binary.starts_with(b"\x7fELF"),
        "the output is an executable"
    );

    let manifest = hello_manifest(&binary);
    let verified = verify(&sandbox, &manifest, HELLO)?;
    assert!(
        verified.reproduces(&manifest),
        "{:?}\n{}",
        verified.failure,
        verified.log_tail
    );
    assert_eq!(verified.outputs, published.outputs);
    eprintln!(
        "hello 2.10: publisher build {:.1} s, verifier rebuild {:.1} s",
        published.elapsed.as_secs_f64(),
        verified.elapsed.as_secs_f64()
    );
    Ok(())
}
