use std::sync::Arc;

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Roster, RosterMember, local_round};
use chainiac_protocol::keys::SecretKey;
use chainiac_protocol::skipchain::{BlockRoster, ChainParams, ForwardLink, LinkRequest, SkipBlock};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

struct Witnesses {
    secrets: Vec<SecretKey>,
    rng: StdRng,
}

impl Witnesses {
    fn new(n: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(n as u64);
        Self {
            secrets: (0..n).map(|_| SecretKey::generate(&mut rng)).collect(),
            rng,
        }
    }

    fn roster(&self, range: std::ops::Range<usize>) -> Roster {
        Roster::with_default_threshold(
            self.secrets[range]
                .iter()
                .map(RosterMember::from_secret)
                .collect(),
        )
        .expect("roster")
    }

    fn links(&mut self, store: &Store, block: &SkipBlock) -> Vec<ForwardLink> {
        let requests = store.link_requests(block).expect("valid proposal");
        requests
            .into_iter()
            .map(|request| {
                let source = store
                    .block_at(&block.chain_id(), request.from_index)
                    .expect("read")
                    .expect("source");
                let roster = store.roster_of(&source).expect("roster");
                let signers: Vec<&SecretKey> = roster
                    .members()
                    .iter()
                    .filter_map(|m| self.secrets.iter().find(|s| s.public_key() == m.key))
                    .collect();
                let all: Vec<usize> = (0..roster.len()).collect();
                let signature = local_round(
                    &roster,
                    &signers,
                    request.message.as_bytes(),
                    &all,
                    &mut self.rng,
                )
                .expect("round");
                ForwardLink {
                    chain_id: block.chain_id(),
                    from: request.from,
                    to: request.to,
                    level: request.level,
                    signature,
                }
            })
            .collect()
    }

    /// The genesis certificate of `genesis`, signed by its roster.
    fn certificate(&mut self, genesis: &SkipBlock) -> ForwardLink {
        let BlockRoster::Full(roster) = genesis.roster() else {
            panic!("a genesis names its roster")
        };
        let secrets: Vec<&SecretKey> = self.secrets.iter().collect();
        LinkRequest::for_genesis(genesis)
            .expect("genesis")
            .sign_locally(genesis.chain_id(), roster, &secrets, &mut self.rng)
            .expect("certificate")
    }

    fn next(
        &self,
        store: &Store,
        chain_id: &Hash,
        roster: Option<Roster>,
        payload: &[u8],
    ) -> SkipBlock {
        let head = store.head(chain_id).expect("read").expect("head");
        let previous = store.block(&head.hash).expect("read").expect("block");
        let current = store.roster_of(&previous).expect("roster");
        SkipBlock::successor(&previous, &current, roster, payload.to_vec(), |i| {
            store.block_at(chain_id, i).ok().flatten().map(|b| b.hash())
        })
        .expect("successor")
    }

    fn extend(&mut self, store: &Store, chain_id: &Hash, count: usize) {
        for _ in 0..count {
            let block = self.next(store, chain_id, None, b"payload");
            let links = self.links(store, &block);
            store.append(&block, &links).expect("append");
        }
    }
}

fn genesis(w: &Witnesses) -> SkipBlock {
    SkipBlock::genesis(
        ChainParams::new(2, 32).expect("params"),
        w.roster(0..4),
        b"genesis".to_vec(),
    )
    .expect("genesis")
}

