//! The optional anchoring contract: eight bytes of EVM code that log their calldata as an
//! event (`LOG0`), so that anchors can be found with `eth_getLogs` by the contract's address.
//! Anchoring through it costs a little more than the default (a transaction to the account
//! itself, the anchor in its calldata), which needs no contract at all.
//!
//! Runtime code, `365f5f37365fa000`:
//!
//! | bytes  | opcode         | effect                                   |
//! |--------|----------------|------------------------------------------|
//! | `36`   | CALLDATASIZE   | push the calldata's size                 |
//! | `5f5f` | PUSH0 PUSH0    | push source offset 0, memory offset 0    |
//! | `37`   | CALLDATACOPY   | memory[0..size] = calldata               |
//! | `36`   | CALLDATASIZE   | push the size                            |
//! | `5f`   | PUSH0          | push memory offset 0                     |
//! | `a0`   | LOG0           | an event with no topic, data = calldata  |
//! | `00`   | STOP           |                                          |
//!
//! Creation code, `67365f5f37365fa0005f5260086018f3`: `PUSH8 runtime; PUSH0; MSTORE;
//! PUSH1 8; PUSH1 24; RETURN` (returns the 8 runtime bytes stored at memory 24..32).

use std::time::Duration;

use alloy::primitives::{Address, Bytes, TxKind, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;

use crate::fees::FeePolicy;
use crate::transaction::UnsignedTransaction;
use crate::{AnchorError, Endpoint, EndpointOptions};

/// The contract's runtime code.
pub const CONTRACT_RUNTIME: [u8; 8] = [0x36, 0x5f, 0x5f, 0x37, 0x36, 0x5f, 0xa0, 0x00];

/// The code that creates it.
pub fn contract_creation_code() -> Vec<u8> {
    let mut code = vec![0x67];
    code.extend_from_slice(&CONTRACT_RUNTIME);
    code.extend_from_slice(&[0x5f, 0x52, 0x60, 0x08, 0x60, 0x18, 0xf3]);
    code
}

/// Deploys the anchoring contract from `signer`'s account through `url`, with fees under
/// `fees`; waits until it is mined and its code is exactly [`CONTRACT_RUNTIME`]. Returns its
/// address.
pub async fn deploy_contract(
    url: &str,
    options: &EndpointOptions,
    signer: &PrivateKeySigner,
    fees: &FeePolicy,
) -> Result<Address, AnchorError> {
    let endpoint = Endpoint::new(url, options)?;
    let offered = fees.first(endpoint.base_fee().await?)?;
    let nonce = endpoint.pending_nonce(signer.address()).await?;
    let deployment = UnsignedTransaction {
        chain_id: endpoint.chain_id().await?,
        nonce,
        // 32,000 for a creation, the creation code's calldata, and 200 per byte of code.
        gas_limit: 100_000,
        fees: offered,
        to: TxKind::Create,
        value: U256::ZERO,
        input: Bytes::from(contract_creation_code()),
    }
    .sign(signer)
    .map_err(|e| AnchorError::Refused(format!("cannot sign the deployment: {e}")))?;
    let hash = deployment.hash;
    endpoint.send(&deployment.raw).await?;
    let receipt = endpoint
        .wait_receipt(hash, Duration::from_secs(600), Duration::from_millis(500))
        .await?
        .ok_or_else(|| {
            AnchorError::Refused(format!(
                "the deployment {hash:#x} was not mined within 10 minutes; check it, then deploy again if it is gone"
            ))
        })?;
    if !receipt.status() {
        return Err(AnchorError::Refused(format!(
            "the deployment {hash:#x} failed"
        )));
    }
    // The address follows from the sender and nonce; the endpoint's word is not needed.
    let address = signer.address().create(nonce);
    let code = endpoint
        .provider()
        .get_code_at(address)
        .await
        .map_err(|e| endpoint.error("eth_getCode", e))?;
    if code.as_ref() != CONTRACT_RUNTIME {
        return Err(AnchorError::Refused(format!(
            "the contract at {address} holds {code}, not the anchoring contract"
        )));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_bytecode() {
        assert_eq!(hex::encode(CONTRACT_RUNTIME), "365f5f37365fa000");
        assert_eq!(
            hex::encode(contract_creation_code()),
            "67365f5f37365fa0005f5260086018f3"
        );
    }
}
