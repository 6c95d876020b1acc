//! The node's configuration file and its identity (key pair with proof of possession; the key
//! file format is `chainiac_api::keyfile`, shared with developers' and verifiers' keys).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use chainiac_api::keyfile::{Identity, IdentityError, PublicIdentity};

/// Default libp2p port (TCP and QUIC).
pub const DEFAULT_P2P_PORT: u16 = 7400;
/// Default HTTP API port, on loopback.
pub const DEFAULT_API_PORT: u16 = 7480;

/// Everything `chainiac node run` needs, as read from the TOML file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory of the database.
    pub data_dir: PathBuf,
    /// The secret key file.
    pub key_file: PathBuf,
    /// Peer-to-peer settings.
    pub network: NetworkConfig,
    /// HTTP API settings.
    pub api: ApiConfig,
    /// Ethereum anchoring of the timeline (off unless `ethereum_rpc` is set).
    #[serde(default)]
    pub anchor: AnchorConfig,
    /// Build verification (off unless `enabled`).
    #[serde(default)]
    pub verifier: VerifierConfig,
    /// Which new chains this node's witness cosigns (whose creators it admits).
    #[serde(default)]
    pub admission: AdmissionConfig,
    /// Release artifacts stored by this node.
    #[serde(default)]
    pub artifacts: ArtifactsConfig,
}

/// Artifact storage: how long an uploaded artifact no logged release names is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// Hours an artifact that no stored release names is kept after it was written (uploaded
    /// for a release that was refused, or never sent); logged releases' artifacts stay.
    #[serde(default = "default_keep_unreferenced_hours")]
    pub keep_unreferenced_hours: u64,
}

fn default_keep_unreferenced_hours() -> u64 {
    24
}

impl Default for ArtifactsConfig {
    fn default() -> Self {
        Self {
            keep_unreferenced_hours: default_keep_unreferenced_hours(),
        }
    }
}

/// Whom a node admits as creator of a new chain it is asked to witness: the operator's policy,
/// applied before the node's witness cosigns a genesis (docs/protocol.md §13.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionConfig {
    /// `open`: any creator, up to `quota` chains each; `allow-list`: only `creators`.
    #[serde(default)]
    pub mode: AdmissionMode,
    /// Chains one creator key may create on this node in `open` mode (listed creators have
    /// no quota).
    #[serde(default = "default_quota")]
    pub quota: u64,
    /// Creator keys (hex) admitted in either mode without a quota: a project's root keys, a
    /// timeline creator's key, a data chain's owner keys.
    #[serde(default)]
    pub creators: Vec<String>,
    /// Most bytes of blocks one chain of an unlisted creator may take on this node, in MiB.
    #[serde(default = "default_max_chain_mib")]
    pub max_chain_mib: u64,
    /// Most bytes of blocks all the chains of one unlisted creator may take, in MiB.
    #[serde(default = "default_max_creator_mib")]
    pub max_creator_mib: u64,
    /// Most chains a timeline of an unlisted creator may record for this node to build its
    /// tree (witness it, keep its blocks, prove inclusion in it).
    #[serde(default = "default_max_timeline_chains")]
    pub max_timeline_chains: u64,
}

fn default_max_timeline_chains() -> u64 {
    100_000
}

fn default_max_chain_mib() -> u64 {
    1024
}

fn default_max_creator_mib() -> u64 {
    4096
}

/// The admission modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdmissionMode {
    /// Any creator, within a per-creator quota.
    #[default]
    Open,
    /// Only the listed creators.
    AllowList,
}

fn default_quota() -> u64 {
    16
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            mode: AdmissionMode::Open,
            quota: default_quota(),
            creators: Vec::new(),
            max_chain_mib: default_max_chain_mib(),
            max_creator_mib: default_max_creator_mib(),
            max_timeline_chains: default_max_timeline_chains(),
        }
    }
}

