//! What developers do: create a project (keys, genesis policy, policy and release chains), change
//! its policy, prepare a release, sign it offline, and publish it through any node.
//!
//! A project directory holds `project.json` (name, chain ids, nodes) and `keys/` (one key file
//! per root and developer key, readable only by their owner). In real life each developer keeps
//! their own key; here they live together so a testnet can be driven from one place.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chainiac_node::config::Identity;
use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::{KeySignature, PublicKey};
use chainiac_protocol::policy::{Policy, SignedPolicy};
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::{
    ArtifactRef, BinaryArtifact, BuildAttestation, BuildRecipe, Release, ReleaseManifest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::{get_json, post_json, put_bytes, with_failover};

/// `project.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ProjectFile {
    /// Project name.
    pub(crate) name: String,
    /// Policy chain id (hex).
    pub(crate) policy_chain: String,
    /// Release chain id (hex): what clients pin.
    pub(crate) release_chain: String,
    /// Node API addresses used by default.
    pub(crate) nodes: Vec<SocketAddr>,
}

impl ProjectFile {
    /// Loads `DIR/project.json`.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("project.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}; is {} a project directory (created by `chainiac project create`)?",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join("project.json");
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The policy chain id.
    pub(crate) fn policy_chain(&self) -> anyhow::Result<Hash> {
        Hash::from_hex(&self.policy_chain).context("project.json: policy_chain")
    }

    /// The release chain id.
    pub(crate) fn release_chain(&self) -> anyhow::Result<Hash> {
        Hash::from_hex(&self.release_chain).context("project.json: release_chain")
    }

    /// The nodes to use: those given, or those of the project file.
    pub(crate) fn nodes_or(&self, given: &[SocketAddr]) -> Vec<SocketAddr> {
        if given.is_empty() {
            self.nodes.clone()
        } else {
            given.to_vec()
        }
    }
}

/// Where a key of the project lives.
pub(crate) fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("keys").join(format!("{name}.key"))
}

/// Loads a key of the project by name (`root-1`, `dev-2`) or by file path.
pub(crate) fn load_key(dir: &Path, name_or_path: &str) -> anyhow::Result<Identity> {
    let path = if name_or_path.contains('/') || name_or_path.ends_with(".key") {
        PathBuf::from(name_or_path)
    } else {
        key_path(dir, name_or_path)
    };
    Identity::load(&path).with_context(|| format!("cannot load key {}", path.display()))
}

/// Reads a roster file: a JSON list of roster entries as `node init` writes them.
pub(crate) fn read_roster(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the roster file {}", path.display()))?;
    let roster: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if roster.as_array().is_none_or(Vec::is_empty) {
        bail!(
            "{} must be a non-empty JSON list of {{\"public_key\", \"proof_of_possession\"}} entries (the node.pub.json of each witness)",
            path.display()
        );
    }
    Ok(roster)
}

/// Options of `project create`.
#[derive(Debug)]
pub(crate) struct CreateOptions<'a> {
    /// Project name.
    pub(crate) name: &'a str,
    /// Project directory.
    pub(crate) dir: &'a Path,
    /// Number of developer keys.
    pub(crate) developers: u32,
    /// Developer signatures a release needs.
    pub(crate) threshold: u32,
    /// Number of root keys.
    pub(crate) roots: u32,
    /// Root signatures a root change needs.
    pub(crate) root_threshold: u32,
    /// Witness roster file.
    pub(crate) roster: &'a Path,
    /// Node APIs.
    pub(crate) nodes: &'a [SocketAddr],
    /// Build verifiers whose attestations count.
    pub(crate) verifiers: &'a [PublicKey],
    /// Matching attestations each release needs (k).
    pub(crate) attestations: u32,
}

fn chain_head(node: SocketAddr, chain: &Hash) -> Result<Value, super::http::CallError> {
    get_json(node, &format!("/chains/{}", chain.to_hex()))
}

