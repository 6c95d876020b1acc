//! The attack suite. Each test is one attack, tried the way a stranger's node, a malicious
//! mirror or a thief of some keys would try it, against a real network (nodes on 127.0.0.1 over
//! libp2p, RocksDB in temporary directories) and a light client. The doc comment of each test
//! names the attack and the rule that stops it; docs/security.md lists them with the threat
//! model. Nodes 0-3 are honest witnesses (node 3 can be turned into a lying mirror); node 4 is
//! the attacker's own node, in no roster.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chainiac_client::{ClientError, Connection};
use chainiac_net::wire::{HeadInfo, LinkedBlock, Request, Response};
use chainiac_node::metrics::Metrics;
use chainiac_node::node::NodeCore;
use chainiac_node::runtime::NodeOptions;
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::{Challenge, ParticipationMask, Roster};
use chainiac_protocol::data_chain::{DataBlock, DataGenesis, Owners};
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::{KeySignature, SecretKey};
use chainiac_protocol::policy::SignedPolicy;
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::skipchain::{ChainParams, ForwardLink, LinkRequest, SkipBlock};
use chainiac_protocol::timeline::{Freshness, TimelineBlock};
use chainiac_tests::{Cluster, DataChain, Mirror, Project, TestResult, now, wait_for};

const HONEST: [usize; 4] = [0, 1, 2, 3];
const MIRROR: usize = 3;
const ATTACKER: usize = 4;
const CONNECT: Duration = Duration::from_secs(20);

/// Four honest nodes and the attacker's node; node 3's answers go through `mirror`.
async fn network(
    mirror: &Arc<Mirror>,
    setup: impl Fn(usize, &mut NodeOptions),
) -> TestResult<Cluster> {
    let mirror = mirror.clone();
    Cluster::start_with_options(5, &move |i, options: &mut NodeOptions| {
        if i == MIRROR {
            options.answer_hook = Some(mirror.clone());
        }
        setup(i, options);
    })
    .await
}

/// The next block of `chain` after the head `core` holds, moving to `roster` if given.
fn next_block(
    core: &NodeCore,
    chain: &Hash,
    roster: Option<Roster>,
    payload: Vec<u8>,
) -> TestResult<SkipBlock> {
    let store = core.store();
    let head = store.head(chain)?.ok_or("head")?;
    let previous = store.block(&head.hash)?.ok_or("head block")?;
    let current = store.roster_of(&previous)?;
    Ok(SkipBlock::successor(
        &previous,
        &current,
        roster,
        payload,
        |index| {
            store
                .block_at(chain, index)
                .ok()
                .flatten()
                .map(|b| b.hash())
        },
    )?)
}

/// The attacker's node asks each honest witness, over libp2p, to commit to `block` as a
/// leader's Commit would. Returns their answers.
async fn propose(cluster: &Cluster, block: &SkipBlock) -> TestResult<Vec<Response>> {
    let attacker = cluster.core(ATTACKER);
    let mut answers = Vec::new();
    for i in HONEST {
        let nonce: [u8; 16] = rand::random();
        let request = Request::Commit {
            round: Hash::of("attack round", &[&nonce]),
            block: Box::new(block.clone()),
            level: 0,
        };
        answers.push(attacker.net().request(cluster.peer_id(i)?, request).await?);
    }
    Ok(answers)
}

/// Every answer is a refusal whose reason contains `because`.
fn refused_by_all(answers: &[Response], because: &str) -> TestResult {
    for answer in answers {
        match answer {
            Response::Refused(reason) if reason.contains(because) => {}
            other => {
                return Err(format!("expected a refusal naming {because:?}, got {other:?}").into());
            }
        }
    }
    Ok(())
}

/// Node `i`'s head of `chain`.
fn head(cluster: &Cluster, i: usize, chain: &Hash) -> TestResult<Option<u64>> {
    Ok(cluster.core(i).store().head(chain)?.map(|h| h.index))
}

/// One of a node's counters.
type Counted = fn(&Metrics) -> u64;

/// `counted` on each honest node.
fn honest_counts(cluster: &Cluster, counted: Counted) -> Vec<u64> {
    HONEST
        .iter()
        .map(|&i| counted(cluster.core(i).metrics()))
        .collect()
}

/// Waits until `counted` rose above `before` on every honest node; `what` names the event.
async fn wait_honest_counts_rise(
    cluster: &Cluster,
    before: &[u64],
    counted: Counted,
    what: &str,
) -> TestResult {
    for (n, i) in HONEST.into_iter().enumerate() {
        let core = cluster.core(i);
        wait_for(&format!("node {i} {what}"), || async {
            counted(core.metrics()) > before[n]
        })
        .await?;
    }
    Ok(())
}

/// Gossips `block` with `links` from the attacker's node.
async fn gossip_from_attacker(
    cluster: &Cluster,
    block: &SkipBlock,
    links: Vec<ForwardLink>,
) -> TestResult {
    let linked = LinkedBlock {
        block: block.clone(),
        links,
    };
    cluster
        .core(ATTACKER)
        .net()
        .publish(linked.to_bytes())
        .await?;
    Ok(())
}

/// The certificate of `genesis` signed by the attacker's node alone, as the roster `roster`.
fn certified_by_attacker(
    cluster: &Cluster,
    genesis: &SkipBlock,
    roster: &Roster,
) -> TestResult<ForwardLink> {
    let identity = cluster.identity(ATTACKER)?;
    Ok(LinkRequest::for_genesis(genesis)?.sign_locally(
        genesis.chain_id(),
        roster,
        &[identity.secret()],
        &mut rand::rng(),
    )?)
}

// ------------------------------------------------------------------------------ authority

