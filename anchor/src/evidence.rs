//! The self-contained evidence of an anchor ([`AnchorEvidence`]): built from an Ethereum
//! block, and checked with no Ethereum node at all. A checked proof says: the block whose
//! Keccak-256 is `block_hash` (number `block_number`) includes, at `transaction_index` of its
//! transactions trie, a transaction with hash `transaction`, signed on chain `chain_id` by the
//! account a roster member vouched for, sent to that same account, carrying exactly the
//! anchoring calldata of the named timeline block; and its receipt, under the block's
//! receipts root, says it succeeded. Whether that block is canonical and deep enough is the
//! only question left for an Ethereum node.

use std::str::FromStr;

use alloy::consensus::transaction::SignerRecoverable;
use alloy::consensus::{Header, ReceiptEnvelope, Transaction, TxEnvelope};
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, B256, Bytes, TxKind, keccak256};
use alloy::rlp::Decodable;
use alloy::trie::proof::{ProofRetainer, verify_proof};
use alloy::trie::root::adjust_index_for_rlp;
use alloy::trie::{HashBuilder, Nibbles};
use chainiac_protocol::anchor::{
    AnchorEvidence, AnchorProof, MAX_EVIDENCE_ITEM, MAX_PROOF_NODES, anchor_calldata,
};
use chainiac_protocol::keys::PublicKey;

/// Why a proof's evidence does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvidenceError(pub String);

fn refuse<T>(reason: impl Into<String>) -> Result<T, EvidenceError> {
    Err(EvidenceError(reason.into()))
}

/// What a checked proof establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAnchor {
    /// The Ethereum block number.
    pub block_number: u64,
    /// Its hash.
    pub block_hash: B256,
    /// Its timestamp, unix seconds.
    pub timestamp: u64,
    /// The sending account.
    pub sender: Address,
    /// The roster member that vouched for the sender.
    pub member: PublicKey,
}

/// The trie key of item `index` of a block's transactions or receipts: `rlp(index)`.
fn trie_key(index: usize) -> Nibbles {
    Nibbles::unpack(alloy::rlp::encode_fixed_size(&index))
}

/// The root of the ordered trie of `items` (EIP-2718 encodings, in block order) and the proof
/// of item `index`, root node first.
pub fn trie_proof(items: &[Vec<u8>], index: usize) -> (B256, Vec<Vec<u8>>) {
    let target = trie_key(index);
    let mut builder = HashBuilder::default().with_proof_retainer(ProofRetainer::new(vec![target]));
    for position in 0..items.len() {
        let item = adjust_index_for_rlp(position, items.len());
        builder.add_leaf(trie_key(item), &items[item]);
    }
    let root = builder.root();
    let nodes = builder
        .take_proof_nodes()
        .matching_nodes_sorted(&target)
        .into_iter()
        .map(|(_, node)| node.to_vec())
        .collect();
    (root, nodes)
}

fn check_inclusion(
    root: B256,
    index: u64,
    value: &[u8],
    nodes: &[Vec<u8>],
    what: &str,
) -> Result<(), EvidenceError> {
    if nodes.is_empty() || nodes.len() > MAX_PROOF_NODES {
        return refuse(format!("the {what} proof has {} nodes", nodes.len()));
    }
    let Ok(index) = usize::try_from(index) else {
        return refuse(format!("{what} index {index} out of range"));
    };
    let nodes: Vec<Bytes> = nodes.iter().map(|n| Bytes::copy_from_slice(n)).collect();
    verify_proof(root, trie_key(index), Some(value.to_vec()), &nodes).or_else(|e| {
        // The library's message quotes whole trie nodes; keep the start.
        let detail: String = e.to_string().chars().take(120).collect();
        refuse(format!(
            "the {what} is not at position {index} under the block's {what}s root ({detail}...)"
        ))
    })
}

fn decode_whole<T>(
    bytes: &[u8],
    what: &str,
    decode: impl FnOnce(&mut &[u8]) -> Option<T>,
) -> Result<T, EvidenceError> {
    let mut rest = bytes;
    match decode(&mut rest) {
        Some(value) if rest.is_empty() => Ok(value),
        Some(_) => refuse(format!("the {what} has trailing bytes")),
        None => refuse(format!("the {what} does not decode")),
    }
}

