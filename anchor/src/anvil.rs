//! Finding anvil, the local Ethereum node that a testnet anchors in (`chainiac testnet up
//! --anvil`) and the anchoring tests run against.

use std::path::PathBuf;

/// Where `.ci/run` and the set-up install anvil, below the home directory.
const INSTALLED: &str =
    ".cache/chainiac-tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// anvil was not found.
#[derive(Debug, thiserror::Error)]
#[error(
    "anvil not found; install it with `npm install --prefix ~/.cache/chainiac-tools @foundry-rs/anvil-linux-amd64` or set CHAINIAC_ANVIL"
)]
pub struct AnvilNotFound;

/// Where anvil is: `CHAINIAC_ANVIL`, `anvil` on `PATH`, or where `.ci/run` installs it.
pub fn anvil_binary() -> Result<PathBuf, AnvilNotFound> {
    if let Ok(path) = std::env::var("CHAINIAC_ANVIL") {
        return Ok(path.into());
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("anvil"))
            .find(|candidate| candidate.is_file())
    }) {
        return Ok(found);
    }
    let installed = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(INSTALLED);
    if installed.is_file() {
        return Ok(installed);
    }
    Err(AnvilNotFound)
}

/// The private key of anvil's first development account (from its public test mnemonic
/// "test test ... junk"): funds fresh anchoring keys on a local testnet. Never use it on a
/// real network.
pub const ANVIL_DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// Sends `wei` to `to` from anvil's first development account, signed here (no unlocked
/// account), and waits until it is mined.
pub async fn fund_from_dev_account(
    url: &str,
    to: alloy::primitives::Address,
    wei: u128,
) -> Result<(), crate::AnchorError> {
    use alloy::primitives::{TxKind, U256};
    use alloy::signers::local::PrivateKeySigner;
    use std::time::Duration;

    let endpoint = crate::Endpoint::new(url, &crate::EndpointOptions::default())?;
    let refused = |e: String| crate::AnchorError::Refused(format!("funding {to}: {e}"));
    let signer: PrivateKeySigner = ANVIL_DEV_KEY.parse().map_err(|e| refused(format!("{e}")))?;
    let transfer = crate::transaction::UnsignedTransaction {
        chain_id: endpoint.chain_id().await?,
        nonce: endpoint.pending_nonce(signer.address()).await?,
        gas_limit: 21_000,
        // A local chain: any fee anvil could ask is below this.
        fees: crate::Fees {
            max_fee_per_gas: 1_000 * crate::GWEI,
            priority_fee_per_gas: crate::GWEI,
        },
        to: TxKind::Call(to),
        value: U256::from(wei),
        input: Default::default(),
    }
    .sign(&signer)
    .map_err(|e| refused(e.to_string()))?;
    endpoint.send(&transfer.raw).await?;
    match endpoint
        .wait_receipt(
            transfer.hash,
            Duration::from_secs(60),
            Duration::from_millis(100),
        )
        .await?
    {
        Some(_) => Ok(()),
        None => Err(refused("the transfer was not mined within 60 s".into())),
    }
}