/// **Roster hijack**: a peer that gets a block led (its own node, or a Commit sent to the
/// witnesses) moves a chain to a roster of its own. Stopped by: a data chain moves only with
/// its owners' signatures for the new roster; a timeline only with approvals of a threshold of
/// its members; the policy chain only to the witnesses a root-signed policy names; the release
/// chain only to the witnesses of the policy in force (docs/protocol.md §13.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roster_hijack_moves_no_chain_to_the_attackers_roster() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let leader = cluster.core(0);
    let mut project = Project::create(&leader, "hijacked", 3, 2, &honest).await?;
    project.publish_next(&leader, "1.0.0", None).await?;
    let data =
        DataChain::create(&leader, honest.members().to_vec(), ChainParams::new(2, 32)?).await?;
    let timeline = cluster.create_timeline(0, &HONEST, 1).await?;
    for chain in [project.release_chain, data.id, timeline] {
        cluster.wait_head(ATTACKER, &chain, 0).await?;
    }
    cluster
        .wait_head(ATTACKER, &project.release_chain, 1)
        .await?;
    let own = cluster.roster(&[ATTACKER])?;
    let attacker_key = SecretKey::generate(&mut rand::rng());
    let attacker = cluster.core(ATTACKER);

    // Data chain: the attacker signs the move itself.
    let payload = DataBlock::sign(&data.id, 1, &own.hash(), b"mine".to_vec(), &[&attacker_key]);
    let block = next_block(&attacker, &data.id, Some(own.clone()), payload.to_bytes())?;
    refused_by_all(&propose(&cluster, &block).await?, "data block refused")?;

    // Timeline: a well-formed epoch that moves to the attacker's roster, without approvals.
    // The timeline moves every second: a witness ahead of the attacker's node refuses the
    // block for its index first, so the attacker tries again from its newer head.
    let store = attacker.store();
    let mut tries = 0;
    loop {
        let timeline_head = store.head(&timeline)?.ok_or("timeline head")?;
        let tree = store.timeline_tree(&timeline, timeline_head.index)?;
        let (epoch_block, _) = TimelineBlock::new(Some(&tree), now() + 1, now() + 1, Vec::new())?;
        let block = next_block(
            &attacker,
            &timeline,
            Some(own.clone()),
            epoch_block.to_bytes(),
        )?;
        match refused_by_all(&propose(&cluster, &block).await?, "timeline member") {
            Ok(()) => break,
            Err(error)
                if tries < 10
                    && (error.to_string().contains("does not follow the head")
                        || error.to_string().contains("behind")) =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(error) => return Err(error),
        }
    }

    // Policy chain: the developer threshold signs a policy naming the attacker's roster (a
    // root change), and a root-signed policy is attached to another roster than it names.
    let mut next = project.policy.clone();
    next.sequence += 1;
    next.previous = Some(project.policy.digest());
    next.witnesses = own.hash();
    let by_developers = SignedPolicy {
        signatures: project.developers[..2]
            .iter()
            .map(|k| KeySignature::sign(k, &next.digest()))
            .collect(),
        policy: next.clone(),
    };
    let block = next_block(
        &attacker,
        &project.policy_chain,
        Some(own.clone()),
        by_developers.to_bytes(),
    )?;
    refused_by_all(&propose(&cluster, &block).await?, "root")?;
    let mut unchanged = project.policy.clone();
    unchanged.sequence += 1;
    unchanged.previous = Some(project.policy.digest());
    let by_root = SignedPolicy {
        signatures: vec![KeySignature::sign(&project.roots[0], &unchanged.digest())],
        policy: unchanged,
    };
    let block = next_block(
        &attacker,
        &project.policy_chain,
        Some(own.clone()),
        by_root.to_bytes(),
    )?;
    refused_by_all(&propose(&cluster, &block).await?, "witnesses")?;

    // Release chain: a release the developers signed, attached to the attacker's roster.
    let release = project.next_release("1.0.1");
    let block = next_block(
        &attacker,
        &project.release_chain,
        Some(own),
        release.release.to_bytes(),
    )?;
    refused_by_all(&propose(&cluster, &block).await?, "release refused")?;

    // Nothing moved; the owners and developers go on as before.
    project.publish_next(&leader, "1.0.1", None).await?;
    data.append(&leader, b"still ours").await?;
    for i in HONEST {
        cluster.wait_head(i, &project.release_chain, 2).await?;
        cluster.wait_head(i, &data.id, 1).await?;
        let core = cluster.core(i);
        let store = core.store();
        let head = store.block_at(&data.id, 1)?.ok_or("data block 1")?;
        assert_eq!(store.roster_of(&head)?.hash(), honest.hash(), "node {i}");
    }
    Ok(())
}

/// **Timeline freeze**: one timeline block with epoch 2^64-1 would stop every honest leader
/// (epochs only increase) and make pinned clients fail freshness. Stopped by: a witness
/// refuses an epoch beyond its own clock's plus one, and a timestamp beyond its skew
/// (docs/protocol.md §8).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeline_freeze_by_a_far_future_epoch_is_refused() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let timeline = cluster.create_timeline(0, &HONEST, 1).await?;
    cluster.wait_head(ATTACKER, &timeline, 1).await?;
    let attacker = cluster.core(ATTACKER);
    let store = attacker.store();
    let head = store.head(&timeline)?.ok_or("head")?;
    let tree = store.timeline_tree(&timeline, head.index)?;
    // The epoch of the end of time with today's timestamp, a timestamp to match, and an hour
    // ahead (beyond the skew).
    for (epoch, timestamp) in [
        (u64::MAX, now()),
        (u64::MAX, u64::MAX),
        (now() + 3600, now() + 3600),
    ] {
        let (frozen, _) = TimelineBlock::new(Some(&tree), epoch, timestamp, Vec::new())?;
        let block = next_block(&attacker, &timeline, None, frozen.to_bytes())?;
        refused_by_all(&propose(&cluster, &block).await?, "timeline block refused")?;
    }
    // The honest members keep extending it, epoch after epoch.
    let reached = head.index + 3;
    for i in HONEST {
        cluster.wait_head(i, &timeline, reached).await?;
    }
    let latest = chainiac_node::rules::timeline_at(cluster.core(0).store(), &timeline, reached)?
        .ok_or("timeline block")?;
    assert!(latest.commit.epoch <= now() + 1);
    Ok(())
}

