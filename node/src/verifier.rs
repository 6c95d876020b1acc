//! The build-verifier service: a node with `[verifier] enabled = true` rebuilds the releases it
//! is asked about (`Request::Attest`) and signs attestations with its node key. Requests go to
//! a durable queue (the store) worked by a bounded number of builds at once; a restart resumes
//! the queue; answers come from the store once a build is done, so a release is built once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chainiac_protocol::Hash;
use chainiac_protocol::release::{BuildAttestation, ReleaseManifest};
use tokio::sync::{Semaphore, mpsc};

use crate::artifacts::download;
use crate::builder::{BuildLimits, Sandbox, rebuild};
use crate::node::NodeCore;

/// Most rebuilds waiting at once; more requests are refused until the queue drains.
pub const MAX_QUEUED_BUILDS: usize = 256;

/// How a node verifies builds.
#[derive(Clone, Debug)]
pub struct VerifierSettings {
    /// The sandbox builds run in.
    pub sandbox: Sandbox,
    /// Limits of each build.
    pub limits: BuildLimits,
    /// Builds at once.
    pub concurrency: usize,
    /// Where build directories are made.
    pub work_dir: PathBuf,
}

/// The verifier's handle: accepts requests, answers from the store.
#[derive(Debug)]
pub struct Verifier {
    queue: mpsc::Sender<ReleaseManifest>,
    /// Manifests queued or building (by digest), so a repeated request does not queue twice.
    in_progress: Mutex<HashSet<Hash>>,
    receiver: Mutex<Option<mpsc::Receiver<ReleaseManifest>>>,
    settings: VerifierSettings,
}

impl Verifier {
    /// A verifier; its builds start with [`run`].
    pub fn new(settings: VerifierSettings) -> Self {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_BUILDS);
        Self {
            queue,
            in_progress: Mutex::default(),
            receiver: Mutex::new(Some(receiver)),
            settings,
        }
    }

    /// Answers a request for the attestation of `manifest`: the attestation if the rebuild is
    /// done, `None` once it is queued (durably) or running.
    pub fn request(
        &self,
        core: &NodeCore,
        manifest: ReleaseManifest,
    ) -> Result<Option<BuildAttestation>, String> {
        manifest
            .check()
            .map_err(|e| format!("not a valid release manifest: {e}"))?;
        // Only releases of projects whose policy lists this node as a verifier are built, so a
        // peer cannot make it run arbitrary recipes.
        let policy_block = core
            .store
            .block(&manifest.policy)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "this verifier does not hold policy block {} of the release (not synced yet?)",
                    manifest.policy
                )
            })?;
        let policy = chainiac_protocol::project::policy_of_block(
            policy_block.index(),
            policy_block.payload(),
        )
        .map_err(|e| format!("block {} is not a policy: {e}", manifest.policy))?;
        if !policy.policy.build_verifiers.contains(&core.key()) {
            return Err(format!(
                "this node is not a build verifier of project {}",
                policy.policy.project
            ));
        }
        let digest = manifest.digest();
        if let Some(done) = core
            .store
            .build_attestation(&digest)
            .map_err(|e| e.to_string())?
        {
            return Ok(Some(done));
        }
        let mut in_progress = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_progress.contains(&digest) {
            return Ok(None);
        }
        core.store
            .queue_build(&manifest)
            .map_err(|e| e.to_string())?;
        self.queue
            .try_send(manifest)
            .map_err(|_| "this verifier's build queue is full; ask again later".to_owned())?;
        in_progress.insert(digest);
        Ok(None)
    }
}

/// Works the queue until the node stops: first the builds queued before a restart, then new
/// requests, at most `concurrency` at once.
pub async fn run(core: Arc<NodeCore>) {
    let Some(verifier) = core.verifier.clone() else {
        return;
    };
    let Some(mut receiver) = verifier
        .receiver
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    else {
        return;
    };
    match core.store.queued_builds(MAX_QUEUED_BUILDS) {
        Ok(queued) => {
            for manifest in queued {
                tracing::info!(project = %manifest.project, version = %manifest.version, "resuming a queued rebuild");
                let _ = verifier.request(&core, manifest);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the build queue"),
    }
    let slots = Arc::new(Semaphore::new(verifier.settings.concurrency.max(1)));
    while let Some(manifest) = receiver.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let core = core.clone();
        let verifier = verifier.clone();
        tokio::spawn(async move {
            let digest = manifest.digest();
            match build(&core, &verifier.settings, &manifest).await {
                Ok(attestation) => {
                    if let Err(error) = core.store.finish_build(&attestation) {
                        tracing::warn!(%error, "cannot record a build attestation");
                    }
                }
                // Not attested (the source could not be fetched, or the verifier's own disk
                // failed): the request stays queued and is retried when asked again.
                Err(error) => tracing::warn!(%error, %digest, "rebuild not attested"),
            }
            verifier
                .in_progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&digest);
            drop(slot);
        });
    }
}

