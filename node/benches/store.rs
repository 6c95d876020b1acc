//! Store appends per second: validated, synced appends of pre-signed blocks into RocksDB.
//! Run with `cargo bench -p chainiac-node --bench store`.

#![allow(clippy::expect_used)]

use std::time::Duration;

use chainiac_node::store::Store;
use chainiac_protocol::cosi::{Roster, RosterMember, local_round};
use chainiac_protocol::keys::SecretKey;
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, SkipBlock, SkipChain};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const BLOCKS: usize = 200;

/// A signed chain of `BLOCKS` blocks with every forward link, built once.
fn signed_chain() -> (SkipBlock, ForwardLink, Vec<(SkipBlock, Vec<ForwardLink>)>) {
    let mut rng = StdRng::seed_from_u64(1);
    let secrets: Vec<SecretKey> = (0..4).map(|_| SecretKey::generate(&mut rng)).collect();
    let roster =
        Roster::with_default_threshold(secrets.iter().map(RosterMember::from_secret).collect())
            .expect("roster");
    let refs: Vec<&SecretKey> = secrets.iter().collect();
    let genesis = SkipBlock::genesis(
        ChainParams::new(2, 32).expect("params"),
        roster.clone(),
        b"bench".to_vec(),
    )
    .expect("genesis");
    let certificate = chainiac_protocol::skipchain::LinkRequest::for_genesis(&genesis)
        .expect("genesis")
        .sign_locally(genesis.chain_id(), &roster, &refs, &mut rng)
        .expect("certificate");
    let mut chain = SkipChain::new(genesis.clone()).expect("chain");
    let mut appended = Vec::new();
    for index in 1..=BLOCKS {
        let block = chain.propose(None, vec![0u8; 256]).expect("block");
        let links: Vec<ForwardLink> = chain
            .link_requests(&block)
            .expect("requests")
            .into_iter()
            .map(|r| ForwardLink {
                chain_id: chain.id(),
                from: r.from,
                to: r.to,
                level: r.level,
                signature: local_round(
                    &roster,
                    &refs,
                    r.message.as_bytes(),
                    &[0, 1, 2, 3],
                    &mut rng,
                )
                .expect("sign"),
            })
            .collect();
        chain.append(block.clone(), links.clone()).expect("append");
        appended.push((block, links));
        assert_eq!(chain.len() as usize, index + 1);
    }
    (genesis, certificate, appended)
}

fn appends(c: &mut Criterion) {
    let (genesis, certificate, blocks) = signed_chain();
    let mut group = c.benchmark_group("store_append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(BLOCKS as u64));
    group.bench_function("rocksdb_synced_200_blocks", |b| {
        b.iter_with_setup(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Store::open(&dir.path().join("db")).expect("open");
                store.create_chain(&genesis, &certificate).expect("genesis");
                (dir, store)
            },
            |(dir, store)| {
                for (block, links) in &blocks {
                    store.append(block, links).expect("append");
                }
                drop(store);
                drop(dir);
            },
        );
    });
    group.bench_function("memory_200_blocks", |b| {
        b.iter_with_setup(
            || {
                let store = Store::in_memory();
                store.create_chain(&genesis, &certificate).expect("genesis");
                store
            },
            |store| {
                for (block, links) in &blocks {
                    store.append(block, links).expect("append");
                }
            },
        );
    });
    group.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