fn exercise(store: &Store) {
    let mut w = Witnesses::new(8);
    let genesis = genesis(&w);
    let chain_id = genesis.chain_id();
    assert_eq!(
        store
            .create_chain(&genesis, &w.certificate(&genesis))
            .expect("create")
            .index,
        0
    );
    assert!(matches!(
        store.create_chain(&genesis, &w.certificate(&genesis)),
        Err(StoreError::ChainExists(_))
    ));
    w.extend(store, &chain_id, 20);
    // roster change at 21, signed by the old roster
    let change = w.next(store, &chain_id, Some(w.roster(4..8)), b"new roster");
    let links = w.links(store, &change);
    store.append(&change, &links).expect("roster change");
    w.extend(store, &chain_id, 10);

    let head = store.head(&chain_id).expect("read").expect("head");
    assert_eq!(head.index, 31);
    assert_eq!(store.chains(10).expect("chains"), vec![head]);
    for index in 0..=31 {
        let block = store
            .block_at(&chain_id, index)
            .expect("read")
            .expect("block");
        assert_eq!(block.index(), index);
    }
    assert!(
        store
            .forward_link(&genesis.hash(), 4)
            .expect("read")
            .is_some(),
        "0 -> 16"
    );
    let trusted = store.trusted(&chain_id, 0).expect("trusted");
    let proof = store.skip_proof(&chain_id, 0, 31).expect("proof");
    let verified = proof.verify(&trusted).expect("proof verifies");
    assert_eq!(verified.block().index(), 31);
    assert_eq!(verified.roster().hash(), w.roster(4..8).hash());
    assert!(store.skip_proof(&chain_id, 0, 32).is_err());

    // Refusals change nothing.
    let good = w.next(store, &chain_id, None, b"32");
    let good_links = w.links(store, &good);
    let only_higher: Vec<ForwardLink> =
        good_links.iter().filter(|l| l.level > 0).cloned().collect();
    assert!(store.append(&good, &only_higher).is_err());
    let mut forged = good_links.clone();
    forged[0].signature.s[0] ^= 1;
    assert!(store.append(&good, &forged).is_err());
    assert!(store.append(&good, &[]).is_err(), "no links at all");
    let stray = SkipBlock::successor(
        &store.block_at(&chain_id, 5).expect("read").expect("block"),
        &w.roster(0..4),
        None,
        vec![],
        |i| {
            store
                .block_at(&chain_id, i)
                .ok()
                .flatten()
                .map(|b| b.hash())
        },
    )
    .expect("block 6 again");
    assert!(matches!(
        store.append(&stray, &good_links),
        Err(StoreError::Rejected(_))
    ));
    assert_eq!(store.head(&chain_id).expect("read"), Some(head));
    assert!(store.block(&good.hash()).expect("read").is_none());
    store
        .append(&good, &good_links)
        .expect("the good block still goes in");
    assert_eq!(
        store.head(&chain_id).expect("read").map(|h| h.index),
        Some(32)
    );
}

#[test]
fn memory_store_follows_the_chain_rules() {
    exercise(&Store::in_memory());
}

#[test]
fn rocksdb_store_follows_the_chain_rules_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let chain_id = {
        let store = Store::open(&path).expect("open");
        exercise(&store);
        store.chains(1).expect("chains")[0].chain_id
    };
    let reopened = Store::open(&path).expect("reopen");
    let head = reopened.head(&chain_id).expect("read").expect("head");
    assert_eq!(head.index, 32);
    let proof = reopened.skip_proof(&chain_id, 3, 32).expect("proof");
    proof
        .verify(&reopened.trusted(&chain_id, 3).expect("trusted"))
        .expect("verifies after reopen");
}

#[test]
fn corrupted_values_are_reported_not_served() {
    let backend = Arc::new(MemoryBackend::new());
    let store = Store::with_backend(backend.clone());
    let mut w = Witnesses::new(4);
    let genesis = genesis(&w);
    store
        .create_chain(&genesis, &w.certificate(&genesis))
        .expect("create");
    // a block stored under the wrong hash
    let mut batch = Batch::new();
    let other = Hash::of("test", &[b"other"]);
    batch.put(
        Column::Blocks,
        other.0,
        chainiac_protocol::encoding::Encode::to_bytes(&genesis),
    );
    backend.write(batch).expect("write");
    assert!(matches!(
        store.block(&other),
        Err(StoreError::Corrupt { what: "block", .. })
    ));
    // a flipped byte in a head
    let mut stored = backend
        .get(Column::Heads, genesis.hash().as_bytes())
        .expect("read")
        .expect("head");
    stored[40] ^= 1;
    let mut batch = Batch::new();
    batch.put(Column::Heads, genesis.hash().0, stored);
    backend.write(batch).expect("write");
    assert!(matches!(
        store.head(&genesis.hash()),
        Err(StoreError::Corrupt {
            what: "chain head",
            ..
        })
    ));
    // garbage instead of a block
    let mut batch = Batch::new();
    batch.put(Column::Blocks, genesis.hash().0, vec![1, 2, 3]);
    backend.write(batch).expect("write");
    let message = store
        .block(&genesis.hash())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("corrupt block"), "{message}");
}

