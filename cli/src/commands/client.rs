//! `chainiac client`: follow projects as a light client (pin a timeline, follow, sync, verify,
//! fetch), on `chainiac_client`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chainiac_client::{ClientState, Connection, TimelineView, select_artifact};
use chainiac_protocol::Hash;
use chainiac_protocol::timeline::Freshness;
use clap::{Args, Subcommand};

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
    /// How long to wait for a first peer to answer, in seconds.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    #[command(subcommand)]
    command: ClientCommand,
}

/// `--ethereum-rpc`: check the timeline's newest anchor against an Ethereum node.
#[derive(Debug, Args)]
struct AnchorCheckArgs {
    /// Also check that the timeline is anchored on Ethereum: JSON-RPC endpoint of an Ethereum
    /// node you trust (http://host:port, unauthenticated: your own node or one on a network
    /// you trust). The newest anchor whose block is the timeline's own and that this node
    /// confirms is reported; the sync fails if none is (with --watch: checked once, at the
    /// start).
    #[arg(long, env = "CHAINIAC_ETHEREUM_RPC")]
    ethereum_rpc: Option<String>,
    /// Blocks on top of the anchoring transaction required (with --ethereum-rpc).
    #[arg(long, default_value_t = 2, requires = "ethereum_rpc")]
    confirmations: u64,
}

impl AnchorCheckArgs {
    fn check(&self) -> Option<AnchorCheck> {
        self.ethereum_rpc.as_ref().map(|rpc| AnchorCheck {
            rpc: rpc.clone(),
            confirmations: self.confirmations,
        })
    }
}

/// An Ethereum node the client checks the timeline's anchors against.
#[derive(Clone, Debug)]
pub(crate) struct AnchorCheck {
    /// Its JSON-RPC endpoint.
    pub(crate) rpc: String,
    /// Blocks required on top of the anchoring transaction.
    pub(crate) confirmations: u64,
}

/// An anchor that passed both checks.
#[derive(Debug)]
pub(crate) struct CheckedAnchor {
    /// The anchor.
    pub(crate) proof: chainiac_anchor::AnchorProof,
    /// Blocks on top of (and including) its transaction's block.
    pub(crate) confirmations: u64,
}

impl CheckedAnchor {
    /// `block B (index I) is in Ethereum chain C, transaction T in block N with K
    /// confirmations`.
    pub(crate) fn describe(&self) -> String {
        let proof = &self.proof;
        format!(
            "block {} (index {}) is in Ethereum chain {}, transaction {} in block {} with {} confirmations",
            proof.timeline_block.get(..16).unwrap_or_default(),
            proof.timeline_index,
            proof.chain_id,
            proof.transaction,
            proof.block_number,
            self.confirmations
        )
    }
}

/// How many anchors are tried before giving up (an anchor can be too young to have its
/// confirmations, or a peer can list a false one).
const ANCHORS_TRIED: usize = 8;

/// Longest a whole anchor check may take: the peers' proofs and the Ethereum node's answers.
const ANCHOR_CHECK_SECONDS: u64 = 60;

