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

use chainiac_api::http::Nodes;
use clap::Args;

/// Node API addresses.
#[derive(Debug, Args, Clone)]
pub(crate) struct NodesArg {
    /// Node API address to use (repeat or comma-separate for several; the next one takes over
    /// when one fails). Default: the nodes recorded in the project.
    #[arg(long = "node", env = "CHAINIAC_NODES", value_delimiter = ',')]
    pub(crate) nodes: Vec<SocketAddr>,
}

impl NodesArg {
    /// The nodes given, failing over with a notice on standard error.
    pub(crate) fn nodes(&self) -> Nodes {
        Nodes::new(&self.nodes).with_notice(std::sync::Arc::new(|error| {
            eprintln!("  {error}; trying the next node");
        }))
    }
}
