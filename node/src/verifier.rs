//! The build-verifier service: a node with `[verifier] enabled = true` rebuilds the releases it
//! is asked about (`Request::Attest`) and signs attestations with its node key. Requests go to
//! a durable queue (the store) worked by a bounded number of builds at once; a restart resumes
//! the queue; answers come from the store once a build is done, so a release is built once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chainiac_net::download::download;
use chainiac_net::wire::{Request, Response};
use chainiac_net::{NetHandle, peer_id_of};
use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::{KeySignature, PublicKey};
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::{BuildAttestation, Release, ReleaseManifest};
use tokio::sync::{Semaphore, mpsc};

use crate::artifacts::ArtifactStore;
use crate::builder::{BuildLimits, Sandbox, rebuild};
use crate::config::Identity;
use crate::rules::{chain_kind, policy_in_force};
use crate::store::Store;

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
    identity: Arc<Identity>,
    store: Store,
    artifacts: ArtifactStore,
    net: NetHandle,
}

impl Verifier {
    /// A verifier signing with `identity`, keeping its queue and attestations in `store`,
    /// fetching sources from `artifacts` or through `net`; its builds start with [`run`].
    pub fn new(
        settings: VerifierSettings,
        identity: Arc<Identity>,
        store: Store,
        artifacts: ArtifactStore,
        net: NetHandle,
    ) -> Self {
        let (queue, receiver) = mpsc::channel(MAX_QUEUED_BUILDS);
        Self {
            queue,
            in_progress: Mutex::default(),
            receiver: Mutex::new(Some(receiver)),
            settings,
            identity,
            store,
            artifacts,
            net,
        }
    }

    fn key(&self) -> PublicKey {
        self.identity.public().key
    }

    /// Answers a request for the attestation of `manifest`, signed by `signatures`: the
    /// attestation if the rebuild is done, `None` once it is queued (durably) or running.
    /// Nothing is fetched or built unless the manifest follows the policy in force of its
    /// project (as this node holds it), that policy lists this node as a verifier, and the
    /// developer threshold of that policy signed it: no peer can make it run a recipe the
    /// developers did not approve.
    pub fn request(
        &self,
        manifest: ReleaseManifest,
        signatures: Vec<KeySignature>,
    ) -> Result<Option<BuildAttestation>, String> {
        manifest
            .check()
            .map_err(|e| format!("not a valid release manifest: {e}"))?;
        // Only releases of projects whose policy lists this node as a verifier are built, so a
        // peer cannot make it run arbitrary recipes.
        let policy_block = self
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
        if !policy.policy.build_verifiers.contains(&self.key()) {
            return Err(format!(
                "this node is not a build verifier of project {}",
                policy.policy.project
            ));
        }
        let in_force = self
            .store
            .head(&policy_block.chain_id())
            .map_err(|e| e.to_string())?
            .is_some_and(|head| head.hash == manifest.policy);
        if !in_force {
            return Err(format!(
                "policy block {} is not the policy in force of project {} here",
                manifest.policy, policy.policy.project
            ));
        }
        let digest = manifest.digest();
        let done = self
            .store
            .build_attestation(&digest)
            .map_err(|e| e.to_string())?;
        if done.is_none() {
            let release = Release {
                manifest: manifest.clone(),
                signatures,
                attestations: Vec::new(),
            };
            release.check_signatures(&policy.policy).map_err(|e| {
                format!("not built: the release is not approved by its developers: {e}")
            })?;
        }
        if let Some(done) = done {
            return Ok(Some(done));
        }
        let mut in_progress = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_progress.contains(&digest) {
            return Ok(None);
        }
        self.store
            .queue_build(&manifest)
            .map_err(|e| e.to_string())?;
        self.queue
            .try_send(manifest)
            .map_err(|_| "this verifier's build queue is full; ask again later".to_owned())?;
        in_progress.insert(digest);
        Ok(None)
    }
}

impl Verifier {
    /// Puts back in the queue a build that was queued (after its checks) before a restart.
    fn resume(&self, manifest: ReleaseManifest) -> Result<(), String> {
        let digest = manifest.digest();
        let mut in_progress = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_progress.contains(&digest) {
            return Ok(());
        }
        self.queue
            .try_send(manifest)
            .map_err(|_| "this verifier's build queue is full".to_owned())?;
        in_progress.insert(digest);
        Ok(())
    }
}