/// An Ethereum transaction or block hash as JSON-RPC writes it: `0x` and 64 hex digits. Other
/// text from a peer is neither checked nor shown.
fn is_ethereum_hash(text: &str) -> bool {
    text.len() == 66 && text.starts_with("0x") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The newest anchor of the timeline of `view` that names the timeline's own block at its index
/// (a skip proof from the genesis, [`Connection::check_anchor_in_timeline`]) and that the
/// Ethereum node of `check` shows in a mined transaction with enough confirmations. Only
/// anchors at or below the timeline block the client verified are considered, taken from the
/// peers in turn; peers' anchor lists are hints, both checks are the client's own.
pub(crate) async fn check_newest_anchor(
    connection: &Connection,
    view: &TimelineView,
    check: &AnchorCheck,
) -> anyhow::Result<CheckedAnchor> {
    let limit = Duration::from_secs(ANCHOR_CHECK_SECONDS);
    match tokio::time::timeout(limit, newest_checked_anchor(connection, view, check)).await {
        Ok(result) => result,
        Err(_) => bail!(
            "checking the anchors of timeline {} took over {ANCHOR_CHECK_SECONDS} s: the peers or the Ethereum node at {} are too slow",
            view.chain,
            check.rpc
        ),
    }
}

/// The anchors peers list for the timeline of `view`, in the connection's order (peer by
/// peer): only those of blocks up to the verified one, with Ethereum hashes of the right shape
/// (others are neither checked nor shown).
async fn listed_anchors(
    connection: &Connection,
    view: &TimelineView,
) -> Vec<chainiac_anchor::AnchorProof> {
    connection
        .anchors(view.chain)
        .await
        .into_iter()
        .filter(|a| {
            a.timeline_index <= view.index
                && is_ethereum_hash(&a.transaction)
                && is_ethereum_hash(&a.block_hash)
        })
        .collect()
}

async fn newest_checked_anchor(
    connection: &Connection,
    view: &TimelineView,
    check: &AnchorCheck,
) -> anyhow::Result<CheckedAnchor> {
    use chainiac_anchor::{Anchor, AnchorError, EthereumAnchor, EthereumConfig};
    let timeline = view.chain;
    let candidates: Vec<_> = listed_anchors(connection, view)
        .await
        .into_iter()
        // Junk a peer lists must not crowd out the anchors worth asking Ethereum about.
        .filter(|a| chainiac_anchor::verify_evidence(a).is_ok())
        .take(ANCHORS_TRIED)
        .collect();
    if candidates.is_empty() {
        bail!(
            "no peer knows an anchor of timeline {timeline} up to its block {} yet; nodes anchor it when their [anchor] ethereum_rpc is set (docs/operator.md)",
            view.index
        );
    }
    let genesis = connection.pin_timeline(timeline).await?;
    let ethereum = EthereumAnchor::new(EthereumConfig::new(&check.rpc))?;
    let mut not_in_timeline = Vec::new();
    let mut not_on_ethereum = Vec::new();
    for proof in candidates {
        if let Err(error) = connection.check_anchor_in_timeline(&genesis, &proof).await {
            not_in_timeline.push(format!("block {}: {error}", proof.timeline_index));
            continue;
        }
        match ethereum.verify(&proof, check.confirmations).await {
            Ok(confirmation) => {
                return Ok(CheckedAnchor {
                    proof,
                    confirmations: confirmation.confirmations,
                });
            }
            // The Ethereum node is unreachable: no other anchor would fare better. One that
            // refuses a question about this proof (a crafted block number) may answer the next.
            Err(AnchorError::Rpc(error)) if error.refusal().is_none() => bail!("{error}"),
            Err(error) => not_on_ethereum.push(format!("block {}: {error}", proof.timeline_index)),
        }
    }
    let mut reasons = Vec::new();
    if !not_on_ethereum.is_empty() {
        reasons.push(format!(
            "not confirmed by the Ethereum node: {}",
            not_on_ethereum.join("; ")
        ));
    }
    if !not_in_timeline.is_empty() {
        reasons.push(format!(
            "listed by a peer but not the timeline's own block (a peer is lying or on a fork): {}",
            not_in_timeline.join("; ")
        ));
    }
    bail!(
        "no anchor of timeline {timeline} could be verified against {}: {}",
        check.rpc,
        reasons.join(". ")
    )
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Pin a timeline for projects whose policy names none (freshness, no rollback, no split
    /// view); a project whose policy names a timeline is always checked against that one.
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
        #[command(flatten)]
        anchor: AnchorCheckArgs,
    },
    /// Re-verify the local state and show the latest trusted release of each project.
    Verify {
        /// Only this project.
        project: Option<String>,
        /// Print the projects as JSON.
        #[arg(long)]
        json: bool,
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
    /// Sync a project, fetch its latest trusted binary and install it as an executable:
    /// written to a temporary file, flushed to disk and renamed over the old one, so a failed
    /// check or a crash leaves the installed binary as it was.
    Install {
        /// The project.
        project: String,
        /// The platform (default: the only binary).
        #[arg(long)]
        platform: Option<String>,
        /// The directory to install into (created if missing; default: ~/.local/bin).
        #[arg(long)]
        to: Option<PathBuf>,
        /// The installed file's name (default: the project's name).
        #[arg(long)]
        name: Option<String>,
    },
}

/// A followed project as `client verify` reports it.
#[derive(serde::Serialize)]
struct VerifiedProject {
    project: String,
    release_chain: String,
    /// Its latest trusted release (`null` before the first).
    release: Option<VerifiedRelease>,
}

/// The latest trusted release of a project, re-verified from the local state.
#[derive(serde::Serialize)]
struct VerifiedRelease {
    version: String,
    sequence: u64,
    /// Its block index in the release chain.
    block: u64,
    /// Developer signatures it carries.
    signatures: usize,
    /// Hash of the policy-chain block it follows.
    policy_block: String,
    /// Platform and BLAKE3 hash of each binary.
    binaries: std::collections::BTreeMap<String, String>,
}

/// An artifact of a project's latest trusted release, every byte checked.
struct Fetched {
    artifact: chainiac_protocol::release::ArtifactRef,
    version: String,
    bytes: Vec<u8>,
    /// The peer that served it.
    from: String,
}

/// `name` if it names a file in a directory (not a path, not `.` or `..`): a release's artifact
/// names and project names come from the network and must not choose where files go.
fn plain_file_name<'a>(what: &str, name: &'a str) -> anyhow::Result<&'a str> {
    // No leading dot either: `.bashrc`, `.profile` or `.envrc` in the working directory run
    // code without anyone running the artifact.
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name().is_some_and(|n| n == name);
    if !plain {
        bail!("{what} {name:?} is not a plain file name; choose where to write it");
    }
    Ok(name)
}