/// Checks a proof's evidence, offline. Proofs recorded before evidence existed are refused:
/// a node upgrades its own when it re-checks them.
pub fn verify_evidence(proof: &AnchorProof) -> Result<VerifiedAnchor, EvidenceError> {
    let Some(evidence) = &proof.evidence else {
        return refuse(
            "the proof carries no Ethereum evidence (recorded by an older node); fetch it again from a node with `chainiac anchor list`",
        );
    };
    let request = proof.request().or_else(refuse)?;
    let Ok(block_hash) = B256::from_str(&proof.block_hash) else {
        return refuse(format!(
            "block hash {:?} is not 32 hex bytes",
            proof.block_hash
        ));
    };
    let Ok(transaction_hash) = B256::from_str(&proof.transaction) else {
        return refuse(format!(
            "transaction hash {:?} is not 32 hex bytes",
            proof.transaction
        ));
    };

    let header: Header = decode_whole(&evidence.header, "block header", |buf| {
        Header::decode(buf).ok()
    })?;
    let header_hash = keccak256(&evidence.header);
    if header_hash != block_hash {
        return refuse(format!(
            "the block header hashes to {header_hash}, not to the anchored block {block_hash}"
        ));
    }
    if header.number != proof.block_number {
        return refuse(format!(
            "the block header is of block {}, not {}",
            header.number, proof.block_number
        ));
    }

    check_inclusion(
        header.transactions_root,
        evidence.transaction_index,
        &evidence.transaction,
        &evidence.transaction_proof,
        "transaction",
    )?;
    let transaction: TxEnvelope = decode_whole(&evidence.transaction, "transaction", |buf| {
        TxEnvelope::decode_2718(buf).ok()
    })?;
    if *transaction.tx_hash() != transaction_hash {
        return refuse(format!(
            "the transaction in the block is {}, not {transaction_hash}",
            transaction.tx_hash()
        ));
    }
    if transaction.chain_id() != Some(proof.chain_id) {
        return refuse(format!(
            "the transaction is for chain {}, not {}",
            transaction
                .chain_id()
                .map_or("none (no replay protection)".into(), |id| id.to_string()),
            proof.chain_id
        ));
    }
    let account = &evidence.account;
    let sender = Address::from(account.address);
    match transaction.recover_signer() {
        Ok(signer) if signer == sender => {}
        Ok(signer) => {
            return refuse(format!(
                "the transaction was sent by {signer}, not by the anchoring account {sender}"
            ));
        }
        Err(e) => return refuse(format!("the transaction's signature does not recover: {e}")),
    }
    account.verify(proof.chain_id).or_else(|e| {
        refuse(format!(
            "no valid statement by member {} that {sender} is its anchoring account: {e}",
            account.vouched.signer
        ))
    })?;
    let recipient = Address::from(account.recipient);
    if transaction.kind() != TxKind::Call(recipient) {
        let to = match transaction.kind() {
            TxKind::Call(to) => to.to_string(),
            TxKind::Create => "nobody (a contract creation)".into(),
        };
        return refuse(format!(
            "the transaction is sent to {to}, not to {recipient}, where the member said its anchors go"
        ));
    }
    if transaction.input().as_ref() != anchor_calldata(&request).as_slice() {
        return refuse(format!(
            "the transaction does not carry timeline block {} (index {}) of timeline {}",
            request.block, request.index, request.timeline
        ));
    }

    check_inclusion(
        header.receipts_root,
        evidence.transaction_index,
        &evidence.receipt,
        &evidence.receipt_proof,
        "receipt",
    )?;
    let receipt: ReceiptEnvelope = decode_whole(&evidence.receipt, "receipt", |buf| {
        ReceiptEnvelope::decode_2718(buf).ok()
    })?;
    if !receipt.status() {
        return refuse("the anchoring transaction failed (its receipt's status is 0)");
    }
    if account.through_contract()
        && !receipt.logs().iter().any(|log| {
            log.address == recipient && log.data.data.as_ref() == transaction.input().as_ref()
        })
    {
        return refuse(format!(
            "the receipt holds no event of the anchoring contract {recipient} carrying the anchor"
        ));
    }
    Ok(VerifiedAnchor {
        block_number: header.number,
        block_hash,
        timestamp: header.timestamp,
        sender,
        member: account.vouched.signer,
    })
}

