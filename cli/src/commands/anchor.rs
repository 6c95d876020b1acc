//! `chainiac anchor`: list the anchors a node recorded, verify one against Ethereum.

use std::path::PathBuf;

use anyhow::Context;
use chainiac_api::types::{AnchorProofJson, TimelineAnchorsJson};
use clap::Subcommand;

use super::NodesArg;

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
            let proof: chainiac_anchor::AnchorProof =
                serde_json::from_str::<AnchorProofJson>(&text)
                    .with_context(|| format!("{} is not an anchor proof", proof.display()))?
                    .into();
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
            let all: Vec<TimelineAnchorsJson> = nodes.nodes()?.get("/anchors")?;
            println!("{}", serde_json::to_string_pretty(&all)?);
            Ok(())
        }
    }
}
