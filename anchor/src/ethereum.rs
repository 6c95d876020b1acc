//! The Ethereum backend: one self-addressed transaction per anchored timeline block, carrying
//! [`anchor_calldata`] (88 bytes: 24,310 gas measured on anvil under the Prague calldata
//! floor, whatever the number of projects).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::rpc::{Rpc, RpcError, parse_quantity};
use crate::{Anchor, AnchorError};
use crate::{AnchorProof, AnchorRequest, Confirmation, anchor_calldata};

/// How far back a lost transaction is looked for, in blocks.
const LOOKBACK: u64 = 256;

/// Settings of the Ethereum backend.
#[derive(Clone, Debug)]
pub struct EthereumConfig {
    /// JSON-RPC endpoint, `http://host:port[/path]`.
    pub rpc: String,
    /// Sending account (unlocked on the node); default: the node's first account.
    pub from: Option<String>,
    /// How long to wait for the transaction to be mined.
    pub mined_timeout: Duration,
}

impl EthereumConfig {
    /// Settings for `rpc` with the node's first account.
    pub fn new(rpc: &str) -> Self {
        Self {
            rpc: rpc.into(),
            from: None,
            mined_timeout: Duration::from_secs(60),
        }
    }
}

/// Anchors in Ethereum through a JSON-RPC node.
#[derive(Debug)]
pub struct EthereumAnchor {
    rpc: Rpc,
    config: EthereumConfig,
    /// The nonce chosen for each request: every retry reuses it, so at most one is mined.
    nonces: Mutex<HashMap<(chainiac_protocol::Hash, u64), u64>>,
}

fn hex_data(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_ascii_lowercase()
}

impl EthereumAnchor {
    /// A backend for `config`.
    pub fn new(config: EthereumConfig) -> Result<Self, RpcError> {
        Ok(Self {
            rpc: Rpc::new(&config.rpc)?,
            config,
            nonces: Mutex::default(),
        })
    }

