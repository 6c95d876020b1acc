//! Writes the fuzzing corpus in `fuzz/corpus/`: the encodings of real objects and real traffic
//! of a small network (a project with a release, a timeline, a data chain; every request node 1
//! received and every answer it gave). The fuzz targets (net/tests/fuzz.rs) mutate these.
//! Run again when an encoding changes:
//! `cargo test --workspace -- --ignored write_the_fuzzing_corpus`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chainiac_net::wire::{Request, Response};
use chainiac_node::runtime::NodeOptions;
use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::skipchain::SkipBlock;
use chainiac_tests::{Cluster, Mirror, Project, TestResult, wait_for};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
        .join("corpus")
}

/// Writes `bytes` as a corpus entry of `target`, named by its hash (so rewriting is idempotent).
fn write(target: &str, bytes: &[u8]) -> TestResult {
    let dir = corpus_dir().join(target);
    std::fs::create_dir_all(&dir)?;
    let name = Hash::of_artifact(bytes).to_hex();
    std::fs::write(dir.join(&name[..16]), bytes)?;
    Ok(())
}

/// A corpus target for a chain's payloads, with the check that a payload decodes as it.
type PayloadTarget<'a> = (&'a str, fn(&[u8]) -> bool);

/// Writes every block of `chain` on `cluster`'s node 0, with its links, roster and payload
/// (as `payload_target`, if the payload is an object), and a skip proof over it.
fn write_chain(cluster: &Cluster, chain: &Hash, payload: Option<PayloadTarget<'_>>) -> TestResult {
    let store = cluster.core(0).store().clone();
    let head = store.head(chain)?.ok_or("no head")?;
    for index in 0..=head.index {
        let linked = store.linked_block(chain, index)?.ok_or("missing block")?;
        write("linked_block", &linked.to_bytes())?;
        write("skip_block", &linked.block.to_bytes())?;
        for link in &linked.links {
            write("forward_link", &link.to_bytes())?;
        }
        write("roster", &store.roster_of(&linked.block)?.to_bytes())?;
        let block: &SkipBlock = &linked.block;
        if index == 0 {
            write("chain_genesis", block.payload())?;
        } else if let Some((target, decodes)) = payload {
            assert!(decodes(block.payload()), "{target} payload decodes");
            write(target, block.payload())?;
        }
    }
    if head.index > 0 {
        write(
            "skip_proof",
            &store.skip_proof(chain, 0, head.index)?.to_bytes(),
        )?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "writes fuzz/corpus; run by hand when an encoding changes"]
async fn write_the_fuzzing_corpus() -> TestResult {
    let traffic: Arc<Mutex<Vec<(Request, Response)>>> = Arc::default();
    let recorder = Arc::new(Mirror::default());
    {
        let traffic = traffic.clone();
        recorder.lie(move |request, answer| {
            traffic
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((request.clone(), answer.clone()));
            None
        });
    }
    let cluster = {
        let recorder = recorder.clone();
        Cluster::start_with_options(4, &move |i, options: &mut NodeOptions| {
            if i == 1 {
                options.answer_hook = Some(recorder.clone());
            }
        })
        .await?
    };
    let core = cluster.core(0);
    let roster = cluster.roster(&[0, 1, 2, 3])?;
    let mut project = Project::create(&core, "fuzzed", 3, 2, &roster).await?;
    project.publish_next(&core, "1.0.1", None).await?;
    project.rotate_developer(&core, 2).await?;
    project.publish_next(&core, "1.0.2", None).await?;
    for index in 1..=2 {
        let block = core
            .store()
            .block_at(&project.release_chain, index)?
            .ok_or("release")?;
        let release = chainiac_protocol::release::Release::from_bytes(block.payload())?;
        write("release_manifest", &release.manifest.to_bytes())?;
        for (outcome, outputs) in [
            (
                chainiac_protocol::release::BuildOutcome::Built,
                release.manifest.binary_hashes(),
            ),
            (chainiac_protocol::release::BuildOutcome::Failed, Vec::new()),
        ] {
            let attestation = chainiac_protocol::release::BuildAttestation::sign(
                &chainiac_protocol::keys::SecretKey::generate(&mut rand::rng()),
                release.manifest.digest(),
                outcome,
                outputs,
                Hash::of_artifact(b"the build log"),
            );
            write("build_attestation", &attestation.to_bytes())?;
        }
    }
    write("policy", &project.policy.to_bytes())?;
    let data = cluster.create_chain(0).await?;
    for i in 0..3u8 {
        data.append(&core, vec![i; 40]).await?;
    }
    let timeline = cluster.create_timeline(0, &[0, 1, 2, 3], 1).await?;
    wait_for("three timeline blocks", || async {
        core.store()
            .head(&timeline)
            .ok()
            .flatten()
            .is_some_and(|h| h.index >= 3)
    })
    .await?;
    write_chain(
        &cluster,
        &project.policy_chain,
        Some(("signed_policy", |b| {
            chainiac_protocol::policy::SignedPolicy::from_bytes(b).is_ok()
        })),
    )?;
    write_chain(
        &cluster,
        &project.release_chain,
        Some(("release", |b| {
            chainiac_protocol::release::Release::from_bytes(b).is_ok()
        })),
    )?;
    write_chain(
        &cluster,
        &data.id,
        Some(("data_block", |b| {
            chainiac_protocol::data_chain::DataBlock::from_bytes(b).is_ok()
        })),
    )?;
    write_chain(
        &cluster,
        &timeline,
        Some(("timeline_block", |b| {
            chainiac_protocol::timeline::TimelineBlock::from_bytes(b).is_ok()
        })),
    )?;
    let genesis = core
        .store()
        .block_at(&project.release_chain, 0)?
        .ok_or("genesis")?;
    assert!(ChainGenesis::from_bytes(genesis.payload()).is_ok());
    // Requests node 0 makes of node 1 that the rounds above may not have made.
    let peer = cluster.peer_id(1)?;
    for request in [
        Request::Heads,
        Request::HeadsSummary,
        Request::HeadsBuckets,
        Request::HeadsInBucket {
            bucket: data.id.0[0],
        },
        Request::Head { chain_id: data.id },
        Request::Blocks {
            chain_id: data.id,
            from: 0,
            count: 8,
        },
        Request::Proof {
            chain_id: project.release_chain,
            from: 0,
            to: 2,
        },
        Request::TimelineInclusion {
            timeline,
            index: 2,
            chain_id: data.id,
        },
        Request::Anchors { timeline },
    ] {
        core.net().request(peer, request).await?;
    }
    let traffic = traffic.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(traffic.len() > 20, "traffic recorded: {}", traffic.len());
    for (request, answer) in traffic.iter() {
        write("request", &request.to_bytes())?;
        write("response", &answer.to_bytes())?;
        match answer {
            Response::Committed(commitment) => write("commitment", &commitment.to_bytes())?,
            Response::Responded(share) => write("response_share", &share.to_bytes())?,
            Response::Inclusion { proof, .. } => write("inclusion_proof", &proof.to_bytes())?,
            _ => {}
        }
        if let Request::Respond { challenge, .. } = request {
            write("challenge", &challenge.to_bytes())?;
        }
        if let Request::Attest { manifest, .. } = request {
            write("release_manifest", &manifest.to_bytes())?;
        }
    }
    Ok(())
}
