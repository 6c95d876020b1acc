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
    use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
    use alloy::eips::eip2718::Encodable2718;
    use alloy::network::TxSignerSync;
    use alloy::primitives::{TxKind, U256};
    use alloy::providers::Provider;
    use alloy::signers::local::PrivateKeySigner;

    let endpoint = crate::Endpoint::new(url, &crate::EndpointOptions::default())?;
    let provider = endpoint.provider();
    let refused = |e: String| crate::AnchorError::Refused(format!("funding {to}: {e}"));
    let signer: PrivateKeySigner = ANVIL_DEV_KEY.parse().map_err(|e| refused(format!("{e}")))?;
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| endpoint.error("eth_chainId", e))?;
    let nonce = provider
        .get_transaction_count(signer.address())
        .pending()
        .await
        .map_err(|e| endpoint.error("eth_getTransactionCount", e))?;
    let mut transaction = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 1_000 * crate::GWEI,
        max_priority_fee_per_gas: crate::GWEI,
        to: TxKind::Call(to),
        value: U256::from(wei),
        access_list: Default::default(),
        input: Default::default(),
    };
    let signature = signer
        .sign_transaction_sync(&mut transaction)
        .map_err(|e| refused(e.to_string()))?;
    let envelope = TxEnvelope::Eip1559(transaction.into_signed(signature));
    let hash = *envelope.tx_hash();
    let _sent = provider
        .send_raw_transaction(&envelope.encoded_2718())
        .await
        .map_err(|e| endpoint.error("eth_sendRawTransaction", e))?;
    for _ in 0..600 {
        if provider
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| endpoint.error("eth_getTransactionReceipt", e))?
            .is_some()
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(refused("the transfer was not mined within 60 s".into()))
}