/// Fetches the source (from this node's artifacts, or from peers, checked slice by slice),
/// rebuilds, and signs what came out, reproduced or not.
async fn build(
    core: &Arc<NodeCore>,
    settings: &VerifierSettings,
    manifest: &ReleaseManifest,
) -> Result<BuildAttestation, String> {
    let source = &manifest.source;
    let bytes = match core.artifacts.read(&source.hash) {
        Ok(bytes) => bytes,
        Err(_) => {
            let peers = core.net.info().await.peers;
            let fetched = tokio::time::timeout(
                Duration::from_secs(300),
                download(&core.net, &peers, source, &|_, _| {}),
            )
            .await
            .map_err(|_| "fetching the source timed out".to_owned())?
            .map_err(|e| format!("cannot fetch the source {}: {e}", source.hash))?;
            fetched.bytes
        }
    };
    tracing::info!(project = %manifest.project, version = %manifest.version, "rebuilding");
    let settings = settings.clone();
    let manifest = manifest.clone();
    let identity = core.identity.clone();
    tokio::task::spawn_blocking(move || {
        let rebuilt = rebuild(
            &settings.sandbox,
            &settings.limits,
            &manifest,
            &bytes,
            &settings.work_dir,
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(
            project = %manifest.project,
            version = %manifest.version,
            reproduced = rebuilt.reproduces(&manifest),
            failure = rebuilt.failure.as_deref().unwrap_or(""),
            seconds = rebuilt.elapsed.as_secs_f64(),
            "rebuilt"
        );
        Ok(rebuilt.attest(identity.secret(), &manifest))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// How long a leader waits for verifiers to rebuild a release.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How often it asks them again.
const GATHER_POLL: Duration = Duration::from_millis(500);

/// The leader's side: a release whose policy requires `k` build attestations and carries fewer
/// that reproduce it gets them from the policy's verifiers before its round (each verifier is
/// asked directly, its node key being its verifier key). Returns the payload to propose: the
/// release with the attestations gathered (reproducing or not, so that a refusal can say which
/// verifier got what), or the payload unchanged when nothing is needed.
pub async fn with_attestations(
    core: &NodeCore,
    chain_id: &Hash,
    payload: Vec<u8>,
) -> Result<Vec<u8>, String> {
    use chainiac_protocol::encoding::{Decode, Encode};
    use chainiac_protocol::project::ChainGenesis;
    use chainiac_protocol::release::Release;

    let Ok(Some(ChainGenesis::Release { policy_chain, .. })) =
        crate::rules::chain_kind(&core.store, chain_id)
    else {
        return Ok(payload);
    };
    let Ok(mut release) = Release::from_bytes(&payload) else {
        return Ok(payload);
    };
    let Ok((policy, _)) = crate::rules::policy_in_force(&core.store, &policy_chain) else {
        return Ok(payload);
    };
    let policy = policy.policy;
    let required = policy.attestations_required as usize;
    let reproducing = |release: &Release| {
        release
            .attestations
            .iter()
            .filter(|a| {
                policy.build_verifiers.contains(&a.verifier) && a.reproduces(&release.manifest)
            })
            .count()
    };
    if required == 0 || reproducing(&release) >= required {
        return Ok(payload);
    }
    let digest = release.manifest.digest();
    let mut waiting: Vec<_> = policy
        .build_verifiers
        .iter()
        .filter(|v| !release.attestations.iter().any(|a| a.verifier == **v))
        .copied()
        .collect();
    let mut refusals = Vec::new();
    let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
    tracing::info!(project = %release.manifest.project, version = %release.manifest.version, verifiers = waiting.len(), "gathering build attestations");
    while !waiting.is_empty() && reproducing(&release) < required {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "only {} of the {required} required build attestations arrived within {} s; still waiting for verifiers {}",
                reproducing(&release),
                GATHER_TIMEOUT.as_secs(),
                waiting
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut answered = Vec::new();
        for verifier in &waiting {
            let answer = if *verifier == core.key() {
                core.answer_attest(release.manifest.clone())
            } else {
                let Ok(peer) = crate::net::peer_id_of(verifier) else {
                    answered.push(*verifier);
                    continue;
                };
                let request = crate::wire::Request::Attest {
                    manifest: Box::new(release.manifest.clone()),
                };
                match core.net.request(peer, request).await {
                    Ok(response) => response,
                    // Unreachable for now: asked again at the next poll.
                    Err(_) => continue,
                }
            };
            match answer {
                crate::wire::Response::Attestation(Some(attestation))
                    if attestation.verifier == *verifier
                        && attestation.manifest == digest
                        && attestation.verify().is_ok() =>
                {
                    release.attestations.push(*attestation);
                    answered.push(*verifier);
                }
                crate::wire::Response::Attestation(None) => {}
                crate::wire::Response::Refused(reason) => {
                    refusals.push(format!("verifier {verifier}: {reason}"));
                    answered.push(*verifier);
                }
                _ => {
                    refusals.push(format!("verifier {verifier} answered with something else"));
                    answered.push(*verifier);
                }
            }
        }
        waiting.retain(|v| !answered.contains(v));
        if !waiting.is_empty() && reproducing(&release) < required {
            tokio::time::sleep(GATHER_POLL).await;
        }
    }
    if reproducing(&release) < required && !refusals.is_empty() {
        return Err(format!(
            "only {} of the {required} required build attestations reproduce the release; {}",
            reproducing(&release),
            refusals.join("; ")
        ));
    }
    Ok(release.to_bytes())
}
