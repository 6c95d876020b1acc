//! `chainiac anchor`: make the node's Ethereum key, list the anchors a node recorded, verify one
//! (offline from its own evidence, then against Ethereum endpoints of your choice).

use std::path::PathBuf;

use anyhow::Context;
use chainiac_api::types::{AnchorProofJson, TimelineAnchorsJson};
use clap::Subcommand;

use super::NodesArg;

#[derive(Debug, Subcommand)]
pub(crate) enum AnchorCommand {
    /// Create the node's Ethereum anchoring key and print its address (fund it, then set
    /// [anchor] key_file in the node's config).
    Key {
        /// Where to write the key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
        /// Encrypt it (Web3 keystore, scrypt) with the password in this file; without it the
        /// key is written as plain hex, readable by its owner only (mode 0600), for testnets.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Check an anchor proof: its Ethereum evidence offline (block header, transaction and
    /// receipt with their Merkle-Patricia proofs, sender), then, with --rpc, that its block is
    /// canonical and deep enough on every endpoint given (all must agree).
    Verify {
        /// The proof: a JSON file as `anchor list` prints each entry.
        #[arg(long)]
        proof: PathBuf,
        /// JSON-RPC endpoint of an Ethereum node (http:// or https://); repeat it to require
        /// several providers to agree. Without it only the offline check runs.
        #[arg(long, env = "CHAINIAC_ETHEREUM_RPC", value_delimiter = ',')]
        rpc: Vec<String>,
        /// Confirmations required (with --rpc).
        #[arg(long, default_value_t = 2)]
        confirmations: u64,
        /// Extra certificate authorities (PEM) to trust for https endpoints.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Deploy the anchoring event contract (8 bytes of code that log their calldata;
    /// docs/protocol.md) from the key's account and print its address, for [anchor] contract.
    Deploy {
        /// JSON-RPC endpoint of an Ethereum node (http:// or https://).
        #[arg(long, env = "CHAINIAC_ETHEREUM_RPC")]
        rpc: String,
        /// The anchoring key that pays for the deployment (`chainiac anchor key`).
        #[arg(long)]
        key: PathBuf,
        /// The keystore's password file (for an encrypted key).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Highest max fee per gas offered, gwei.
        #[arg(long, default_value_t = 50)]
        max_fee_gwei: u64,
        /// Extra certificate authorities (PEM) to trust for https endpoints.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Print the anchor proofs a node recorded, and its anchoring account (JSON).
    List {
        #[command(flatten)]
        nodes: NodesArg,
    },
}

/// `chainiac anchor ...`.
pub(crate) fn anchor(command: AnchorCommand) -> anyhow::Result<()> {
    use chainiac_anchor::{Anchor, EthereumAnchor, EthereumConfig};
    match command {
        AnchorCommand::Key { out, password_file } => {
            let password = read_password(password_file.as_deref())?;
            let address = chainiac_anchor::create_key(&out, password.as_ref().map(|p| p.as_str()))?;
            let kind = if password.is_some() {
                "encrypted keystore"
            } else {
                "plain key file (mode 0600)"
            };
            println!("{address:#x}");
            eprintln!(
                "wrote the {kind} {}; send ETH to {address:#x}, then set [anchor] key_file = {:?}{} in the node's config",
                out.display(),
                out.display(),
                if password.is_some() {
                    " and key_password_file"
                } else {
                    ""
                }
            );
            Ok(())
        }
        AnchorCommand::Verify {
            proof,
            rpc,
            confirmations,
            ca_file,
        } => {
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("cannot read {}", proof.display()))?;
            let json = serde_json::from_str::<AnchorProofJson>(&text)
                .with_context(|| format!("{} is not an anchor proof", proof.display()))?;
            let proof = chainiac_anchor::AnchorProof::try_from(json)?;
            let verified = chainiac_anchor::verify_evidence(&proof)
                .map_err(|e| anyhow::anyhow!("anchor proof refused: {e}"))?;
            println!(
                "evidence valid: timeline block {} (index {}) of timeline {} is in transaction {} from {}, whose account Ed25519 key {} vouched for (check that this key is in the timeline's roster: `chainiac client sync` does), in a block the proof says is number {} ({}) of Ethereum chain {}",
                proof.timeline_block,
                proof.timeline_index,
                proof.timeline,
                proof.transaction,
                verified.sender,
                verified.member,
                proof.block_number,
                proof.block_hash,
                proof.chain_id
            );
            if rpc.is_empty() {
                println!(
                    "not checked against Ethereum: the block's number, time and place in the chain are only claims until --rpc shows it canonical and {confirmations} deep"
                );
                return Ok(());
            }
            let mut config = EthereumConfig::new(&rpc[0]);
            config.endpoints = rpc.clone();
            config.endpoint_options.ca_file = ca_file;
            let ethereum = EthereumAnchor::new(config)?;
            let confirmation = super::block_on(ethereum.verify(&proof, confirmations))??;
            println!(
                "canonical: block {} is on the canonical chain of {} with {} confirmations, mined at unix time {}",
                proof.block_number,
                rpc.join(" and "),
                confirmation.confirmations,
                confirmation.verified.timestamp
            );
            Ok(())
        }
        AnchorCommand::Deploy {
            rpc,
            key,
            password_file,
            max_fee_gwei,
            ca_file,
        } => {
            let password = read_password(password_file.as_deref())?;
            let signer = chainiac_anchor::load_key(&key, password.as_ref().map(|p| p.as_str()))?;
            let options = chainiac_anchor::EndpointOptions {
                ca_file,
                ..chainiac_anchor::EndpointOptions::default()
            };
            let fees = chainiac_anchor::FeePolicy {
                max_fee_per_gas: u128::from(max_fee_gwei) * chainiac_anchor::GWEI,
                ..chainiac_anchor::FeePolicy::default()
            };
            eprintln!(
                "deploying the anchoring contract from {:#x}...",
                signer.address()
            );
            let address = super::block_on(chainiac_anchor::deploy_contract(
                &rpc, &options, &signer, &fees,
            ))??;
            println!("{address:#x}");
            eprintln!("set [anchor] contract = \"{address:#x}\" in each node's config");
            Ok(())
        }
        AnchorCommand::List { nodes } => {
            let all: Vec<TimelineAnchorsJson> = nodes.nodes()?.get("/anchors")?;
            println!("{}", serde_json::to_string_pretty(&all)?);
            Ok(())
        }
    }
}

/// The password in `path` (its last line break dropped), if a path is given; the file must
/// be readable by its owner only.
fn read_password(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    Ok(match path {
        Some(path) => Some(chainiac_anchor::read_password_file(path)?),
        None => None,
    })
}