/// **Free chain creation**: anyone creates chains whose roster is the honest nodes (their
/// node.pub.json files are public) and has them store, relay and witness them. Stopped by:
/// every genesis declares its kind and creator; it is stored, relayed or synced only with a
/// certificate its roster signed; each witness cosigns (and each node keeps) a chain only if
/// its operator's admission policy admits the creator: listed, or below its quota in open
/// mode (docs/protocol.md §5.5, §13.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn free_chain_creation_needs_the_rosters_admission() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let listed = SecretKey::generate(&mut rand::rng());
    let listed_hex = listed.public_key().to_hex();
    let cluster = network(&mirror, move |i, options| {
        if i != ATTACKER {
            options.config.admission.quota = 2;
            options.config.admission.creators = vec![listed_hex.clone()];
        }
    })
    .await?;
    let honest = cluster.roster(&HONEST)?;
    let attacker = cluster.core(ATTACKER);
    let seed: [u8; 32] = rand::random();
    let create = |core: Arc<NodeCore>, roster: Roster| async move {
        DataChain::create_by(
            &core,
            SecretKey::from_seed(&seed),
            roster.members().to_vec(),
            ChainParams::new(2, 32)?,
        )
        .await
    };

    // A genesis that declares no kind is not certified.
    let raw = SkipBlock::genesis(ChainParams::new(2, 32)?, honest.clone(), b"junk".to_vec())?;
    refused_by_all(&propose(&cluster, &raw).await?, "declare a chain kind")?;

    // Open mode: the attacker's key creates two chains on the honest roster, not a third.
    // (A witness counts the chains it stores: the third is proposed once the first two are
    // everywhere.)
    for _ in 0..2 {
        let chain = create(attacker.clone(), honest.clone()).await?;
        for i in HONEST {
            cluster.wait_head(i, &chain.id, 0).await?;
        }
    }
    let third = create(attacker.clone(), honest.clone()).await;
    let refusal = third.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refusal.contains("quota"), "{refusal}");
    // A listed creator has no quota.
    for _ in 0..3 {
        DataChain::create_by(
            &cluster.core(0),
            SecretKey::from_seed(&listed.to_seed()),
            honest.members().to_vec(),
            ChainParams::new(2, 32)?,
        )
        .await?;
    }

    // A chain of the attacker's own roster certifies itself, but the honest nodes do not keep
    // (nor relay) it: its creator is over its quota.
    let own = create(attacker.clone(), cluster.roster(&[ATTACKER])?).await?;
    for i in HONEST {
        let core = cluster.core(i);
        wait_for(&format!("node {i} declines the chain"), || async {
            core.metrics().chains_not_admitted.get() >= 1
        })
        .await?;
        assert_eq!(head(&cluster, i, &own.id)?, None, "node {i}");
    }

    // A genesis gossiped without its certificate is rejected (and its sender penalised).
    let (_, payload) = DataChain::genesis_payload(&honest);
    let uncertified = SkipBlock::genesis(ChainParams::new(2, 32)?, honest.clone(), payload)?;
    let rejected: Counted = |metrics| metrics.gossip_rejected.get();
    let rejected_before = honest_counts(&cluster, rejected);
    gossip_from_attacker(&cluster, &uncertified, Vec::new()).await?;
    wait_honest_counts_rise(&cluster, &rejected_before, rejected, "rejects the gossip").await?;
    for i in HONEST {
        assert_eq!(head(&cluster, i, &uncertified.chain_id())?, None);
    }

    // Nor with a certificate the attacker signed with its own key for the honest roster.
    let (_, payload) = DataChain::genesis_payload(&honest);
    let genesis = SkipBlock::genesis(ChainParams::new(2, 32)?, honest.clone(), payload)?;
    let certificate = certified_by_attacker(&cluster, &genesis, &cluster.roster(&[ATTACKER])?)?;
    let rejected_before = honest_counts(&cluster, rejected);
    gossip_from_attacker(&cluster, &genesis, vec![certificate]).await?;
    wait_honest_counts_rise(
        &cluster,
        &rejected_before,
        rejected,
        "rejects the forged certificate",
    )
    .await?;
    for i in HONEST {
        assert_eq!(head(&cluster, i, &genesis.chain_id())?, None);
    }
    Ok(())
}

/// **Verifiers build for anyone**: a verifier runs the recipe of any release naming a policy
/// that lists it, so any peer makes it run any script. Stopped by: a verifier builds only a
/// manifest carrying the developer threshold of signatures under the policy in force, checked
/// before anything is fetched or queued (docs/verifiers.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verifiers_build_only_what_the_developer_threshold_signed() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |i, options| {
        if i == 2 {
            options.config.verifier.enabled = true;
            options.config.verifier.rust_toolchain = false;
        }
    })
    .await?;
    let honest = cluster.roster(&HONEST)?;
    let verifier = cluster.publics[2].key;
    let project =
        Project::create_with_verifiers(&cluster.core(0), "built", 3, 2, &honest, &[verifier], 1)
            .await?;
    cluster
        .wait_head(ATTACKER, &project.policy_chain, 0)
        .await?;
    cluster.wait_head(2, &project.policy_chain, 0).await?;
    let manifest = project.next_release("1.0.0").release.manifest;
    let digest = manifest.digest();
    let attest = |signatures: Vec<KeySignature>| Request::Attest {
        manifest: Box::new(manifest.clone()),
        signatures,
    };
    let one = vec![KeySignature::sign(&project.developers[0], &digest)];
    let stranger = vec![
        KeySignature::sign(&SecretKey::generate(&mut rand::rng()), &digest),
        KeySignature::sign(&project.developers[0], &digest),
    ];
    for signatures in [Vec::new(), one, stranger] {
        let answer = cluster
            .core(ATTACKER)
            .net()
            .request(cluster.peer_id(2)?, attest(signatures))
            .await?;
        assert!(
            matches!(answer, Response::Refused(_)),
            "the verifier answered {answer:?}"
        );
    }
    assert!(
        cluster.core(2).store().queued_builds(10)?.is_empty(),
        "nothing was queued"
    );
    Ok(())
}

/// **The light client trusts policy blocks**: a client decodes the policy blocks it steps
/// through without checking each change against the policy before it. Here every witness
/// colludes (they sign the forward link) and a mirror serves a policy change signed by one
/// developer of the two required, installing the attacker's key. Stopped by: the client checks
/// every change against the previous policy, as witnesses do (`FollowedProject::advance_policy`;
/// the release side, a release only under the policy in force at its position, is
/// `a_release_is_accepted_only_under_the_policy_in_force_at_its_position` in protocol/).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_light_client_refuses_a_policy_change_the_policy_does_not_allow() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let mut project = Project::create(&cluster.core(0), "trusting", 3, 2, &honest).await?;
    project
        .publish_next(&cluster.core(0), "1.0.0", None)
        .await?;
    cluster.wait_head(MIRROR, &project.release_chain, 1).await?;

    // The forged change, signed by developer 0 alone, its link signed by every witness.
    let mut next = project.policy.clone();
    next.sequence += 1;
    next.previous = Some(project.policy.digest());
    next.developer_keys[1] = SecretKey::generate(&mut rand::rng()).public_key();
    let forged_policy = SignedPolicy {
        signatures: vec![KeySignature::sign(&project.developers[0], &next.digest())],
        policy: next,
    };
    let forged = next_block(
        &cluster.core(MIRROR),
        &project.policy_chain,
        None,
        forged_policy.to_bytes(),
    )?;
    let identities = HONEST
        .iter()
        .map(|&i| cluster.identity(i))
        .collect::<TestResult<Vec<_>>>()?;
    let secrets: Vec<&SecretKey> = identities.iter().map(|i| i.secret()).collect();
    let link = LinkRequest::for_block(&forged)[0].sign_locally(
        project.policy_chain,
        &honest,
        &secrets,
        &mut rand::rng(),
    )?;
    let policy_chain = project.policy_chain;
    let forged_head = HeadInfo {
        chain_id: policy_chain,
        index: 1,
        hash: forged.hash(),
    };
    let served = LinkedBlock {
        block: forged,
        links: vec![link],
    };
    mirror.lie(move |request, _| match request {
        Request::Head { chain_id } if *chain_id == policy_chain => {
            Some(Response::Head(Some(forged_head)))
        }
        Request::Blocks { chain_id, from, .. } if *chain_id == policy_chain && *from == 1 => {
            Some(Response::Blocks(vec![served.clone()]))
        }
        _ => None,
    });

    let connection = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    let mut followed = connection.follow(project.release_chain).await?;
    let before = followed.clone();
    let error = connection
        .sync(&mut followed, None)
        .await
        .err()
        .ok_or("the forged policy was accepted")?;
    assert!(
        matches!(error, ClientError::AllPeersFailed(_))
            && error.to_string().contains("developer signatures"),
        "{error}"
    );
    assert_eq!(followed, before, "the client trusts nothing new");
    connection.close().await;
    Ok(())
}

