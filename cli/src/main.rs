//! The `chainiac` command.

use clap::{Parser, Subcommand};

mod commands;

/// chainiac: a decentralized, reproducible software-release log.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run and manage a node.
    #[command(subcommand)]
    Node(commands::node::NodeCommand),
    /// Create a project and change its release policy.
    #[command(subcommand)]
    Project(commands::project::ProjectCommand),
    /// Prepare, sign and publish releases.
    #[command(subcommand)]
    Release(commands::release::ReleaseCommand),
    /// Follow projects as a light client: sync, verify, fetch.
    Client(commands::client::ClientArgs),
    /// A local testnet of node processes on 127.0.0.1.
    #[command(subcommand)]
    Testnet(commands::testnet::TestnetCommand),
    /// Ethereum anchors of the timeline: list and verify.
    #[command(subcommand)]
    Anchor(commands::anchor::AnchorCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Node(command) => commands::node::node(command),
        Command::Project(command) => commands::project::project(command),
        Command::Release(command) => commands::release::release(command),
        Command::Client(args) => commands::client::client(args),
        Command::Testnet(command) => commands::testnet::testnet(command),
        Command::Anchor(command) => commands::anchor::anchor(command),
    }
}
