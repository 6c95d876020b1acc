//! The user-facing commands beyond `node`: projects, releases, the light client and the local
//! testnet. Each command is a thin layer over the library (light client) or the node's API.

// These commands' output is what the user asked for: standard output is the interface.
#![allow(clippy::print_stdout)]

pub(crate) mod demo;
pub(crate) mod http;
pub(crate) mod publisher;
pub(crate) mod testnet;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chainiac_node::client::{ClientState, Connection, TimelineView, select_artifact};
use chainiac_node::config::Identity;
use chainiac_protocol::Hash;
use chainiac_protocol::keys::PublicKey;
use clap::{Args, Subcommand};

use publisher::{
    Bundle, CreateOptions, PolicyChange, ProjectFile, ReleaseOptions, change_policy,
    create_project, create_release, publish_release, sign_release,
};

/// Node API addresses.
#[derive(Debug, Args, Clone)]
pub(crate) struct NodesArg {
    /// Node API address to use (repeat or comma-separate for several; the next one takes over
    /// when one fails). Default: the nodes recorded in the project.
    #[arg(long = "node", env = "CHAINIAC_NODES", value_delimiter = ',')]
    pub(crate) nodes: Vec<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProjectCommand {
    /// Create a project: root and developer keys, its genesis policy, and its policy and
    /// release chains on the network.
    Create {
        /// Project name (lower-case letters, digits, '-', '_', '.').
        name: String,
        /// Directory for the project's files and keys (created).
        #[arg(long)]
        dir: PathBuf,
        /// Number of developer keys.
        #[arg(long, default_value_t = 3)]
        developers: u32,
        /// Developer signatures each release needs (the t of t-of-n).
        #[arg(long, default_value_t = 2)]
        threshold: u32,
        /// Number of root keys (they sign the genesis policy and root changes).
        #[arg(long, default_value_t = 1)]
        roots: u32,
        /// Root signatures a root change needs.
        #[arg(long, default_value_t = 1)]
        root_threshold: u32,
        /// Witness roster: a JSON list of the witnesses' node.pub.json entries.
        #[arg(long, env = "CHAINIAC_ROSTER")]
        roster: PathBuf,
        /// A build verifier whose attestations count: its public key (hex) or its
        /// node.pub.json (repeatable).
        #[arg(long = "verifier")]
        verifiers: Vec<String>,
        /// Matching build attestations, from distinct verifiers, each release needs (k).
        #[arg(long, default_value_t = 0)]
        attestations: u32,
        #[command(flatten)]
        nodes: NodesArg,
    },
    /// Change the project's policy: rotate developer keys, change the threshold, or move the
    /// policy chain to a new witness roster.
    Policy {
        /// The project directory.
        #[arg(long)]
        dir: PathBuf,
        /// Give developer slot N (1-based) a fresh key (repeatable).
        #[arg(long = "rotate-developer")]
        rotate: Vec<u32>,
        /// New developer threshold.
        #[arg(long)]
        threshold: Option<u32>,
        /// Keys that sign the change (names like dev-1 or key file paths). Default: the first
        /// t developers.
        #[arg(long = "sign-with", value_delimiter = ',')]
        sign_with: Vec<String>,
        /// New witness roster for the policy chain (JSON list of node.pub.json entries).
        #[arg(long)]
        roster: Option<PathBuf>,
        #[command(flatten)]
        nodes: NodesArg,
    },
    /// Show the project's chains as a node sees them.
    Show {
        /// The project directory.
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        nodes: NodesArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReleaseCommand {
    /// Prepare the next release: a bundle file holding the manifest, to be signed offline.
    Create {
        /// The project directory.
        #[arg(long)]
        project_dir: PathBuf,
        /// Version (semantic versioning, greater than the last release).
        #[arg(long)]
        version: String,
        /// The source archive.
        #[arg(long)]
        source: PathBuf,
        /// A binary as PLATFORM=FILE (repeatable).
        #[arg(long = "binary")]
        binaries: Vec<String>,
        /// The build script verifiers run in the unpacked source (default: `make`).
        #[arg(long, default_value = "make")]
        script: String,
        /// Output path of each platform's binary in the build tree, as PLATFORM=PATH
        /// (default: the binary's file name).
        #[arg(long = "output")]
        outputs: Vec<String>,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        nodes: NodesArg,
    },
    /// Sign a bundle with one developer key (offline: no network needed).
    Sign {
        /// The bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// The developer's key file (or a key name of the project, with --project-dir).
        #[arg(long)]
        key: String,
        /// Project directory, to find keys by name.
        #[arg(long, default_value = ".")]
        project_dir: PathBuf,
    },
    /// Upload a signed bundle's artifacts and have the witnesses log the release.
    Publish {
        /// The bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// The project directory.
        #[arg(long)]
        project_dir: PathBuf,
        /// Move the release chain to a new witness roster with this release.
        #[arg(long)]
        roster: Option<PathBuf>,
        #[command(flatten)]
        nodes: NodesArg,
    },
    /// Rebuild a bundle's release from its source in a sandbox, as a build verifier, and add
    /// the signed attestation (reproduced or not) to the bundle.
    Attest {
        /// The bundle (its source file must be readable here).
        #[arg(long)]
        bundle: PathBuf,
        /// The verifier's key file (a node.key, for instance).
        #[arg(long)]
        key: PathBuf,
        /// Where the fresh build directory is made (removed afterwards).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        work_dir: PathBuf,
        /// Time limit of the build, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Do not make the host's Rust toolchain visible in the sandbox.
        #[arg(long)]
        no_rust: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// The client's directory (its trusted state).
    #[arg(long, env = "CHAINIAC_CLIENT_DIR", default_value = ".chainiac-client")]
    dir: PathBuf,
    /// Peer to ask, as /ip4/ADDR/tcp/PORT/p2p/PEER_ID (repeatable; remembered).
    #[arg(long = "peer", env = "CHAINIAC_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Oldest timeline block accepted, in seconds (remembered; default 3600).
    #[arg(long)]
    max_age: Option<u64>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Pin the timeline that every head must be found in (freshness, no rollback, no split view).
    Timeline {
        /// The timeline chain id.
        chain: String,
    },
    /// Start following a project, pinned by its release chain id.
    Follow {
        /// The release chain id (printed by `project create`).
        release_chain: String,
    },
    /// Catch up with every followed project (or one), verifying skip proofs and signatures.
    Sync {
        /// Only this project.
        project: Option<String>,
        /// Keep running: sync again whenever a new block is gossiped.
        #[arg(long)]
        watch: bool,
    },
    /// Re-verify the local state and show the latest trusted release of each project.
    Verify {
        /// Only this project.
        project: Option<String>,
    },
    /// Fetch an artifact of a project's latest trusted release, checking every byte.
    Fetch {
        /// The project.
        project: String,
        /// The platform (default: the only binary); `source` for the source archive.
        #[arg(long)]
        platform: Option<String>,
        /// Where to write it (default: its name in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AnchorCommand {
    /// Check an anchor proof against an Ethereum node of your choice.
    Verify {
        /// The proof: a JSON file as `anchor list` prints each entry.
        #[arg(long)]
        proof: PathBuf,
        /// JSON-RPC endpoint of an Ethereum node (http://host:port).
        #[arg(long, env = "CHAINIAC_ETHEREUM_RPC")]
        rpc: String,
        /// Confirmations required.
        #[arg(long, default_value_t = 2)]
        confirmations: u64,
    },
    /// Print the anchor proofs a node recorded (JSON).
    List {
        #[command(flatten)]
        nodes: NodesArg,
    },
}

/// `chainiac anchor ...`.
pub(crate) fn anchor(command: AnchorCommand) -> anyhow::Result<()> {
    use chainiac_anchor::{Anchor, EthereumAnchor, EthereumConfig};
    match command {
        AnchorCommand::Verify {
            proof,
            rpc,
            confirmations,
        } => {
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("cannot read {}", proof.display()))?;
            let proof: chainiac_anchor::AnchorProof = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an anchor proof", proof.display()))?;
            let ethereum = EthereumAnchor::new(EthereumConfig::new(&rpc))?;
            let confirmation = ethereum.verify(&proof, confirmations)?;
            println!(
                "valid: timeline block {} (index {}) is anchored in Ethereum chain {}, transaction {}, block {} with {} confirmations",
                proof.timeline_block,
                proof.timeline_index,
                proof.chain_id,
                proof.transaction,
                proof.block_number,
                confirmation.confirmations
            );
            Ok(())
        }
        AnchorCommand::List { nodes } => {
            let all = http::with_failover(&nodes.nodes, |node| http::get_json(node, "/anchors"))?;
            println!("{}", serde_json::to_string_pretty(&all)?);
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum TestnetCommand {
    /// Create and start N nodes on 127.0.0.1 and wait until they are connected.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Length of a timeline epoch, in seconds.
        #[arg(long, default_value_t = 10)]
        epoch_seconds: u64,
        /// Start a local Ethereum node (anvil) and anchor the timeline in it.
        #[arg(long)]
        anvil: bool,
    },
    /// Show each node's state.
    Status {
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// Print the end of the nodes' logs.
    Logs {
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Only this node (node-0, node-1, ...).
        #[arg(long)]
        node: Option<String>,
        /// Lines per node.
        #[arg(long, default_value_t = 40)]
        lines: usize,
    },
    /// Stop every node (their data stays).
    Down {
        /// Directory of the testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// Bring up a 4-node testnet and run the whole release story on it.
    Demo {
        /// Directory for the demo (must not hold a running testnet). Default: a new temporary
        /// directory.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Leave the testnet running afterwards.
        #[arg(long)]
        keep: bool,
    },
}

fn split_pair(text: &str, what: &str) -> anyhow::Result<(String, String)> {
    text.split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .with_context(|| format!("{what} must look like PLATFORM=VALUE, got {text:?}"))
}

/// `chainiac project ...`.
pub(crate) fn project(command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::Create {
            name,
            dir,
            developers,
            threshold,
            roots,
            root_threshold,
            roster,
            verifiers,
            attestations,
            nodes,
        } => {
            let verifiers = verifiers
                .iter()
                .map(|v| parse_verifier(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let project = create_project(&CreateOptions {
                name: &name,
                dir: &dir,
                developers,
                threshold,
                roots,
                root_threshold,
                roster: &roster,
                nodes: &nodes.nodes,
                verifiers: &verifiers,
                attestations,
            })?;
            println!("created project {name} in {}", dir.display());
            println!("  policy chain   {}", project.policy_chain);
            println!(
                "  release chain  {}  (clients follow this id)",
                project.release_chain
            );
            println!(
                "  keys           {} ({roots} root, {developers} developer; releases need {threshold})",
                dir.join("keys").display()
            );
            Ok(())
        }
        ProjectCommand::Policy {
            dir,
            rotate,
            threshold,
            sign_with,
            roster,
            nodes,
        } => {
            let (policy, index) = change_policy(
                &dir,
                &nodes.nodes,
                &PolicyChange {
                    rotate: &rotate,
                    threshold,
                    sign_with: &sign_with,
                    roster: roster.as_deref(),
                },
            )?;
            println!(
                "policy {} logged as block {index}: {} developers, {} signatures per release",
                policy.sequence,
                policy.developer_keys.len(),
                policy.developer_threshold
            );
            for slot in rotate {
                println!(
                    "  dev-{slot} has a new key in {}",
                    publisher::key_path(&dir, &format!("dev-{slot}")).display()
                );
            }
            Ok(())
        }
        ProjectCommand::Show { dir, nodes } => {
            let project = ProjectFile::load(&dir)?;
            let nodes = project.nodes_or(&nodes.nodes);
            let all = http::with_failover(&nodes, |node| http::get_json(node, "/projects"))?;
            let mut out = std::io::stdout().lock();
            for chain in all.as_array().into_iter().flatten() {
                if chain["project"].as_str() != Some(project.name.as_str()) {
                    continue;
                }
                writeln!(
                    out,
                    "{:<8} {}  block {}  {}",
                    chain["kind"].as_str().unwrap_or("?"),
                    chain["chain_id"].as_str().unwrap_or("?"),
                    chain["index"],
                    match chain["kind"].as_str() {
                        Some("release") => format!(
                            "latest {}",
                            chain["version"].as_str().unwrap_or("(none yet)")
                        ),
                        _ => format!(
                            "{} of {} developers",
                            chain["developer_threshold"],
                            chain["developers"].as_array().map_or(0, Vec::len)
                        ),
                    }
                )?;
            }
            Ok(())
        }
    }
}

/// `chainiac release ...`.
pub(crate) fn release(command: ReleaseCommand) -> anyhow::Result<()> {
    match command {
        ReleaseCommand::Create {
            project_dir,
            version,
            source,
            binaries,
            script,
            outputs,
            out,
            nodes,
        } => {
            let binaries = binaries
                .iter()
                .map(|b| split_pair(b, "--binary").map(|(p, f)| (p, PathBuf::from(f))))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut recipe_outputs = outputs
                .iter()
                .map(|o| split_pair(o, "--output"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (platform, file) in &binaries {
                if !recipe_outputs.iter().any(|(p, _)| p == platform) {
                    let name = file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    recipe_outputs.push((platform.clone(), name));
                }
            }
            let bundle = create_release(
                &project_dir,
                &nodes.nodes,
                &ReleaseOptions {
                    version: &version,
                    source: &source,
                    binaries: &binaries,
                    script,
                    outputs: recipe_outputs,
                },
            )?;
            bundle.save(&out)?;
            let manifest = bundle.manifest()?;
            println!(
                "release {} {} (sequence {}) prepared in {}",
                manifest.project,
                manifest.version,
                manifest.sequence,
                out.display()
            );
            println!("  manifest digest {}", manifest.digest());
            println!(
                "  next: each developer runs `chainiac release sign --bundle {} --key KEY`",
                out.display()
            );
            Ok(())
        }
        ReleaseCommand::Sign {
            bundle: path,
            key,
            project_dir,
        } => {
            let mut bundle = Bundle::load(&path)?;
            let identity = publisher::load_key(&project_dir, &key)?;
            let signer = sign_release(&mut bundle, &identity)?;
            bundle.save(&path)?;
            println!(
                "signed by {} ({} signature(s) in the bundle)",
                &signer.to_hex()[..16],
                bundle.signatures.len()
            );
            Ok(())
        }
        ReleaseCommand::Attest {
            bundle,
            key,
            work_dir,
            timeout,
            no_rust,
        } => attest(&bundle, &key, &work_dir, timeout, no_rust),
        ReleaseCommand::Publish {
            bundle,
            project_dir,
            roster,
            nodes,
        } => {
            let loaded = Bundle::load(&bundle)?;
            let manifest = loaded.manifest()?;
            let index = publish_release(&project_dir, &nodes.nodes, &loaded, roster.as_deref())?;
            println!(
                "release {} {} logged as block {index} of the release chain",
                manifest.project, manifest.version
            );
            Ok(())
        }
    }
}

/// A build verifier's public key: hex, or a node.pub.json file.
fn parse_verifier(text: &str) -> anyhow::Result<PublicKey> {
    let path = Path::new(text);
    let hex = if path.is_file() {
        let file: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", path.display()))?;
        file["public_key"]
            .as_str()
            .with_context(|| format!("{} has no public_key", path.display()))?
            .to_owned()
    } else {
        text.to_owned()
    };
    PublicKey::from_hex(&hex)
        .with_context(|| format!("--verifier {text}: not a public key (hex) nor a node.pub.json"))
}

/// `chainiac release attest`: rebuild in the sandbox, sign, record in the bundle.
fn attest(
    path: &Path,
    key: &Path,
    work_dir: &Path,
    timeout: u64,
    no_rust: bool,
) -> anyhow::Result<()> {
    use chainiac_node::builder::{BuildLimits, Sandbox, rebuild};

    let mut bundle = Bundle::load(path)?;
    let manifest = bundle.manifest()?;
    let identity = Identity::load(key)
        .with_context(|| format!("cannot load the verifier key {}", key.display()))?;
    let source_path = bundle
        .files
        .get(&manifest.source.hash.to_hex())
        .with_context(|| "the bundle does not say where the source file is")?;
    let source = std::fs::read(source_path)
        .with_context(|| format!("cannot read the source {}", source_path.display()))?;
    let mut sandbox = Sandbox::system()?;
    if !no_rust {
        sandbox = sandbox.with_host_rust();
    }
    let limits = BuildLimits {
        time: std::time::Duration::from_secs(timeout),
        ..BuildLimits::default()
    };
    println!(
        "rebuilding {} {} from {} in a sandbox (time limit {timeout} s)...",
        manifest.project, manifest.version, manifest.source.name
    );
    let result = rebuild(&sandbox, &limits, &manifest, &source, work_dir)?;
    let attestation = result.attest(identity.secret(), &manifest);
    bundle.add_attestation(&attestation)?;
    bundle.save(path)?;
    println!(
        "  build {} in {:.1} s; log digest {}",
        if result.failure.is_none() {
            "ran"
        } else {
            "failed"
        },
        result.elapsed.as_secs_f64(),
        result.log_digest
    );
    let declared = manifest.binary_hashes();
    for (platform, hash) in &result.outputs {
        let expected = declared.iter().find(|(p, _)| p == platform).map(|(_, h)| h);
        println!(
            "  {platform}: {hash} {}",
            if expected == Some(hash) {
                "(matches the release)".to_owned()
            } else {
                format!(
                    "(the release declares {})",
                    expected.map_or("nothing".into(), ToString::to_string)
                )
            }
        );
    }
    println!(
        "  attestation by {} added to {} ({} in the bundle)",
        &identity.public().key.to_hex()[..16],
        path.display(),
        bundle.attestations.len()
    );
    if let Some(failure) = &result.failure {
        bail!(
            "the build failed: {failure}\n--- end of the build log ---\n{}",
            result.log_tail
        );
    }
    if !result.reproduces(&manifest) {
        bail!("the rebuild does NOT reproduce the release's binaries (attested as such)");
    }
    println!("  reproduced: the release's binaries are exactly what the source builds to");
    Ok(())
}

fn select_projects<'a>(
    state: &'a ClientState,
    only: Option<&'a str>,
) -> anyhow::Result<Vec<&'a str>> {
    match only {
        Some(name) if state.projects.contains_key(name) => Ok(vec![name]),
        Some(name) => {
            bail!("project {name:?} is not followed; run `chainiac client follow RELEASE_CHAIN_ID`")
        }
        None if state.projects.is_empty() => {
            bail!("no project followed yet; run `chainiac client follow RELEASE_CHAIN_ID`")
        }
        None => Ok(state.projects.keys().map(String::as_str).collect()),
    }
}

/// `chainiac client ...`.
pub(crate) fn client(args: ClientArgs) -> anyhow::Result<()> {
    let mut state = ClientState::load(&args.dir)?;
    if let Some(max_age) = args.max_age {
        state.max_age = Some(max_age);
    }
    for peer in &args.peers {
        let address: libp2p::Multiaddr = peer
            .parse()
            .with_context(|| format!("--peer {peer}: not a multiaddress"))?;
        if chainiac_node::client::peer_of(&address).is_none() {
            bail!("--peer {peer} must end with /p2p/PEER_ID");
        }
        if !state.peers.contains(&address) {
            state.peers.push(address);
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(client_command(args.command, &args.dir, state))
}

async fn client_command(
    command: ClientCommand,
    dir: &Path,
    mut state: ClientState,
) -> anyhow::Result<()> {
    if let ClientCommand::Verify { project } = &command {
        for name in select_projects(&state, project.as_deref())? {
            let followed = &state.projects[name];
            match followed.verify_latest()? {
                Some(release) => println!(
                    "{name}: release {} (sequence {}, release-chain block {}) verified: {} developer signatures under policy block {}",
                    release.manifest.version,
                    release.manifest.sequence,
                    followed.release.block().index(),
                    release.signatures.len(),
                    release.manifest.policy
                ),
                None => println!("{name}: no release yet"),
            }
        }
        return Ok(());
    }
    let mut connection = Connection::open(&state.peers, Duration::from_secs(20)).await?;
    let result = async {
        match command {
            ClientCommand::Verify { .. } => Ok(()),
            ClientCommand::Timeline { chain } => {
                let chain = Hash::from_hex(&chain)
                    .context("the timeline chain id must be 64 hex characters")?;
                state.timeline = Some(connection.pin_timeline(chain).await?);
                state.save(dir)?;
                println!("timeline {chain} pinned; every head will be checked against it");
                Ok(())
            }
            ClientCommand::Follow { release_chain } => {
                let chain = Hash::from_hex(&release_chain)
                    .context("the release chain id must be 64 hex characters")?;
                let followed = connection.follow(chain).await?;
                println!(
                    "following {} (release chain {}, policy chain {})",
                    followed.name, followed.release_chain, followed.policy_chain
                );
                state.projects.insert(followed.name.clone(), followed);
                state.save(dir)?;
                println!("run `chainiac client sync` to catch up");
                Ok(())
            }
            ClientCommand::Sync { project, watch } => {
                let names: Vec<String> = select_projects(&state, project.as_deref())?
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                sync_all(&connection, &mut state, &names, dir, true).await?;
                if watch {
                    // With a pinned timeline a release is accepted once a timeline block
                    // commits to it, so timeline blocks wake the watch too.
                    let chains: Vec<Hash> = names
                        .iter()
                        .flat_map(|n| {
                            let p = &state.projects[n];
                            [p.release_chain, p.policy_chain]
                        })
                        .chain(state.timeline.as_ref().map(|t| t.chain))
                        .collect();
                    println!("watching for new releases (Ctrl-C to stop)");
                    loop {
                        tokio::select! {
                            head = connection.next_gossip(&chains) => {
                                if head.is_none() { break; }
                                // A watch outlives a peer's bad moment: say it and go on.
                                if let Err(error) =
                                    sync_all(&connection, &mut state, &names, dir, false).await
                                {
                                    eprintln!("sync failed: {error:#}; waiting for the next block");
                                }
                            }
                            _ = tokio::signal::ctrl_c() => break,
                        }
                    }
                }
                Ok(())
            }
            ClientCommand::Fetch {
                project,
                platform,
                out,
            } => {
                let view = fresh_timeline(&connection, &mut state).await?;
                let followed = state
                    .projects
                    .get_mut(&project)
                    .with_context(|| format!("project {project:?} is not followed"))?;
                let report = connection.sync(followed, view.as_ref()).await?;
                let release = followed
                    .verify_latest()?
                    .with_context(|| format!("{project} has no release yet"))?;
                let artifact = select_artifact(&release, platform.as_deref())?;
                eprintln!(
                    "fetching {} ({} bytes) of {project} {} (release-chain block {})",
                    artifact.name, artifact.size, release.manifest.version, report.to_index
                );
                let download = connection
                    .fetch(&artifact, &|done, total| {
                        if total > 4 << 20 {
                            eprint!("\r  {done} / {total} bytes verified");
                        }
                    })
                    .await?;
                for failure in &download.failures {
                    eprintln!(
                        "  peer {} failed: {}{}",
                        failure.peer,
                        failure.reason,
                        if failure.sent_bad_data {
                            " (it sent data that does not match the release; do not trust it)"
                        } else {
                            ""
                        }
                    );
                }
                artifact.check(&download.bytes)?;
                let out = out.unwrap_or_else(|| PathBuf::from(&artifact.name));
                std::fs::write(&out, &download.bytes)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                state.save(dir)?;
                println!(
                    "{} verified (BLAKE3 {}) from peer {}, written to {}",
                    artifact.name,
                    artifact.hash,
                    download.from,
                    out.display()
                );
                Ok(())
            }
        }
    }
    .await;
    connection.close().await;
    result
}

/// Syncs the pinned timeline, if any, and checks its freshness.
async fn fresh_timeline(
    connection: &Connection,
    state: &mut ClientState,
) -> anyhow::Result<Option<TimelineView>> {
    let freshness = state.freshness();
    let Some(pinned) = state.timeline.as_mut() else {
        eprintln!(
            "note: no timeline pinned, so the client cannot tell a frozen view from a quiet project; pin one with `chainiac client timeline TIMELINE_CHAIN_ID`"
        );
        return Ok(None);
    };
    let view = connection
        .sync_timeline(pinned, freshness)
        .await
        .context("the timeline could not be verified as fresh")?;
    eprintln!(
        "timeline epoch {} ({} s old, bound {} s), {} chains",
        view.block.commit.epoch, view.age, freshness.max_age, view.block.commit.chain_count
    );
    if let Some(anchor) = connection.anchors(view.chain).await.first() {
        eprintln!(
            "timeline block {} anchored in Ethereum chain {}: transaction {} in block {} (check it with `chainiac anchor verify`)",
            anchor.timeline_index, anchor.chain_id, anchor.transaction, anchor.block_number
        );
    }
    Ok(Some(view))
}

async fn sync_all(
    connection: &Connection,
    state: &mut ClientState,
    names: &[String],
    dir: &Path,
    report_unchanged: bool,
) -> anyhow::Result<()> {
    let view = fresh_timeline(connection, state).await?;
    for name in names {
        let Some(followed) = state.projects.get_mut(name) else {
            continue;
        };
        let report = connection.sync(followed, view.as_ref()).await?;
        for (peer, error) in &report.failures {
            eprintln!("  peer {peer} failed: {error}");
        }
        if let Some(index) = report.announced_unreached {
            eprintln!(
                "  block {index} of {name} was announced, but no peer serves it yet; sync again shortly"
            );
        }
        if report.to_index > report.from_index {
            println!(
                "{name}: {} -> block {} (release {}), skip proof of {} blocks, {} bytes; {} policy-chain block(s)",
                report.from_index,
                report.to_index,
                report.version.as_deref().unwrap_or("-"),
                report.proof_blocks,
                report.proof_bytes,
                report.policy_blocks
            );
        } else if report_unchanged {
            println!(
                "{name}: up to date at block {} (release {})",
                report.to_index,
                report.version.as_deref().unwrap_or("-")
            );
        }
        state.save(dir)?;
    }
    Ok(())
}

/// `chainiac testnet ...`.
pub(crate) fn testnet(command: TestnetCommand) -> anyhow::Result<()> {
    match command {
        TestnetCommand::Up {
            nodes,
            dir,
            epoch_seconds,
            anvil,
        } => {
            eprintln!("starting {nodes} nodes in {}", dir.display());
            let net = testnet::up(&dir, nodes, epoch_seconds, anvil)?;
            println!("testnet of {nodes} nodes is up and connected");
            for node in &net.nodes {
                println!("  {}  api http://{}  p2p {}", node.name, node.api, node.p2p);
            }
            println!("roster file: {}", net.roster.display());
            if let Some(timeline) = &net.timeline {
                println!("timeline:    {timeline}");
            }
            if let Some(anvil) = &net.anvil {
                println!(
                    "anvil:       {} (anchoring on; `chainiac anchor list --node {}`)",
                    anvil.url, net.nodes[0].api
                );
            }
            println!(
                "try: chainiac project create hello --dir my-project --roster {} --node {}",
                net.roster.display(),
                net.nodes[0].api
            );
            Ok(())
        }
        TestnetCommand::Status { dir } => testnet::status(&dir),
        TestnetCommand::Logs { dir, node, lines } => testnet::logs(&dir, node.as_deref(), lines),
        TestnetCommand::Down { dir } => {
            let stopped = testnet::down(&dir)?;
            println!("stopped {stopped} node(s); data kept in {}", dir.display());
            Ok(())
        }
        TestnetCommand::Demo { dir, keep } => {
            let dir = match dir {
                Some(dir) => dir,
                None => {
                    let base =
                        std::env::temp_dir().join(format!("chainiac-demo-{}", std::process::id()));
                    std::fs::create_dir_all(&base)?;
                    base
                }
            };
            demo::run(&dir, keep)
        }
    }
}