/// **Locked-block completion on one witness's word**: a leader completes whatever block a
/// single witness says it is locked on. Here witness 2 is down and witness 3 claims a lock on
/// a block the owner signed but never asked to log at that position (it reorders the owner's
/// blocks: the leader's own block would then be refused as a replay). Stopped by: a leader
/// never logs a block on witnesses' word; the roster decides each position by agreement and a
/// witness signs links only into the decided block, so the claim proves nothing and the
/// owner's block is logged once enough honest witnesses are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_witness_claiming_a_lock_does_not_make_the_leader_log_its_block() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let mut cluster = network(&mirror, |_, options| {
        options.rounds.decision_timeout = std::time::Duration::from_secs(15);
    })
    .await?;
    let data = cluster.create_chain(0).await?;
    let wanted = data.payload(b"the owner's block");
    let other = data.payload(b"signed for later");
    let claimed = next_block(&cluster.core(0), &data.id, None, other)?;
    let chain = data.id;
    mirror.lie(move |request, _| match request {
        Request::Commit { block, .. } if block.chain_id() == chain => {
            Some(Response::Locked(Box::new(claimed.clone())))
        }
        _ => None,
    });
    cluster.stop_node(2).await;
    // The liar lies only in its answers: if its own node logs the decided block, the append
    // succeeds; otherwise it times out. Either way the claimed block is never logged.
    if let Err(error) = cluster.core(0).append(chain, wanted.clone(), None).await {
        assert!(
            error.to_string().contains("not decided and logged"),
            "{error}"
        );
    }
    mirror.reform();
    cluster.start_node(2).await?;
    cluster.wait_connected().await?;
    cluster.wait_head(0, &chain, 1).await?;
    let block = cluster
        .core(0)
        .store()
        .block_at(&chain, 1)?
        .ok_or("block 1")?;
    assert_eq!(DataChain::data_of(&block), b"the owner's block");
    Ok(())
}

/// **Round replay by a roster member**: a witness that saw a round's id (every Commit carries
/// it) replays the leader's Commit to the other witnesses, so that fresh nonces replace those the
/// leader's challenge is for, and sends them a challenge of its own for that id, consuming the
/// nonces. The honest witnesses' shares then fail or are missing, they are excluded as liars,
/// and with each retry the same happens: no block is logged. Stopped by: a witness keeps round
/// state per (asker, round id), refuses a reused id instead of overwriting it, and answers a
/// challenge only for the peer that sent the Commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_witness_replaying_round_ids_cannot_break_the_honest_rounds() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    // The mirror answers the leader's commit only after six requests of its own: on a loaded
    // machine that must not get it excluded as slow, which the count below would take for harm.
    let cluster = network(&mirror, |_, options| {
        options.rounds.commit_timeout = Duration::from_secs(10);
        options.rounds.respond_timeout = Duration::from_secs(10);
    })
    .await?;
    let data = cluster.create_chain(0).await?;
    let chain = data.id;
    let net = cluster.core(MIRROR).net().clone();
    let victims = [
        cluster.peer_id(1)?,
        cluster.peer_id(2)?,
        cluster.peer_id(ATTACKER)?,
    ];
    let members = cluster.core(0).store().roster_of(
        &cluster
            .core(0)
            .store()
            .block_at(&chain, 0)?
            .ok_or("genesis")?,
    )?;
    let mut base_point = [0x66u8; 32];
    base_point[0] = 0x58;
    let bogus = Challenge {
        participants: ParticipationMask::from_indices(members.len(), 0..members.len()),
        first: base_point,
        second: base_point,
    };
    let replays = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = replays.clone();
    mirror.lie(move |request, _| {
        let Request::Commit {
            round,
            block,
            level,
        } = request
        else {
            return None;
        };
        if block.chain_id() != chain {
            return None;
        }
        // Answer the leader only once the replays reached the other witnesses, so that they
        // arrive before the leader's own challenge.
        for victim in victims {
            let replayed = [
                Request::Commit {
                    round: *round,
                    block: block.clone(),
                    level: *level,
                },
                Request::Respond {
                    round: *round,
                    challenge: bogus.clone(),
                },
            ];
            for replay in replayed {
                let net = net.clone();
                let _ = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(net.request(victim, replay))
                });
            }
        }
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        None
    });
    let logged = cluster
        .core(0)
        .append(chain, data.payload(b"under replay"), None)
        .await?;
    assert_eq!(logged.index, 1);
    assert!(
        replays.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the replaying witness saw the round"
    );
    let linked = cluster
        .core(0)
        .store()
        .linked_block(&chain, 1)?
        .ok_or("block 1")?;
    assert_eq!(
        linked.links[0].signature.mask.count(),
        members.len(),
        "no honest witness was excluded"
    );
    Ok(())
}

/// **HTTP API open to a browser**: a web page the operator visits makes the node create chains,
/// lead appends and store uploads, directly or through a DNS name rebound to 127.0.0.1.
/// Stopped by: writes need the bearer token `node init` wrote (0600); requests naming a host
/// other than localhost, an IP address or a configured name are refused; no CORS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_page_cannot_write_through_the_operators_api() -> TestResult {
    let cluster = Cluster::start(1, &[]).await?;
    let api = cluster.api(0)?;
    let token = cluster.api_token(0)?;
    let roster = serde_json::json!([{
        "public_key": cluster.publics[0].key.to_hex(),
        "proof_of_possession": hex::encode(cluster.publics[0].possession.0.0),
    }]);
    let (_, genesis) = DataChain::genesis_payload(&cluster.roster(&[0])?);
    let body = serde_json::json!({ "roster": roster, "payload": hex::encode(genesis) });
    let (status, answer) = chainiac_tests::http(api, "POST", "/chains", Some(&body))?;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("Bearer"))
    );
    std::fs::create_dir_all(cluster.scratch())?;
    let wrong = chainiac_api::ApiToken::load_or_create(&cluster.scratch().join("other.token"))?;
    let (status, _) =
        chainiac_tests::http_with_token(api, "POST", "/chains", Some(&body), Some(&wrong))?;
    assert_eq!(status, 401);
    let (status, answer) =
        chainiac_tests::http_with_token(api, "POST", "/chains", Some(&body), Some(&token))?;
    assert_eq!(status, 200, "{answer}");
    assert!(cluster.core(0).store().chains(10)?.len() == 1);
    // Reads stay open.
    let (status, _) = chainiac_tests::http(api, "GET", "/status", None)?;
    assert_eq!(status, 200);
    // A request for another host, as a rebound DNS name would send.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api)?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: attacker.example:80\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    Ok(())
}