#[test]
fn foreign_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A RocksDB that is not ours.
    let foreign = dir.path().join("foreign");
    {
        let db = rocksdb::DB::open_default(&foreign).expect("open foreign");
        db.put(b"k", b"v").expect("put");
    }
    assert!(matches!(
        Store::open(&foreign),
        Err(StoreError::Foreign { .. })
    ));
    // A store written by a newer chainiac.
    let newer = dir.path().join("newer");
    {
        let backend = RocksBackend::open(&newer).expect("open");
        let mut batch = Batch::new();
        batch.put(
            Column::Meta,
            b"schema_version".to_vec(),
            (SCHEMA_VERSION + 1).to_le_bytes(),
        );
        backend.write(batch).expect("write");
    }
    let error = Store::open(&newer)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("upgrade chainiac"), "{error}");
}

#[test]
fn relaxed_appends_are_kept_once_persisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let mut w = Witnesses::new(4);
    let genesis = genesis(&w);
    let chain_id = genesis.chain_id();
    {
        let store = Store::open(&path).expect("open");
        store
            .create_chain(&genesis, &w.certificate(&genesis))
            .expect("create");
        for _ in 0..5 {
            let block = w.next(&store, &chain_id, None, b"relaxed");
            let links = w.links(&store, &block);
            store.append_relaxed(&block, &links).expect("append");
        }
        // The rules still hold for relaxed appends.
        let block = w.next(&store, &chain_id, None, b"unsigned");
        assert!(store.append_relaxed(&block, &[]).is_err());
        store.persist().expect("persist");
    }
    let reopened = Store::open(&path).expect("reopen");
    assert_eq!(
        reopened.head(&chain_id).expect("read").map(|h| h.index),
        Some(5)
    );
    // Rosters come back from the cache and from disk alike.
    let head = reopened
        .block_at(&chain_id, 5)
        .expect("read")
        .expect("block");
    assert_eq!(
        reopened.roster_of(&head).expect("roster").hash(),
        reopened.roster_of(&head).expect("cached").hash()
    );
}

#[test]
fn timeline_trees_fold_from_the_stored_blocks_and_match_their_commitments() {
    use chainiac_protocol::encoding::Encode;
    use chainiac_protocol::timeline::{TimelineBlock, TimelineEntry, TimelineTree};

    let entry = |chain: u8, head: u8| TimelineEntry {
        chain_id: Hash([chain; 32]),
        head: Hash([head; 32]),
    };
    let mut w = Witnesses::new(4);
    let store = Store::in_memory();
    let genesis = genesis(&w);
    let timeline = genesis.chain_id();
    store
        .create_chain(&genesis, &w.certificate(&genesis))
        .expect("create");
    let epochs = [
        vec![entry(1, 1), entry(2, 1)],
        vec![entry(2, 2)],
        vec![],
        vec![entry(3, 1), entry(1, 5)],
    ];
    let mut previous: Option<TimelineTree> = None;
    let mut roots = Vec::new();
    for (epoch, changes) in epochs.into_iter().enumerate() {
        let (payload, tree) = TimelineBlock::new(previous.as_ref(), epoch as u64 + 1, 100, changes)
            .expect("timeline block");
        let block = w.next(&store, &timeline, None, &payload.to_bytes());
        let links = w.links(&store, &block);
        store.append(&block, &links).expect("append");
        roots.push(tree.root());
        previous = Some(tree);
    }
    // Cold: folds every block from the genesis.
    let tree = store.timeline_tree(&timeline, 4).expect("tree");
    assert_eq!(tree.root(), roots[3]);
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.head_of(&Hash([1; 32])), Some(Hash([5; 32])));
    assert_eq!(tree.head_of(&Hash([2; 32])), Some(Hash([2; 32])));
    // Earlier blocks fold from the genesis again; later ones from the nearest tree in memory.
    assert_eq!(
        store.timeline_tree(&timeline, 2).expect("tree").root(),
        roots[1]
    );
    assert_eq!(
        store.timeline_tree(&timeline, 3).expect("tree").root(),
        roots[2]
    );
    assert!(store.timeline_tree(&timeline, 5).is_err(), "not stored");
    assert!(
        store
            .timeline_tree(&timeline, 0)
            .expect("genesis")
            .is_empty()
    );
}

