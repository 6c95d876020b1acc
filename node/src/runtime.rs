//! Starting and stopping a node: store, identity, network task, event loop and HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use chainiac_anchor::{EthereumAnchor, EthereumConfig, FeePolicy, GWEI};
use chainiac_net::NetConfig;

use crate::admission::Admission;
use crate::agreement::Conduct;
use crate::anchoring::Anchoring;
use crate::antientropy::AntiEntropy;
use crate::artifacts::ArtifactStore;
use crate::config::{Identity, NodeConfig};
use crate::gossip::GossipHook;
use crate::metrics::Metrics;
use crate::node::{NodeCore, NodeParts};
use crate::rounds::{RoundConfig, Witness};
use crate::rules::ProjectRules;
use crate::serve::AnswerHook;
use crate::store::Store;

/// How long a shutdown waits for the node's tasks to let go of the store.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(30);

/// Everything needed to start a node.
#[derive(Clone)]
pub struct NodeOptions {
    /// The configuration (file plus overrides).
    pub config: NodeConfig,
    /// Signing-round timeouts.
    pub rounds: RoundConfig,
    /// Test seam: rewrites this node's answers to peers (a Byzantine transport). `None` in
    /// every real node.
    pub answer_hook: Option<Arc<dyn AnswerHook>>,
    /// Test seam: drops gossip messages before validation. `None` in every real node.
    pub gossip_hook: Option<Arc<dyn GossipHook>>,
    /// Test seam: how the node behaves in agreement. [`Conduct::Honest`] in every real node;
    /// the environment variable [`BYZANTINE_AGREEMENT_VARIABLE`] makes a node process
    /// Byzantine (tests of real processes).
    pub conduct: Conduct,
}

/// Setting this environment variable (to anything) makes a node of a debug or test build
/// misbehave in agreement as a faulty roster member would ([`Conduct::Byzantine`]); release
/// builds ignore it. For tests only.
pub const BYZANTINE_AGREEMENT_VARIABLE: &str = "CHAINIAC_TEST_BYZANTINE_AGREEMENT";

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("config", &self.config)
            .field("rounds", &self.rounds)
            .field("answer_hook", &self.answer_hook.is_some())
            .field("gossip_hook", &self.gossip_hook.is_some())
            .field("conduct", &self.conduct)
            .finish()
    }
}

impl NodeOptions {
    /// Options with default rounds and honest answers.
    pub fn new(config: NodeConfig) -> Self {
        Self {
            config,
            rounds: RoundConfig::default(),
            answer_hook: None,
            gossip_hook: None,
            conduct: Conduct::Honest,
        }
    }
}