/// **Disk filling by an admitted creator**: a creator the open admission lets in appends large
/// blocks to its chains on the honest roster, or gossips a chain of its own roster, until the
/// honest nodes' disks are full. Stopped by: a block is cosigned and kept only while its chain
/// (`admission.max_chain_mib`) and all its creator's chains (`admission.max_creator_mib`) stay
/// within their storage quotas; and a genesis's creator counts only once its signatures verify
/// (a genesis claiming another creator's key would spend, or escape, that key's quotas).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_creator_over_its_storage_quota_is_neither_cosigned_nor_kept() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let listed = SecretKey::generate(&mut rand::rng()).public_key();
    let listed_hex = listed.to_hex();
    let cluster = network(&mirror, move |i, options| {
        if i != ATTACKER {
            options.config.admission.max_chain_mib = 1;
            options.config.admission.max_creator_mib = 2;
            options.config.admission.max_timeline_chains = 2;
            options.config.admission.creators = vec![listed_hex.clone()];
        }
    })
    .await?;
    let honest = cluster.roster(&HONEST)?;
    let attacker = cluster.core(ATTACKER);
    let owner: [u8; 32] = rand::random();
    // Three blocks of 340,000 bytes fit in 1 MiB with the genesis; a fourth does not.
    let big = vec![0x5a; 340_000];
    let mut chains = Vec::new();
    for _ in 0..2 {
        let chain = DataChain::create_by(
            &attacker,
            SecretKey::from_seed(&owner),
            honest.members().to_vec(),
            ChainParams::new(2, 32)?,
        )
        .await?;
        for _ in 0..3 {
            chain.append(&attacker, &big).await?;
        }
        // Witnesses count what they store: every one holds the three blocks before the fourth.
        for i in HONEST {
            cluster.wait_head(i, &chain.id, 3).await?;
        }
        let refusal = chain
            .append(&attacker, &big)
            .await
            .err()
            .map(|e| e.to_string())
            .ok_or("a block past the chain quota was cosigned")?;
        assert!(refusal.contains("admission.max_chain_mib"), "{refusal}");
        chains.push(chain);
    }
    // The creator's third chain starts (its genesis is small) but takes no large block.
    let third = DataChain::create_by(
        &attacker,
        SecretKey::from_seed(&owner),
        honest.members().to_vec(),
        ChainParams::new(2, 32)?,
    )
    .await?;
    for i in HONEST {
        cluster.wait_head(i, &third.id, 0).await?;
    }
    let refusal = third
        .append(&attacker, &big)
        .await
        .err()
        .map(|e| e.to_string())
        .ok_or("a block past the creator quota was cosigned")?;
    assert!(refusal.contains("admission.max_creator_mib"), "{refusal}");

    // A chain of the attacker's own roster, which it signs alone: the honest nodes keep it
    // up to the quota and not a block further.
    let own = DataChain::create(
        &attacker,
        cluster.roster(&[ATTACKER])?.members().to_vec(),
        ChainParams::new(2, 32)?,
    )
    .await?;
    for _ in 0..4 {
        own.append(&attacker, &big).await?;
    }
    for i in HONEST {
        let core = cluster.core(i);
        wait_for(
            &format!("node {i} declines the block over the quota"),
            || async { core.metrics().blocks_over_quota.get() >= 1 },
        )
        .await?;
        assert_eq!(head(&cluster, i, &own.id)?, Some(3), "node {i}");
        let usage = core.store().storage_usage(&own.id)?.1;
        assert!(usage.chain_bytes <= 1 << 20, "node {i}: {usage:?}");
    }

    // A genesis that claims a listed creator's key (listed creators have no quota) is not kept:
    // the creator counts only once the genesis's signatures verify.
    let roster = cluster.roster(&[ATTACKER])?;
    let mut forged = DataGenesis::sign(
        Owners::new(vec![listed], 1)?,
        b"not mine".to_vec(),
        &roster.hash(),
        &[&SecretKey::generate(&mut rand::rng())],
    );
    forged.signatures[0].signer = listed;
    let genesis = SkipBlock::genesis(
        ChainParams::new(2, 32)?,
        roster.clone(),
        ChainGenesis::Data(forged).to_bytes(),
    )?;
    let certificate = certified_by_attacker(&cluster, &genesis, &roster)?;
    let declined: Counted = |metrics| metrics.chains_not_admitted.get();
    let declined_before = honest_counts(&cluster, declined);
    gossip_from_attacker(&cluster, &genesis, vec![certificate]).await?;
    wait_honest_counts_rise(
        &cluster,
        &declined_before,
        declined,
        "declines the forged genesis",
    )
    .await?;
    for i in HONEST {
        assert_eq!(head(&cluster, i, &genesis.chain_id())?, None, "node {i}");
    }

    // A timeline of the attacker's own roster recording more chains than the honest nodes
    // build a tree of for an unlisted creator (its tree is held in memory to witness it and
    // prove inclusion in it): its genesis is kept, its first block is not.
    let over_quota: Counted = |metrics| metrics.blocks_over_quota.get();
    let over_before = honest_counts(&cluster, over_quota);
    let timeline = cluster.create_timeline(ATTACKER, &[ATTACKER], 1).await?;
    cluster.wait_head(ATTACKER, &timeline, 1).await?;
    let recorded = TimelineBlock::from_bytes(
        attacker
            .store()
            .block_at(&timeline, 1)?
            .ok_or("timeline block 1")?
            .payload(),
    )?
    .commit
    .chain_count;
    assert!(recorded > 2, "{recorded} chains");
    for i in HONEST {
        cluster.wait_head(i, &timeline, 0).await?;
    }
    wait_honest_counts_rise(
        &cluster,
        &over_before,
        over_quota,
        "declines the large timeline",
    )
    .await?;
    for i in HONEST {
        assert_eq!(head(&cluster, i, &timeline)?, Some(0), "node {i}");
    }
    Ok(())
}

// ------------------------------------------------------------------------------ TUF's attacks