/// Creates the project's keys, its genesis policy, and its policy and release chains.
pub(crate) fn create_project(options: &CreateOptions<'_>) -> anyhow::Result<ProjectFile> {
    let dir = options.dir;
    if dir.join("project.json").exists() {
        bail!(
            "{} already holds a project; choose another directory",
            dir.display()
        );
    }
    let roster = read_roster(options.roster)?;
    std::fs::create_dir_all(dir.join("keys"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let make_keys = |prefix: &str, count: u32| -> anyhow::Result<Vec<PublicKey>> {
        (1..=count)
            .map(|i| {
                let identity = Identity::generate();
                let path = key_path(dir, &format!("{prefix}-{i}"));
                identity
                    .save(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(identity.public().key)
            })
            .collect()
    };
    let root_keys = make_keys("root", options.roots)?;
    let developer_keys = make_keys("dev", options.developers)?;
    let policy = Policy {
        project: options.name.to_owned(),
        sequence: 0,
        previous: None,
        root_keys,
        root_threshold: options.root_threshold,
        developer_keys,
        developer_threshold: options.threshold,
        build_verifiers: options.verifiers.to_vec(),
        attestations_required: options.attestations,
    };
    policy.check().context("invalid project settings")?;
    let digest = policy.digest();
    let signatures = (1..=options.root_threshold)
        .map(|i| {
            Ok(KeySignature::sign(
                load_key(dir, &format!("root-{i}"))?.secret(),
                &digest,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let genesis = ChainGenesis::Policy(SignedPolicy { policy, signatures });
    let policy_answer = with_failover(options.nodes, |node| {
        post_json(
            node,
            "/chains",
            &json!({"roster": roster, "payload": hex::encode(genesis.to_bytes())}),
        )
    })
    .context("cannot create the policy chain")?;
    let policy_chain = policy_answer["chain_id"]
        .as_str()
        .context("the node did not return a chain id")?
        .to_owned();
    let release_genesis = ChainGenesis::Release {
        project: options.name.to_owned(),
        policy_chain: Hash::from_hex(&policy_chain).context("chain id from the node")?,
    };
    let release_answer = with_failover(options.nodes, |node| {
        post_json(
            node,
            "/chains",
            &json!({"roster": roster, "payload": hex::encode(release_genesis.to_bytes())}),
        )
    })
    .context("cannot create the release chain")?;
    let project = ProjectFile {
        name: options.name.to_owned(),
        policy_chain,
        release_chain: release_answer["chain_id"]
            .as_str()
            .context("the node did not return a chain id")?
            .to_owned(),
        nodes: options.nodes.to_vec(),
    };
    project.save(dir)?;
    Ok(project)
}

/// The policy in force as a node reports it: the policy and its block hash.
pub(crate) fn current_policy(
    nodes: &[SocketAddr],
    project: &ProjectFile,
) -> anyhow::Result<(SignedPolicy, Hash, u64)> {
    let chain = project.policy_chain()?;
    let head = with_failover(nodes, |node| chain_head(node, &chain))
        .context("cannot read the policy chain")?;
    let payload = hex::decode(head["head"]["payload"].as_str().unwrap_or_default())
        .context("policy payload")?;
    let index = head["index"].as_u64().context("policy head index")?;
    let signed = chainiac_protocol::project::policy_of_block(index, &payload)
        .context("the policy chain's head is not a policy")?;
    let hash = Hash::from_hex(head["head"]["hash"].as_str().unwrap_or_default())
        .context("policy head hash")?;
    Ok((signed, hash, index))
}

/// Changes of `project policy`.
#[derive(Debug, Default)]
pub(crate) struct PolicyChange<'a> {
    /// Developer slots (1-based) that get a fresh key; the old key file is kept as `.retired`.
    pub(crate) rotate: &'a [u32],
    /// New developer threshold.
    pub(crate) threshold: Option<u32>,
    /// Keys that sign the change (names or paths); default: the first t current developers.
    pub(crate) sign_with: &'a [String],
    /// New witness roster for the policy chain.
    pub(crate) roster: Option<&'a Path>,
}

/// Appends a policy change to the project's policy chain.
pub(crate) fn change_policy(
    dir: &Path,
    nodes: &[SocketAddr],
    change: &PolicyChange<'_>,
) -> anyhow::Result<(Policy, u64)> {
    let project = ProjectFile::load(dir)?;
    let nodes = project.nodes_or(nodes);
    let (current, _, _) = current_policy(&nodes, &project)?;
    let old = current.policy;
    let mut new = old.clone();
    new.sequence += 1;
    new.previous = Some(old.digest());
    let mut fresh = Vec::new();
    for &slot in change.rotate {
        let index = slot
            .checked_sub(1)
            .filter(|&i| (i as usize) < new.developer_keys.len());
        let Some(index) = index else {
            bail!(
                "developer slot {slot} does not exist (the policy has {} developers)",
                new.developer_keys.len()
            );
        };
        let identity = Identity::generate();
        new.developer_keys[index as usize] = identity.public().key;
        fresh.push((slot, identity));
    }
    if let Some(threshold) = change.threshold {
        new.developer_threshold = threshold;
    }
    new.check().context("the new policy is invalid")?;
    let signers: Vec<String> = if change.sign_with.is_empty() {
        (1..=old.developer_threshold)
            .map(|i| format!("dev-{i}"))
            .collect()
    } else {
        change.sign_with.to_vec()
    };
    let digest = new.digest();
    let signatures = signers
        .iter()
        .map(|name| Ok(KeySignature::sign(load_key(dir, name)?.secret(), &digest)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let signed = SignedPolicy {
        policy: new.clone(),
        signatures,
    };
    // Check locally first: the witnesses would refuse for the same reason, less readably.
    signed
        .verify_change(&old)
        .context("the policy change would be refused")?;
    let mut body = json!({"payload": hex::encode(signed.to_bytes())});
    if let Some(roster) = change.roster {
        body["roster"] = read_roster(roster)?;
    }
    let chain = project.policy_chain()?;
    let answer = with_failover(&nodes, |node| {
        post_json(node, &format!("/chains/{}/blocks", chain.to_hex()), &body)
    })
    .context("the policy change was not logged")?;
    // Only now that the change is logged do the new keys replace the old files.
    for (slot, identity) in fresh {
        let path = key_path(dir, &format!("dev-{slot}"));
        let retired = path.with_extension(format!("key.retired-{}", new.sequence));
        std::fs::rename(&path, &retired)
            .with_context(|| format!("cannot retire {}", path.display()))?;
        identity
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok((new, answer["index"].as_u64().unwrap_or_default()))
}

/// A release being prepared: the manifest, the signatures collected so far, and where its
/// files are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Bundle {
    /// Canonical manifest encoding, hex.
    pub(crate) manifest: String,
    /// Developer signatures, hex of their canonical encoding.
    pub(crate) signatures: Vec<String>,
    /// Artifact hash (hex) -> file path.
    pub(crate) files: BTreeMap<String, PathBuf>,
    /// Build verifiers' attestations, hex of their canonical encoding.
    #[serde(default)]
    pub(crate) attestations: Vec<String>,
}

impl Bundle {
    /// Loads a bundle file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the release bundle {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a release bundle", path.display()))
    }

    /// Saves it.
    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The manifest.
    pub(crate) fn manifest(&self) -> anyhow::Result<ReleaseManifest> {
        ReleaseManifest::from_bytes(&hex::decode(&self.manifest).context("manifest: hex")?)
            .context("the bundle's manifest is invalid")
    }

    /// The build attestations.
    pub(crate) fn attestations(&self) -> anyhow::Result<Vec<BuildAttestation>> {
        self.attestations
            .iter()
            .map(|a| {
                BuildAttestation::from_bytes(&hex::decode(a).context("attestation: hex")?)
                    .context("invalid build attestation in the bundle")
            })
            .collect()
    }

    /// Adds (or replaces) the attestation of its verifier.
    pub(crate) fn add_attestation(&mut self, attestation: &BuildAttestation) -> anyhow::Result<()> {
        let mut attestations = self.attestations()?;
        attestations.retain(|a| a.verifier != attestation.verifier);
        attestations.push(attestation.clone());
        self.attestations = attestations
            .iter()
            .map(|a| hex::encode(a.to_bytes()))
            .collect();
        Ok(())
    }

    /// The signatures.
    pub(crate) fn signatures(&self) -> anyhow::Result<Vec<KeySignature>> {
        self.signatures
            .iter()
            .map(|s| {
                KeySignature::from_bytes(&hex::decode(s).context("signature: hex")?)
                    .context("invalid signature in the bundle")
            })
            .collect()
    }
}

/// Options of `release create`.
#[derive(Debug)]
pub(crate) struct ReleaseOptions<'a> {
    /// Version (semver).
    pub(crate) version: &'a str,
    /// Source archive.
    pub(crate) source: &'a Path,
    /// (platform, file) per binary.
    pub(crate) binaries: &'a [(String, PathBuf)],
    /// Build script.
    pub(crate) script: String,
    /// (platform, output path) per binary, as the recipe produces them.
    pub(crate) outputs: Vec<(String, String)>,
}

/// Prepares a release bundle for the next release of the project.
pub(crate) fn create_release(
    dir: &Path,
    nodes: &[SocketAddr],
    options: &ReleaseOptions<'_>,
) -> anyhow::Result<Bundle> {
    let project = ProjectFile::load(dir)?;
    let nodes = project.nodes_or(nodes);
    let (_, policy_block, _) = current_policy(&nodes, &project)?;
    let chain = project.release_chain()?;
    let head = with_failover(&nodes, |node| chain_head(node, &chain))
        .context("cannot read the release chain")?;
    let index = head["index"].as_u64().context("release head index")?;
    let sequence = if index == 0 {
        1
    } else {
        let payload = hex::decode(head["head"]["payload"].as_str().unwrap_or_default())
            .context("release payload")?;
        Release::from_bytes(&payload)
            .context("the release chain's head is not a release")?
            .manifest
            .sequence
            + 1
    };
    let mut files = BTreeMap::new();
    let mut reference = |path: &Path| -> anyhow::Result<ArtifactRef> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "artifact".into());
        let artifact = ArtifactRef::of(&name, &bytes);
        files.insert(artifact.hash.to_hex(), path.to_path_buf());
        Ok(artifact)
    };
    let source = reference(options.source)?;
    let binaries = options
        .binaries
        .iter()
        .map(|(platform, path)| {
            Ok(BinaryArtifact {
                platform: platform.clone(),
                artifact: reference(path)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let manifest = ReleaseManifest {
        project: project.name,
        version: options.version.to_owned(),
        sequence,
        source,
        recipe: BuildRecipe {
            script: options.script.clone(),
            outputs: options.outputs.clone(),
        },
        binaries,
        policy: policy_block,
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    manifest.check().context("invalid release")?;
    Ok(Bundle {
        manifest: hex::encode(manifest.to_bytes()),
        signatures: Vec::new(),
        files,
        attestations: Vec::new(),
    })
}

/// Adds `key`'s signature to the bundle (offline). Returns the signer's public key.
pub(crate) fn sign_release(bundle: &mut Bundle, key: &Identity) -> anyhow::Result<PublicKey> {
    let manifest = bundle.manifest()?;
    let signer = key.public().key;
    let mut signatures = bundle.signatures()?;
    if signatures.iter().any(|s| s.signer == signer) {
        bail!("this key already signed the bundle");
    }
    signatures.push(KeySignature::sign(key.secret(), &manifest.digest()));
    bundle.signatures = signatures
        .iter()
        .map(|s| hex::encode(s.to_bytes()))
        .collect();
    Ok(signer)
}

/// Uploads the bundle's artifacts to a node and asks it to lead the release's signing round;
/// another node takes over if it fails. Returns the release chain index.
pub(crate) fn publish_release(
    dir: &Path,
    nodes: &[SocketAddr],
    bundle: &Bundle,
    roster: Option<&Path>,
) -> anyhow::Result<u64> {
    let project = ProjectFile::load(dir)?;
    let nodes = project.nodes_or(nodes);
    let release = Release {
        manifest: bundle.manifest()?,
        signatures: bundle.signatures()?,
        attestations: bundle.attestations()?,
    };
    let mut body = json!({"payload": hex::encode(release.to_bytes())});
    if let Some(roster) = roster {
        body["roster"] = read_roster(roster)?;
    }
    let mut contents = Vec::new();
    for (hash, path) in &bundle.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if Hash::of_artifact(&bytes).to_hex() != *hash {
            bail!(
                "{} changed since the release was prepared (its hash is no longer {hash})",
                path.display()
            );
        }
        contents.push(bytes);
    }
    let chain = project.release_chain()?;
    let answer = with_failover(&nodes, |node| {
        for bytes in &contents {
            put_bytes(node, "/artifacts", bytes)?;
        }
        post_json(node, &format!("/chains/{}/blocks", chain.to_hex()), &body)
    })
    .context("the release was not logged")?;
    answer["index"]
        .as_u64()
        .context("the node did not return the block index")
}
