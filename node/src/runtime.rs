//! Starting and stopping a node: store, identity, network task, event loop and HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::artifacts::ArtifactStore;
use crate::config::{Identity, NodeConfig};
use crate::leader::RoundConfig;
use crate::net::{self, NetConfig};
use crate::node::{Anchoring, NodeCore};
use crate::rules::ProjectRules;
use crate::store::Store;
use crate::witness::Witness;
use chainiac_anchor::{EthereumAnchor, EthereumConfig};

/// How long a shutdown waits for the node's tasks to let go of the store.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(30);

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The configuration (file plus overrides).
    pub config: NodeConfig,
    /// Signing-round timeouts.
    pub rounds: RoundConfig,
    /// Test hook: this node's witness answers challenges with wrong shares.
    pub faulty_witness: bool,
}

impl NodeOptions {
    /// Options with default rounds and an honest witness.
    pub fn new(config: NodeConfig) -> Self {
        Self {
            config,
            rounds: RoundConfig::default(),
            faulty_witness: false,
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
    verifier_task: JoinHandle<()>,
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
    Network(String),
    /// Build verification is on but cannot run here.
    #[error("cannot run as a build verifier: {0}")]
    Verifier(#[from] crate::builder::BuildError),
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
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Network(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let store = Store::open(&config.data_dir.join("db"))?;
        let artifacts = ArtifactStore::open(&config.data_dir.join("artifacts"))
            .map_err(|e| StartError::Network(e.to_string()))?;
        let net_config = NetConfig {
            listen: parse_addresses(&config.network.listen)?,
            bootstrap: parse_addresses(&config.network.bootstrap)?,
            request_timeout: Duration::from_secs(30),
        };
        let (net, events, peer_id) =
            net::spawn(&identity, &net_config).map_err(StartError::Network)?;
        let witness = Witness::new(
            identity.clone(),
            store.clone(),
            Arc::new(ProjectRules::default()),
            options.faulty_witness,
        );
        let mut core = NodeCore::new(identity, store, witness, net, options.rounds, artifacts);
        if let Some(rpc) = &config.anchor.ethereum_rpc {
            let mut ethereum = EthereumConfig::new(rpc);
            ethereum.from.clone_from(&config.anchor.from);
            let backend = EthereumAnchor::new(ethereum).map_err(|e| StartError::Address {
                address: rpc.clone(),
                reason: e.to_string(),
            })?;
            core.anchoring = Some(Anchoring {
                backend: Arc::new(backend),
                every_epochs: config.anchor.every_epochs.max(1),
                confirmations: config.anchor.confirmations,
            });
            tracing::info!(%rpc, "anchoring the timeline in Ethereum");
        }
        if config.verifier.enabled {
            let mut sandbox = crate::builder::Sandbox::system()?;
            if config.verifier.rust_toolchain {
                sandbox = sandbox.with_host_rust();
            }
            core.verifier = Some(Arc::new(crate::verifier::Verifier::new(
                crate::verifier::VerifierSettings {
                    sandbox,
                    limits: crate::builder::BuildLimits {
                        time: Duration::from_secs(config.verifier.timeout_seconds),
                        ..crate::builder::BuildLimits::default()
                    },
                    concurrency: config.verifier.concurrency,
                    work_dir: config.data_dir.join("builds"),
                },
            )));
            tracing::info!(
                concurrency = config.verifier.concurrency,
                "rebuilding releases as a build verifier"
            );
        }
        let core = Arc::new(core);
        let events_task = tokio::spawn(core.clone().run_events(events));
        let epochs_task = tokio::spawn(crate::epochs::run(core.clone()));
        let verifier_task = tokio::spawn(crate::verifier::run(core.clone()));
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
        let router = crate::api::router(core.clone());
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
            verifier_task,
            api_task,
            api_stop,
        })
    }

    /// The libp2p addresses the node listens on, once the first is known.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        for _ in 0..500 {
            let info = self.core.net.info().await;
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
        self.verifier_task.abort();
        let _ = self.verifier_task.await;
        self.core.net.shutdown().await;
        let _ = self.events_task.await;
        // Tasks spawned for requests, sync and anchoring end once the network is gone (a round
        // in flight within its timeouts); the store closes when the last of them drops its
        // handle, which a restart in the same process needs.
        let core = self.core;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_PATIENCE;
        while Arc::strong_count(&core) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&core) > 1 {
            tracing::warn!(
                "tasks still hold the node after {} s; the store closes when they end",
                SHUTDOWN_PATIENCE.as_secs()
            );
        }
        drop(core);
    }
}
