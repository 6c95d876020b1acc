//! `chainiac testnet demo`: the whole story on a local 4-node testnet, with readable progress.
//!
//! A project with three developers (2-of-3) publishes three releases; a client follows it after
//! the first; a developer key is rotated; releases that break the rules are refused; the client,
//! offline since the first release, catches up with one skip proof, verifies the latest release
//! and fetches its binary from the peers, checking every byte.
//!
//! Where the machine can run sandboxed builds, the last node is also a build verifier: a second
//! project, a real crate vendored in the repository, is rebuilt by it from source before the
//! witnesses cosign a release, and a release whose binary was tampered with is refused. Where
//! anvil is installed (`testnet/setup.sh` installs it), the timeline is anchored in it and the
//! client checks the newest anchor. Each part says why when it is left out.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chainiac_api::http::{Nodes, get_json};
use chainiac_api::types::{ChainJson, RosterMemberJson, TimelineEntryJson, TimelineJson};
use chainiac_cli::publisher::{
    Bundle, CreateOptions, PolicyChange, ProjectFile, PublisherError, ReleaseOptions,
    TimelineChoice, change_policy, create_project, create_release, load_key, publish_release,
    sign_release,
};
use chainiac_client::{ClientState, Connection, select_artifact};
use chainiac_node::builder::{BuildLimits, Sandbox, rebuild_keeping};
use chainiac_protocol::Hash;
use chainiac_protocol::encoding::Decode;
use chainiac_protocol::keys::PublicKey;
use chainiac_protocol::release::{
    ArtifactRef, BinaryArtifact, BuildRecipe, Release, ReleaseManifest,
};

use super::client::{AnchorCheck, check_newest_anchor};
use super::testnet::{self, TestnetShape};

/// The real project the verifier node rebuilds: the `itoa` crate 1.0.19 exactly as published
/// on crates.io (MIT OR Apache-2.0), vendored for `tests/tests/verifiers.rs` too. It has no
/// dependencies, so it builds in the sandbox without a network, in well under a second.
const ITOA_CRATE: &[u8] = include_bytes!("../../../tests/fixtures/itoa-1.0.19.crate");
const ITOA_OUTPUT: &str = "out/libitoa.rlib";
/// The recipe `tests/tests/verifiers.rs` releases too: unpack the crate, compile it with rustc.
const ITOA_RECIPE: &str = include_str!("../../../tests/fixtures/itoa-1.0.19.recipe.sh");

/// The platform label of the itoa build: an rlib for this machine's architecture.
fn itoa_platform() -> String {
    format!("rlib-{}-linux", std::env::consts::ARCH)
}

/// The developers' own build of itoa, made in the build sandbox exactly as verifiers will run
/// it (same recipe, same fixed paths and environment).
#[derive(Debug)]
struct DevelopersBuild {
    /// Where the source archive was written.
    source: PathBuf,
    /// The built rlib.
    binary: PathBuf,
    /// How long the build ran.
    elapsed: Duration,
}

/// Builds itoa in the sandbox under `work`. This is also the test that a verifier node can run
/// here: bubblewrap, namespaces, limits and a Rust toolchain inside the sandbox.
fn developers_build(work: &Path) -> anyhow::Result<DevelopersBuild> {
    testnet::sandboxed_builds().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(work)?;
    let source = work.join("itoa-1.0.19.crate");
    std::fs::write(&source, ITOA_CRATE)?;
    let platform = itoa_platform();
    // Only the source and the recipe matter to the build; the rest is filled in when the
    // release is prepared. rustc writes no date into an rlib, so SOURCE_DATE_EPOCH (the
    // manifest's time) does not change the bytes.
    let draft = ReleaseManifest {
        project: "itoa".into(),
        version: "1.0.19".into(),
        sequence: 1,
        source: ArtifactRef::of("itoa-1.0.19.crate", ITOA_CRATE),
        recipe: BuildRecipe {
            script: ITOA_RECIPE.into(),
            outputs: vec![(platform.clone(), ITOA_OUTPUT.into())],
        },
        binaries: vec![BinaryArtifact {
            platform: platform.clone(),
            artifact: ArtifactRef::of("libitoa.rlib", b"not built yet"),
        }],
        policy: Hash([0; 32]),
        timestamp: 0,
    };
    let kept = work.join("built");
    let built = rebuild_keeping(
        &Sandbox::system()?.with_host_rust(),
        &BuildLimits::default(),
        &draft,
        ITOA_CRATE,
        &work.join("builds"),
        Some(&kept),
    )?;
    if let Some(failure) = &built.failure {
        // The log's last line says why (bubblewrap's refusal, a missing rustc, ...).
        let last = built
            .log_tail
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("(empty log)");
        bail!(
            "the sandboxed build of itoa failed: {failure}: {}",
            last.trim()
        );
    }
    let binary = work.join("libitoa.rlib");
    std::fs::copy(kept.join(&platform), &binary)?;
    Ok(DevelopersBuild {
        source,
        binary,
        elapsed: built.elapsed,
    })
}

