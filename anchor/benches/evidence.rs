//! The light client's hot path for anchors: checking an anchor's Ethereum evidence offline
//! (Keccak-256 of the header, two Merkle-Patricia proofs, a secp256k1 recovery, the member's
//! Ed25519 signature), and the anchoring node's: building that evidence from a block.
//! `cargo bench -p chainiac-anchor --bench evidence` (docs/benchmarks.md).

use alloy::signers::local::PrivateKeySigner;
use chainiac_anchor::synthetic::{AnchorTransaction, SyntheticBlock};
use chainiac_anchor::{AnchorAccount, AnchorRequest, anchor_calldata, verify_evidence};
use chainiac_protocol::Hash;
use chainiac_protocol::keys::SecretKey;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const CHAIN: u64 = 1;

fn evidence(c: &mut Criterion) {
    let request = AnchorRequest {
        timeline: Hash([1; 32]),
        index: 1_000,
        block: Hash([2; 32]),
    };
    let Ok(key) = PrivateKeySigner::from_slice(&[7; 32]) else {
        return;
    };
    let member = SecretKey::from_seed(&[3; 32]);
    let address = key.address().into();
    let account = AnchorAccount::vouch(&member, CHAIN, address, address);
    let mut group = c.benchmark_group("anchor_evidence");
    // Mainnet blocks hold about 150-300 transactions.
    for transactions in [1usize, 200, 1_000] {
        let calldata = anchor_calldata(&request);
        let anchor = AnchorTransaction {
            key: &key,
            chain_id: CHAIN,
            to: key.address(),
            input: &calldata,
            success: true,
            logs: &[],
        };
        let Ok(block) = SyntheticBlock::with_anchor(&anchor, transactions - 1, transactions / 2)
        else {
            return;
        };
        let Ok(proof) = block.proof(CHAIN, &request, transactions / 2, account.clone()) else {
            return;
        };
        group.bench_with_input(
            BenchmarkId::new("verify_offline", transactions),
            &proof,
            |b, proof| b.iter(|| verify_evidence(proof).is_ok()),
        );
        group.bench_with_input(
            BenchmarkId::new("build_from_block", transactions),
            &block,
            |b, block| b.iter(|| block.proof(CHAIN, &request, transactions / 2, account.clone())),
        );
    }
    group.finish();
}

criterion_group!(benches, evidence);
criterion_main!(benches);