#[test]
fn timeline_trees_are_checkpointed_so_no_tree_is_more_than_an_interval_of_folding_away() {
    use chainiac_protocol::encoding::Encode;
    use chainiac_protocol::timeline::{TimelineBlock, TimelineEntry, TimelineTree};

    let mut w = Witnesses::new(4);
    let backend: Arc<dyn KeyValue> = Arc::new(MemoryBackend::new());
    let store = Store::with_backend(backend.clone());
    store.set_timeline_checkpoint_interval(4);
    let genesis = genesis(&w);
    let timeline = genesis.chain_id();
    store
        .create_chain(&genesis, &w.certificate(&genesis))
        .expect("create");
    let mut previous: Option<TimelineTree> = None;
    let mut roots = vec![TimelineTree::empty().root()];
    for epoch in 1..=11u8 {
        // Each epoch moves one of five chains (adding it the first time).
        let changes = vec![TimelineEntry {
            chain_id: Hash([epoch % 5; 32]),
            head: Hash([epoch; 32]),
        }];
        let (payload, tree) =
            TimelineBlock::new(previous.as_ref(), u64::from(epoch), 100, changes).expect("block");
        let block = w.next(&store, &timeline, None, &payload.to_bytes());
        let links = w.links(&store, &block);
        store.append(&block, &links).expect("append");
        roots.push(tree.root());
        previous = Some(tree);
    }
    let checkpoints = |kv: &Arc<dyn KeyValue>| {
        kv.scan_prefix(Column::Meta, b"timeline-tree/", usize::MAX)
            .expect("scan")
            .len()
    };
    assert_eq!(checkpoints(&backend), 0);
    // Folding block 11 from the genesis checkpoints the trees of blocks 4 and 8 on its way.
    assert_eq!(
        store.timeline_tree(&timeline, 11).expect("tree").root(),
        roots[11]
    );
    assert_eq!(checkpoints(&backend), 2);

    // A checkpoint that does not match its block is ignored (the fold goes back to the one
    // before) and written again.
    let key = |index: u64| {
        let mut key = b"timeline-tree/".to_vec();
        key.extend_from_slice(timeline.as_bytes());
        key.extend_from_slice(&index.to_be_bytes());
        key
    };
    let good = backend
        .get(Column::Meta, &key(8))
        .expect("get")
        .expect("checkpoint 8");
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut batch = Batch::new();
    batch.put(Column::Meta, key(8), bad);
    backend.write(batch).expect("write");
    let restarted = Store::with_backend(backend.clone());
    restarted.set_timeline_checkpoint_interval(4);
    assert_eq!(
        restarted.timeline_tree(&timeline, 10).expect("tree").root(),
        roots[10]
    );
    assert_eq!(backend.get(Column::Meta, &key(8)).expect("get"), Some(good));

    // After a restart, a tree needs only the blocks after the checkpoint before it: with the
    // blocks 1 to 7 gone, the trees of 8 to 11 are still there; 5 to 7 are not.
    let mut batch = Batch::new();
    for index in 1..=7u64 {
        let mut chain_index = timeline.as_bytes().to_vec();
        chain_index.extend_from_slice(&index.to_be_bytes());
        batch.delete(Column::ChainIndex, chain_index);
    }
    backend.write(batch).expect("write");
    let restarted = Store::with_backend(backend.clone());
    restarted.set_timeline_checkpoint_interval(4);
    for index in 8..=11 {
        assert_eq!(
            restarted
                .timeline_tree(&timeline, index)
                .expect("tree")
                .root(),
            roots[index as usize],
            "{index}"
        );
    }
    let error = restarted
        .timeline_tree(&timeline, 6)
        .err()
        .unwrap_or_default();
    assert!(error.contains("is not stored here"), "{error}");
}

