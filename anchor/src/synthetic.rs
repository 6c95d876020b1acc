//! Ethereum blocks made up locally, for tests, test vectors and benchmarks of the evidence
//! checks: EIP-1559 transactions signed with given keys (RFC 6979 signatures, so the same
//! inputs give the same bytes), receipts with a chosen status and logs, and a header whose
//! roots commit to them. Nothing here talks to a network.

use alloy::consensus::{Eip658Value, Header, Receipt, ReceiptEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, Log, TxKind, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;

use crate::evidence::{EvidenceError, build_evidence, trie_proof};
use crate::fees::Fees;
use crate::transaction::UnsignedTransaction;
use crate::{AnchorAccount, AnchorProof, AnchorRequest};

/// A signed EIP-1559 transaction (EIP-2718 encoding) from `key` to `to` with `input`.
pub fn signed_transaction(
    key: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    to: Address,
    input: &[u8],
) -> Result<Vec<u8>, alloy::signers::Error> {
    let signed = UnsignedTransaction {
        chain_id,
        nonce,
        gas_limit: 30_000,
        fees: Fees {
            max_fee_per_gas: 2_000_000_000,
            priority_fee_per_gas: 1_000_000_000,
        },
        to: TxKind::Call(to),
        value: U256::ZERO,
        input: input.to_vec().into(),
    }
    .sign(key)?;
    Ok(signed.raw)
}

/// An EIP-1559 receipt (EIP-2718 encoding).
pub fn receipt(success: bool, cumulative_gas_used: u64, logs: Vec<Log>) -> Vec<u8> {
    let receipt: Receipt = Receipt {
        status: Eip658Value::Eip658(success),
        cumulative_gas_used,
        logs,
    };
    ReceiptEnvelope::Eip1559(receipt.with_bloom()).encoded_2718()
}

/// The anchoring transaction of a [`SyntheticBlock::with_anchor`] and its outcome.
#[derive(Clone, Copy, Debug)]
pub struct AnchorTransaction<'a> {
    /// Who signs it.
    pub key: &'a PrivateKeySigner,
    /// The chain id it is signed for.
    pub chain_id: u64,
    /// Its recipient.
    pub to: Address,
    /// Its input.
    pub input: &'a [u8],
    /// Its receipt's status.
    pub success: bool,
    /// Its receipt's logs.
    pub logs: &'a [Log],
}

/// A block: its transactions and receipts in order, and a header committing to them.
#[derive(Clone, Debug)]
pub struct SyntheticBlock {
    /// EIP-2718 encodings, in block order.
    pub transactions: Vec<Vec<u8>>,
    /// EIP-2718 encodings, in block order.
    pub receipts: Vec<Vec<u8>>,
    /// The header; its roots are those of `transactions` and `receipts`.
    pub header: Header,
}

impl SyntheticBlock {
    /// Block `number` holding `transactions` and `receipts`.
    pub fn new(number: u64, transactions: Vec<Vec<u8>>, receipts: Vec<Vec<u8>>) -> Self {
        let header = Header {
            number,
            timestamp: 1_790_000_000 + number * 12,
            gas_limit: 30_000_000,
            base_fee_per_gas: Some(1_000_000_000),
            transactions_root: trie_proof(&transactions, 0).0,
            receipts_root: trie_proof(&receipts, 0).0,
            ..Header::default()
        };
        Self {
            transactions,
            receipts,
            header,
        }
    }

    /// A block of `fillers + 1` transactions whose one at `position` is `anchor`; the others
    /// are another account's small transfers.
    pub fn with_anchor(
        anchor: &AnchorTransaction<'_>,
        fillers: usize,
        position: usize,
    ) -> Result<Self, alloy::signers::Error> {
        let filler = PrivateKeySigner::from_slice(&[0x42; 32])
            .map_err(|e| alloy::signers::Error::other(e.to_string()))?;
        let mut transactions = Vec::with_capacity(fillers + 1);
        let mut receipts = Vec::with_capacity(fillers + 1);
        for i in 0..=fillers as u64 {
            let cumulative = 30_000 * (i + 1);
            if i as usize == position {
                transactions.push(signed_transaction(
                    anchor.key,
                    anchor.chain_id,
                    0,
                    anchor.to,
                    anchor.input,
                )?);
                receipts.push(receipt(anchor.success, cumulative, anchor.logs.to_vec()));
            } else {
                transactions.push(signed_transaction(
                    &filler,
                    anchor.chain_id,
                    i,
                    Address::ZERO,
                    &i.to_be_bytes(),
                )?);
                receipts.push(receipt(true, cumulative, Vec::new()));
            }
        }
        Ok(Self::new(77, transactions, receipts))
    }

    /// The anchor proof of `request` by the transaction at `position`, vouched as `account`.
    pub fn proof(
        &self,
        chain_id: u64,
        request: &AnchorRequest,
        position: usize,
        account: AnchorAccount,
    ) -> Result<AnchorProof, EvidenceError> {
        let header = alloy::rlp::encode(&self.header);
        let evidence = build_evidence(
            &header,
            &self.transactions,
            &self.receipts,
            position,
            account,
        )?;
        Ok(AnchorProof {
            chain_id,
            transaction: format!("{:#x}", keccak256(&evidence.transaction)),
            block_number: self.header.number,
            block_hash: format!("{:#x}", keccak256(&header)),
            timeline: request.timeline.to_hex(),
            timeline_index: request.index,
            timeline_block: request.block.to_hex(),
            cost_wei: 0,
            evidence: Some(evidence),
        })
    }
}