/// The parts of the demo this machine can show besides the release story.
#[derive(Debug)]
struct Extras {
    /// The developers' sandboxed build (so a verifier node can run here), or why not.
    verifier: Result<DevelopersBuild, String>,
    /// anvil is installed, or why not.
    anvil: Result<(), String>,
}

impl Extras {
    fn probe(dir: &Path) -> Self {
        Self {
            verifier: developers_build(&dir.join("work-itoa")).map_err(|e| format!("{e:#}")),
            anvil: chainiac_anchor::anvil_binary()
                .map(|_| ())
                .map_err(|error| error.to_string()),
        }
    }
}

/// The demo's timeline epoch: short, so that the client need not wait long for new heads to be
/// committed.
const DEMO_EPOCH_SECONDS: u64 = 1;

/// Waits until the testnet's timeline commits to the current head of `chain`.
fn wait_for_timeline(node: std::net::SocketAddr, chain: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head: ChainJson = get_json(node, &format!("/chains/{chain}"))?;
        let timelines: Vec<TimelineJson> = get_json(node, "/timeline")?;
        for timeline in timelines {
            let id = timeline.chain_id;
            // Not listed yet is an error answer; keep waiting.
            if let Ok(entry) =
                get_json::<TimelineEntryJson>(node, &format!("/timeline/{id}/chains/{chain}"))
                && entry.head == head.head.hash
            {
                return Ok(entry.epoch);
            }
        }
        if Instant::now() > deadline {
            bail!("the timeline did not commit to the head of {chain} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Story {
    started: Instant,
    step: u32,
}

impl Story {
    fn step(&mut self, text: &str) {
        self.step += 1;
        println!(
            "\n[{:>5.1} s] {}. {text}",
            self.started.elapsed().as_secs_f64(),
            self.step
        );
    }
}

fn say(text: impl AsRef<str>) {
    println!("         {}", text.as_ref());
}

/// Writes the source archive and the binary of `version` into `work`.
fn make_artifacts(work: &Path, version: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(work)?;
    let source = work.join(format!("hello-{version}.tar"));
    std::fs::write(
        &source,
        format!("int main(void) {{ puts(\"hello {version}\"); return 0; }}\n").repeat(64),
    )?;
    let binary = work.join(format!("hello-{version}-linux-x86_64"));
    // A binary large enough to travel in several verified slices.
    let mut bytes = Vec::with_capacity(3 << 20);
    let seed = Hash::of_artifact(version.as_bytes());
    while bytes.len() < (3 << 20) + 12345 {
        bytes.extend_from_slice(seed.as_bytes());
    }
    std::fs::write(&binary, bytes)?;
    Ok((source, binary))
}

fn prepare(
    project_dir: &Path,
    nodes: &Nodes,
    work: &Path,
    version: &str,
) -> anyhow::Result<Bundle> {
    let (source, binary) = make_artifacts(work, version)?;
    Ok(create_release(
        project_dir,
        nodes,
        &ReleaseOptions {
            version,
            source: &source,
            binaries: &[("linux-x86_64".into(), binary)],
            script: "cc -O2 -o hello hello.c".into(),
            outputs: vec![("linux-x86_64".into(), "hello".into())],
        },
    )?)
}

fn sign(project_dir: &Path, bundle: &mut Bundle, keys: &[&str]) -> anyhow::Result<()> {
    for key in keys {
        let identity = load_key(project_dir, key)?;
        sign_release(bundle, &identity)?;
    }
    Ok(())
}

fn expect_refusal(result: Result<u64, PublisherError>, what: &str) -> anyhow::Result<()> {
    expect_refusal_because(result, what, "")
}

/// [`expect_refusal`], where the witnesses' reason must say `because` (a refusal for another
/// reason, a timeout say, is not the story being told).
fn expect_refusal_because(
    result: Result<u64, PublisherError>,
    what: &str,
    because: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(index) => bail!("{what} was logged at index {index}; it must be refused"),
        Err(error) => {
            let cause = anyhow::Error::from(error).root_cause().to_string();
            let reason = cause
                .split_once(" answered 400: ")
                .map_or(cause.as_str(), |(_, reason)| reason);
            if !reason.contains(because) {
                bail!("{what} was refused, but not because {because}: {reason}");
            }
            say(format!("refused, as it must be: {reason}"));
            Ok(())
        }
    }
}

/// Runs the demo in `dir` (created; a testnet already there is refused). Leaves the testnet up
/// when `keep` is set.
pub(crate) fn run(dir: &Path, keep: bool) -> anyhow::Result<()> {
    let mut story = Story {
        started: Instant::now(),
        step: 0,
    };
    story.step("Bring up a local testnet of 4 nodes on 127.0.0.1");
    let extras = Extras::probe(dir);
    match &extras.verifier {
        Ok(_) => say("node-3 is also a build verifier: it rebuilds releases in a sandbox"),
        Err(reason) => say(format!(
            "no build verifier in this demo: {reason} (testnet/setup.sh installs what it needs)"
        )),
    }
    match &extras.anvil {
        Ok(()) => say("the timeline is anchored in a local Ethereum node (anvil)"),
        Err(reason) => say(format!(
            "no anchoring in this demo: {reason} (testnet/setup.sh installs anvil)"
        )),
    }
    let net = testnet::up(
        dir,
        TestnetShape {
            nodes: 4,
            epoch_seconds: DEMO_EPOCH_SECONDS,
            anvil: extras.anvil.is_ok(),
            verifiers: usize::from(extras.verifier.is_ok()),
        },
    )?;
    let dir = dir.canonicalize()?;
    let result = story_body(&mut story, &dir, &net).and_then(|()| {
        if let Ok(build) = &extras.verifier {
            build_verification(&mut story, &dir, &net, build)?;
        }
        if let Some(anvil) = &net.anvil {
            check_anchor(&mut story, &net, &anvil.url)?;
        }
        Ok(())
    });
    if keep {
        println!("\nThe testnet is still running (--keep). Explore it with:");
        println!("  chainiac testnet status --dir {}", dir.display());
        println!("  chainiac testnet logs --dir {}", dir.display());
        println!("  chainiac testnet down --dir {}", dir.display());
    } else {
        story.step("Take the testnet down");
        testnet::down(&dir)?;
    }
    result?;
    println!(
        "\nDone in {:.1} s: every release was witnessed by the roster, and the client verified what it fetched.",
        story.started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Creates the demo's project `name` in `dir/project-NAME`: 1 root key, 3 developers of whom 2
/// sign each release, witnessed by the testnet's roster and committed to its timeline; each
/// release needs one reproducing build by each of `verifiers`.
fn create_demo_project(
    dir: &Path,
    net: &testnet::Testnet,
    nodes: &Nodes,
    name: &str,
    verifiers: &[PublicKey],
) -> anyhow::Result<(PathBuf, ProjectFile)> {
    let project_dir = dir.join(format!("project-{name}"));
    let project = create_project(&CreateOptions {
        name,
        dir: &project_dir,
        developers: 3,
        developer_keys: &[],
        threshold: 2,
        roots: 1,
        root_threshold: 1,
        roster: &net.roster,
        nodes,
        verifiers,
        attestations: u32::try_from(verifiers.len())?,
        api_token_file: Some(&testnet::Testnet::token_file(dir)),
        timeline: TimelineChoice::Chain(net.timeline_id()?),
    })?;
    Ok((project_dir, project))
}

fn story_body(story: &mut Story, dir: &Path, net: &testnet::Testnet) -> anyhow::Result<()> {
    let apis = net.apis();
    let nodes = net.writable_nodes(dir)?;
    for node in &net.nodes {
        say(format!(
            "{}  api http://{}  {}",
            node.name, node.api, node.p2p
        ));
    }
    let work = dir.join("work");

    story.step("Create project \"hello\": 1 root key, 3 developers, 2 signatures per release");
    let (project_dir, project) = create_demo_project(dir, net, &nodes, "hello", &[])?;
    say(format!("policy chain  {}", project.policy_chain));
    say(format!(
        "release chain {} (what clients pin)",
        project.release_chain
    ));
    say(format!("keys in {}", project_dir.join("keys").display()));

    story.step("Publish release 1.0.0, signed by dev-1 and dev-2");
    let mut bundle = prepare(&project_dir, &nodes, &work, "1.0.0")?;
    sign(&project_dir, &mut bundle, &["dev-1", "dev-2"])?;
    let index = publish_release(&project_dir, &nodes, &bundle, None)?;
    say(format!(
        "logged as block {index} of the release chain, cosigned by the witnesses"
    ));

    story.step("A client follows the project and syncs (then goes offline)");
    let client_dir = dir.join("client");
    let runtime = tokio::runtime::Runtime::new()?;
    let release_chain = Hash::from_hex(&project.release_chain)?;
    let peers = net.peers()?;
    let epoch = wait_for_timeline(apis[0], &project.release_chain)?;
    say(format!(
        "the timeline's epoch {epoch} commits to release 1.0.0"
    ));
    runtime.block_on(async {
        let connection = Connection::open(&peers, Duration::from_secs(20)).await?;
        let mut state = ClientState {
            peers: peers.clone(),
            ..ClientState::default()
        };
        let freshness = state.freshness();
        let mut followed = connection.follow(release_chain).await?;
        let (report, view) = connection
            .sync_project(
                &mut followed,
                state.timeline.as_mut(),
                &mut state.policy_timelines,
                freshness,
            )
            .await?;
        if let Some(view) = view {
            say(format!(
                "the client learned timeline {} from the verified policy and checked both chains' heads against epoch {}",
                &view.chain.to_hex()[..16],
                view.block.commit.epoch
            ));
        }
        say(format!(
            "client trusts {} {} (release-chain block {})",
            followed.name,
            report.version.as_deref().unwrap_or("-"),
            report.to_index
        ));
        state.projects.insert(followed.name.clone(), followed);
        state.save(&client_dir)?;
        connection.close().await;
        anyhow::Ok(())
    })?;

    story.step("Publish release 1.1.0, signed by dev-1 and dev-3");
    let mut release_110 = prepare(&project_dir, &nodes, &work, "1.1.0")?;
    sign(&project_dir, &mut release_110, &["dev-1", "dev-3"])?;
    let index = publish_release(&project_dir, &nodes, &release_110, None)?;
    say(format!("logged as block {index}"));

    story.step("Replay release 1.1.0 (the same signed release, submitted again)");
    expect_refusal(
        publish_release(&project_dir, &nodes, &release_110, None),
        "a replayed release",
    )?;

    story.step("Try to publish 1.2.0 with only one signature (dev-1)");
    let mut bundle = prepare(&project_dir, &nodes, &work, "1.2.0")?;
    sign(&project_dir, &mut bundle, &["dev-1"])?;
    expect_refusal(
        publish_release(&project_dir, &nodes, &bundle, None),
        "a release with 1 of 2 signatures",
    )?;

    story.step("Rotate dev-3's key (policy change signed by dev-1 and dev-2)");
    let old_dev3 = project_dir.join("keys").join("dev-3.key.retired-1");
    let (policy, index) = change_policy(
        &project_dir,
        &nodes,
        &PolicyChange {
            rotate: &[3],
            ..PolicyChange::default()
        },
    )?;
    say(format!(
        "policy {} logged as block {index} of the policy chain; dev-3 is now {}",
        policy.sequence,
        &policy.developer_keys[2].to_hex()[..16]
    ));

    story.step("Try to publish 1.2.0 signed by dev-1 and dev-3's retired key");
    let mut bundle = prepare(&project_dir, &nodes, &work, "1.2.0")?;
    sign(&project_dir, &mut bundle, &["dev-1"])?;
    sign_release(
        &mut bundle,
        &load_key(&project_dir, &old_dev3.to_string_lossy())?,
    )?;
    expect_refusal(
        publish_release(&project_dir, &nodes, &bundle, None),
        "a release signed with a rotated-out key",
    )?;

    story.step("Publish release 1.2.0, signed by dev-2 and dev-3's new key");
    let mut bundle = prepare(&project_dir, &nodes, &work, "1.2.0")?;
    sign(&project_dir, &mut bundle, &["dev-2", "dev-3"])?;
    let index = publish_release(&project_dir, &nodes, &bundle, None)?;
    say(format!("logged as block {index}"));

    story.step("The client comes back online, catches up and verifies");
    let epoch = wait_for_timeline(apis[0], &project.release_chain)?;
    let binary = runtime.block_on(async {
        let mut state = ClientState::load(&client_dir)?;
        let mut followed = state
            .projects
            .remove("hello")
            .context("the client does not follow hello")?;
        let connection = Connection::open(&state.peers, Duration::from_secs(20)).await?;
        let freshness = state.freshness();
        let (report, view) = connection
            .sync_project(
                &mut followed,
                state.timeline.as_mut(),
                &mut state.policy_timelines,
                freshness,
            )
            .await?;
        let view = view.context("the client checked no timeline")?;
        say(format!(
            "timeline epoch {} is {} s old (bound {} s) and commits to the release head and the policy head",
            view.block.commit.epoch, view.age, freshness.max_age
        ));
        let _ = epoch;
        say(format!(
            "caught up from release-chain block {} to {} with a skip proof of {} blocks ({} bytes); {} policy-chain block(s) checked",
            report.from_index, report.to_index, report.proof_blocks, report.proof_bytes, report.policy_blocks
        ));
        let release = followed
            .verify_latest()?
            .context("no release after sync")?;
        say(format!(
            "latest release {} carries {} valid developer signatures under the current policy",
            release.manifest.version,
            release.signatures.len()
        ));
        story.step("The client fetches the 1.2.0 binary from the peers, checking every slice");
        let artifact = select_artifact(&release, Some("linux-x86_64"))?;
        let download = connection.fetch(&artifact, &|_, _| {}).await?;
        artifact.check(&download.bytes)?;
        let out = dir.join(&artifact.name);
        std::fs::write(&out, &download.bytes)?;
        say(format!(
            "{} ({} bytes, BLAKE3 {}) from peer {}, saved to {}",
            artifact.name,
            download.bytes.len(),
            &artifact.hash.to_hex()[..16],
            download.from,
            out.display()
        ));
        state.projects.insert(followed.name.clone(), followed);
        state.save(&client_dir)?;
        connection.close().await;
        anyhow::Ok(out)
    })?;
    say(format!("verified binary at {}", binary.display()));
    Ok(())
}

/// A second project whose policy requires the verifier node to rebuild every release from its
/// source: an honest release is logged with the verifier's attestation, and one whose binary
/// was tampered with (signed by enough developers: their keys were stolen) is refused.
fn build_verification(
    story: &mut Story,
    dir: &Path,
    net: &testnet::Testnet,
    build: &DevelopersBuild,
) -> anyhow::Result<()> {
    let nodes = net.writable_nodes(dir)?;
    let verifier_node = net.nodes.last().context("the testnet has no node")?;
    let public: RosterMemberJson = serde_json::from_str(
        &std::fs::read_to_string(verifier_node.dir.join("node.pub.json"))
            .context("the verifier node's node.pub.json")?,
    )?;
    let verifier = PublicKey::from_hex(&public.public_key)?;

    story.step(&format!(
        "Create project \"itoa\" (the real crate, vendored): {} must rebuild each release from source",
        verifier_node.name
    ));
    let (project_dir, project) = create_demo_project(dir, net, &nodes, "itoa", &[verifier])?;
    say(format!(
        "release chain {}; policy: 2 of 3 developers and 1 reproducing build by {}",
        project.release_chain,
        &verifier.to_hex()[..16]
    ));

    let work = dir.join("work-itoa");
    let platform = itoa_platform();
    let release = |version: &str, binary: &Path| -> anyhow::Result<Bundle> {
        Ok(create_release(
            &project_dir,
            &nodes,
            &ReleaseOptions {
                version,
                source: &build.source,
                binaries: &[(platform.clone(), binary.to_path_buf())],
                script: ITOA_RECIPE.into(),
                outputs: vec![(platform.clone(), ITOA_OUTPUT.into())],
            },
        )?)
    };

    story.step("The developers built itoa 1.0.19 in the build sandbox, exactly as verifiers will");
    let binary = &build.binary;
    let honest = Hash::of_artifact(&std::fs::read(binary)?);
    say(format!(
        "libitoa.rlib built in {:.1} s, BLAKE3 {}",
        build.elapsed.as_secs_f64(),
        &honest.to_hex()[..16]
    ));

    story.step(&format!(
        "Publish itoa 1.0.19 (dev-1, dev-2); the leader asks {} to rebuild it first",
        verifier_node.name
    ));
    let mut bundle = release("1.0.19", binary)?;
    sign(&project_dir, &mut bundle, &["dev-1", "dev-2"])?;
    let started = Instant::now();
    let index = publish_release(&project_dir, &nodes, &bundle, None)?;
    let head: ChainJson = get_json(net.apis()[0], &format!("/chains/{}", project.release_chain))?;
    let logged = Release::from_bytes(&hex::decode(&head.head.payload)?)?;
    for attestation in &logged.attestations {
        say(format!(
            "{} rebuilt it from source and attested {} {}",
            &attestation.verifier.to_hex()[..16],
            attestation
                .outputs
                .iter()
                .map(|(platform, hash)| format!("{platform} {}", &hash.to_hex()[..16]))
                .collect::<Vec<_>>()
                .join(", "),
            if attestation.outputs == [(platform.clone(), honest)] {
                "(the same bytes)"
            } else {
                "(OTHER bytes)"
            }
        ));
    }
    say(format!(
        "logged as block {index}, cosigned after the rebuild, {:.1} s after publishing",
        started.elapsed().as_secs_f64()
    ));

    story.step(
        "Two developer keys are stolen: publish 1.0.20 with a backdoored binary, validly signed",
    );
    let mut tampered = std::fs::read(binary)?;
    tampered.extend_from_slice(b"\0backdoor");
    let tampered_path = work.join("libitoa-tampered.rlib");
    std::fs::write(&tampered_path, &tampered)?;
    let mut bundle = release("1.0.20", &tampered_path)?;
    sign(&project_dir, &mut bundle, &["dev-1", "dev-3"])?;
    expect_refusal_because(
        publish_release(&project_dir, &nodes, &bundle, None),
        "a release whose binary its source does not build to",
        "build verifiers reproduced the binaries",
    )?;
    Ok(())
}

/// The client checks the timeline's newest anchor: its Ethereum evidence holds offline, its
/// block is the timeline's own (a skip proof from the genesis) vouched for by a roster member,
/// and anvil says its Ethereum block is canonical.
fn check_anchor(story: &mut Story, net: &testnet::Testnet, rpc: &str) -> anyhow::Result<()> {
    story.step("The client checks that the timeline it follows is anchored on Ethereum (anvil)");
    let timeline = net.timeline_id()?;
    let peers = net.peers()?;
    let check = AnchorCheck {
        rpc: rpc.to_owned(),
        confirmations: 2,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let checked = runtime.block_on(async {
        let connection = Connection::open(&peers, Duration::from_secs(20)).await?;
        let freshness = ClientState::default().freshness();
        let deadline = Instant::now() + Duration::from_secs(30);
        // The first anchors need an epoch or two to be mined and confirmed.
        let checked = loop {
            let mut pinned = connection.pin_timeline(timeline).await?;
            let view = connection.sync_timeline(&mut pinned, freshness).await?;
            match check_newest_anchor(&connection, &view, &check).await {
                Ok(checked) => break checked,
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        connection.close().await;
        anyhow::Ok(checked)
    })?;
    say(format!("timeline {}", checked.describe()));
    say(
        "its evidence (header, transaction and receipt proofs, sender) checked offline; a skip proof from the timeline's genesis leads to exactly that block, whose roster vouched for the sender; anvil says the Ethereum block is canonical",
    );
    Ok(())
}