/// The evidence of transaction `index` of a block: `transactions` and `receipts` are every
/// transaction and receipt of the block in order (EIP-2718 encodings), `header` its RLP.
/// Fails if the block's roots do not match what was given (an inconsistent endpoint).
pub fn build_evidence(
    header: &[u8],
    transactions: &[Vec<u8>],
    receipts: &[Vec<u8>],
    index: usize,
    account: chainiac_protocol::anchor::AnchorAccount,
) -> Result<AnchorEvidence, EvidenceError> {
    let decoded: Header = decode_whole(header, "block header", |buf| Header::decode(buf).ok())?;
    if transactions.len() != receipts.len() || index >= transactions.len() {
        return refuse(format!(
            "the block has {} transactions and {} receipts; transaction {index} asked",
            transactions.len(),
            receipts.len()
        ));
    }
    let (transactions_root, transaction_proof) = trie_proof(transactions, index);
    let (receipts_root, receipt_proof) = trie_proof(receipts, index);
    // What a proof may hold (protocol §8): a larger one would not be read back.
    let too_large = |item: &[u8]| item.len() > MAX_EVIDENCE_ITEM;
    if too_large(header)
        || too_large(&transactions[index])
        || too_large(&receipts[index])
        || [&transaction_proof, &receipt_proof]
            .iter()
            .any(|nodes| nodes.len() > MAX_PROOF_NODES || nodes.iter().any(|n| too_large(n)))
    {
        return refuse("the block's evidence exceeds the bounds of an anchor proof");
    }
    if transactions_root != decoded.transactions_root || receipts_root != decoded.receipts_root {
        return refuse("the block's transactions or receipts do not match its header's roots");
    }
    Ok(AnchorEvidence {
        header: header.to_vec(),
        transaction_index: index as u64,
        transaction: transactions[index].clone(),
        transaction_proof,
        receipt: receipts[index].clone(),
        receipt_proof,
        account,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{AnchorTransaction, SyntheticBlock, receipt, signed_transaction};
    use alloy::primitives::Log;
    use alloy::signers::local::PrivateKeySigner;
    use chainiac_protocol::Hash;
    use chainiac_protocol::anchor::{AnchorAccount, AnchorRequest};
    use chainiac_protocol::keys::SecretKey;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const CHAIN: u64 = 31337;

    fn signer(seed: u8) -> Result<PrivateKeySigner, Box<dyn std::error::Error>> {
        Ok(PrivateKeySigner::from_slice(&[seed; 32])?)
    }

    fn request() -> AnchorRequest {
        AnchorRequest {
            timeline: Hash([1; 32]),
            index: 9,
            block: Hash([2; 32]),
        }
    }

    fn member() -> SecretKey {
        SecretKey::from_seed(&[3; 32])
    }

    /// `key`'s account, sending to itself, vouched for by [`member`] on `chain_id`.
    fn direct(key: &PrivateKeySigner, chain_id: u64) -> AnchorAccount {
        let address = key.address().into();
        AnchorAccount::vouch(&member(), chain_id, address, address)
    }

    /// A block of 7 whose fourth transaction anchors `input` from `key` to itself.
    fn block(
        key: &PrivateKeySigner,
        input: &[u8],
        success: bool,
    ) -> Result<SyntheticBlock, Box<dyn std::error::Error>> {
        let anchor = AnchorTransaction {
            key,
            chain_id: CHAIN,
            to: key.address(),
            input,
            success,
            logs: &[],
        };
        Ok(SyntheticBlock::with_anchor(&anchor, 6, 3)?)
    }

    fn refused(proof: &AnchorProof, what: &str, expected: &str) -> TestResult {
        match verify_evidence(proof) {
            Err(EvidenceError(reason)) if reason.contains(expected) => {
                eprintln!("{what}: {reason}");
                Ok(())
            }
            other => {
                Err(format!("{what}: expected a refusal with {expected:?}, got {other:?}").into())
            }
        }
    }

    #[test]
    fn roots_match_alloy_and_every_position_proves() -> TestResult {
        let key = signer(7)?;
        for fillers in [0usize, 1, 5, 130, 200] {
            let anchor_at = fillers / 2;
            let calldata = anchor_calldata(&request());
            let anchor = AnchorTransaction {
                key: &key,
                chain_id: CHAIN,
                to: key.address(),
                input: &calldata,
                success: true,
                logs: &[],
            };
            let built = SyntheticBlock::with_anchor(&anchor, fillers, anchor_at)?;
            assert_eq!(
                built.header.transactions_root,
                alloy::trie::root::ordered_trie_root_encoded(&built.transactions)
            );
            for position in [0, anchor_at, fillers] {
                let proof = built.proof(CHAIN, &request(), position, direct(&key, CHAIN))?;
                if position == anchor_at {
                    let verified = verify_evidence(&proof)?;
                    assert_eq!(verified.sender, key.address());
                    assert_eq!(verified.member, member().public_key());
                    assert_eq!(verified.block_number, 77);
                } else {
                    // Another sender's transaction at that position: not an anchor of ours.
                    assert!(verify_evidence(&proof).is_err());
                }
            }
        }
        Ok(())
    }

    #[test]
    fn tampered_evidence_is_refused() -> TestResult {
        let key = signer(7)?;
        let built = block(&key, &anchor_calldata(&request()), true)?;
        let genuine = built.proof(CHAIN, &request(), 3, direct(&key, CHAIN))?;
        verify_evidence(&genuine)?;
        let evidence = genuine.evidence.clone().ok_or("evidence")?;
        let with = |change: &dyn Fn(&mut AnchorProof, &mut AnchorEvidence)| {
            let mut proof = genuine.clone();
            let mut evidence = evidence.clone();
            change(&mut proof, &mut evidence);
            proof.evidence = Some(evidence);
            proof
        };

        // The header: any change breaks its hash; a header of another number is another block.
        refused(&with(&|_, e| e.header[20] ^= 1), "changed header", "")?;
        let other_block = with(&|p, e| {
            let mut h = built.header.clone();
            h.number = 78;
            e.header = alloy::rlp::encode(&h);
            p.block_hash = format!("{:#x}", keccak256(&e.header));
        });
        refused(&other_block, "header of block 78", "not 77")?;
        refused(
            &with(&|p, _| p.block_hash = format!("0x{}", "11".repeat(32))),
            "block hash",
            "hashes to",
        )?;

        // The transaction: another one of the block, changed bytes, another position.
        refused(
            &with(&|_, e| e.transaction = built.transactions[2].clone()),
            "another transaction",
            "not at position",
        )?;
        refused(
            &with(&|_, e| {
                let n = e.transaction.len();
                e.transaction[n - 5] ^= 1;
            }),
            "changed transaction",
            "not at position",
        )?;
        refused(
            &with(&|_, e| e.transaction_index = 2),
            "another position",
            "not at position",
        )?;
        refused(
            &with(&|_, e| e.transaction_proof[0][5] ^= 1),
            "changed trie node",
            "not at position",
        )?;
        refused(
            &with(&|_, e| e.transaction_proof.clear()),
            "no trie nodes",
            "0 nodes",
        )?;
        refused(
            &with(&|p, _| p.transaction = format!("0x{}", "22".repeat(32))),
            "transaction hash",
            "not 0x2222",
        )?;

        // The receipt: another one, or a changed one.
        refused(
            &with(&|_, e| e.receipt = built.receipts[2].clone()),
            "another receipt",
            "not at position",
        )?;
        refused(
            &with(&|_, e| e.receipt_proof[0][7] ^= 1),
            "changed receipt trie node",
            "not at position",
        )?;

        // What is anchored: another timeline block, index or chain.
        refused(
            &with(&|p, _| p.timeline_block = Hash([9; 32]).to_hex()),
            "another timeline block",
            "does not carry",
        )?;
        refused(
            &with(&|p, _| p.timeline_index = 10),
            "another index",
            "does not carry",
        )?;
        refused(&with(&|p, _| p.chain_id = 1), "another chain", "for chain")?;

        // The account: a vouched-for account that did not send it, a forged or foreign vouching.
        let stranger = signer(8)?;
        refused(
            &with(&|_, e| e.account = direct(&stranger, CHAIN)),
            "wrong sender",
            "not by the anchoring account",
        )?;
        refused(
            &with(&|_, e| e.account.vouched.signature.0[0] ^= 1),
            "forged vouching",
            "no valid statement",
        )?;
        refused(
            &with(&|_, e| e.account = direct(&key, 1)),
            "vouching for another chain",
            "no valid statement",
        )?;

        // No evidence at all.
        let mut old = genuine.clone();
        old.evidence = None;
        refused(&old, "no evidence", "older node")?;
        Ok(())
    }

    #[test]
    fn failed_wrongly_addressed_or_foreign_transactions_are_refused() -> TestResult {
        let key = signer(7)?;
        let failed = block(&key, &anchor_calldata(&request()), false)?;
        refused(
            &failed.proof(CHAIN, &request(), 3, direct(&key, CHAIN))?,
            "failed receipt",
            "failed",
        )?;
        let other_calldata = block(&key, b"something else", true)?;
        refused(
            &other_calldata.proof(CHAIN, &request(), 3, direct(&key, CHAIN))?,
            "other calldata",
            "does not carry",
        )?;

        // Sent to another address, or signed for another chain.
        let calldata = anchor_calldata(&request());
        let elsewhere = SyntheticBlock::new(
            77,
            vec![signed_transaction(
                &key,
                CHAIN,
                0,
                Address::ZERO,
                &calldata,
            )?],
            vec![receipt(true, 1, Vec::new())],
        );
        refused(
            &elsewhere.proof(CHAIN, &request(), 0, direct(&key, CHAIN))?,
            "sent elsewhere",
            "where the member said",
        )?;
        let other_chain = SyntheticBlock::new(
            77,
            vec![signed_transaction(&key, 1, 0, key.address(), &calldata)?],
            vec![receipt(true, 1, Vec::new())],
        );
        refused(
            &other_chain.proof(CHAIN, &request(), 0, direct(&key, CHAIN))?,
            "other chain",
            "for chain",
        )?;

        // An endpoint that gives transactions or receipts not matching the header.
        let mut inconsistent = block(&key, &calldata, true)?;
        inconsistent.receipts[0] = receipt(true, 5, Vec::new());
        assert!(
            inconsistent
                .proof(CHAIN, &request(), 3, direct(&key, CHAIN))
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn anchors_through_a_contract_need_its_event() -> TestResult {
        let key = signer(7)?;
        let contract = Address::repeat_byte(0xcc);
        let calldata = anchor_calldata(&request());
        let log = |address: Address, data: &[u8]| {
            Log::new_unchecked(address, Vec::new(), data.to_vec().into())
        };
        let single = |logs: Vec<Log>| -> Result<SyntheticBlock, Box<dyn std::error::Error>> {
            Ok(SyntheticBlock::new(
                77,
                vec![signed_transaction(&key, CHAIN, 0, contract, &calldata)?],
                vec![receipt(true, 1, logs)],
            ))
        };
        let through = AnchorAccount::vouch(&member(), CHAIN, key.address().into(), contract.into());
        let logged = single(vec![log(contract, &calldata)])?;
        let verified = verify_evidence(&logged.proof(CHAIN, &request(), 0, through.clone())?)?;
        assert_eq!(verified.sender, key.address());

        let silent = single(Vec::new())?;
        refused(
            &silent.proof(CHAIN, &request(), 0, through.clone())?,
            "no event",
            "no event",
        )?;
        let foreign = single(vec![log(Address::repeat_byte(0xdd), &calldata)])?;
        refused(
            &foreign.proof(CHAIN, &request(), 0, through.clone())?,
            "another contract's event",
            "no event",
        )?;
        let other_data = single(vec![log(contract, b"other")])?;
        refused(
            &other_data.proof(CHAIN, &request(), 0, through)?,
            "another event",
            "no event",
        )?;
        // A member that said its anchors are in calldata: a transaction to a contract is not one.
        refused(
            &logged.proof(CHAIN, &request(), 0, direct(&key, CHAIN))?,
            "undeclared contract",
            "where the member said",
        )?;
        Ok(())
    }
}
