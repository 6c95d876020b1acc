//! One module per command of the `chainiac` binary. Each is a thin layer over a library: the
//! node (`node`), the publisher (`project`, `release`), the light client (`client`), the
//! testnet's processes (`testnet`), anchoring (`anchor`).

// These commands' output is what the user asked for: standard output is the interface.
#![allow(clippy::print_stdout)]

pub(crate) mod anchor;
pub(crate) mod client;
pub(crate) mod demo;
pub(crate) mod node;
pub(crate) mod project;
pub(crate) mod release;
pub(crate) mod testnet;

use std::net::SocketAddr;
use std::path::PathBuf;

use chainiac_api::http::Nodes;
use clap::Args;

/// Node API addresses.
#[derive(Debug, Args, Clone)]
pub(crate) struct NodesArg {
    /// Node API address to use (repeat or comma-separate for several; the next one takes over
    /// when one fails). Default: the nodes recorded in the project.
    #[arg(long = "node", env = "CHAINIAC_NODES", value_delimiter = ',')]
    pub(crate) nodes: Vec<SocketAddr>,
    /// The nodes' API token file, which writes need (a node's `api.token`; a local testnet's
    /// `DIR/api.token`). Default: the one recorded in the project, if any.
    #[arg(long = "api-token", env = "CHAINIAC_API_TOKEN_FILE")]
    pub(crate) api_token: Option<PathBuf>,
}

impl NodesArg {
    /// The nodes given, with their API token, failing over with a notice on standard error.
    pub(crate) fn nodes(&self) -> anyhow::Result<Nodes> {
        let token = self
            .api_token
            .as_deref()
            .map(chainiac_api::ApiToken::load)
            .transpose()?;
        Ok(Nodes::new(&self.nodes)
            .with_token(token)
            .with_notice(std::sync::Arc::new(|error| {
                eprintln!("  {error}; trying the next node");
            })))
    }
}

/// The passphrase of an encrypted key file: `CHAINIAC_KEY_PASSPHRASE`, or asked on the
/// terminal (never echoed); none when neither is there.
pub(crate) fn ask_passphrase(path: &std::path::Path) -> Option<zeroize::Zeroizing<String>> {
    if let Ok(passphrase) = std::env::var("CHAINIAC_KEY_PASSPHRASE") {
        return Some(zeroize::Zeroizing::new(passphrase));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return None;
    }
    rpassword::prompt_password(format!("passphrase for {}: ", path.display()))
        .ok()
        .map(zeroize::Zeroizing::new)
}

/// Runs one piece of async work (an Ethereum call) to completion on a single-threaded
/// runtime, for commands that are otherwise synchronous.
pub(crate) fn block_on<F: std::future::Future>(work: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(work))
}