/// A running node.
pub struct RunningNode {
    /// Shared state, for the API and tests.
    pub core: Arc<NodeCore>,
    /// The node's libp2p peer id.
    pub peer_id: PeerId,
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    events_task: JoinHandle<()>,
    epochs_task: JoinHandle<()>,
    agreement_task: JoinHandle<()>,
    verifier_task: JoinHandle<()>,
    anti_entropy_task: JoinHandle<()>,
    artifact_garbage_task: JoinHandle<()>,
    api_task: JoinHandle<()>,
    api_stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("peer_id", &self.peer_id)
            .field("api", &self.api_addr)
            .finish()
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The key file.
    #[error(transparent)]
    Identity(#[from] crate::config::IdentityError),
    /// The store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An address in the configuration.
    #[error("invalid address {address:?} in the configuration: {reason}")]
    Address { address: String, reason: String },
    /// The network.
    #[error("cannot start the network: {0}")]
    Network(#[from] chainiac_net::NetError),
    /// The data directory.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The artifact directory.
    #[error(transparent)]
    Artifacts(#[from] crate::artifacts::ArtifactError),
    /// Build verification is on but cannot run here.
    #[error("cannot run as a build verifier: {0}")]
    Verifier(#[from] crate::builder::BuildError),
    /// An invalid setting (the message names it).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The HTTP API.
    #[error("cannot listen for the API on {address}: {source}")]
    Api {
        address: SocketAddr,
        source: std::io::Error,
    },
}

fn parse_addresses(addresses: &[String]) -> Result<Vec<Multiaddr>, StartError> {
    addresses
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|e: libp2p::multiaddr::Error| StartError::Address {
                    address: a.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

impl RunningNode {
    /// Starts a node.
    pub async fn start(options: NodeOptions) -> Result<Self, StartError> {
        let config = &options.config;
        let identity = Arc::new(Identity::load(&config.key_file)?);
        // Existing nodes get their API token on their first run with this version.
        let access = crate::api::Access {
            token: chainiac_api::ApiToken::load_or_create(
                &config.api.token_path(&config.key_file),
            )?,
            hosts: config.api.hosts.clone(),
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = Store::open(&config.data_dir.join("db"))?;
        let artifacts = ArtifactStore::open(&config.data_dir.join("artifacts"))?;
        let net_config = NetConfig {
            listen: parse_addresses(&config.network.listen)?,
            bootstrap: parse_addresses(&config.network.bootstrap)?,
            request_timeout: Duration::from_secs(30),
        };
        let keypair = chainiac_net::keypair_of(identity.secret())
            .map_err(|e| chainiac_net::NetError::Identity(e.to_string()))?;
        let mut metrics = Metrics::new();
        let (net, events, peer_id) =
            chainiac_net::spawn(keypair, &net_config, Some(metrics.network_registry()))?;
        let admission = Admission::from_config(&config.admission).map_err(StartError::Config)?;
        store.limit_timeline_checkpoints({
            let admission = admission.clone();
            Arc::new(move |creator, usage, cost| {
                admission.admit_block(creator, usage, cost).is_ok()
            })
        });
        let witness = Witness::new(
            identity.clone(),
            store.clone(),
            Arc::new(ProjectRules {
                admission: admission.clone(),
                ..ProjectRules::default()
            }),
        );
        let anchoring = match &config.anchor.ethereum_rpc {
            Some(rpc) => Some(start_anchoring(config, rpc, &identity, &mut metrics)?),
            None => None,
        };
        let verifier = if config.verifier.enabled {
            let mut sandbox = crate::builder::Sandbox::system()?;
            if config.verifier.rust_toolchain {
                sandbox = sandbox.with_host_rust();
            }
            sandbox.check_limits()?;
            tracing::info!(
                concurrency = config.verifier.concurrency,
                "rebuilding releases as a build verifier"
            );
            Some(Arc::new(crate::verifier::Verifier::new(
                crate::verifier::VerifierSettings {
                    sandbox,
                    limits: crate::builder::BuildLimits {
                        time: Duration::from_secs(config.verifier.timeout_seconds),
                        processes: config.verifier.max_processes,
                        disk_bytes: config.verifier.disk_quota_mib.saturating_mul(1 << 20),
                        ..crate::builder::BuildLimits::default()
                    },
                    concurrency: config.verifier.concurrency,
                    work_dir: config.data_dir.join("builds"),
                },
                identity.clone(),
                store.clone(),
                artifacts.clone(),
                net.clone(),
            )))
        } else {
            None
        };
        // Release builds ignore the variable: only test builds can be told to misbehave.
        let conduct = if cfg!(debug_assertions)
            && std::env::var_os(BYZANTINE_AGREEMENT_VARIABLE).is_some()
        {
            tracing::warn!(
                "{BYZANTINE_AGREEMENT_VARIABLE} is set: this node misbehaves in agreement (a test of faulty members); never set it on a real node"
            );
            Conduct::Byzantine
        } else {
            options.conduct
        };
        let core = NodeCore::new(NodeParts {
            identity,
            store,
            witness,
            net,
            rounds: options.rounds,
            artifacts,
            anchoring,
            verifier,
            answer_hook: options.answer_hook.clone(),
            gossip_hook: options.gossip_hook.clone(),
            admission,
            metrics,
            conduct,
        });
        let core = Arc::new(core);
        let events_task = tokio::spawn(core.clone().run_events(events));
        let epochs_task = tokio::spawn(crate::epochs::run(core.clone()));
        let agreement_task = tokio::spawn(core.clone().run_agreement());
        let anti_entropy_task = tokio::spawn(
            AntiEntropy::new(
                core.store().clone(),
                core.net().clone(),
                core.syncer().clone(),
                Duration::from_secs(config.network.anti_entropy_seconds.max(1)),
            )
            .run(),
        );
        let artifact_garbage_task = tokio::spawn(crate::artifact_garbage::run(
            core.clone(),
            Duration::from_secs(
                config
                    .artifacts
                    .keep_unreferenced_hours
                    .saturating_mul(3600),
            ),
        ));
        let verifier_task = tokio::spawn({
            let verifier = core.verifier().cloned();
            async move {
                if let Some(verifier) = verifier {
                    crate::verifier::run(verifier).await;
                }
            }
        });
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .map_err(|source| StartError::Api {
                address: config.api.listen,
                source,
            })?;
        let api_addr = listener.local_addr().map_err(|source| StartError::Api {
            address: config.api.listen,
            source,
        })?;
        let (api_stop, stopped) = oneshot::channel::<()>();
        let router = crate::api::router(core.clone(), access);
        let api_task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "API server stopped");
            }
        });
        tracing::info!(%peer_id, api = %api_addr, key = %core.key(), "node started");
        Ok(Self {
            core,
            peer_id,
            api_addr,
            events_task,
            epochs_task,
            agreement_task,
            verifier_task,
            anti_entropy_task,
            artifact_garbage_task,
            api_task,
            api_stop,
        })
    }

    /// The libp2p addresses the node listens on, once the first is known.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        for _ in 0..500 {
            let info = self.core.net().info().await;
            if !info.listen.is_empty() {
                return info.listen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Vec::new()
    }

    /// Stops the API and the network, waits for the tasks, and closes the store.
    pub async fn shutdown(self) {
        let _ = self.api_stop.send(());
        let _ = self.api_task.await;
        self.epochs_task.abort();
        let _ = self.epochs_task.await;
        self.agreement_task.abort();
        let _ = self.agreement_task.await;
        self.verifier_task.abort();
        let _ = self.verifier_task.await;
        self.anti_entropy_task.abort();
        let _ = self.anti_entropy_task.await;
        self.artifact_garbage_task.abort();
        let _ = self.artifact_garbage_task.await;
        self.core.net().shutdown().await;
        let _ = self.events_task.await;
        // Tasks spawned for requests, sync and anchoring end once the network is gone (a round
        // in flight within its timeouts); the store closes when the last of them drops its
        // handle, which a restart in the same process needs.
        // Tasks that hold only the store (a sync or a mirror spawned by a service) are waited
        // for too: shutdown returns once the database is closed.
        let core = self.core;
        let store = core.store().clone();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_PATIENCE;
        while Arc::strong_count(&core) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(core);
        // This function's own handle is the one left once every other is gone.
        while store.handles() > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if store.handles() > 1 {
            tracing::warn!(
                "tasks still hold the node's store after {} s; it closes when they end",
                SHUTDOWN_PATIENCE.as_secs()
            );
        }
        drop(store);
    }
}

/// The Ethereum backend of `config.anchor`, signing with the node's own Ethereum key and
/// vouching for its address with the node's roster key.
fn start_anchoring(
    config: &NodeConfig,
    rpc: &str,
    identity: &Arc<Identity>,
    metrics: &mut Metrics,
) -> Result<Anchoring, StartError> {
    let anchor = &config.anchor;
    // The URL may carry a provider's API key: only its scheme, host and port are shown.
    let shown = chainiac_anchor::display_url(rpc)
        .unwrap_or_else(|| "the configured ethereum_rpc".to_owned());
    let failed = |reason: String| StartError::Address {
        address: shown.clone(),
        reason,
    };
    let key_file = anchor.key_file.as_ref().ok_or_else(|| {
        failed(
            "anchoring needs the node's own Ethereum key: create one with `chainiac anchor key --out FILE`, fund its address and set anchor.key_file".into(),
        )
    })?;
    let password = match &anchor.key_password_file {
        Some(path) => {
            Some(chainiac_anchor::read_password_file(path).map_err(|e| failed(e.to_string()))?)
        }
        None => std::env::var("CHAINIAC_ANCHOR_KEY_PASSWORD")
            .ok()
            .map(zeroize::Zeroizing::new),
    };
    let signer = chainiac_anchor::load_key(key_file, password.as_ref().map(|p| p.as_str()))
        .map_err(|e| failed(e.to_string()))?;
    let address = format!("{:#x}", signer.address());
    let mut ethereum = EthereumConfig::new(rpc);
    ethereum.endpoints.extend(anchor.check_rpcs.iter().cloned());
    ethereum
        .endpoint_options
        .ca_file
        .clone_from(&anchor.ca_file);
    ethereum.endpoint_options.request_timeout =
        std::time::Duration::from_secs(anchor.request_timeout_seconds.max(1));
    ethereum.fees = FeePolicy {
        max_fee_per_gas: u128::from(anchor.max_fee_gwei) * GWEI,
        priority_fee_per_gas: u128::from(anchor.priority_fee_gwei) * GWEI,
        daily_cap_wei: u128::from(anchor.daily_cap_gwei) * GWEI,
    };
    ethereum.replace_after = std::time::Duration::from_secs(anchor.replace_after_seconds.max(1));
    ethereum.journal = Some(config.data_dir.join("anchor-journal.json"));
    ethereum.expected_chain_id = anchor.chain_id;
    ethereum.contract = match &anchor.contract {
        Some(text) => Some(text.parse().map_err(|e| {
            failed(format!(
                "anchor.contract {text:?} is not an Ethereum address: {e}"
            ))
        })?),
        None => None,
    };
    let member = identity.clone();
    let voucher: chainiac_anchor::Voucher = Arc::new(move |chain_id, address, recipient| {
        chainiac_protocol::anchor::AnchorAccount::vouch(
            member.secret(),
            chain_id,
            address,
            recipient,
        )
    });
    let backend = EthereumAnchor::new(ethereum)
        .map_err(|e| failed(e.to_string()))?
        .with_sender(signer, voucher);
    let anchoring = Anchoring {
        backend: Arc::new(backend),
        every_epochs: anchor.every_epochs.max(1),
        confirmations: anchor.confirmations,
        account: Arc::default(),
        metrics: crate::anchoring::AnchorMetrics::default(),
    };
    metrics.register_anchoring(&anchoring.metrics);
    tracing::info!(rpc = %shown, account = ?address, "anchoring the timeline in Ethereum");
    Ok(anchoring)
}