/// **Arbitrary installation** (and **mix-and-match** of artifacts): a mirror serves other bytes
/// than the release names (another release's binary, or tampered data). Stopped by: the client
/// verifies every slice against the BLAKE3 hash the developers signed, and moves on to the next
/// peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arbitrary_installation_of_other_bytes_is_refused() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let mut project = Project::create(&cluster.core(0), "installed", 3, 2, &honest).await?;
    project
        .publish_next(&cluster.core(0), "1.0.0", None)
        .await?;
    let release = project.next_release("1.0.0").release;
    let binary = release.manifest.binaries[0].artifact.clone();
    for i in [1, MIRROR] {
        wait_for("the artifact is mirrored", || async {
            cluster.core(i).artifacts().has(&binary.hash)
        })
        .await?;
    }
    mirror.lie(|_, answer| match answer {
        Response::Slice { size, data } => {
            let mut data = data.clone();
            data[0] ^= 1;
            Some(Response::Slice { size: *size, data })
        }
        _ => None,
    });
    let only_mirror = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    let error = only_mirror
        .fetch(&binary, &|_, _| {})
        .await
        .err()
        .ok_or("tampered bytes were accepted")?;
    assert!(error.to_string().contains("verif"), "{error}");
    only_mirror.close().await;
    let both = Connection::open(
        &[cluster.address(MIRROR).await?, cluster.address(1).await?],
        CONNECT,
    )
    .await?;
    let download = both.fetch(&binary, &|_, _| {}).await?;
    assert_eq!(
        chainiac_protocol::Hash::of_artifact(&download.bytes),
        binary.hash
    );
    assert_eq!(download.from, cluster.peer_id(1)?);
    assert!(download.failures.iter().any(|f| f.sent_bad_data));
    both.close().await;
    Ok(())
}

/// **Endless data**: a mirror answers with far more data than asked, to exhaust the client.
/// Stopped by: every response is read up to a fixed bound (32 MiB) and every slice must be the
/// exact size asked; the client gives up on that peer and asks the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endless_data_from_a_mirror_is_cut_off() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let mut project = Project::create(&cluster.core(0), "endless", 3, 2, &honest).await?;
    project
        .publish_next(&cluster.core(0), "1.0.0", None)
        .await?;
    let binary = project.next_release("1.0.0").release.manifest.binaries[0]
        .artifact
        .clone();
    wait_for("the artifact is mirrored", || async {
        cluster.core(MIRROR).artifacts().has(&binary.hash)
    })
    .await?;
    mirror.lie(|_, answer| match answer {
        Response::Slice { size, .. } => Some(Response::Slice {
            size: *size,
            data: vec![0; 40 << 20],
        }),
        _ => None,
    });
    let connection = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    let started = std::time::Instant::now();
    assert!(connection.fetch(&binary, &|_, _| {}).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(30), "bounded work");
    connection.close().await;
    Ok(())
}

/// **Fast-forward**: the attacker makes the client trust a release far ahead (sequence 1000)
/// so that later genuine releases look like rollbacks. Stopped by: witnesses log a release
/// only with the next sequence; a mirror announcing a head it cannot prove is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fast_forward_to_a_far_release_is_refused() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let leader = cluster.core(0);
    let mut project = Project::create(&leader, "forward", 3, 2, &honest).await?;
    project.publish_next(&leader, "1.0.0", None).await?;
    let signers: Vec<&SecretKey> = project.developers[..2].iter().collect();
    let far = project.release_with("1000.0.0", 1000, &signers);
    let error = far
        .publish(&leader, project.release_chain, None)
        .await
        .err()
        .ok_or("a release 998 sequences ahead was logged")?;
    assert!(error.to_string().contains("sequence"), "{error}");

    let release_chain = project.release_chain;
    mirror.lie(move |request, _| match request {
        Request::Head { chain_id } if *chain_id == release_chain => {
            Some(Response::Head(Some(HeadInfo {
                chain_id: release_chain,
                index: 1000,
                hash: Hash([0xff; 32]),
            })))
        }
        _ => None,
    });
    // Both peers the client asks hold release 1.0.0.
    cluster.wait_head(MIRROR, &project.release_chain, 1).await?;
    cluster.wait_head(1, &project.release_chain, 1).await?;
    let connection = Connection::open(
        &[cluster.address(MIRROR).await?, cluster.address(1).await?],
        CONNECT,
    )
    .await?;
    let mut followed = connection.follow(project.release_chain).await?;
    let report = connection.sync(&mut followed, None).await?;
    assert_eq!(report.to_index, 1);
    assert_eq!(report.version.as_deref(), Some("1.0.0"));
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.peer == cluster.peer_id(MIRROR).unwrap_or(f.peer))
    );
    connection.close().await;
    Ok(())
}

/// **Indefinite freeze**: a mirror keeps serving an old timeline, so that the client never
/// learns of a fix. Stopped by: the client pins the timeline and accepts a head only under a
/// timeline block younger than its freshness bound; a stale one is refused and the next peer
/// asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn indefinite_freeze_behind_a_stale_timeline_is_refused() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let timeline = cluster.create_timeline(0, &HONEST, 1).await?;
    cluster.wait_head(MIRROR, &timeline, 1).await?;
    let frozen = cluster
        .core(MIRROR)
        .store()
        .head(&timeline)?
        .ok_or("head")?;
    // The frozen block was made no later than now.
    let frozen_at = now();
    mirror.lie(move |request, _| match request {
        Request::Head { chain_id } if *chain_id == timeline => {
            Some(Response::Head(Some(HeadInfo {
                chain_id: timeline,
                index: frozen.index,
                hash: frozen.hash,
            })))
        }
        _ => None,
    });
    // Room for an honest head made a few seconds late on a loaded machine, while the frozen
    // one is certainly too old once more than `max_age` whole seconds have passed.
    let freshness = Freshness {
        max_age: 10,
        max_future_skew: 5,
    };
    wait_for("the frozen timeline block to be too old", || async {
        now() > frozen_at + freshness.max_age + 1
    })
    .await?;
    cluster.wait_head(1, &timeline, frozen.index + 5).await?;
    let only_mirror = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    let mut pinned = only_mirror.pin_timeline(timeline).await?;
    let error = only_mirror
        .sync_timeline(&mut pinned, freshness)
        .await
        .err()
        .ok_or("a stale timeline was accepted")?;
    assert!(error.to_string().contains("old"), "{error}");
    only_mirror.close().await;
    let both = Connection::open(
        &[cluster.address(MIRROR).await?, cluster.address(1).await?],
        CONNECT,
    )
    .await?;
    let mut pinned = both.pin_timeline(timeline).await?;
    let view = both.sync_timeline(&mut pinned, freshness).await?;
    assert!(view.block.commit.timestamp + freshness.max_age >= now());
    both.close().await;
    Ok(())
}