/// Works the queue until the node stops: first the builds queued before a restart, then new
/// requests, at most `concurrency` at once.
pub async fn run(verifier: Arc<Verifier>) {
    let Some(mut receiver) = verifier
        .receiver
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    else {
        return;
    };
    match verifier.store.queued_builds(MAX_QUEUED_BUILDS) {
        Ok(queued) => {
            for manifest in queued {
                tracing::info!(project = %manifest.project, version = %manifest.version, "resuming a queued rebuild");
                let _ = verifier.resume(manifest);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the build queue"),
    }
    let slots = Arc::new(Semaphore::new(verifier.settings.concurrency.max(1)));
    while let Some(manifest) = receiver.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let verifier = verifier.clone();
        tokio::spawn(async move {
            let digest = manifest.digest();
            match verifier.build(&manifest).await {
                Ok(attestation) => {
                    if let Err(error) = verifier.store.finish_build(&attestation) {
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

impl Verifier {
    /// Fetches the source (from this node's artifacts, or from peers, checked slice by slice),
    /// rebuilds, and signs what came out, reproduced or not.
    async fn build(&self, manifest: &ReleaseManifest) -> Result<BuildAttestation, String> {
        let source = &manifest.source;
        let bytes = match self.artifacts.read(&source.hash) {
            Ok(bytes) => bytes,
            Err(_) => {
                let peers = self.net.info().await.peers;
                let fetched = tokio::time::timeout(
                    Duration::from_secs(300),
                    download(&self.net, &peers, source, &|_, _| {}),
                )
                .await
                .map_err(|_| "fetching the source timed out".to_owned())?
                .map_err(|e| format!("cannot fetch the source {}: {e}", source.hash))?;
                fetched.bytes
            }
        };
        tracing::info!(project = %manifest.project, version = %manifest.version, "rebuilding");
        let settings = self.settings.clone();
        let manifest = manifest.clone();
        let identity = self.identity.clone();
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
}

/// How long a leader waits for verifiers to rebuild a release.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How often it asks them again.
const GATHER_POLL: Duration = Duration::from_millis(500);

/// What a leader needs to gather build attestations: its store (the policy in force), the
/// network (to ask verifiers), its own verifier if it is one, and its key.
#[derive(Debug)]
pub struct Attestations<'a> {
    /// The leader's store.
    pub store: &'a Store,
    /// The network.
    pub net: &'a NetHandle,
    /// This node's own verifier, asked directly.
    pub local: Option<&'a Verifier>,
    /// This node's key.
    pub key: PublicKey,
}

impl Attestations<'_> {
    /// The leader's side: a release whose policy requires `k` build attestations and carries
    /// fewer that reproduce it (by the witnesses' rule, [`Release::reproducing_attestations`])
    /// gets them from the policy's verifiers before its round (each verifier is asked directly,
    /// its node key being its verifier key). Returns the payload to propose: the release with
    /// the attestations gathered (reproducing or not, so that a refusal can say which verifier
    /// got what), or the payload unchanged when nothing is needed.
    pub async fn gather(&self, chain_id: &Hash, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let Ok(Some(ChainGenesis::Release { policy_chain, .. })) = chain_kind(self.store, chain_id)
        else {
            return Ok(payload);
        };
        let Ok(mut release) = Release::from_bytes(&payload) else {
            return Ok(payload);
        };
        let Ok((policy, _)) = policy_in_force(self.store, &policy_chain) else {
            return Ok(payload);
        };
        let policy = policy.policy;
        let required = policy.attestations_required as usize;
        // An invalid set of attestations is the witnesses' to refuse, with their reason.
        let reproducing = |release: &Release| {
            release
                .reproducing_attestations(&policy)
                .unwrap_or(usize::MAX)
        };
        if required == 0 || reproducing(&release) >= required {
            return Ok(payload);
        }
        let digest = release.manifest.digest();
        let mut waiting: Vec<PublicKey> = policy
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
                // Unreachable for now: asked again at the next poll.
                let Some(answer) = self.ask(verifier, &release).await else {
                    continue;
                };
                match answer {
                    Response::Attestation(Some(attestation))
                        if attestation.verifier == *verifier
                            && attestation.manifest == digest
                            && attestation.verify().is_ok() =>
                    {
                        release.attestations.push(*attestation);
                        answered.push(*verifier);
                    }
                    Response::Attestation(None) => {}
                    Response::Refused(reason) => {
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

    /// One verifier's answer, or `None` if it cannot be reached now.
    async fn ask(&self, verifier: &PublicKey, release: &Release) -> Option<Response> {
        let manifest = &release.manifest;
        if *verifier == self.key {
            return Some(match self.local {
                Some(local) => match local.request(manifest.clone(), release.signatures.clone()) {
                    Ok(attestation) => Response::Attestation(attestation.map(Box::new)),
                    Err(reason) => Response::Refused(reason),
                },
                None => Response::Refused("this node is not a build verifier".into()),
            });
        }
        let Ok(peer) = peer_id_of(verifier) else {
            return Some(Response::Refused("not a valid peer key".into()));
        };
        let request = Request::Attest {
            manifest: Box::new(manifest.clone()),
            signatures: release.signatures.clone(),
        };
        self.net.request(peer, request).await.ok()
    }
}