/// Writes `bytes` to `path` atomically with permission bits `mode`: a temporary file in the same
/// directory, flushed, renamed over `path`, and the directory flushed, so that readers see the
/// old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".chainiac-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|()| {
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write a temporary file in {}", dir.display()))?;
    file.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the new file to {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush {}", dir.display()))?;
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
        if chainiac_client::peer_of(&address).is_none() {
            bail!("--peer {peer} must end with /p2p/PEER_ID");
        }
        if !state.peers.contains(&address) {
            state.peers.push(address);
        }
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    runtime.block_on(client_command(args.command, &args.dir, state, timeout))
}

async fn client_command(
    command: ClientCommand,
    dir: &Path,
    mut state: ClientState,
    timeout: Duration,
) -> anyhow::Result<()> {
    if let ClientCommand::Verify { project, json } = &command {
        let mut verified = Vec::new();
        for name in select_projects(&state, project.as_deref())? {
            let followed = &state.projects[name];
            let release = followed.verify_latest()?.map(|release| VerifiedRelease {
                version: release.manifest.version.clone(),
                sequence: release.manifest.sequence,
                block: followed.release.block().index(),
                signatures: release.signatures.len(),
                policy_block: release.manifest.policy.to_hex(),
                binaries: release
                    .manifest
                    .binaries
                    .iter()
                    .map(|b| (b.platform.clone(), b.artifact.hash.to_hex()))
                    .collect(),
            });
            verified.push(VerifiedProject {
                project: name.to_owned(),
                release_chain: followed.release_chain.to_hex(),
                release,
            });
        }
        if *json {
            println!("{}", serde_json::to_string_pretty(&verified)?);
            return Ok(());
        }
        for entry in verified {
            match entry.release {
                Some(release) => println!(
                    "{}: release {} (sequence {}, release-chain block {}) verified: {} developer signatures under policy block {}",
                    entry.project,
                    release.version,
                    release.sequence,
                    release.block,
                    release.signatures,
                    release.policy_block
                ),
                None => println!("{}: no release yet", entry.project),
            }
        }
        return Ok(());
    }
    let waiting =
        crate::progress::Waiting::start(format!("connecting to {} peer(s)", state.peers.len()));
    let connection = Connection::open(&state.peers, timeout).await;
    drop(waiting);
    let mut connection = connection?;
    let result = async {
        match command {
            ClientCommand::Verify { .. } => Ok(()),
            ClientCommand::Timeline { chain } => {
                let chain = Hash::from_hex(&chain)
                    .context("the timeline chain id must be 64 hex characters")?;
                state.timeline = Some(connection.pin_timeline(chain).await?);
                state.save(dir)?;
                println!("timeline {chain} pinned; heads of projects whose policy names no timeline will be checked against it (a timeline a policy names always wins)");
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
            ClientCommand::Sync {
                project,
                watch,
                anchor,
            } => {
                let names: Vec<String> = select_projects(&state, project.as_deref())?
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                let anchor = anchor.check();
                sync_all(&connection, &mut state, &names, dir, true, anchor.as_ref()).await?;
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
                        .chain(state.policy_timelines.keys().copied())
                        .collect();
                    println!("watching for new releases (Ctrl-C to stop)");
                    loop {
                        tokio::select! {
                            head = connection.next_gossip(&chains) => {
                                if head.is_none() { break; }
                                // A watch outlives a peer's bad moment: say it and go on.
                                if let Err(error) =
                                    // Anchors were checked once, at the start.
                                    sync_all(&connection, &mut state, &names, dir, false, None).await
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
                let fetched = fetch_latest(
                    &connection,
                    &mut state,
                    &project,
                    platform.as_deref(),
                    Wanted::Any,
                )
                .await?;
                let out = match out {
                    Some(out) => out,
                    None => {
                        // A name the network chose never replaces a file the user has.
                        let name = plain_file_name("artifact name", &fetched.artifact.name)?;
                        if Path::new(name).exists() {
                            bail!("{name} exists; choose where to write the artifact with --out");
                        }
                        PathBuf::from(name)
                    }
                };
                write_atomically(&out, &fetched.bytes, 0o644)?;
                state.save(dir)?;
                println!(
                    "{} verified (BLAKE3 {}) from peer {}, written to {}",
                    fetched.artifact.name,
                    fetched.artifact.hash,
                    fetched.from,
                    out.display()
                );
                Ok(())
            }
            ClientCommand::Install {
                project,
                platform,
                to,
                name,
            } => {
                if platform.as_deref() == Some("source") {
                    bail!("the source archive is not an executable; fetch it with `chainiac client fetch {project} --platform source`");
                }
                let to = match to {
                    Some(to) => to,
                    None => std::env::var_os("HOME")
                        .map(|home| PathBuf::from(home).join(".local/bin"))
                        .context("HOME is not set; choose the directory with --to")?,
                };
                let name = name.unwrap_or_else(|| project.clone());
                let target = to.join(plain_file_name("file name", &name)?);
                let fetched = fetch_latest(
                    &connection,
                    &mut state,
                    &project,
                    platform.as_deref(),
                    Wanted::Binary,
                )
                .await?;
                std::fs::create_dir_all(&to)
                    .with_context(|| format!("cannot create {}", to.display()))?;
                let previous = std::fs::read(&target).ok();
                // Unchanged only if it is this binary and can run (a `fetch --out` copy left
                // at 0644 is installed again).
                let executable = {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::metadata(&target)
                        .is_ok_and(|m| m.permissions().mode() & 0o111 == 0o111)
                };
                let unchanged = executable
                    && previous.as_deref().is_some_and(|old| {
                        chainiac_protocol::Hash::of_artifact(old) == fetched.artifact.hash
                    });
                if !unchanged {
                    write_atomically(&target, &fetched.bytes, 0o755)?;
                }
                state.save(dir)?;
                let what = if unchanged {
                    "already installed at"
                } else if previous.is_some() {
                    "installed, replacing the previous file, at"
                } else {
                    "installed at"
                };
                println!(
                    "{project} {} ({}, BLAKE3 {}) verified from peer {}, {what} {}",
                    fetched.version,
                    fetched.artifact.name,
                    fetched.artifact.hash,
                    fetched.from,
                    target.display()
                );
                Ok(())
            }
        }
    }
    .await;
    connection.close().await;
    result
}

/// Which artifacts a command accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// A binary or the source archive.
    Any,
    /// Only a binary (to install).
    Binary,
}

/// Syncs `project`, verifies its latest release and downloads the artifact for `platform`,
/// checking every byte against the release.
async fn fetch_latest(
    connection: &Connection,
    state: &mut ClientState,
    project: &str,
    platform: Option<&str>,
    wanted: Wanted,
) -> anyhow::Result<Fetched> {
    let freshness = state.freshness();
    let followed = state.projects.get_mut(project).with_context(|| {
        format!(
            "project {project:?} is not followed; run `chainiac client follow RELEASE_CHAIN_ID`"
        )
    })?;
    let (report, view) = connection
        .sync_project(
            followed,
            state.timeline.as_mut(),
            &mut state.policy_timelines,
            freshness,
        )
        .await?;
    describe_timeline(connection, view.as_ref(), freshness).await;
    let release = followed
        .verify_latest()?
        .with_context(|| format!("{project} has no release yet"))?;
    let artifact = select_artifact(&release, platform)?;
    if wanted == Wanted::Binary && artifact == release.manifest.source {
        bail!(
            "release {} of {project} has no binary to install, only its source archive",
            release.manifest.version
        );
    }
    eprintln!(
        "fetching {} ({} bytes) of {project} {} (release-chain block {})",
        artifact.name, artifact.size, release.manifest.version, report.to_index
    );
    // Progress on a terminal only: a pipe or a log file gets the result lines alone.
    let show_progress =
        artifact.size > 4 << 20 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let download = connection
        .fetch(&artifact, &|done, total| {
            if show_progress {
                eprint!("\r  {done} / {total} bytes verified");
            }
        })
        .await?;
    if show_progress {
        eprintln!();
    }
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
    Ok(Fetched {
        version: release.manifest.version.clone(),
        artifact,
        bytes: download.bytes,
        from: download.from.to_string(),
    })
}

/// Says which timeline epoch the heads were checked against, and the newest anchor a peer lists
/// (a hint: `--ethereum-rpc` checks anchors, [`check_timeline_anchors`]).
async fn describe_timeline(
    connection: &Connection,
    view: Option<&TimelineView>,
    freshness: Freshness,
) {
    let Some(view) = view else {
        eprintln!(
            "note: no timeline pinned and the project's policy names none, so the client cannot tell a frozen view from a quiet project; pin one with `chainiac client timeline TIMELINE_CHAIN_ID`"
        );
        return;
    };
    eprintln!(
        "timeline epoch {} ({} s old, bound {} s), {} chains",
        view.block.commit.epoch, view.age, freshness.max_age, view.block.commit.chain_count
    );
    // The first listed anchor whose evidence holds, so that junk a peer lists first cannot hide
    // a good one; with none, the first listed, to say why it is not believed.
    let listed = listed_anchors(connection, view).await;
    let Some(anchor) = listed
        .iter()
        .find(|a| chainiac_anchor::verify_evidence(a).is_ok())
        .or(listed.first())
        .cloned()
    else {
        return;
    };
    // The offline part of the check: the anchor's own Ethereum evidence, its block in the
    // timeline, its sender vouched for by a member of that block's roster.
    let offline = async {
        let genesis = connection.pin_timeline(view.chain).await?;
        connection.check_anchor_in_timeline(&genesis, &anchor).await
    };
    let limit = Duration::from_secs(ANCHOR_CHECK_SECONDS);
    match tokio::time::timeout(limit, offline).await {
        Ok(Ok(verified)) => eprintln!(
            "timeline block {} was anchored by roster member {} from Ethereum account {} (transaction {}, evidence checked offline); its Ethereum block and time are not checked without an Ethereum node: `chainiac client sync --ethereum-rpc URL`",
            anchor.timeline_index, verified.member, verified.sender, anchor.transaction
        ),
        Ok(Err(error)) => eprintln!(
            "unverified: a peer lists timeline block {} as anchored in Ethereum chain {} (transaction {}), but its proof does not hold: {error}",
            anchor.timeline_index, anchor.chain_id, anchor.transaction
        ),
        Err(_) => eprintln!(
            "unverified: a peer lists timeline block {} as anchored in Ethereum chain {} (transaction {}); its proof could not be checked within {ANCHOR_CHECK_SECONDS} s",
            anchor.timeline_index, anchor.chain_id, anchor.transaction
        ),
    }
}

/// Checks, once per timeline the sync used, that its newest anchor is the timeline's own block
/// and confirmed on the Ethereum node of `check`.
async fn check_timeline_anchors(
    connection: &Connection,
    views: &[TimelineView],
    check: &AnchorCheck,
) -> anyhow::Result<()> {
    if views.is_empty() {
        bail!(
            "--ethereum-rpc checks the anchors of the timeline the projects are checked against, and this sync used none"
        );
    }
    for view in views {
        let checked = check_newest_anchor(connection, view, check).await?;
        eprintln!(
            "timeline {}: {}; checked against {} and by a skip proof from the timeline's genesis",
            &view.chain.to_hex()[..16],
            checked.describe(),
            check.rpc
        );
    }
    Ok(())
}

async fn sync_all(
    connection: &Connection,
    state: &mut ClientState,
    names: &[String],
    dir: &Path,
    report_unchanged: bool,
    anchor: Option<&AnchorCheck>,
) -> anyhow::Result<()> {
    let freshness = state.freshness();
    let mut described = false;
    let mut views: Vec<TimelineView> = Vec::new();
    for name in names {
        let Some(followed) = state.projects.get_mut(name) else {
            continue;
        };
        let learned_before = state.policy_timelines.len();
        let waiting = crate::progress::Waiting::start(format!("syncing {name}"));
        let synced = connection
            .sync_project(
                followed,
                state.timeline.as_mut(),
                &mut state.policy_timelines,
                freshness,
            )
            .await;
        drop(waiting);
        let (report, view) = synced.with_context(|| format!("syncing {name}"))?;
        if let Some(view) = &view
            && state.policy_timelines.len() > learned_before
        {
            eprintln!(
                "{name}: its policy commits it to timeline {}; checking heads against it",
                view.chain
            );
        }
        if !described {
            describe_timeline(connection, view.as_ref(), freshness).await;
            described = true;
        }
        if let Some(view) = view
            && !views.iter().any(|v| v.chain == view.chain)
        {
            views.push(view);
        }
        for failure in &report.failures {
            eprintln!("  peer {failure}");
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
    // After every project is synced, reported and saved: a failed anchor check fails the
    // command without losing what the sync verified.
    if let Some(check) = anchor {
        check_timeline_anchors(connection, &views, check).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_choose_where_a_file_goes() {
        for good in ["tool", "hello-1.2.0-linux-x86_64", "a..b", "tool."] {
            assert!(plain_file_name("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "nul\0",
            ".bashrc",
            ".profile",
        ] {
            assert!(plain_file_name("name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_atomic_write_replaces_the_file_whole_with_its_mode() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("tool");
        std::fs::write(&path, b"old")?;
        write_atomically(&path, b"new contents", 0o755)?;
        assert_eq!(std::fs::read(&path)?, b"new contents");
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o755
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["tool"], "no temporary file is left");
        // Into a directory that does not exist: an error naming it, nothing written.
        let missing = dir.path().join("missing").join("tool");
        let error = write_atomically(&missing, b"x", 0o644)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(error.contains("missing"), "{error}");
        Ok(())
    }
}
