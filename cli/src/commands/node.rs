//! `chainiac node`: create a node, run it, ask it for its status, approve a timeline's move to
//! another roster.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chainiac_api::types::{RosterApprovalRequest, RosterChangeJson, StatusJson};
use chainiac_node::config::{NodeConfig, init_node};
use chainiac_node::runtime::{NodeOptions, RunningNode};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum NodeCommand {
    /// Create a node: key pair with proof of possession and a commented config.toml.
    Init {
        /// Directory for the node's files (created if missing).
        #[arg(long, env = "CHAINIAC_NODE_DIR")]
        dir: PathBuf,
    },
    /// Run a node until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Ask a running node for its peers, chains and heads.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// API address to ask (default: the one in the configuration).
        #[arg(long, env = "CHAINIAC_API")]
        api: Option<SocketAddr>,
        /// Print the node's answer as JSON (the API's `GET /status`).
        #[arg(long)]
        json: bool,
    },
    /// Approve, as this node's operator, moving a timeline this node witnesses to another
    /// roster. The node signs the approval with its key and sends it to the other members;
    /// the timeline moves at the next epoch after a threshold of its members approved.
    ApproveRoster {
        #[command(flatten)]
        config: ConfigArg,
        /// The timeline chain id.
        #[arg(long)]
        timeline: String,
        /// The new roster: a JSON list of roster entries (each member's node.pub.json).
        #[arg(long)]
        roster: PathBuf,
        /// The new roster's threshold (default: more than two thirds).
        #[arg(long)]
        threshold: Option<u32>,
        /// API address of this node (default: the one in the configuration).
        #[arg(long, env = "CHAINIAC_API")]
        api: Option<SocketAddr>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// The node's configuration file.
    #[arg(long, env = "CHAINIAC_CONFIG")]
    config: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// libp2p listen address (repeat for several); replaces the file's list.
    #[arg(long = "listen", env = "CHAINIAC_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Bootstrap peer address (repeat for several); replaces the file's list.
    #[arg(long = "bootstrap", env = "CHAINIAC_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// HTTP API address.
    #[arg(long, env = "CHAINIAC_API")]
    api: Option<SocketAddr>,
    /// Data directory.
    #[arg(long, env = "CHAINIAC_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl RunArgs {
    fn apply(&self, mut config: NodeConfig) -> NodeConfig {
        if !self.listen.is_empty() {
            config.network.listen.clone_from(&self.listen);
        }
        if !self.bootstrap.is_empty() {
            config.network.bootstrap.clone_from(&self.bootstrap);
        }
        if let Some(api) = self.api {
            config.api.listen = api;
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        config
    }
}

/// `chainiac node ...`.
pub(crate) fn node(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Init { dir } => init(&dir),
        NodeCommand::Run(args) => run(&args),
        NodeCommand::Status { config, api, json } => status(&config.config, api, json),
        NodeCommand::ApproveRoster {
            config,
            timeline,
            roster,
            threshold,
            api,
        } => approve_roster(&config.config, &timeline, &roster, threshold, api),
    }
}

fn init(dir: &std::path::Path) -> anyhow::Result<()> {
    let node =
        init_node(dir).with_context(|| format!("cannot create a node in {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "created node in {}", dir.display())?;
    writeln!(out, "  config:      {}", node.config_path.display())?;
    writeln!(
        out,
        "  secret key:  {} (keep it private)",
        node.config.key_file.display()
    )?;
    writeln!(out, "  public key:  {}", node.public.key)?;
    writeln!(
        out,
        "  roster entry (public key and proof of possession): {}",
        dir.join("node.pub.json").display()
    )?;
    writeln!(
        out,
        "start it with: chainiac node run --config {}",
        node.config_path.display()
    )?;
    Ok(())
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAINIAC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // The testnet and service managers send the log to a file: no colour codes there.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = args.apply(NodeConfig::load(&args.config.config)?);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let node = RunningNode::start(NodeOptions::new(config))
            .await
            .context("cannot start the node")?;
        eprintln!(
            "node {} running; API on http://{}",
            node.peer_id, node.api_addr
        );
        wait_for_signal().await?;
        eprintln!("shutting down");
        node.shutdown().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

fn approve_roster(
    config_path: &std::path::Path,
    timeline: &str,
    roster: &std::path::Path,
    threshold: Option<u32>,
    api: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    let address = api.unwrap_or(config.api.listen);
    let token_path = config.api.token_path(&config.key_file);
    let token = chainiac_api::ApiToken::load(&token_path)
        .with_context(|| format!("cannot read the node's API token {}", token_path.display()))?;
    let members = chainiac_cli::publisher::read_roster(roster)?;
    let change: RosterChangeJson = chainiac_api::http::Nodes::new(&[address])
        .with_token(Some(token))
        .post(
            &format!("/timeline/{timeline}/roster"),
            &RosterApprovalRequest {
                roster: members,
                threshold,
            },
        )
        .with_context(|| format!("the node at {address} did not record the approval"))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "approved moving timeline {} to roster {}: {} of {} approvals",
        change.timeline, change.roster, change.approvals, change.threshold
    )?;
    if change.approvals >= change.threshold {
        writeln!(out, "the timeline moves at its next epoch")?;
    } else {
        writeln!(
            out,
            "waiting for {} more member(s) to run `chainiac node approve-roster` with the same roster",
            change.threshold - change.approvals
        )?;
    }
    for member in &change.unreached {
        writeln!(
            out,
            "note: member {member} could not be told; it learns of the change when its operator approves it"
        )?;
    }
    Ok(())
}

fn status(config: &std::path::Path, api: Option<SocketAddr>, json: bool) -> anyhow::Result<()> {
    let address = match api {
        Some(address) => address,
        None => NodeConfig::load(config)?.api.listen,
    };
    let status: StatusJson = chainiac_api::http::get_json(address, "/status")
        .with_context(|| format!("cannot ask the node at {address} for its status"))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "node        {}",
        status.peer_id.as_deref().unwrap_or("?")
    )?;
    writeln!(out, "public key  {}", status.public_key)?;
    for address in &status.listen {
        writeln!(out, "listening   {address}")?;
    }
    writeln!(out, "peers       {}", status.peers.len())?;
    for peer in &status.peers {
        writeln!(out, "  {peer}")?;
    }
    writeln!(out, "chains      {}", status.chains.len())?;
    for chain in &status.chains {
        writeln!(
            out,
            "  {}  head #{} {}",
            chain.chain_id, chain.index, chain.head
        )?;
    }
    Ok(())
}