#[test]
fn a_chain_is_stored_only_with_its_rosters_certificate_and_counted_by_creator() {
    use chainiac_protocol::data_chain::{DataGenesis, Owners};
    use chainiac_protocol::encoding::Encode;
    use chainiac_protocol::project::ChainGenesis;

    let mut w = Witnesses::new(8);
    let store = Store::in_memory();
    let owner = SecretKey::from_seed(&[5; 32]);
    let roster = w.roster(0..4);
    let data = DataGenesis::sign(
        Owners::new(vec![owner.public_key()], 1).expect("owners"),
        b"logs".to_vec(),
        &roster.hash(),
        &[&owner],
    );
    let genesis = SkipBlock::genesis(
        ChainParams::new(2, 32).expect("params"),
        roster,
        ChainGenesis::Data(data).to_bytes(),
    )
    .expect("genesis");
    // Signed by witnesses that are not the genesis roster: refused, nothing stored.
    let foreign = {
        let other = w.roster(4..8);
        let secrets: Vec<&SecretKey> = w.secrets.iter().collect();
        LinkRequest::for_genesis(&genesis)
            .expect("genesis")
            .sign_locally(genesis.chain_id(), &other, &secrets, &mut w.rng)
            .expect("signed")
    };
    assert!(store.create_chain(&genesis, &foreign).is_err());
    assert_eq!(store.head(&genesis.chain_id()).expect("read"), None);
    assert_eq!(
        store.chains_created_by(&owner.public_key()).expect("count"),
        0
    );

    let certificate = w.certificate(&genesis);
    store.create_chain(&genesis, &certificate).expect("create");
    assert_eq!(
        store.chains_created_by(&owner.public_key()).expect("count"),
        1
    );
    let linked = store
        .linked_block(&genesis.chain_id(), 0)
        .expect("read")
        .expect("genesis");
    assert_eq!(
        linked.links,
        vec![certificate],
        "the genesis travels with its certificate"
    );
}

