//! The `chainiac` command. Its node, project, release, client and testnet subcommands are built
//! by the node and release issues on top of `chainiac-protocol`.

use clap::Parser;

/// chainiac: a decentralized, reproducible software-release log.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
