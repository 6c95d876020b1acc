//! Tree rounds between in-memory nodes: every node has its own witness and store, and requests
//! are dispatched directly (no libp2p), so shapes and failures are deterministic.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use chainiac_protocol::cosi::RosterMember;
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, LinkRequest};

use super::*;
use crate::config::Identity;
use crate::rounds::leader::{RoundConfig, RoundReport, sign_link};
use crate::rounds::witness::{AnyPayload, Witness};
use crate::store::Store;

struct MemNode {
    key: PublicKey,
    store: Store,
    witness: Witness,
    subtrees: SubtreeRounds,
}

struct MemNet {
    nodes: Vec<MemNode>,
    down: Mutex<HashSet<usize>>,
    /// Nodes whose transport turns every response share they send into a wrong one.
    faulty: HashSet<usize>,
    tree_requests: AtomicUsize,
    chain_id: Hash,
}

/// What a Byzantine transport does to a share: flips one bit.
fn corrupt(mut share: ResponseShare) -> ResponseShare {
    share.s[0] ^= 1;
    share
}

/// The network as node `me` sees it while answering a request from `from`.
struct View {
    net: Arc<MemNet>,
    me: usize,
    from: usize,
}

impl WitnessTransport for View {
    fn call(
        &self,
        witness: PublicKey,
        request: Request,
    ) -> BoxFuture<'_, Result<Response, String>> {
        Box::pin(async move {
            let target = self
                .net
                .nodes
                .iter()
                .position(|n| n.key == witness)
                .ok_or_else(|| "unknown witness".to_string())?;
            if self.net.down.lock().expect("lock").contains(&target) {
                return Err("connection refused".into());
            }
            let node = &self.net.nodes[target];
            let host = View {
                net: self.net.clone(),
                me: target,
                from: self.me,
            };
            let refuse =
                |refusal: crate::rounds::witness::Refusal| Response::Refused(refusal.to_string());
            let faulty = self.net.faulty.contains(&target);
            Ok(match request {
                Request::Commit {
                    round,
                    block,
                    level,
                } => node
                    .witness
                    .commit(host.asker(), round, &block, level)
                    .map_or_else(refuse, Response::Committed),
                Request::Respond { round, challenge } => node
                    .witness
                    .respond(host.asker(), round, &challenge)
                    .map(|share| if faulty { corrupt(share) } else { share })
                    .map_or_else(refuse, Response::Responded),
                Request::TreeCommit {
                    round,
                    block,
                    level,
                    layout,
                    budget_ms,
                } => {
                    self.net.tree_requests.fetch_add(1, Ordering::Relaxed);
                    node.subtrees
                        .commit(&host, round, *block, level, layout, budget_ms)
                        .await
                }
                Request::TreeRespond {
                    round,
                    challenge,
                    budget_ms,
                } => {
                    node.subtrees
                        .respond(&host, round, challenge, budget_ms)
                        .await
                }
                _ => Response::Refused("not served here".into()),
            })
        })
    }

    fn local_key(&self) -> Option<PublicKey> {
        Some(self.net.nodes[self.me].key)
    }
}

impl SubtreeHost for View {
    fn commit_own(
        &self,
        round: Hash,
        block: Arc<SkipBlock>,
        level: u32,
    ) -> BoxFuture<'_, Result<Committed, String>> {
        let witness = &self.net.nodes[self.me].witness;
        Box::pin(async move {
            witness
                .commit_round(self.asker(), round, &block, level)
                .map_err(|r| r.to_string())
        })
    }

    fn respond_own(
        &self,
        round: Hash,
        challenge: Challenge,
    ) -> BoxFuture<'_, Result<ResponseShare, String>> {
        let witness = &self.net.nodes[self.me].witness;
        let faulty = self.net.faulty.contains(&self.me);
        let asker = self.asker();
        Box::pin(async move {
            witness
                .respond(asker, round, &challenge)
                .map(|share| if faulty { corrupt(share) } else { share })
                .map_err(|r| r.to_string())
        })
    }

    fn abandon_own(&self, round: Hash) {
        self.net.nodes[self.me]
            .witness
            .abandon(self.asker(), &round);
    }

    fn asker(&self) -> Asker {
        Asker::Peer(chainiac_net::peer_id_of(&self.net.nodes[self.from].key).expect("a valid key"))
    }

    fn sent_by(&self, key: &PublicKey) -> bool {
        self.net.nodes[self.from].key == *key
    }
}