#[test]
fn the_disk_of_each_chain_and_creator_is_counted_and_counted_once_for_older_stores() {
    use chainiac_protocol::data_chain::{DataGenesis, Owners};
    use chainiac_protocol::encoding::Encode;
    use chainiac_protocol::project::ChainGenesis;

    let mut w = Witnesses::new(4);
    let backend: Arc<dyn KeyValue> = Arc::new(MemoryBackend::new());
    let store = Store::with_backend(backend.clone());
    let owner = SecretKey::from_seed(&[9; 32]);
    let data_genesis = |label: &[u8]| {
        let roster = w.roster(0..4);
        let data = DataGenesis::sign(
            Owners::new(vec![owner.public_key()], 1).expect("owners"),
            label.to_vec(),
            &roster.hash(),
            &[&owner],
        );
        SkipBlock::genesis(
            ChainParams::new(2, 32).expect("params"),
            roster,
            ChainGenesis::Data(data).to_bytes(),
        )
        .expect("genesis")
    };
    let first = data_genesis(b"first");
    let second = data_genesis(b"second");
    let mut sizes = std::collections::HashMap::new();
    for genesis in [&first, &second] {
        let certificate = w.certificate(genesis);
        store.create_chain(genesis, &certificate).expect("create");
        let links_len = |links: &[ForwardLink]| -> u64 {
            links.iter().map(|l| l.to_bytes().len() as u64).sum()
        };
        let mut bytes = (genesis.to_bytes().len() + certificate.to_bytes().len()) as u64;
        for _ in 0..3 {
            let block = w.next(&store, &genesis.chain_id(), None, &[7; 1000]);
            let links = w.links(&store, &block);
            bytes += block.to_bytes().len() as u64 + links_len(&links);
            store.append(&block, &links).expect("append");
        }
        sizes.insert(genesis.chain_id(), bytes);
    }
    let total: u64 = sizes.values().sum();
    let (creator, usage) = store.storage_usage(&first.chain_id()).expect("usage");
    assert_eq!(creator, Some(owner.public_key()));
    assert_eq!(usage.chain_bytes, sizes[&first.chain_id()]);
    assert_eq!(usage.creator_bytes, total);
    assert!(usage.chain_bytes > 3000);

    // A store written before the counters: they are counted from the blocks, once.
    let counters = backend
        .scan_prefix(Column::Meta, b"c", usize::MAX)
        .expect("scan")
        .into_iter()
        .filter(|(key, _)| key.starts_with(b"chain-bytes/") || key.starts_with(b"creator-bytes/"))
        .collect::<Vec<_>>();
    assert_eq!(counters.len(), 3, "two chains and one creator");
    let mut batch = Batch::new();
    for (key, _) in counters {
        batch.delete(Column::Meta, key);
    }
    backend.write(batch).expect("write");
    assert_eq!(
        store.storage_usage(&first.chain_id()).expect("usage").1,
        StorageUsage::default()
    );
    store.count_usage_once().expect("count");
    let (_, recounted) = store.storage_usage(&first.chain_id()).expect("usage");
    assert_eq!(recounted, usage);
    // Once: the marker is there now.
    assert!(
        backend
            .get(Column::Meta, b"usage-counted")
            .expect("get")
            .is_some()
    );
    // And counting goes on from there.
    let block = w.next(&store, &first.chain_id(), None, b"more");
    let links = w.links(&store, &block);
    store.append(&block, &links).expect("append");
    let (_, after) = store.storage_usage(&first.chain_id()).expect("usage");
    let cost: u64 = block.to_bytes().len() as u64
        + links.iter().map(|l| l.to_bytes().len() as u64).sum::<u64>();
    assert_eq!(after.chain_bytes, usage.chain_bytes + cost);
    assert_eq!(after.creator_bytes, total + cost);
}

#[test]
fn a_release_costs_its_block_and_the_artifacts_it_makes_every_node_mirror() {
    use chainiac_protocol::encoding::Encode;
    use chainiac_protocol::project::ChainGenesis;
    use chainiac_protocol::release::{
        ArtifactRef, BinaryArtifact, BuildRecipe, Release, ReleaseManifest,
    };

    let mut w = Witnesses::new(4);
    let store = Store::in_memory();
    let genesis = genesis(&w);
    store
        .create_chain(&genesis, &w.certificate(&genesis))
        .expect("create");
    let artifact = |name: &str, size: u64| ArtifactRef {
        name: name.into(),
        hash: Hash([size as u8; 32]),
        size,
    };
    let release = Release {
        manifest: ReleaseManifest {
            project: "hello".into(),
            version: "1.0.0".into(),
            sequence: 1,
            source: artifact("hello.tar", 3 << 20),
            recipe: BuildRecipe {
                script: "make".into(),
                outputs: vec![("linux-x86_64".into(), "out/hello".into())],
            },
            binaries: vec![BinaryArtifact {
                platform: "linux-x86_64".into(),
                artifact: artifact("hello", 5 << 20),
            }],
            policy: Hash([1; 32]),
            timestamp: 1,
        },
        signatures: Vec::new(),
        attestations: Vec::new(),
    };
    let block = w.next(&store, &genesis.chain_id(), None, &release.to_bytes());
    let encoded = block.to_bytes().len() as u64;
    let release_chain = ChainGenesis::Release {
        project: "hello".into(),
        policy_chain: Hash([1; 32]),
        signatures: Vec::new(),
    };
    assert_eq!(
        super::usage::storage_cost(Some(&release_chain), &block),
        encoded + (8 << 20)
    );
    // Any other chain: the block alone.
    assert_eq!(super::usage::storage_cost(None, &block), encoded);
}