/// Build-verifier settings: the node rebuilds releases it is asked about, in a sandbox, and
/// signs attestations with its node key (docs/verifiers.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierConfig {
    /// Whether this node rebuilds releases.
    #[serde(default)]
    pub enabled: bool,
    /// Builds run at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Time limit of one build, in seconds.
    #[serde(default = "default_build_seconds")]
    pub timeout_seconds: u64,
    /// Make the host's Rust toolchain visible (read-only) in the sandbox.
    #[serde(default = "default_true")]
    pub rust_toolchain: bool,
    /// Most processes and threads one build may run at once.
    #[serde(default = "default_build_processes")]
    pub max_processes: u64,
    /// Most disk space one build may use (its directory, `/tmp` and log), in MiB.
    #[serde(default = "default_build_disk_mib")]
    pub disk_quota_mib: u64,
}

fn default_build_processes() -> u64 {
    1024
}

fn default_build_disk_mib() -> u64 {
    20 * 1024
}

fn default_concurrency() -> usize {
    1
}

fn default_build_seconds() -> u64 {
    900
}

fn default_true() -> bool {
    true
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            concurrency: default_concurrency(),
            timeout_seconds: default_build_seconds(),
            rust_toolchain: true,
            max_processes: default_build_processes(),
            disk_quota_mib: default_build_disk_mib(),
        }
    }
}

/// Ethereum anchoring settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorConfig {
    /// JSON-RPC endpoint of an Ethereum node (`http://...` or `https://...`); anchoring is off
    /// without it.
    #[serde(default)]
    pub ethereum_rpc: Option<String>,
    /// More endpoints (other providers) that must agree an anchor's block is canonical.
    #[serde(default)]
    pub check_rpcs: Vec<String>,
    /// The Ethereum chain id the endpoints must serve (1: mainnet); unchecked if unset.
    #[serde(default)]
    pub chain_id: Option<u64>,
    /// The node's Ethereum key (`chainiac anchor key`): an encrypted keystore or a 0600 file.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A file holding the keystore's password (else `CHAINIAC_ANCHOR_KEY_PASSWORD`).
    #[serde(default)]
    pub key_password_file: Option<PathBuf>,
    /// Extra certificate authorities (PEM) to trust for `https` endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Anchor through this event contract (`chainiac anchor deploy`), so that anchors can be
    /// found by log queries; default: a transaction to the account itself.
    #[serde(default)]
    pub contract: Option<String>,
    /// Highest max fee per gas ever offered, gwei: above it anchoring waits.
    #[serde(default = "default_max_fee_gwei")]
    pub max_fee_gwei: u64,
    /// Priority fee (tip) offered, gwei.
    #[serde(default = "default_priority_fee_gwei")]
    pub priority_fee_gwei: u64,
    /// Most gwei spent on anchoring in any 24 hours.
    #[serde(default = "default_daily_cap_gwei")]
    pub daily_cap_gwei: u64,
    /// Seconds before a transaction not mined is replaced with higher fees (same nonce).
    #[serde(default = "default_replace_after_seconds")]
    pub replace_after_seconds: u64,
    /// Seconds one JSON-RPC request may take.
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Anchor every N-th timeline epoch this node leads.
    #[serde(default = "default_every_epochs")]
    pub every_epochs: u64,
    /// Blocks after which an anchor is final; younger ones are re-checked for reorganisations.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
}

fn default_every_epochs() -> u64 {
    1
}

fn default_confirmations() -> u64 {
    2
}

fn default_max_fee_gwei() -> u64 {
    50
}

fn default_priority_fee_gwei() -> u64 {
    1
}

fn default_daily_cap_gwei() -> u64 {
    50_000_000
}

fn default_replace_after_seconds() -> u64 {
    120
}

fn default_request_timeout_seconds() -> u64 {
    30
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self {
            ethereum_rpc: None,
            check_rpcs: Vec::new(),
            chain_id: None,
            key_file: None,
            key_password_file: None,
            ca_file: None,
            contract: None,
            max_fee_gwei: default_max_fee_gwei(),
            priority_fee_gwei: default_priority_fee_gwei(),
            daily_cap_gwei: default_daily_cap_gwei(),
            replace_after_seconds: default_replace_after_seconds(),
            request_timeout_seconds: default_request_timeout_seconds(),
            every_epochs: default_every_epochs(),
            confirmations: default_confirmations(),
        }
    }
}

