//! Anchoring against a real local Ethereum node (anvil): a testnet anchors several timeline
//! epochs, the proofs verify, changed proofs are refused, anchoring survives anvil stopping
//! and restarting without anchoring anything twice, its cost does not grow with the number of
//! chains, and an anchor removed by a reorganisation is anchored again. A light client
//! believes an anchor only when a skip proof from the timeline's genesis leads to its block.

use std::collections::BTreeSet;

use chainiac_anchor::{Anchor, AnchorError, AnchorProof, EthereumAnchor, EthereumConfig};
use chainiac_protocol::skipchain::ChainParams;
use chainiac_tests::{Anvil, Cluster, DataChain, TestResult, wait_for};

fn anchors(cluster: &Cluster, timeline: &chainiac_protocol::Hash) -> Vec<AnchorProof> {
    (0..cluster.len())
        .flat_map(|i| {
            cluster
                .core(i)
                .store()
                .anchors(timeline, 64)
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeline_epochs_are_anchored_once_and_proofs_verify() -> TestResult {
    let state = tempfile::tempdir()?;
    let mut anvil = Anvil::start(&state.path().join("anvil.json"))?;
    let url = anvil.url.clone();
    let cluster = Cluster::start_with(4, &[], |_, config| {
        config.anchor.ethereum_rpc = Some(url.clone());
    })
    .await?;
    let timeline = cluster.create_timeline(0, &[0, 1, 2, 3], 1).await?;
    wait_for("3 timeline epochs anchored", || async {
        anchors(&cluster, &timeline).len() >= 3
    })
    .await?;

    let ethereum = EthereumAnchor::new(EthereumConfig::new(&anvil.url))?;
    for proof in anchors(&cluster, &timeline) {
        assert_eq!(proof.chain_id, 31337, "anvil's chain id");
        cluster
            .wait_head(1, &timeline, proof.timeline_index)
            .await?;
        let block = cluster
            .core(1)
            .store()
            .block_at(&timeline, proof.timeline_index)?
            .ok_or("anchored timeline block unknown")?;
        assert_eq!(proof.timeline_block, block.hash().to_hex());
        ethereum.verify(&proof, 1)?;
    }

    // A light client believes a peer's anchor only when a skip proof from the timeline's
    // genesis leads to exactly the block it names: an anchor of a block the timeline does not
    // hold at that index (a fork shown to this client, or a made-up hash) is refused.
    let client = chainiac_client::Connection::open(
        &cluster.addresses().await,
        std::time::Duration::from_secs(20),
    )
    .await?;
    let listed = anchors(&cluster, &timeline);
    let (genuine, other) = (
        listed.first().ok_or("no anchor")?,
        listed.get(1).ok_or("one anchor")?,
    );
    let genesis = client.pin_timeline(timeline).await?;
    client.check_anchor_in_timeline(&genesis, genuine).await?;
    let mut made_up = genuine.clone();
    made_up.timeline_block = chainiac_protocol::Hash([9; 32]).to_hex();
    let mut moved = genuine.clone();
    moved.timeline_index = other.timeline_index;
    // A genuine anchor of another chain, offered as one of this timeline.
    let mut elsewhere = genuine.clone();
    elsewhere.timeline = chainiac_protocol::Hash([7; 32]).to_hex();
    for (what, forged) in [
        ("a made-up block", made_up),
        ("another index", moved),
        ("another timeline", elsewhere),
    ] {
        match client.check_anchor_in_timeline(&genesis, &forged).await {
            Err(error) => eprintln!("anchor of {what}: {error}"),
            Ok(()) => return Err(format!("the client believed an anchor of {what}").into()),
        }
    }
    client.close().await;

    // Any change to a proof is refused.
    let proof = anchors(&cluster, &timeline)
        .into_iter()
        .next()
        .ok_or("no anchor")?;
    let mut changed_hash = proof.clone();
    changed_hash.timeline_block = chainiac_protocol::Hash([9; 32]).to_hex();
    let mut changed_block = proof.clone();
    changed_block.block_hash = format!("0x{}", "11".repeat(32));
    let mut changed_chain = proof.clone();
    changed_chain.chain_id = 1;
    for (what, bad) in [
        ("timeline hash", changed_hash),
        ("block hash", changed_block),
        ("chain id", changed_chain),
    ] {
        match ethereum.verify(&bad, 1) {
            Err(AnchorError::Refused(reason)) => eprintln!("changed {what}: {reason}"),
            other => return Err(format!("a proof with a changed {what} gave {other:?}").into()),
        }
    }
    // Too few confirmations is its own answer.
    assert!(matches!(
        ethereum.verify(&proof, 1_000_000),
        Err(AnchorError::NotConfirmed { .. })
    ));

    // Anvil goes away for a while, then comes back with its chain: anchoring resumes.
    anvil.stop()?;
    let before = anchors(&cluster, &timeline).len();
    let stopped_at = cluster
        .core(0)
        .store()
        .head(&timeline)?
        .ok_or("timeline head")?
        .index;
    cluster.wait_everywhere(&timeline, stopped_at + 2).await?;
    anvil.restart()?;
    wait_for("anchoring to resume after anvil restarts", || async {
        anchors(&cluster, &timeline)
            .iter()
            .any(|a| a.timeline_index > stopped_at + 1)
    })
    .await?;
    assert!(anchors(&cluster, &timeline).len() > before);

    // Nothing was anchored twice: one transaction per timeline block, on chain and in stores.
    let proofs = anchors(&cluster, &timeline);
    let indexes: BTreeSet<u64> = proofs.iter().map(|p| p.timeline_index).collect();
    assert_eq!(
        indexes.len(),
        proofs.len(),
        "a timeline block anchored twice"
    );
    let transactions: BTreeSet<&str> = proofs.iter().map(|p| p.transaction.as_str()).collect();
    assert_eq!(transactions.len(), proofs.len());
    let anchored_on_chain = anchored_timeline_indexes(&anvil.url, &timeline)?;
    let unique: BTreeSet<u64> = anchored_on_chain.iter().copied().collect();
    assert_eq!(
        unique.len(),
        anchored_on_chain.len(),
        "the chain holds two anchors of one timeline block: {anchored_on_chain:?}"
    );
    for proof in &proofs {
        ethereum.verify(proof, 1)?;
    }

    // The cost of an epoch's anchor does not grow with the number of projects: one transaction
    // of the same size whether the timeline lists 2 chains or 500 more.
    let gas_of = |proof: &AnchorProof| -> TestResult<u64> {
        let receipt = rpc(
            &anvil.url,
            "eth_getTransactionReceipt",
            &serde_json::json!([proof.transaction]),
        )?;
        quantity(&receipt["gasUsed"])
    };
    let small = gas_of(&proofs[0])?;
    let members = cluster.roster(&[0, 1, 2, 3])?.members().to_vec();
    for _ in 0..500u32 {
        DataChain::create(&cluster.core(0), members.clone(), ChainParams::new(2, 32)?).await?;
    }
    let listed_at = cluster
        .core(0)
        .store()
        .head(&timeline)?
        .ok_or("head")?
        .index;
    wait_for(
        "an anchor of a timeline block listing 500 more chains",
        || async {
            anchors(&cluster, &timeline).iter().any(|a| {
                a.timeline_index > listed_at
                    && cluster
                        .core(0)
                        .store()
                        .timeline_tree(&timeline, a.timeline_index)
                        .is_ok_and(|t| t.len() >= 500)
            })
        },
    )
    .await?;
    let large = anchors(&cluster, &timeline)
        .into_iter()
        .find(|a| a.timeline_index > listed_at)
        .ok_or("no anchor")?;
    let large_gas = gas_of(&large)?;
    eprintln!("anchoring gas per epoch: {small} with 2 chains, {large_gas} with 502 chains");
    // Only the count of zero bytes in the block hash and index (4 gas instead of 16) may differ.
    assert!(
        small.abs_diff(large_gas) <= 12 * 40,
        "{small} vs {large_gas}"
    );

    // A reorganisation replaces the newest Ethereum block, which holds an anchor: the node
    // notices, and the timeline block ends up anchored in the canonical chain again, once.
    let head = quantity(&rpc(&anvil.url, "eth_blockNumber", &serde_json::json!([]))?)?;
    let replaced = rpc(
        &anvil.url,
        "eth_getBlockByNumber",
        &serde_json::json!([format!("0x{head:x}"), true]),
    )?;
    let marker = format!("0x{}{}", hex_of(b"chainiac anchor1"), timeline.to_hex());
    let reorganised = replaced["transactions"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|tx| {
            let rest = tx["input"].as_str()?.strip_prefix(&marker)?;
            u64::from_str_radix(rest.get(..16)?, 16).ok()
        })
        .ok_or("the newest block holds no anchor")?;
    let replaced_hash = replaced["hash"].as_str().ok_or("block hash")?.to_owned();
    rpc(&anvil.url, "anvil_reorg", &serde_json::json!([1, []]))?;
    wait_for("the reorganised anchor to be anchored again", || async {
        anchors(&cluster, &timeline).iter().any(|proof| {
            proof.timeline_index == reorganised
                && proof.block_hash != replaced_hash
                && ethereum.verify(proof, 1).is_ok()
        })
    })
    .await?;
    let on_chain = anchored_timeline_indexes(&anvil.url, &timeline)?;
    assert_eq!(
        on_chain
            .iter()
            .filter(|&&index| index == reorganised)
            .count(),
        1,
        "after the reorganisation: {on_chain:?}"
    );
    Ok(())
}

/// One JSON-RPC call to anvil (over the test kit's HTTP client).
fn rpc(url: &str, method: &str, params: &serde_json::Value) -> TestResult<serde_json::Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let address = url.trim_start_matches("http://").parse()?;
    let (_, answer) = chainiac_tests::http(address, "POST", "/", Some(&body))?;
    Ok(answer["result"].clone())
}

fn quantity(value: &serde_json::Value) -> TestResult<u64> {
    Ok(u64::from_str_radix(
        value
            .as_str()
            .ok_or("not a quantity")?
            .trim_start_matches("0x"),
        16,
    )?)
}

/// The timeline indexes anchored on chain, one per anchoring transaction, read from every block.
fn anchored_timeline_indexes(
    url: &str,
    timeline: &chainiac_protocol::Hash,
) -> TestResult<Vec<u64>> {
    let head = quantity(&rpc(url, "eth_blockNumber", &serde_json::json!([]))?)?;
    let marker = format!("0x{}{}", hex_of(b"chainiac anchor1"), timeline.to_hex());
    let mut indexes = Vec::new();
    for number in 0..=head {
        let block = rpc(
            url,
            "eth_getBlockByNumber",
            &serde_json::json!([format!("0x{number:x}"), true]),
        )?;
        for tx in block["transactions"].as_array().into_iter().flatten() {
            let input = tx["input"].as_str().unwrap_or_default();
            if let Some(rest) = input.strip_prefix(&marker) {
                indexes.push(u64::from_str_radix(&rest[..16], 16)?);
            }
        }
    }
    Ok(indexes)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