#[test]
fn head_changes_are_indexed_once_per_chain_in_order_and_timelines_listed() {
    use chainiac_protocol::encoding::Encode;
    use chainiac_protocol::project::ChainGenesis;

    let mut w = Witnesses::new(4);
    let backend: Arc<dyn KeyValue> = Arc::new(MemoryBackend::new());
    let store = Store::with_backend(backend.clone());
    let roster = w.roster(0..4);
    let timeline = SkipBlock::genesis(
        ChainParams::new(2, 32).expect("params"),
        roster.clone(),
        ChainGenesis::timeline(10, &roster.hash(), &w.secrets[0]).to_bytes(),
    )
    .expect("genesis");
    let chains: Vec<SkipBlock> = (0..3u8)
        .map(|i| {
            SkipBlock::genesis(
                ChainParams::new(2, 32).expect("params"),
                roster.clone(),
                vec![i],
            )
            .expect("genesis")
        })
        .collect();
    for genesis in chains.iter().chain([&timeline]) {
        store
            .create_chain(genesis, &w.certificate(genesis))
            .expect("create");
    }
    let ids: Vec<Hash> = chains.iter().map(SkipBlock::chain_id).collect();
    assert_eq!(
        store.timeline_chains().expect("timelines"),
        vec![(timeline.chain_id(), 10)]
    );
    let changed = |after| {
        store
            .head_changes_after(after, usize::MAX)
            .expect("changes")
    };
    assert_eq!(
        changed(0),
        vec![
            (1, ids[0]),
            (2, ids[1]),
            (3, ids[2]),
            (4, timeline.chain_id())
        ]
    );
    // Chain 0 moves twice: it keeps one entry, at its latest change.
    for payload in [b"a", b"b"] {
        let block = w.next(&store, &ids[0], None, payload);
        let links = w.links(&store, &block);
        store.append(&block, &links).expect("append");
    }
    assert_eq!(
        changed(2),
        vec![(3, ids[2]), (4, timeline.chain_id()), (6, ids[0])]
    );
    assert_eq!(changed(6), vec![]);
    assert_eq!(store.head_changes_after(0, 2).expect("changes").len(), 2);

    // A cursor only moves forward.
    assert_eq!(
        store.timeline_cursor(&timeline.chain_id()).expect("cursor"),
        0
    );
    store
        .advance_timeline_cursor(&timeline.chain_id(), 4)
        .expect("advance");
    store
        .advance_timeline_cursor(&timeline.chain_id(), 2)
        .expect("advance");
    assert_eq!(
        store.timeline_cursor(&timeline.chain_id()).expect("cursor"),
        4
    );

    // A store written before the index: every head is indexed once when it is opened.
    let mut batch = Batch::new();
    for (key, _) in backend
        .scan_prefix(Column::Meta, b"head-change", usize::MAX)
        .expect("scan")
        .into_iter()
        .chain(
            backend
                .scan_prefix(Column::Meta, b"timeline-chain/", usize::MAX)
                .expect("scan"),
        )
    {
        batch.delete(Column::Meta, key);
    }
    backend.write(batch).expect("write");
    assert_eq!(changed(0), vec![]);
    assert_eq!(store.timeline_chains().expect("timelines"), vec![]);
    let reopened = Store::with_backend(backend.clone());
    reopened.index_heads_once().expect("index");
    let mut indexed: Vec<Hash> = reopened
        .head_changes_after(0, usize::MAX)
        .expect("changes")
        .into_iter()
        .map(|(_, chain)| chain)
        .collect();
    indexed.sort();
    let mut all = ids;
    all.push(timeline.chain_id());
    all.sort();
    assert_eq!(indexed, all);
    assert_eq!(
        reopened.timeline_chains().expect("timelines"),
        vec![(timeline.chain_id(), 10)]
    );
}