/// **Malicious mirrors preventing updates**: a mirror refuses or garbles everything, to keep
/// clients from updates a good mirror has. Stopped by: the client asks every peer it knows in
/// turn, records the failure, and takes the first verifiable answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malicious_mirrors_cannot_keep_a_client_from_good_ones() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let mut project = Project::create(&cluster.core(0), "mirrored", 3, 2, &honest).await?;
    for version in ["1.0.0", "1.0.1"] {
        project
            .publish_next(&cluster.core(0), version, None)
            .await?;
    }
    cluster.wait_head(1, &project.release_chain, 2).await?;
    mirror.lie(|request, _| match request {
        Request::Proof { .. } => Some(Response::Refused("no".into())),
        Request::Head { chain_id } => Some(Response::Head(Some(HeadInfo {
            chain_id: *chain_id,
            index: 2,
            hash: Hash([1; 32]),
        }))),
        _ => None,
    });
    let connection = Connection::open(
        &[cluster.address(MIRROR).await?, cluster.address(1).await?],
        CONNECT,
    )
    .await?;
    let mut followed = connection.follow(project.release_chain).await?;
    let report = connection.sync(&mut followed, None).await?;
    assert_eq!(report.version.as_deref(), Some("1.0.1"));
    assert_eq!(report.peer, cluster.peer_id(1)?);
    connection.close().await;
    Ok(())
}

/// **Mix-and-match** of metadata: a mirror answers for one project with another project's
/// blocks (its release proof, its policy blocks). Stopped by: every block and link names its
/// chain, the chain id is the genesis hash the client pinned, and the release genesis names
/// its policy chain; nothing of another chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mix_and_match_of_two_projects_is_refused() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let leader = cluster.core(0);
    let mut wanted = Project::create(&leader, "wanted", 3, 2, &honest).await?;
    let mut other = Project::create(&leader, "other", 3, 2, &honest).await?;
    wanted.publish_next(&leader, "1.0.0", None).await?;
    for version in ["1.0.0", "1.0.1"] {
        other.publish_next(&leader, version, None).await?;
    }
    cluster.wait_head(MIRROR, &other.release_chain, 2).await?;
    let store = cluster.core(MIRROR).store().clone();
    let (wanted_release, wanted_policy) = (wanted.release_chain, wanted.policy_chain);
    let (other_release, other_policy) = (other.release_chain, other.policy_chain);
    let other_head = store.head(&other_release)?.ok_or("head")?;
    let other_proof = store.skip_proof(&other_release, 0, 2)?;
    let other_genesis = store.linked_block(&other_policy, 0)?.ok_or("genesis")?;
    mirror.lie(move |request, _| match request {
        Request::Head { chain_id } if *chain_id == wanted_release => {
            Some(Response::Head(Some(HeadInfo {
                chain_id: wanted_release,
                index: other_head.index,
                hash: other_head.hash,
            })))
        }
        Request::Proof { chain_id, .. } if *chain_id == wanted_release => {
            Some(Response::Proof(Box::new(other_proof.clone())))
        }
        Request::Blocks { chain_id, from, .. } if *chain_id == wanted_policy && *from == 0 => {
            Some(Response::Blocks(vec![other_genesis.clone()]))
        }
        _ => None,
    });
    let connection = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    // Following: the policy genesis served is another project's.
    let error = connection
        .follow(wanted_release)
        .await
        .err()
        .ok_or("another project's policy chain was accepted")?;
    assert!(error.to_string().contains("genesis"), "{error}");
    connection.close().await;
    // Syncing from a good start: the other project's release proof does not verify.
    mirror.lie(|_, _| None);
    let honest_peer = Connection::open(&[cluster.address(1).await?], CONNECT).await?;
    let mut followed = honest_peer.follow(wanted_release).await?;
    honest_peer.close().await;
    let connection = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    assert!(connection.sync(&mut followed, None).await.is_err());
    assert_eq!(followed.release.block().index(), 0);
    connection.close().await;
    Ok(())
}

/// **Rollback**: a mirror offers an older release than the client has, or another block at
/// the index it trusts. Stopped by: the client keeps its trusted block and refuses an older
/// index, another block at its index, and a release whose sequence does not increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_to_an_older_release_is_refused() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let mut project = Project::create(&cluster.core(0), "rolled", 3, 2, &honest).await?;
    for version in ["1.0.0", "1.0.1"] {
        project
            .publish_next(&cluster.core(0), version, None)
            .await?;
    }
    cluster.wait_head(MIRROR, &project.release_chain, 2).await?;
    let connection = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    let mut followed = connection.follow(project.release_chain).await?;
    connection.sync(&mut followed, None).await?;
    assert_eq!(followed.release.block().index(), 2);
    let release_chain = project.release_chain;
    let old = cluster
        .core(MIRROR)
        .store()
        .block_at(&release_chain, 1)?
        .ok_or("block 1")?
        .hash();
    mirror.lie(move |request, _| match request {
        Request::Head { chain_id } if *chain_id == release_chain => {
            Some(Response::Head(Some(HeadInfo {
                chain_id: release_chain,
                index: 1,
                hash: old,
            })))
        }
        _ => None,
    });
    let error = connection
        .sync(&mut followed, None)
        .await
        .err()
        .ok_or("an older head was accepted")?;
    assert!(error.to_string().contains("rollback"), "{error}");
    assert_eq!(followed.release.block().index(), 2);
    connection.close().await;
    Ok(())
}

/// **Key compromise below the threshold**: a thief holds t-1 developer keys (here one of two
/// required) and the attacker's node. Stopped by: witnesses log a release only with the
/// developer threshold, and a policy change (to install the thief's keys) only with the
/// developer threshold, or the root threshold for root keys and witnesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thief_of_fewer_keys_than_the_threshold_releases_nothing() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let leader = cluster.core(0);
    let mut project = Project::create(&leader, "stolen", 3, 2, &honest).await?;
    project.publish_next(&leader, "1.0.0", None).await?;
    cluster
        .wait_head(ATTACKER, &project.release_chain, 1)
        .await?;
    let stolen = &project.developers[0];
    let release = project.release_with("1.0.1", 2, &[stolen]);
    // Through an honest node's API and straight to the witnesses.
    let error = release
        .publish(&leader, project.release_chain, None)
        .await
        .err()
        .ok_or("a release below the threshold was logged")?;
    assert!(error.to_string().contains("signatures"), "{error}");
    let attacker = cluster.core(ATTACKER);
    let block = next_block(
        &attacker,
        &project.release_chain,
        None,
        release.release.to_bytes(),
    )?;
    refused_by_all(&propose(&cluster, &block).await?, "signatures")?;
    // Installing the thief's own key as a second developer needs the threshold too.
    let mut next = project.policy.clone();
    next.sequence += 1;
    next.previous = Some(project.policy.digest());
    next.developer_keys[1] = SecretKey::generate(&mut rand::rng()).public_key();
    let change = SignedPolicy {
        signatures: vec![KeySignature::sign(stolen, &next.digest())],
        policy: next,
    };
    let block = next_block(&attacker, &project.policy_chain, None, change.to_bytes())?;
    refused_by_all(&propose(&cluster, &block).await?, "signatures")?;
    assert_eq!(head(&cluster, 0, &project.release_chain)?, Some(1));
    assert_eq!(head(&cluster, 0, &project.policy_chain)?, Some(0));
    Ok(())
}

