//! `docs/vectors/anchor.json`: anchor proofs with their Ethereum evidence (§8 of
//! docs/protocol.md), built from deterministic blocks (fixed keys; ECDSA signatures are
//! RFC 6979, so deterministic too), each with whether a verifier MUST accept it. The file is
//! regenerated with `CHAINIAC_WRITE_VECTORS=1 cargo test --workspace -- anchor_json`.

use alloy::primitives::{Address, Log};
use alloy::signers::local::PrivateKeySigner;
use chainiac_anchor::synthetic::{AnchorTransaction, SyntheticBlock};
use chainiac_anchor::{
    AnchorAccount, AnchorProof, AnchorRequest, anchor_calldata, verify_evidence,
};
use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::SecretKey;
use serde_json::{Value, json};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const CHAIN: u64 = 31337;
const FILE: &str = "anchor.json";

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/vectors")
        .join(FILE)
}

fn request() -> AnchorRequest {
    AnchorRequest {
        timeline: Hash([0x7e; 32]),
        index: 42,
        block: Hash([0x2b; 32]),
    }
}

/// A block of 7 transactions whose fourth (index 3) is the anchor, sent to `to`, with the
/// given status and logs; its proof vouched for as `account`.
fn case(
    key: &PrivateKeySigner,
    to: Address,
    success: bool,
    logs: &[Log],
    account: AnchorAccount,
) -> TestResult<AnchorProof> {
    let calldata = anchor_calldata(&request());
    let anchor = AnchorTransaction {
        key,
        chain_id: CHAIN,
        to,
        input: &calldata,
        success,
        logs,
    };
    let block = SyntheticBlock::with_anchor(&anchor, 6, 3)?;
    Ok(block.proof(CHAIN, &request(), 3, account)?)
}

fn entry(name: &str, proof: &AnchorProof, refused_because: Option<&str>) -> Value {
    let mut value = json!({
        "name": name,
        "valid": refused_because.is_none(),
        "proof": hex::encode(proof.to_bytes()),
    });
    if let Some(reason) = refused_because {
        value["refused_because"] = json!(reason);
    }
    value
}

fn generate() -> TestResult<Value> {
    let key = PrivateKeySigner::from_slice(&[0x07; 32])?;
    let member = SecretKey::from_seed(&[0x03; 32]);
    let address: [u8; 20] = key.address().into();
    let contract = Address::repeat_byte(0xcc);
    let direct = AnchorAccount::vouch(&member, CHAIN, address, address);
    let through = AnchorAccount::vouch(&member, CHAIN, address, contract.into());
    let event = Log::new_unchecked(contract, Vec::new(), anchor_calldata(&request()).into());

    let valid = case(&key, key.address(), true, &[], direct.clone())?;
    let evidence = valid.evidence.clone().ok_or("evidence")?;
    let mut cases = vec![
        entry("calldata", &valid, None),
        entry(
            "event_contract",
            &case(&key, contract, true, &[event], through.clone())?,
            None,
        ),
    ];
    let twin = |change: &dyn Fn(&mut AnchorProof)| {
        let mut proof = valid.clone();
        change(&mut proof);
        proof
    };
    let refused: Vec<(&str, AnchorProof, &str)> = vec![
        (
            "changed_header",
            twin(&|p| {
                if let Some(e) = p.evidence.as_mut() {
                    e.header[40] ^= 1;
                }
            }),
            "the header does not hash to block_hash",
        ),
        (
            "transaction_of_another_position",
            twin(&|p| {
                if let Some(e) = p.evidence.as_mut() {
                    e.transaction_index = 2;
                }
            }),
            "the transaction is not under the transactions root at that position",
        ),
        (
            "changed_receipt_proof",
            twin(&|p| {
                if let Some(e) = p.evidence.as_mut() {
                    e.receipt_proof[0][9] ^= 1;
                }
            }),
            "the receipt is not under the receipts root",
        ),
        (
            "failed_receipt",
            case(&key, key.address(), false, &[], direct)?,
            "the receipt's status is 0",
        ),
        (
            "wrong_sender",
            twin(&|p| {
                if let Some(e) = p.evidence.as_mut() {
                    e.account = AnchorAccount::vouch(&member, CHAIN, [0x99; 20], [0x99; 20]);
                }
            }),
            "the transaction's signer is not the vouched-for account",
        ),
        (
            "forged_vouching",
            twin(&|p| {
                if let Some(e) = p.evidence.as_mut() {
                    e.account.vouched.signature.0[5] ^= 1;
                }
            }),
            "the member's signature over the account does not verify",
        ),
        (
            "other_timeline_block",
            twin(&|p| p.timeline_block = Hash([0x2c; 32]).to_hex()),
            "the calldata carries another timeline block",
        ),
        (
            "contract_without_event",
            case(&key, contract, true, &[], through)?,
            "no event of the recipient contract carries the anchor",
        ),
    ];
    for (name, proof, reason) in &refused {
        cases.push(entry(name, proof, Some(reason)));
    }
    Ok(json!({
        "description": "Anchor proofs (docs/protocol.md §8): `proof` is the encoding of an anchor proof with its evidence; `valid` says whether a verifier MUST accept its evidence offline. The Ethereum key is secp256k1 with the secret 0x07 repeated, the member key Ed25519 with the seed 0x03 repeated.",
        "chain_id": CHAIN,
        "account": format!("{:#x}", key.address()),
        "member": member.public_key().to_hex(),
        "account_digest": AnchorAccount::digest(CHAIN, &address, &address).to_hex(),
        "account_signature": hex::encode(evidence.account.vouched.signature.0),
        "cases": cases,
    }))
}

#[test]
fn anchor_json_is_current() -> TestResult {
    let fresh = generate()?;
    if std::env::var_os("CHAINIAC_WRITE_VECTORS").is_some() {
        std::fs::write(path(), serde_json::to_string_pretty(&fresh)? + "\n")?;
    }
    let text = std::fs::read_to_string(path()).map_err(|e| format!("{}: {e}", path().display()))?;
    if serde_json::from_str::<Value>(&text)? != fresh {
        return Err(format!(
            "docs/vectors/{FILE} is not what this version generates; regenerate it with CHAINIAC_WRITE_VECTORS=1 cargo test --workspace -- anchor_json"
        )
        .into());
    }
    Ok(())
}

#[test]
fn anchor_vectors_verify_as_stated() -> TestResult {
    let text = std::fs::read_to_string(path())?;
    let vectors: Value = serde_json::from_str(&text)?;
    let cases = vectors["cases"].as_array().ok_or("no cases")?;
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().ok_or("name")?;
        let bytes = hex::decode(case["proof"].as_str().ok_or("proof")?)?;
        let proof = AnchorProof::from_bytes(&bytes)?;
        let verdict = verify_evidence(&proof);
        match (case["valid"].as_bool(), verdict) {
            (Some(true), Ok(verified)) => {
                assert_eq!(
                    format!("{:#x}", verified.sender),
                    vectors["account"].as_str().unwrap_or_default()
                );
            }
            (Some(false), Err(reason)) => eprintln!("{name}: refused: {reason}"),
            (valid, verdict) => {
                return Err(format!("{name}: valid {valid:?} but {verdict:?}").into());
            }
        }
    }
    Ok(())
}
