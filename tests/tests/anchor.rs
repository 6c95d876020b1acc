//! Anchoring against a real local Ethereum node (anvil). A testnet whose nodes sign with fresh
//! keys of their own (funded from a development account; no unlocked account is used)
//! anchors several timeline epochs, the proofs verify offline and online, changed proofs are
//! refused, anchoring survives anvil stopping and restarting without anchoring anything
//! twice, its cost does not grow with the number of chains, and an anchor removed by a
//! reorganisation is anchored again. A light client believes an anchor only when its
//! evidence holds, a skip proof from the timeline's genesis leads to its block, and a member
//! of that block's roster vouched for the sender. The backend on its own: the fee ceiling
//! holds anchoring back at a high base fee, the daily cap too, a stuck transaction is
//! replaced (same nonce), and https endpoints behind a local certificate authority work and
//! must agree with each other.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chainiac_anchor::{
    Anchor, AnchorError, AnchorProof, AnchorRequest, EthereumAnchor, EthereumConfig, FeePolicy,
    FeeRefusal, GWEI, RpcError,
};
use chainiac_protocol::Hash;
use chainiac_protocol::keys::SecretKey;
use chainiac_protocol::skipchain::ChainParams;
use chainiac_tests::ethereum::{TlsProxy, eth_rpc, funded_key, quantity};
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
    let mut keys = Vec::new();
    for i in 0..4 {
        keys.push(funded_key(&url, state.path(), &format!("anchor-{i}.key")).await?);
    }
    let key_files: Vec<_> = keys.iter().map(|(path, _)| path.clone()).collect();
    let cluster = Cluster::start_with(4, &[], |i, config| {
        config.anchor.ethereum_rpc = Some(url.clone());
        config.anchor.key_file = Some(key_files[i].clone());
    })
    .await?;
    let timeline = cluster.create_timeline(0, &[0, 1, 2, 3], 1).await?;
    wait_for("3 timeline epochs anchored", || async {
        anchors(&cluster, &timeline).len() >= 3
    })
    .await?;

    let ethereum = EthereumAnchor::new(EthereumConfig::new(&anvil.url))?;
    let node_accounts: BTreeSet<String> = keys.iter().map(|(_, a)| a.clone()).collect();
    for proof in anchors(&cluster, &timeline) {
        assert_eq!(proof.chain_id, 31337, "anvil's chain id");
        // Sent by a node's own fresh account (never a development account anvil unlocks).
        let verified = chainiac_anchor::verify_evidence(&proof)?;
        assert!(
            node_accounts.contains(&format!("{:#x}", verified.sender)),
            "sent by {}",
            verified.sender
        );
        assert!(proof.cost_wei > 0, "an anchor costs something");
        cluster
            .wait_head(1, &timeline, proof.timeline_index)
            .await?;
        let block = cluster
            .core(1)
            .store()
            .block_at(&timeline, proof.timeline_index)?
            .ok_or("anchored timeline block unknown")?;
        assert_eq!(proof.timeline_block, block.hash().to_hex());
        ethereum.verify(&proof, 1).await?;
    }
    // The account's balance and each anchor's cost are shown in /anchors and the metrics.
    let apis = (0..cluster.len())
        .map(|i| cluster.api(i))
        .collect::<TestResult<Vec<_>>>()?;
    // The node that sent an anchor shows it with its cost, and an account that paid for it
    // (the others' accounts may not have sent anything yet).
    let has_paid_anchor = |all: &serde_json::Value| {
        let spent = all[0]["account"]["balance_wei"]
            .as_str()
            .and_then(|b| b.parse::<u128>().ok())
            .is_some_and(|balance| balance > 0 && balance < 100 * 1_000_000_000 * GWEI);
        spent && all[0]["anchors"][0]["cost_wei"].is_string()
    };
    let paid_by = |i: usize| {
        chainiac_tests::http(apis[i], "GET", "/anchors", None)
            .is_ok_and(|(_, all)| has_paid_anchor(&all))
    };
    wait_for(
        "a node to show its anchoring account and a paid anchor",
        || async { (0..cluster.len()).any(paid_by) },
    )
    .await?;
    let leader = (0..cluster.len())
        .find(|&i| paid_by(i))
        .ok_or("no anchoring node")?;
    let (_, listed) = chainiac_tests::http(apis[leader], "GET", "/anchors", None)?;
    eprintln!("anchoring account: {}", listed[0]["account"]);
    let cost = listed[0]["anchors"][0]["cost_wei"].as_str().ok_or("cost")?;
    assert!(cost.parse::<u128>()? > 0, "{cost}");
    assert!(listed[0]["anchors"][0]["evidence"]["header"].is_string());
    let metrics = String::from_utf8(chainiac_api::http::call(
        apis[leader],
        "GET",
        "/metrics",
        "text/plain",
        b"",
        None,
    )?)?;
    for metric in [
        "chainiac_anchor_mined_total",
        "chainiac_anchor_balance_gwei",
        "chainiac_anchor_spent_gwei_total",
    ] {
        assert!(
            metrics.contains(metric),
            "{metric} missing from the metrics"
        );
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
    let checked = client.check_anchor_in_timeline(&genesis, genuine).await?;
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    assert!(roster.members().iter().any(|m| m.key == checked.member));
    let mut made_up = genuine.clone();
    made_up.timeline_block = chainiac_protocol::Hash([9; 32]).to_hex();
    let mut moved = genuine.clone();
    moved.timeline_index = other.timeline_index;
    // A genuine anchor of another chain, offered as one of this timeline.
    let mut elsewhere = genuine.clone();
    elsewhere.timeline = chainiac_protocol::Hash([7; 32]).to_hex();
    // A genuine transaction's evidence with the account vouched for by a key outside the
    // roster (a stranger's node that anchored the same block with its own account).
    let mut stranger = genuine.clone();
    if let Some(evidence) = stranger.evidence.as_mut() {
        let outsider = SecretKey::from_seed(&[0x55; 32]);
        evidence.account = chainiac_anchor::AnchorAccount::vouch(
            &outsider,
            31337,
            evidence.account.address,
            evidence.account.recipient,
        );
    }
    for (what, forged) in [
        ("a made-up block", made_up),
        ("another index", moved),
        ("another timeline", elsewhere),
        ("an account vouched for by a non-member", stranger),
    ] {
        match client.check_anchor_in_timeline(&genesis, &forged).await {
            Err(error) => eprintln!("anchor of {what}: {error}"),
            Ok(_) => return Err(format!("the client believed an anchor of {what}").into()),
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
        match ethereum.verify(&bad, 1).await {
            Err(AnchorError::Refused(reason)) => eprintln!("changed {what}: {reason}"),
            other => return Err(format!("a proof with a changed {what} gave {other:?}").into()),
        }
    }
    // Too few confirmations is its own answer.
    assert!(matches!(
        ethereum.verify(&proof, 1_000_000).await,
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
        ethereum.verify(proof, 1).await?;
    }

    // The cost of an epoch's anchor does not grow with the number of projects: one transaction
    // of the same size whether the timeline lists 2 chains or 500 more.
    let gas_of = |proof: &AnchorProof| -> TestResult<u64> {
        let receipt = eth_rpc(
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
    // Nothing is mined between reading the newest block and replacing it (nodes anchor every
    // second): what arrives meanwhile is mined after the reorganisation.
    eth_rpc(&anvil.url, "evm_setAutomine", &serde_json::json!([false]))?;
    let head = quantity(&eth_rpc(
        &anvil.url,
        "eth_blockNumber",
        &serde_json::json!([]),
    )?)?;
    let replaced = eth_rpc(
        &anvil.url,
        "eth_getBlockByNumber",
        &serde_json::json!([format!("0x{head:x}"), true]),
    )?;
    let marker = format!(
        "0x{}{}",
        hex::encode(b"chainiac anchor1"),
        timeline.to_hex()
    );
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
    eth_rpc(&anvil.url, "anvil_reorg", &serde_json::json!([1, []]))?;
    eth_rpc(&anvil.url, "evm_mine", &serde_json::json!([]))?;
    eth_rpc(&anvil.url, "evm_setAutomine", &serde_json::json!([true]))?;
    wait_for("the reorganised anchor to be anchored again", || async {
        for proof in anchors(&cluster, &timeline) {
            if proof.timeline_index == reorganised
                && proof.block_hash != replaced_hash
                && ethereum.verify(&proof, 1).await.is_ok()
            {
                return true;
            }
        }
        false
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

/// The timeline indexes anchored on chain, one per anchoring transaction, read from every block.
fn anchored_timeline_indexes(
    url: &str,
    timeline: &chainiac_protocol::Hash,
) -> TestResult<Vec<u64>> {
    let head = quantity(&eth_rpc(url, "eth_blockNumber", &serde_json::json!([]))?)?;
    let marker = format!(
        "0x{}{}",
        hex::encode(b"chainiac anchor1"),
        timeline.to_hex()
    );
    let mut indexes = Vec::new();
    for number in 0..=head {
        let block = eth_rpc(
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

fn request(index: u64) -> AnchorRequest {
    AnchorRequest {
        timeline: Hash([0xab; 32]),
        index,
        block: Hash([index as u8; 32]),
    }
}

/// A backend sending from `key_file`, its account vouched for by a test member key.
fn backend(config: EthereumConfig, key_file: &std::path::Path) -> TestResult<EthereumAnchor> {
    let signer = chainiac_anchor::load_key(key_file, None)?;
    let member = Arc::new(SecretKey::from_seed(&[0x33; 32]));
    let voucher: chainiac_anchor::Voucher = Arc::new(move |chain_id, address, recipient| {
        chainiac_anchor::AnchorAccount::vouch(&member, chain_id, address, recipient)
    });
    Ok(EthereumAnchor::new(config)?.with_sender(signer, voucher))
}

/// A transaction of `from` waiting in anvil's pool.
#[derive(Debug)]
struct Pooled {
    nonce: u64,
    max_fee_per_gas: u128,
    /// Calldata, `0x` hex.
    input: String,
}

/// The transactions of `from` in anvil's pool (`txpool_content`).
fn pooled_from(url: &str, from: &str) -> TestResult<Vec<Pooled>> {
    let content = eth_rpc(url, "txpool_content", &serde_json::json!([]))?;
    let mut found = Vec::new();
    for (sender, by_nonce) in content["pending"].as_object().into_iter().flatten() {
        if sender.eq_ignore_ascii_case(from) {
            for tx in by_nonce.as_object().into_iter().flatten().map(|(_, tx)| tx) {
                found.push(Pooled {
                    nonce: quantity(&tx["nonce"])?,
                    max_fee_per_gas: u128::from(quantity(&tx["maxFeePerGas"])?),
                    input: tx["input"].as_str().unwrap_or_default().to_owned(),
                });
            }
        }
    }
    Ok(found)
}

fn gwei_hex(gwei: u128) -> String {
    format!("0x{:x}", gwei * GWEI)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_ceiling_daily_cap_stuck_replacement_and_https_endpoints() -> TestResult {
    let state = tempfile::tempdir()?;
    let anvil = Anvil::start(&state.path().join("anvil.json"))?;
    let (key_file, address) = funded_key(&anvil.url, state.path(), "anchor.key").await?;
    let mut config = EthereumConfig::new(&anvil.url);
    config.fees = FeePolicy {
        max_fee_per_gas: 100 * GWEI,
        priority_fee_per_gas: GWEI,
        daily_cap_wei: 1_000_000 * GWEI,
    };
    config.replace_after = Duration::from_secs(1);
    config.mined_timeout = Duration::from_secs(60);
    config.poll_interval = Duration::from_millis(100);
    config.journal = Some(state.path().join("anchor-journal.json"));
    let ethereum = Arc::new(backend(config.clone(), &key_file)?);

    // A first anchor: the proof verifies offline and online, its cost is what the account
    // lost, and the account status says so.
    let proof = ethereum.anchor(&request(1)).await?;
    let verified = chainiac_anchor::verify_evidence(&proof)?;
    assert_eq!(format!("{:#x}", verified.sender), address);
    ethereum.verify(&proof, 1).await?;
    let status = ethereum.status().await?.ok_or("no account status")?;
    assert_eq!(status.address, address);
    assert_eq!(
        status.balance_wei,
        100 * 1_000_000_000 * GWEI - proof.cost_wei
    );
    assert_eq!(status.spent_today_wei, proof.cost_wei);

    // Real evidence tampered with is refused, offline and online.
    let mut header = proof.clone();
    if let Some(evidence) = header.evidence.as_mut() {
        evidence.header[30] ^= 1;
    }
    let mut receipt = proof.clone();
    if let Some(evidence) = receipt.evidence.as_mut() {
        let last = evidence.receipt_proof.len() - 1;
        evidence.receipt_proof[last][3] ^= 1;
    }
    for (what, bad) in [("header", header), ("receipt proof", receipt)] {
        match ethereum.verify(&bad, 1).await {
            Err(AnchorError::Refused(reason)) => eprintln!("changed {what}: {reason}"),
            other => return Err(format!("a changed {what} gave {other:?}").into()),
        }
    }

    // The fee ceiling: at a base fee of 500 gwei nothing is sent, and the refusal says why.
    let nonce_before = quantity(&eth_rpc(
        &anvil.url,
        "eth_getTransactionCount",
        &serde_json::json!([address, "pending"]),
    )?)?;
    eth_rpc(
        &anvil.url,
        "anvil_setNextBlockBaseFeePerGas",
        &serde_json::json!([gwei_hex(500)]),
    )?;
    eth_rpc(&anvil.url, "evm_mine", &serde_json::json!([]))?;
    match ethereum.anchor(&request(2)).await {
        Err(AnchorError::Fees(refusal @ FeeRefusal::BaseFeeAboveCap { .. })) => {
            let text = refusal.to_string();
            eprintln!("{text}");
            assert!(
                text.contains("500 gwei") && text.contains("100 gwei"),
                "{text}"
            );
        }
        other => return Err(format!("anchoring at a 500 gwei base fee gave {other:?}").into()),
    }
    let nonce_after = quantity(&eth_rpc(
        &anvil.url,
        "eth_getTransactionCount",
        &serde_json::json!([address, "pending"]),
    )?)?;
    assert_eq!(
        nonce_before, nonce_after,
        "a transaction was sent above the ceiling"
    );
    eth_rpc(
        &anvil.url,
        "anvil_setNextBlockBaseFeePerGas",
        &serde_json::json!([gwei_hex(1)]),
    )?;
    eth_rpc(&anvil.url, "evm_mine", &serde_json::json!([]))?;

    // The daily cap: a backend allowed less than one anchor's worst case sends nothing.
    let mut capped = config.clone();
    capped.fees.daily_cap_wei = 10_000 * GWEI;
    capped.journal = None;
    match backend(capped, &key_file)?.anchor(&request(3)).await {
        Err(AnchorError::Fees(FeeRefusal::DailyCap { .. })) => {}
        other => return Err(format!("anchoring over the daily cap gave {other:?}").into()),
    }

    // A stuck transaction: with mining paused, the backend replaces it after a second with
    // higher fees and the same nonce; once a block is mined, exactly one version is in it.
    eth_rpc(&anvil.url, "evm_setAutomine", &serde_json::json!([false]))?;
    let stuck = {
        let ethereum = ethereum.clone();
        tokio::spawn(async move { ethereum.anchor(&request(4)).await })
    };
    let first_fee = std::cell::Cell::new(None::<u128>);
    wait_for("the stuck anchoring transaction to be replaced", || async {
        let Ok(pooled) = pooled_from(&anvil.url, &address) else {
            return false;
        };
        match (first_fee.get(), pooled.first()) {
            (None, Some(tx)) => {
                first_fee.set(Some(tx.max_fee_per_gas));
                false
            }
            (Some(first), Some(tx)) => tx.max_fee_per_gas > first,
            _ => false,
        }
    })
    .await?;
    let pooled = pooled_from(&anvil.url, &address)?;
    assert_eq!(
        pooled.len(),
        1,
        "one transaction per nonce in the pool: {pooled:?}"
    );
    eth_rpc(&anvil.url, "evm_mine", &serde_json::json!([]))?;
    eth_rpc(&anvil.url, "evm_setAutomine", &serde_json::json!([true]))?;
    let replaced = stuck.await??;
    let mined = eth_rpc(
        &anvil.url,
        "eth_getTransactionByHash",
        &serde_json::json!([replaced.transaction]),
    )?;
    assert_eq!(quantity(&mined["nonce"])?, pooled[0].nonce);
    // The replacement seen in the pool, or a later one if another second passed before mining.
    let mined_fee = u128::from(quantity(&mined["maxFeePerGas"])?);
    assert!(
        mined_fee >= pooled[0].max_fee_per_gas,
        "a replacement was mined: {mined_fee} < {}",
        pooled[0].max_fee_per_gas
    );
    assert!(
        pooled[0].max_fee_per_gas * 8 >= first_fee.get().ok_or("no first fee")? * 9,
        "bumped by 12.5 %"
    );
    ethereum.verify(&replaced, 1).await?;

    // A block given up on while its transaction waits in the pool: the next block's anchor
    // replaces that transaction at its nonce instead of queueing a second one behind it.
    eth_rpc(&anvil.url, "evm_setAutomine", &serde_json::json!([false]))?;
    let journal = state.path().join("given-up-journal.json");
    let mut impatient = config.clone();
    impatient.journal = Some(journal.clone());
    impatient.mined_timeout = Duration::from_secs(1);
    impatient.replace_after = Duration::from_secs(600);
    match backend(impatient.clone(), &key_file)?
        .anchor(&request(6))
        .await
    {
        Err(AnchorError::Refused(reason)) if reason.contains("not mined") => {}
        other => return Err(format!("an unmined anchor gave {other:?}").into()),
    }
    let given_up = pooled_from(&anvil.url, &address)?;
    assert_eq!(given_up.len(), 1, "{given_up:?}");
    impatient.mined_timeout = Duration::from_secs(60);
    let next = {
        let next = backend(impatient, &key_file)?;
        tokio::spawn(async move { next.anchor(&request(7)).await })
    };
    let calldata_of = |index| {
        format!(
            "0x{}",
            hex::encode(chainiac_anchor::anchor_calldata(&request(index)))
        )
    };
    wait_for("the given-up transaction to be replaced", || async {
        pooled_from(&anvil.url, &address).is_ok_and(|pool| {
            pool.len() == 1 && pool[0].nonce == given_up[0].nonce && pool[0].input == calldata_of(7)
        })
    })
    .await?;
    eth_rpc(&anvil.url, "evm_mine", &serde_json::json!([]))?;
    eth_rpc(&anvil.url, "evm_setAutomine", &serde_json::json!([true]))?;
    let covering = next.await??;
    let mined = eth_rpc(
        &anvil.url,
        "eth_getTransactionByHash",
        &serde_json::json!([covering.transaction]),
    )?;
    assert_eq!(quantity(&mined["nonce"])?, given_up[0].nonce);
    assert!(
        pooled_from(&anvil.url, &address)?.is_empty(),
        "nothing queued behind"
    );
    let on_chain = anchored_timeline_indexes(&anvil.url, &request(7).timeline)?;
    assert!(
        on_chain.contains(&7) && !on_chain.contains(&6),
        "{on_chain:?}"
    );
    let journaled: serde_json::Value = serde_json::from_slice(&std::fs::read(&journal)?)?;
    assert_eq!(journaled["pending"], serde_json::json!([]), "{journaled}");
    let at_nonce: Vec<_> = journaled["spending"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["nonce"].as_u64() == Some(given_up[0].nonce))
        .collect();
    assert_eq!(
        at_nonce.len(),
        1,
        "one reservation for the nonce: {journaled}"
    );

    // Through the event contract: deployed by a command's code path, its code is the
    // documented one, the anchor verifies, and a log query by the contract's address finds it.
    let signer = chainiac_anchor::load_key(&key_file, None)?;
    let contract = chainiac_anchor::deploy_contract(
        &anvil.url,
        &chainiac_anchor::EndpointOptions::default(),
        &signer,
        &config.fees,
    )
    .await?;
    let mut through = config.clone();
    through.contract = Some(contract);
    let through = backend(through, &key_file)?;
    let logged = through.anchor(&request(5)).await?;
    let account = &logged.evidence.as_ref().ok_or("no evidence")?.account;
    assert!(account.through_contract());
    through.verify(&logged, 1).await?;
    let logs = eth_rpc(
        &anvil.url,
        "eth_getLogs",
        &serde_json::json!([{"address": format!("{contract:#x}"), "fromBlock": "0x0"}]),
    )?;
    let logs = logs.as_array().ok_or("no logs")?;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["data"].as_str(), Some(calldata_of(5).as_str()));
    let calldata_gas = quantity(
        &eth_rpc(
            &anvil.url,
            "eth_getTransactionReceipt",
            &serde_json::json!([proof.transaction]),
        )?["gasUsed"],
    )?;
    let event_gas = quantity(
        &eth_rpc(
            &anvil.url,
            "eth_getTransactionReceipt",
            &serde_json::json!([logged.transaction]),
        )?["gasUsed"],
    )?;
    eprintln!("anchoring gas: {calldata_gas} in calldata, {event_gas} through the event contract");

    // https: through a TLS proxy whose certificate authority is configured, the proof
    // verifies; without trusting that authority the endpoint is refused.
    let proxy = TlsProxy::start(anvil.port, state.path()).await?;
    let mut https = EthereumConfig::new(&proxy.url);
    https.endpoint_options.ca_file = Some(proxy.ca_file.clone());
    let over_tls = EthereumAnchor::new(https.clone())?;
    over_tls.verify(&proof, 1).await?;
    let untrusted = EthereumAnchor::new(EthereumConfig::new(&proxy.url))?;
    match untrusted.verify(&proof, 1).await {
        Err(AnchorError::Rpc(RpcError::Unreachable { message, .. })) => {
            eprintln!("untrusted certificate: {message}");
        }
        other => return Err(format!("an untrusted certificate gave {other:?}").into()),
    }

    // Two endpoints must agree: http and https to the same chain do; another chain with the
    // same chain id (a second anvil, a lying provider) at that block number does not.
    https.endpoints = vec![anvil.url.clone(), proxy.url.clone()];
    EthereumAnchor::new(https.clone())?
        .verify(&proof, 1)
        .await?;
    let other = Anvil::start(&state.path().join("other-anvil.json"))?;
    for _ in 0..=proof.block_number {
        eth_rpc(&other.url, "evm_mine", &serde_json::json!([]))?;
    }
    https.endpoints = vec![anvil.url.clone(), other.url.clone()];
    match EthereumAnchor::new(https)?.verify(&proof, 1).await {
        Err(AnchorError::Refused(reason)) => eprintln!("endpoints disagree: {reason}"),
        other => return Err(format!("disagreeing endpoints gave {other:?}").into()),
    }
    Ok(())
}