/// **Wrong software**: a mirror serves another project's release as the one the client
/// follows. Stopped by: the client pins the release chain by its id, the hash of its genesis,
/// which names the project; another genesis does not hash to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_software_from_another_project_is_refused() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let honest = cluster.roster(&HONEST)?;
    let leader = cluster.core(0);
    let wanted = Project::create(&leader, "wanted", 3, 2, &honest).await?;
    let other = Project::create(&leader, "malware", 3, 2, &honest).await?;
    cluster.wait_head(MIRROR, &other.release_chain, 0).await?;
    let other_genesis = cluster
        .core(MIRROR)
        .store()
        .linked_block(&other.release_chain, 0)?
        .ok_or("genesis")?;
    let wanted_chain = wanted.release_chain;
    mirror.lie(move |request, _| match request {
        Request::Blocks { chain_id, from, .. } if *chain_id == wanted_chain && *from == 0 => {
            Some(Response::Blocks(vec![other_genesis.clone()]))
        }
        _ => None,
    });
    let connection = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    let error = connection
        .follow(wanted_chain)
        .await
        .err()
        .ok_or("another project was followed")?;
    assert!(error.to_string().contains("does not hash"), "{error}");
    connection.close().await;
    Ok(())
}

/// **Withheld policy change**: a mirror hides the policy change that rotated out a developer
/// key (serving the old policy-chain head), so that its clients keep trusting the old key set;
/// and a first peer hands a client a timeline of its own choosing. Stopped by: the policy names
/// the timeline that commits the project (protocol §10 step 2), so the client learns it
/// from the chain it pinned, and the client checks the policy chain's head against that
/// timeline too (step 4): a policy head the timeline commits to but the peer did not serve is
/// refused, and a timeline pinned by hand does not replace the one the policy names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withheld_policy_change_is_caught_by_the_timeline_the_policy_names() -> TestResult {
    let mirror = Arc::new(Mirror::default());
    let cluster = network(&mirror, |_, _| {}).await?;
    let leader = cluster.core(0);
    let roster = cluster.roster(&HONEST)?;
    let timeline = cluster.create_timeline(0, &HONEST, 1).await?;
    let mut project = Project::create_on_timeline(&leader, "pinned", &roster, timeline).await?;
    project.publish_next(&leader, "1.0.0", None).await?;
    project.rotate_developer(&leader, 1).await?;
    let release_index = project.publish_next(&leader, "1.1.0", None).await?;
    let policy_chain = project.policy_chain;
    let policy_index = leader
        .store()
        .head(&policy_chain)?
        .ok_or("policy head")?
        .index;
    // Both peers the client asks hold a timeline block committing to the rotated policy and to
    // the release after it (an epoch may fall between the two).
    for node in [MIRROR, 1] {
        cluster
            .wait_timeline_commits(node, &timeline, &policy_chain, policy_index)
            .await?;
        cluster
            .wait_timeline_commits(node, &timeline, &project.release_chain, release_index)
            .await?;
    }
    let genesis_head = cluster
        .core(MIRROR)
        .store()
        .block_at(&policy_chain, 0)?
        .ok_or("policy genesis")?
        .hash();
    mirror.lie(move |request, _| match request {
        Request::Head { chain_id } if *chain_id == policy_chain => {
            Some(Response::Head(Some(HeadInfo {
                chain_id: policy_chain,
                index: 0,
                hash: genesis_head,
            })))
        }
        Request::Blocks { chain_id, from, .. } if *chain_id == policy_chain && *from > 0 => {
            Some(Response::Blocks(Vec::new()))
        }
        _ => None,
    });

    // Through the mirror alone: the client learns the timeline from the policy, pins it, and
    // refuses the withheld policy head.
    let only_mirror = Connection::open(&[cluster.address(MIRROR).await?], CONNECT).await?;
    let mut followed = only_mirror.follow(project.release_chain).await?;
    let mut learned = BTreeMap::new();
    let error = only_mirror
        .sync_project(&mut followed, None, &mut learned, Freshness::default())
        .await
        .err()
        .ok_or("a withheld policy change went unnoticed")?
        .to_string();
    assert!(error.contains("withholds policy changes"), "{error}");
    assert!(learned.is_empty(), "nothing is kept from a failed sync");
    assert_eq!(followed.policy.block().index(), 0, "nothing was trusted");
    only_mirror.close().await;

    // With an honest peer as well, the client gets the rotated policy and the new release.
    let both = Connection::open(
        &[cluster.address(MIRROR).await?, cluster.address(1).await?],
        CONNECT,
    )
    .await?;
    let (report, view) = both
        .sync_project(&mut followed, None, &mut learned, Freshness::default())
        .await?;
    assert_eq!(view.map(|v| v.chain), Some(timeline));
    assert!(
        learned.contains_key(&timeline),
        "the timeline the policy names is kept"
    );
    assert_eq!(report.policy_blocks, 1);
    assert_eq!(report.version.as_deref(), Some("1.1.0"));
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.peer == cluster.peer_id(MIRROR).unwrap_or(f.peer)),
        "the mirror is named"
    );

    // A timeline of someone else's choosing, pinned by hand, does not replace the one the
    // project's roots chose: the heads are checked against the policy's timeline.
    let other = cluster.create_timeline(0, &HONEST, 3600).await?;
    cluster.wait_head(1, &other, 1).await?;
    let mut elsewhere = both.pin_timeline(other).await?;
    let release_index = project.publish_next(&leader, "1.2.0", None).await?;
    // Both peers the client asks (the mirror first) hold a timeline block committing to it.
    for node in [MIRROR, 1] {
        cluster
            .wait_timeline_commits(node, &timeline, &project.release_chain, release_index)
            .await?;
    }
    let (report, view) = both
        .sync_project(
            &mut followed,
            Some(&mut elsewhere),
            &mut learned,
            Freshness::default(),
        )
        .await?;
    assert_eq!(view.map(|v| v.chain), Some(timeline));
    assert_eq!(report.version.as_deref(), Some("1.2.0"));
    assert_eq!(elsewhere.chain, other);
    both.close().await;
    Ok(())
}