/// Peer-to-peer settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// libp2p multiaddresses to listen on.
    pub listen: Vec<String>,
    /// Peers to contact at start, as multiaddresses ending in `/p2p/PEER_ID`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Every this many seconds the node compares its chain heads with two random peers and
    /// syncs what it missed (anti-entropy).
    #[serde(default = "default_anti_entropy_seconds")]
    pub anti_entropy_seconds: u64,
}

fn default_anti_entropy_seconds() -> u64 {
    5
}

/// HTTP API settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the HTTP JSON API and the metrics endpoint.
    pub listen: SocketAddr,
    /// The bearer token every write request must carry (created on first run if missing).
    /// Default: `api.token` next to the key file.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Host names requests may be addressed to besides `localhost` and IP addresses (a
    /// request naming any other host is refused: DNS rebinding from a web page).
    #[serde(default)]
    pub hosts: Vec<String>,
}

impl ApiConfig {
    /// The token file in force.
    pub fn token_path(&self, key_file: &Path) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| key_file.with_file_name("api.token"))
    }
}

/// Configuration errors, each saying which file and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path} is not a valid chainiac configuration: {message}")]
    Invalid { path: PathBuf, message: String },
    /// `node init` would overwrite an existing node.
    #[error(
        "{path} already exists: this directory already holds a node; choose another directory or remove it first"
    )]
    AlreadyInitialised { path: PathBuf },
    /// The key file is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl NodeConfig {
    /// The defaults for a node living in `dir`.
    pub fn defaults_for(dir: &Path) -> Self {
        Self {
            data_dir: dir.join("data"),
            key_file: dir.join("node.key"),
            network: NetworkConfig {
                listen: vec![
                    format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
                    format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
                ],
                bootstrap: Vec::new(),
                anti_entropy_seconds: default_anti_entropy_seconds(),
            },
            anchor: AnchorConfig::default(),
            verifier: VerifierConfig::default(),
            admission: AdmissionConfig::default(),
            artifacts: ArtifactsConfig::default(),
            api: ApiConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)),
                token_file: Some(dir.join("api.token")),
                hosts: Vec::new(),
            },
        }
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })
    }

    /// Parses the TOML text of a configuration.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|error| error.to_string())?;
        if config.network.listen.is_empty() {
            return Err("network.listen needs at least one address".into());
        }
        crate::admission::Admission::from_config(&config.admission)?;
        Ok(config)
    }

    /// The configuration as a commented TOML file.
    pub fn to_commented_toml(&self) -> String {
        let quote = |value: &str| toml::Value::String(value.to_owned()).to_string();
        let list = |values: &[String]| {
            values
                .iter()
                .map(|v| quote(v))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "# chainiac node configuration.\n\
             # Flags and CHAINIAC_* environment variables override these settings.\n\
             \n\
             # Directory of the node's database (RocksDB).\n\
             data_dir = {data_dir}\n\
             \n\
             # The node's secret key (hex seed). Keep it private and backed up: it is the\n\
             # node's identity in witness rosters.\n\
             key_file = {key_file}\n\
             \n\
             [network]\n\
             # libp2p addresses to listen on (TCP and QUIC).\n\
             listen = [{listen}]\n\
             # Peers to contact at start, e.g. \"/ip4/203.0.113.7/tcp/7400/p2p/12D3KooW...\".\n\
             bootstrap = [{bootstrap}]\n\
             # Every this many seconds, compare chain heads with two random peers and sync\n\
             # what gossip missed.\n\
             anti_entropy_seconds = {anti_entropy}\n\
             \n\
             [api]\n\
             # HTTP JSON API and Prometheus metrics. Keep it on 127.0.0.1 unless a reverse\n\
             # proxy with access control sits in front of it.\n\
             listen = {api}\n\
             # Writes (creating chains, leading appends, uploads) need this bearer token.\n\
             {token_file}\
             # Host names requests may name besides localhost and IP addresses.\n\
             hosts = [{hosts}]\n\
             \n\
             [anchor]\n\
             # Ethereum anchoring of the timeline: off unless ethereum_rpc is set, e.g.\n\
             # ethereum_rpc = \"https://mainnet.example/v3/KEY\", with the node's own key\n\
             # (`chainiac anchor key`) in key_file (docs/operator.md, \"Anchoring\").\n\
             {rpc}\
             max_fee_gwei = {max_fee}\n\
             priority_fee_gwei = {priority_fee}\n\
             daily_cap_gwei = {daily_cap}\n\
             replace_after_seconds = {replace_after}\n\
             every_epochs = {every}\n\
             confirmations = {confirmations}\n\
             \n\
             [verifier]\n\
             # Rebuild releases in a bubblewrap sandbox and attest them with this node's key\n\
             # (docs/verifiers.md). Needs bubblewrap and prlimit, and a process limit: a\n\
             # node running as root needs a writable pids cgroup (docs/operator.md).\n\
             enabled = {verifier}\n\
             concurrency = {concurrency}\n\
             timeout_seconds = {build_seconds}\n\
             rust_toolchain = {rust}\n\
             max_processes = {processes}\n\
             disk_quota_mib = {disk}\n\
             \n\
             [admission]\n\
             # Which new chains this node witnesses. \"open\": any creator key, at most\n\
             # `quota` chains each; \"allow-list\": only the keys in `creators` (project root\n\
             # keys, timeline creators, data-chain owners). Listed creators have no quota.\n\
             mode = {mode}\n\
             quota = {quota}\n\
             creators = [{creators}]\n\
             # Disk one chain, and all the chains of one creator, may take here (MiB); listed\n\
             # creators have no quota. Blocks beyond are neither cosigned nor kept.\n\
             max_chain_mib = {max_chain}\n\
             max_creator_mib = {max_creator}\n\
             # Chains a timeline of an unlisted creator may record (its tree is kept in memory).\n\
             max_timeline_chains = {max_timeline_chains}\n\
             \n\
             [artifacts]\n\
             # Hours an uploaded artifact that no logged release names (its release was\n\
             # refused, or never sent) is kept before it is removed.\n\
             keep_unreferenced_hours = {keep_unreferenced}\n",
            data_dir = quote(&self.data_dir.display().to_string()),
            key_file = quote(&self.key_file.display().to_string()),
            listen = list(&self.network.listen),
            bootstrap = list(&self.network.bootstrap),
            anti_entropy = self.network.anti_entropy_seconds,
            api = quote(&self.api.listen.to_string()),
            token_file = match &self.api.token_file {
                Some(path) => format!("token_file = {}\n", quote(&path.display().to_string())),
                None => String::new(),
            },
            hosts = list(&self.api.hosts),
            rpc = {
                let anchor = &self.anchor;
                let mut lines = String::new();
                if let Some(rpc) = &anchor.ethereum_rpc {
                    lines.push_str(&format!("ethereum_rpc = {}\n", quote(rpc)));
                }
                if let Some(chain_id) = anchor.chain_id {
                    lines.push_str(&format!("chain_id = {chain_id}\n"));
                }
                if let Some(contract) = &anchor.contract {
                    lines.push_str(&format!("contract = {}\n", quote(contract)));
                }
                if !anchor.check_rpcs.is_empty() {
                    lines.push_str(&format!("check_rpcs = [{}]\n", list(&anchor.check_rpcs)));
                }
                for (name, path) in [
                    ("key_file", &anchor.key_file),
                    ("key_password_file", &anchor.key_password_file),
                    ("ca_file", &anchor.ca_file),
                ] {
                    if let Some(path) = path {
                        lines.push_str(&format!(
                            "{name} = {}\n",
                            quote(&path.display().to_string())
                        ));
                    }
                }
                lines
            },
            max_fee = self.anchor.max_fee_gwei,
            priority_fee = self.anchor.priority_fee_gwei,
            daily_cap = self.anchor.daily_cap_gwei,
            replace_after = self.anchor.replace_after_seconds,
            every = self.anchor.every_epochs,
            confirmations = self.anchor.confirmations,
            verifier = self.verifier.enabled,
            concurrency = self.verifier.concurrency,
            build_seconds = self.verifier.timeout_seconds,
            rust = self.verifier.rust_toolchain,
            processes = self.verifier.max_processes,
            disk = self.verifier.disk_quota_mib,
            mode = quote(match self.admission.mode {
                AdmissionMode::Open => "open",
                AdmissionMode::AllowList => "allow-list",
            }),
            quota = self.admission.quota,
            creators = list(&self.admission.creators),
            max_chain = self.admission.max_chain_mib,
            max_creator = self.admission.max_creator_mib,
            max_timeline_chains = self.admission.max_timeline_chains,
            keep_unreferenced = self.artifacts.keep_unreferenced_hours,
        )
    }
}