    fn from(&self) -> Result<String, AnchorError> {
        if let Some(from) = &self.config.from {
            return Ok(from.to_ascii_lowercase());
        }
        let accounts = self.rpc.call("eth_accounts", &json!([]))?;
        accounts
            .get(0)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                AnchorError::Refused(
                    "the Ethereum node has no unlocked account to send from; configure one".into(),
                )
            })
    }

    /// A mined transaction from `from` with `nonce`, among the last blocks.
    fn find_mined(&self, from: &str, nonce: u64) -> Result<Option<Value>, AnchorError> {
        let head = self.rpc.quantity("eth_blockNumber", &json!([]))?;
        for number in (head.saturating_sub(LOOKBACK)..=head).rev() {
            let block = self.rpc.call(
                "eth_getBlockByNumber",
                &json!([format!("0x{number:x}"), true]),
            )?;
            for tx in block["transactions"].as_array().into_iter().flatten() {
                if text(&tx["from"]) == from && parse_quantity(&tx["nonce"]) == Some(nonce) {
                    return Ok(Some(tx.clone()));
                }
            }
        }
        Ok(None)
    }

    fn proof_from_receipt(
        &self,
        chain_id: u64,
        transaction: &str,
        request: &AnchorRequest,
    ) -> Result<Option<AnchorProof>, AnchorError> {
        let receipt = self
            .rpc
            .call("eth_getTransactionReceipt", &json!([transaction]))?;
        if receipt.is_null() {
            return Ok(None);
        }
        if parse_quantity(&receipt["status"]) != Some(1) {
            return Err(AnchorError::Refused(format!(
                "anchoring transaction {transaction} failed on chain"
            )));
        }
        Ok(Some(AnchorProof {
            chain_id,
            transaction: transaction.to_ascii_lowercase(),
            block_number: parse_quantity(&receipt["blockNumber"]).unwrap_or_default(),
            block_hash: text(&receipt["blockHash"]),
            timeline: request.timeline.to_hex(),
            timeline_index: request.index,
            timeline_block: request.block.to_hex(),
        }))
    }

    fn wait_mined(
        &self,
        chain_id: u64,
        transaction: &str,
        request: &AnchorRequest,
    ) -> Result<AnchorProof, AnchorError> {
        let start = Instant::now();
        loop {
            if let Some(proof) = self.proof_from_receipt(chain_id, transaction, request)? {
                return Ok(proof);
            }
            if start.elapsed() > self.config.mined_timeout {
                return Err(AnchorError::Refused(format!(
                    "transaction {transaction} not mined within {} s; it will be retried with the same nonce",
                    self.config.mined_timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Anchor for EthereumAnchor {
    fn anchor(&self, request: &AnchorRequest) -> Result<AnchorProof, AnchorError> {
        let from = self.from()?;
        let chain_id = self.rpc.quantity("eth_chainId", &json!([]))?;
        let data = anchor_calldata(request);
        let key = (request.timeline, request.index);
        let remembered = self
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied();
        let nonce = match remembered {
            Some(nonce) => {
                // A retry: if a transaction with this nonce was mined meanwhile, it is either
                // ours (done) or someone else's (choose a new nonce).
                let mined = self
                    .rpc
                    .quantity("eth_getTransactionCount", &json!([from, "latest"]))?;
                if mined > nonce {
                    if let Some(tx) = self.find_mined(&from, nonce)?
                        && text(&tx["input"]) == hex_data(&data)
                    {
                        let hash = text(&tx["hash"]);
                        return self.wait_mined(chain_id, &hash, request);
                    }
                    self.rpc
                        .quantity("eth_getTransactionCount", &json!([from, "pending"]))?
                } else {
                    nonce
                }
            }
            None => self
                .rpc
                .quantity("eth_getTransactionCount", &json!([from, "pending"]))?,
        };
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, nonce);
        let sent = self.rpc.call(
            "eth_sendTransaction",
            &json!([{
                "from": from,
                "to": from,
                "data": hex_data(&data),
                "nonce": format!("0x{nonce:x}"),
            }]),
        );
        let hash = match sent {
            Ok(hash) => text(&hash),
            Err(RpcError::Refused { message, .. })
                if message.contains("nonce") || message.contains("already") =>
            {
                // Sent before (the answer was lost): find it by its nonce.
                let tx = self.find_mined(&from, nonce)?.ok_or_else(|| {
                    AnchorError::Refused(format!(
                        "nonce {nonce} is taken but no transaction with it was found ({message}); retrying"
                    ))
                })?;
                if text(&tx["input"]) != hex_data(&data) {
                    self.nonces
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                    return Err(AnchorError::Refused(format!(
                        "nonce {nonce} was used by another transaction; retrying with a new one"
                    )));
                }
                text(&tx["hash"])
            }
            Err(error) => return Err(error.into()),
        };
        let proof = self.wait_mined(chain_id, &hash, request)?;
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        Ok(proof)
    }

    fn verify(
        &self,
        proof: &AnchorProof,
        min_confirmations: u64,
    ) -> Result<Confirmation, AnchorError> {
        let request = proof.request().map_err(AnchorError::Refused)?;
        let chain_id = self.rpc.quantity("eth_chainId", &json!([]))?;
        if chain_id != proof.chain_id {
            return Err(AnchorError::Refused(format!(
                "the proof is for Ethereum chain {}, this node serves chain {chain_id}",
                proof.chain_id
            )));
        }
        let tx = self
            .rpc
            .call("eth_getTransactionByHash", &json!([proof.transaction]))?;
        if tx.is_null() {
            return Err(AnchorError::Refused(format!(
                "transaction {} does not exist on this chain",
                proof.transaction
            )));
        }
        if text(&tx["input"]) != hex_data(&anchor_calldata(&request)) {
            return Err(AnchorError::Refused(format!(
                "transaction {} does not carry timeline block {} (index {})",
                proof.transaction, proof.timeline_block, proof.timeline_index
            )));
        }
        let receipt = self
            .rpc
            .call("eth_getTransactionReceipt", &json!([proof.transaction]))?;
        let number = parse_quantity(&receipt["blockNumber"]);
        if number != Some(proof.block_number) || text(&receipt["blockHash"]) != proof.block_hash {
            return Err(AnchorError::Refused(format!(
                "transaction {} is not in block {} ({}): reorganised or a changed proof",
                proof.transaction, proof.block_number, proof.block_hash
            )));
        }
        let canonical = self.rpc.call(
            "eth_getBlockByNumber",
            &json!([format!("0x{:x}", proof.block_number), false]),
        )?;
        if text(&canonical["hash"]) != proof.block_hash {
            return Err(AnchorError::Refused(format!(
                "block {} is no longer {} on the canonical chain",
                proof.block_number, proof.block_hash
            )));
        }
        let head = self.rpc.quantity("eth_blockNumber", &json!([]))?;
        let confirmations = head.saturating_sub(proof.block_number) + 1;
        if confirmations < min_confirmations {
            return Err(AnchorError::NotConfirmed {
                confirmations,
                required: min_confirmations,
            });
        }
        Ok(Confirmation { confirmations })
    }

    fn refresh(&self, proof: &AnchorProof) -> Result<Option<AnchorProof>, AnchorError> {
        let request = proof.request().map_err(AnchorError::Refused)?;
        let Some(current) =
            self.proof_from_receipt(proof.chain_id, &proof.transaction, &request)?
        else {
            return Ok(None);
        };
        let canonical = self.rpc.call(
            "eth_getBlockByNumber",
            &json!([format!("0x{:x}", current.block_number), false]),
        )?;
        if text(&canonical["hash"]) != current.block_hash {
            return Ok(None);
        }
        Ok(Some(current))
    }
}