fn network(n: usize, faulty: &[usize]) -> Arc<MemNet> {
    let identities: Vec<Arc<Identity>> = (0..n).map(|_| Arc::new(Identity::generate())).collect();
    let roster = Roster::with_default_threshold(
        identities
            .iter()
            .map(|i| RosterMember::from_secret(i.secret()))
            .collect(),
    )
    .expect("roster");
    let genesis = SkipBlock::genesis(
        ChainParams::new(2, 8).expect("params"),
        roster.clone(),
        b"tree".to_vec(),
    )
    .expect("genesis");
    let secrets: Vec<&chainiac_protocol::keys::SecretKey> =
        identities.iter().map(|i| i.secret()).collect();
    let certificate = LinkRequest::for_genesis(&genesis)
        .expect("genesis")
        .sign_locally(genesis.chain_id(), &roster, &secrets, &mut rand::rng())
        .expect("certificate");
    let nodes = identities
        .iter()
        .map(|identity| {
            let store = Store::in_memory();
            store.create_chain(&genesis, &certificate).expect("create");
            MemNode {
                key: identity.public().key,
                witness: Witness::new(identity.clone(), store.clone(), Arc::new(AnyPayload)),
                store,
                subtrees: SubtreeRounds::new(),
            }
        })
        .collect();
    Arc::new(MemNet {
        nodes,
        down: Mutex::default(),
        faulty: faulty.iter().copied().collect(),
        tree_requests: AtomicUsize::new(0),
        chain_id: genesis.chain_id(),
    })
}

fn tree_config() -> RoundConfig {
    RoundConfig {
        commit_timeout: Duration::from_secs(2),
        respond_timeout: Duration::from_secs(2),
        tree_branching: 2,
        tree_min_roster: 4,
        ..RoundConfig::default()
    }
}

/// Appends one block led by node `leader`, stores it on every node, and returns its level-0
/// link with the report of its round.
async fn append(
    net: &Arc<MemNet>,
    leader: usize,
    config: RoundConfig,
) -> Result<(ForwardLink, RoundReport), String> {
    let chain_id = net.chain_id;
    let store = &net.nodes[leader].store;
    let head = store.head(&chain_id).expect("read").expect("head");
    let previous = store.block(&head.hash).expect("read").expect("block");
    let roster = store.roster_of(&previous).expect("roster");
    let block = SkipBlock::successor(&previous, &roster, None, vec![1, 2, 3], |index| {
        store
            .block_at(&chain_id, index)
            .ok()
            .flatten()
            .map(|b| b.hash())
    })
    .expect("block");
    for node in &net.nodes {
        node.witness
            .record_decision(chain_id, block.index(), block.hash());
    }
    let view = View {
        net: net.clone(),
        me: leader,
        from: leader,
    };
    let mut links = Vec::new();
    let mut level0 = None;
    for request in store.link_requests(&block).expect("requests") {
        let source = store
            .block_at(&chain_id, request.from_index)
            .expect("read")
            .expect("source");
        let roster = store.roster_of(&source).expect("roster");
        match sign_link(&view, &roster, &block, &request, config).await {
            Ok((link, report)) => {
                if request.level == 0 {
                    level0 = Some((link.clone(), report));
                }
                links.push(link);
            }
            Err(error) if request.level == 0 => return Err(error.to_string()),
            Err(_) => {}
        }
    }
    for node in &net.nodes {
        node.store.append(&block, &links).expect("append");
    }
    level0.ok_or_else(|| "no level-0 link".into())
}

#[tokio::test]
async fn tree_rounds_sign_with_every_member() {
    let net = network(9, &[]);
    for _ in 0..4 {
        let (link, report) = append(&net, 0, tree_config()).await.expect("append");
        assert!(report.tree, "{report:?}");
        assert_eq!(report.attempts, 1);
        assert_eq!(link.signature.mask.count(), 9);
    }
    assert!(net.tree_requests.load(Ordering::Relaxed) >= 4 * 8);
    // Another leader lays out another tree.
    let (link, report) = append(&net, 5, tree_config()).await.expect("append");
    assert!(report.tree);
    assert_eq!(link.signature.mask.count(), 9);
    // A star round over the same nodes gives the same kind of link.
    let star = RoundConfig {
        tree_min_roster: 100,
        ..tree_config()
    };
    let before = net.tree_requests.load(Ordering::Relaxed);
    let (link, report) = append(&net, 0, star).await.expect("append");
    assert!(!report.tree);
    assert_eq!(link.signature.mask.count(), 9);
    assert_eq!(net.tree_requests.load(Ordering::Relaxed), before);
}