#[test]
fn a_restarted_node_folds_chains_added_by_later_blocks_after_the_earlier_ones() {
    use chainiac_protocol::encoding::Encode;
    use chainiac_protocol::timeline::{TimelineBlock, TimelineEntry, TimelineTree};

    let mut w = Witnesses::new(4);
    let backend: Arc<dyn KeyValue> = Arc::new(MemoryBackend::new());
    let store = Store::with_backend(backend.clone());
    let genesis = genesis(&w);
    let timeline = genesis.chain_id();
    store
        .create_chain(&genesis, &w.certificate(&genesis))
        .expect("create");
    // Block 1 adds chain 9, block 2 adds chain 1 (a smaller id: its leaf goes after 9's),
    // block 3 moves 9 and adds 5.
    let epochs: [&[(u8, u8)]; 3] = [&[(9, 1)], &[(1, 1)], &[(9, 2), (5, 1)]];
    let mut previous: Option<TimelineTree> = None;
    for (epoch, changes) in epochs.iter().enumerate() {
        let changes = changes
            .iter()
            .map(|&(chain, head)| TimelineEntry {
                chain_id: Hash([chain; 32]),
                head: Hash([head; 32]),
            })
            .collect();
        let (payload, tree) =
            TimelineBlock::new(previous.as_ref(), epoch as u64 + 1, 100, changes).expect("block");
        let block = w.next(&store, &timeline, None, &payload.to_bytes());
        let links = w.links(&store, &block);
        store.append(&block, &links).expect("append");
        previous = Some(tree);
    }
    let expected = previous.expect("tree");
    let order: Vec<u8> = expected.entries().map(|e| e.chain_id.0[0]).collect();
    assert_eq!(order, vec![9, 1, 5]);
    // A node without the trees in memory folds the three blocks again.
    let restarted = Store::with_backend(backend);
    let folded = restarted.timeline_tree(&timeline, 3).expect("tree");
    assert_eq!(folded.root(), expected.root());
    let (entry, proof) = folded.prove(&Hash([1; 32])).expect("recorded");
    proof.verify(&expected.root(), &entry).expect("proof");
}

/// The reverse prefix scan gives the last keys first, up to the limit, on both backends: a key
/// equal to the prefix's successor, keys around the prefix, and prefixes of `0xff` bytes
/// (which have no successor) do not confuse it.
#[test]
fn reverse_prefix_scans_agree_on_both_backends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rocks: Arc<dyn KeyValue> = Arc::new(RocksBackend::open(dir.path()).expect("open"));
    let memory: Arc<dyn KeyValue> = Arc::new(MemoryBackend::new());
    let keys: Vec<Vec<u8>> = vec![
        b"anchor".to_vec(),
        b"anchor/".to_vec(),
        b"anchor/\x00".to_vec(),
        b"anchor/a1".to_vec(),
        b"anchor/a2".to_vec(),
        b"anchor/\xff\xff".to_vec(),
        b"anchor0".to_vec(),
        b"anchor0x".to_vec(),
        vec![0xff],
        vec![0xff, 0x01],
        vec![0xff, 0xff],
    ];
    for backend in [&rocks, &memory] {
        let mut batch = Batch::new();
        for key in &keys {
            batch.put(Column::Meta, key.clone(), key.clone());
        }
        // The same keys in another column are never listed.
        batch.put(Column::Blocks, b"anchor/zz".to_vec(), b"other".to_vec());
        backend.write(batch).expect("write");
    }
    let expected = |prefix: &[u8], limit: usize| -> Vec<Vec<u8>> {
        let mut matching: Vec<Vec<u8>> = keys
            .iter()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect();
        matching.sort();
        matching.reverse();
        matching.truncate(limit);
        matching
    };
    // (No empty prefix: the RocksDB store holds its schema version in the same column.)
    for prefix in [&b"anchor/"[..], b"anchor", b"anchor/a", &[0xff], b"nothing"] {
        for limit in [0, 1, 2, 3, usize::MAX] {
            for backend in [&rocks, &memory] {
                let listed: Vec<Vec<u8>> = backend
                    .scan_prefix_reverse(Column::Meta, prefix, limit)
                    .expect("scan")
                    .into_iter()
                    .map(|(key, value)| {
                        assert_eq!(key, value);
                        key
                    })
                    .collect();
                assert_eq!(
                    listed,
                    expected(prefix, limit),
                    "prefix {prefix:?} limit {limit}"
                );
            }
        }
    }
}
