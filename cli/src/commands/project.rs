//! `chainiac project`: create a project, change its policy, show it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chainiac_api::types::ProjectChainJson;
use chainiac_cli::publisher::{
    CreateOptions, PolicyChange, ProjectFile, TimelineChoice, change_policy, create_project,
    key_path,
};
use chainiac_protocol::keys::PublicKey;
use clap::Subcommand;

use super::NodesArg;

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
        /// Number of developer keys to create.
        #[arg(long, default_value_t = 3, conflicts_with = "developer_keys")]
        developers: u32,
        /// A developer key the developer already has, instead of creating keys: an OpenSSH
        /// Ed25519 public key file (`~/.ssh/id_ed25519.pub`) or `ssh-ed25519 ...` line, a
        /// minisign public key file or `RW...` line, or 64 hex characters (repeatable; the
        /// developer then signs with `release sign --key ~/.ssh/id_ed25519` or their minisign
        /// secret key).
        #[arg(long = "developer-key")]
        developer_keys: Vec<String>,
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
        /// The timeline clients check the project's heads against: its chain id, 'none', or
        /// 'auto' (the one timeline the nodes serve; none if they serve none).
        #[arg(long, default_value = "auto")]
        timeline: TimelineChoice,
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
        /// Commit the project to another timeline (chain id, 'auto' or 'none'); a root change.
        #[arg(long)]
        timeline: Option<TimelineChoice>,
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
        /// Print the chains as JSON (the node's `GET /projects` entries for this project).
        #[arg(long)]
        json: bool,
    },
}

/// `chainiac project ...`.
pub(crate) fn project(command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::Create {
            name,
            dir,
            developers,
            developer_keys,
            threshold,
            roots,
            root_threshold,
            roster,
            verifiers,
            attestations,
            timeline,
            nodes,
        } => {
            let verifiers = verifiers
                .iter()
                .map(|v| parse_verifier(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let developer_keys = developer_keys
                .iter()
                .map(|k| {
                    chainiac_api::keyfile::public_key_from(k)
                        .map_err(|e| anyhow::anyhow!("--developer-key {k}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let developers = if developer_keys.is_empty() {
                developers
            } else {
                u32::try_from(developer_keys.len()).context("too many developer keys")?
            };
            let api_token = nodes.api_token.clone();
            let nodes = nodes.nodes()?;
            let timeline = timeline.resolve(&nodes)?;
            let project = create_project(&CreateOptions {
                name: &name,
                dir: &dir,
                developers,
                developer_keys: &developer_keys,
                threshold,
                roots,
                root_threshold,
                roster: &roster,
                nodes: &nodes,
                verifiers: &verifiers,
                attestations,
                api_token_file: api_token.as_deref(),
                timeline: timeline.map_or(TimelineChoice::Without, TimelineChoice::Chain),
            })?;
            println!("created project {name} in {}", dir.display());
            println!("  policy chain   {}", project.policy_chain);
            println!(
                "  release chain  {}  (clients follow this id)",
                project.release_chain
            );
            if developer_keys.is_empty() {
                println!(
                    "  keys           {} ({roots} root, {developers} developer; releases need {threshold})",
                    dir.join("keys").display()
                );
            } else {
                println!(
                    "  keys           {} ({roots} root); the {developers} developers sign with their own keys (`release sign --key PATH`); releases need {threshold}",
                    dir.join("keys").display()
                );
            }
            match timeline {
                Some(timeline) => println!(
                    "  timeline       {timeline}  (clients check both chains' heads against it)"
                ),
                None => println!(
                    "  timeline       none: clients get no freshness guarantee unless they pin one (a root change can name one later)"
                ),
            }
            Ok(())
        }
        ProjectCommand::Policy {
            dir,
            rotate,
            threshold,
            sign_with,
            roster,
            timeline,
            nodes,
        } => {
            let (policy, index) = change_policy(
                &dir,
                &nodes.nodes()?,
                &PolicyChange {
                    rotate: &rotate,
                    threshold,
                    sign_with: &sign_with,
                    roster: roster.as_deref(),
                    timeline,
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
                    key_path(&dir, &format!("dev-{slot}")).display()
                );
            }
            Ok(())
        }
        ProjectCommand::Show { dir, nodes, json } => {
            let project = ProjectFile::load(&dir)?;
            let nodes = project.nodes(&nodes.nodes()?)?;
            let all: Vec<ProjectChainJson> = nodes.get("/projects")?;
            let mine: Vec<ProjectChainJson> = all
                .into_iter()
                .filter(|chain| chain.project.as_deref() == Some(project.name.as_str()))
                .collect();
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&mine)?)?;
                return Ok(());
            }
            for chain in mine {
                let kind = chain.kind.as_deref().unwrap_or("?");
                let detail = match kind {
                    "release" => format!(
                        "latest {}",
                        chain.version.as_deref().unwrap_or("(none yet)")
                    ),
                    _ => format!(
                        "{} of {} developers, timeline {}",
                        chain
                            .developer_threshold
                            .map_or_else(|| "?".into(), |t| t.to_string()),
                        chain.developers.as_ref().map_or(0, Vec::len),
                        chain.timeline.as_deref().unwrap_or("none")
                    ),
                };
                writeln!(
                    out,
                    "{kind:<8} {}  block {}  {detail}",
                    chain.chain_id, chain.index
                )?;
            }
            Ok(())
        }
    }
}

/// A build verifier's public key: hex, or a node.pub.json file.
fn parse_verifier(text: &str) -> anyhow::Result<PublicKey> {
    let path = Path::new(text);
    let hex = if path.is_file() {
        let file: chainiac_api::types::RosterMemberJson = serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a node.pub.json", path.display()))?;
        file.public_key
    } else {
        text.to_owned()
    };
    PublicKey::from_hex(&hex)
        .with_context(|| format!("--verifier {text}: not a public key (hex) nor a node.pub.json"))
}