#[tokio::test]
async fn a_down_interior_node_is_routed_around() {
    let net = network(9, &[]);
    // Leader 0's children are 1 and 2; 1 leads the subtree {1, 3, 4, 7, 8}: 4 of 9 are left,
    // below the threshold of 7, so the round restarts with a tree without 1.
    net.down.lock().expect("lock").insert(1);
    let (link, report) = append(&net, 0, tree_config()).await.expect("append");
    assert!(report.tree, "{report:?}");
    assert_eq!(report.attempts, 2);
    assert_eq!(link.signature.mask.count(), 8);
    assert!(!link.signature.mask.contains(1));
    // A leaf down as well (8, under 4 once 1 is out): its parent reports it, 7 of 9 sign.
    net.down.lock().expect("lock").insert(8);
    let (link, report) = append(&net, 0, tree_config()).await.expect("append");
    assert!(report.tree);
    assert_eq!(link.signature.mask.count(), 7);
    // One more down: 6 of 9 left, below the threshold: the tree gives up, so does the star.
    net.down.lock().expect("lock").insert(4);
    let error = append(&net, 0, tree_config()).await.expect_err("fails");
    assert!(error.contains("not enough witnesses"), "{error}");
}

#[tokio::test]
async fn lying_members_are_named_by_their_parent_and_excluded() {
    // 2 is interior (children 5, 6); 7 is a leaf under 3.
    let net = network(9, &[2, 7]);
    let (link, report) = append(&net, 0, tree_config()).await.expect("append");
    assert!(report.tree, "{report:?}");
    assert!(!link.signature.mask.contains(2));
    assert!(!link.signature.mask.contains(7));
    assert_eq!(link.signature.mask.count(), 7);
}

#[tokio::test]
async fn tree_requests_only_from_the_parent_and_over_valid_layouts() {
    let net = network(9, &[]);
    let chain_id = net.chain_id;
    let store = &net.nodes[0].store;
    let genesis = store
        .block_at(&chain_id, 0)
        .expect("read")
        .expect("genesis");
    let roster = store.roster_of(&genesis).expect("roster");
    let block = SkipBlock::successor(&genesis, &roster, None, vec![], |_| Some(genesis.hash()))
        .expect("block");
    for node in &net.nodes {
        node.witness
            .record_decision(chain_id, block.index(), block.hash());
    }
    let Ok(tree) = RoundTree::for_leader(0, ParticipationMask::full(9), 2) else {
        panic!("tree")
    };
    let commit = |layout: TreeLayout| Request::TreeCommit {
        round: Hash([9; 32]),
        block: Box::new(block.clone()),
        level: 0,
        layout,
        budget_ms: 1000,
    };
    // Node 5 is not node 1's parent.
    let from_5 = View {
        net: net.clone(),
        me: 5,
        from: 5,
    };
    let answer = from_5
        .call(net.nodes[1].key, commit(tree.layout().clone()))
        .await;
    assert!(
        matches!(&answer, Ok(Response::Refused(r)) if r.contains("parent")),
        "{answer:?}"
    );
    // The leader itself is not asked to commit for a subtree.
    let answer = from_5
        .call(net.nodes[0].key, commit(tree.layout().clone()))
        .await;
    assert!(matches!(answer, Ok(Response::Refused(_))), "{answer:?}");
    // A mask over another roster size.
    let from_0 = View {
        net: net.clone(),
        me: 0,
        from: 0,
    };
    let mut wrong = tree.layout().clone();
    wrong.candidates = ParticipationMask::full(10);
    let answer = from_0.call(net.nodes[1].key, commit(wrong)).await;
    assert!(
        matches!(&answer, Ok(Response::Refused(r)) if r.contains("invalid tree")),
        "{answer:?}"
    );
    // A respond for a round that was never committed.
    let respond = Request::TreeRespond {
        round: Hash([8; 32]),
        challenge: Challenge {
            participants: ParticipationMask::full(9),
            first: [0; 32],
            second: [0; 32],
        },
        budget_ms: 1000,
    };
    let answer = from_0.call(net.nodes[1].key, respond).await;
    assert!(matches!(answer, Ok(Response::Refused(_))), "{answer:?}");
}
