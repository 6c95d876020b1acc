//! The `chainiac` command.

use std::process::ExitCode;

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

mod commands;
mod progress;
mod report;

/// chainiac: a decentralized, reproducible software-release log.
#[derive(Debug, Parser)]
#[command(name = "chainiac", version, about, long_about = None)]
struct Cli {
    /// On failure, also print the stack trace (captured when RUST_BACKTRACE=1 is set too).
    /// Same as CHAINIAC_BACKTRACE=1.
    #[arg(short, long, global = true)]
    verbose: bool,
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
    /// Print a shell completion script, e.g. `chainiac completions bash >
    /// ~/.local/share/bash-completion/completions/chainiac`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (chainiac.1 and one per subcommand, e.g. chainiac-client-install.1)
    /// into a directory, e.g. `chainiac manpages ~/.local/share/man/man1`.
    Manpages {
        /// The directory (created if missing).
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose || std::env::var("CHAINIAC_BACKTRACE").is_ok_and(|v| v == "1");
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report::report(&error, verbose),
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node(command) => commands::node::node(command),
        Command::Project(command) => commands::project::project(command),
        Command::Release(command) => commands::release::release(command),
        Command::Client(args) => commands::client::client(args),
        Command::Testnet(command) => commands::testnet::testnet(command),
        Command::Anchor(command) => commands::anchor::anchor(command),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "chainiac",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Manpages { dir } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            let pages = std::fs::read_dir(&dir)?.count();
            eprintln!(
                "{pages} man pages in {}; read one with `man {}/chainiac.1`",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