/// What `chainiac node init` created.
#[derive(Debug)]
pub struct InitializedNode {
    /// Path of the configuration file.
    pub config_path: PathBuf,
    /// The configuration written.
    pub config: NodeConfig,
    /// The node's public key and proof of possession.
    pub public: PublicIdentity,
}

/// Creates a node in `dir`: a fresh key pair (secret key file readable only by its owner, public
/// key and proof of possession in `node.pub.json`) and a commented `config.toml` with defaults.
/// Refuses to touch a directory that already holds a node.
pub fn init_node(dir: &Path) -> Result<InitializedNode, ConfigError> {
    let config = NodeConfig::defaults_for(dir);
    let config_path = dir.join("config.toml");
    for existing in [&config_path, &config.key_file] {
        if existing.exists() {
            return Err(ConfigError::AlreadyInitialised {
                path: existing.clone(),
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Io {
        path: dir.into(),
        source,
    })?;
    let identity = Identity::generate();
    identity.save(&config.key_file)?;
    chainiac_api::keyfile::ApiToken::load_or_create(&config.api.token_path(&config.key_file))?;
    let public = identity.public();
    let public_path = dir.join("node.pub.json");
    std::fs::write(&public_path, public.to_json()).map_err(|source| ConfigError::Io {
        path: public_path.clone(),
        source,
    })?;
    std::fs::write(&config_path, config.to_commented_toml()).map_err(|source| ConfigError::Io {
        path: config_path.clone(),
        source,
    })?;
    Ok(InitializedNode {
        config_path,
        config,
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_config_that_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = init_node(&dir.path().join("n1")).expect("init");
        let loaded = NodeConfig::load(&node.config_path).expect("load");
        assert_eq!(loaded, node.config);
        assert_eq!(loaded.api.listen.ip().to_string(), "127.0.0.1");
        let text = std::fs::read_to_string(&node.config_path).expect("read");
        assert!(text.contains("# Peers to contact at start"));
        let identity = Identity::load(&loaded.key_file).expect("key loads");
        assert_eq!(identity.public(), node.public);
        node.public.check().expect("proof of possession verifies");
    }

    #[test]
    fn init_refuses_to_overwrite_a_node() {
        let dir = tempfile::tempdir().expect("tempdir");
        init_node(dir.path()).expect("init");
        let error = init_node(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("already holds a node"), "{error}");
    }

    #[test]
    fn invalid_configs_say_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = NodeConfig::defaults_for(dir.path()).to_commented_toml();
        let typo = defaults.replace("bootstrap =", "bootstrapp =");
        assert!(
            NodeConfig::parse(&typo)
                .err()
                .unwrap_or_default()
                .contains("bootstrapp")
        );
        let bad_api = defaults.replace("127.0.0.1:7480", "localhost");
        assert!(NodeConfig::parse(&bad_api).is_err());
        let path = dir.path().join("missing.toml");
        let error = NodeConfig::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("missing.toml"), "{error}");
    }
}
