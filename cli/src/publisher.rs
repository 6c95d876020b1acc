//! What developers do, as a library a CI job can call: create a project (keys, genesis policy,
//! policy and release chains), change its policy, prepare a release, sign it offline, and
//! publish it through any node (another takes over when one fails).
//!
//! A project directory holds `project.json` (name, chain ids, nodes) and `keys/` (one key file
//! per root and developer key, readable only by their owner). In real life each developer keeps
//! their own key; here they live together so a testnet can be driven from one place.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chainiac_api::http::{FailoverError, Nodes, put_bytes};
use chainiac_api::keyfile::{ApiToken, Identity, IdentityError};
use chainiac_api::types::{
    AppendRequest, ArtifactStored, ChainHeadJson, ChainJson, CreateChainRequest, RosterJson,
    RosterMemberJson, TimelineJson, roster_from_json,
};
use chainiac_protocol::Hash;
use chainiac_protocol::cosi::Roster;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::keys::{KeySignature, PublicKey};
use chainiac_protocol::policy::{Policy, SignedPolicy};
use chainiac_protocol::project::ChainGenesis;
use chainiac_protocol::release::{
    ArtifactRef, BinaryArtifact, BuildAttestation, BuildRecipe, Release, ReleaseManifest,
};
use serde::{Deserialize, Serialize};

/// What went wrong for a publisher; each says which file, key or node, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path} is not {what}: {detail}")]
    Malformed {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    /// A key file.
    #[error(transparent)]
    Key(#[from] IdentityError),
    /// The request breaks a rule; the text says which and what to do.
    #[error("{0}")]
    Invalid(String),
    /// A protocol object does not check out.
    #[error("{what}: {source}")]
    Protocol {
        what: &'static str,
        source: chainiac_protocol::Error,
    },
    /// No node did it.
    #[error("{what}: {source}")]
    Nodes {
        what: &'static str,
        source: FailoverError,
    },
}

type Result<T, E = PublisherError> = std::result::Result<T, E>;

fn protocol(what: &'static str) -> impl Fn(chainiac_protocol::Error) -> PublisherError {
    move |source| PublisherError::Protocol { what, source }
}

fn nodes(what: &'static str) -> impl Fn(FailoverError) -> PublisherError {
    move |source| PublisherError::Nodes { what, source }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| PublisherError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| PublisherError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| PublisherError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn hex_field<T: Decode>(text: &str, what: &'static str) -> Result<T> {
    let bytes =
        hex::decode(text).map_err(|_| PublisherError::Invalid(format!("{what}: not hex")))?;
    T::from_bytes(&bytes).map_err(protocol(what))
}

/// `project.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProjectFile {
    /// Project name.
    pub name: String,
    /// Policy chain id (hex).
    pub policy_chain: String,
    /// Release chain id (hex): what clients pin.
    pub release_chain: String,
    /// Node API addresses used by default.
    pub nodes: Vec<SocketAddr>,
    /// The API token file those nodes' writes need, if one was given at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token_file: Option<PathBuf>,
}

impl ProjectFile {
    /// Loads `DIR/project.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("project.json");
        let text = std::fs::read_to_string(&path).map_err(|_| {
            PublisherError::Invalid(format!(
                "cannot read {}; is {} a project directory (created by `chainiac project create`)?",
                path.display(),
                dir.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| PublisherError::Malformed {
            path,
            what: "a project file",
            detail: e.to_string(),
        })
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| PublisherError::Invalid(e.to_string()))?;
        write(&dir.join("project.json"), text)
    }

    /// The policy chain id.
    pub fn policy_chain(&self) -> Result<Hash> {
        Hash::from_hex(&self.policy_chain).map_err(protocol("project.json: policy_chain"))
    }

    /// The nodes to use: those given (with their token), or the project's (with its token file).
    pub fn nodes(&self, given: &Nodes) -> Result<Nodes> {
        let nodes = given.or(&self.nodes);
        if nodes.token().is_some() {
            return Ok(nodes);
        }
        let token = self
            .api_token_file
            .as_deref()
            .map(ApiToken::load)
            .transpose()?;
        Ok(nodes.with_token(token))
    }

    /// The release chain id.
    pub fn release_chain(&self) -> Result<Hash> {
        Hash::from_hex(&self.release_chain).map_err(protocol("project.json: release_chain"))
    }
}

/// Where a key of the project lives.
pub fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("keys").join(format!("{name}.key"))
}

/// Loads a key of the project by name (`root-1`, `dev-2`) or by file path (a chainiac key file
/// or an unencrypted OpenSSH Ed25519 key).
pub fn load_key(dir: &Path, name_or_path: &str) -> Result<Identity> {
    load_key_with(dir, name_or_path, &|_| None)
}

/// [`load_key`], asking `passphrase` for a passphrase-protected OpenSSH key.
pub fn load_key_with(
    dir: &Path,
    name_or_path: &str,
    passphrase: chainiac_api::keyfile::PassphraseSource<'_>,
) -> Result<Identity> {
    let path = if name_or_path.contains('/')
        || name_or_path.ends_with(".key")
        || Path::new(name_or_path).is_file()
    {
        PathBuf::from(name_or_path)
    } else {
        key_path(dir, name_or_path)
    };
    Ok(Identity::load_with(&path, passphrase)?)
}

/// The roster `members` form with the default threshold (what a node makes of them).
fn roster_of(members: &[RosterMemberJson], path: &Path) -> Result<Roster> {
    roster_from_json(members, None).map_err(|e| PublisherError::Malformed {
        path: path.to_path_buf(),
        what: "a valid roster",
        detail: e.to_string(),
    })
}

/// Reads a roster file: a JSON list of roster entries as `node init` writes them.
pub fn read_roster(path: &Path) -> Result<Vec<RosterMemberJson>> {
    let text = read_text(path)?;
    let malformed = |detail: String| PublisherError::Malformed {
        path: path.to_path_buf(),
        what: "a roster file",
        detail,
    };
    let roster: Vec<RosterMemberJson> =
        serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    if roster.is_empty() {
        return Err(malformed(
            "it must be a non-empty JSON list of {\"public_key\", \"proof_of_possession\"} entries (the node.pub.json of each witness)".into(),
        ));
    }
    Ok(roster)
}

/// Options of `project create`.
#[derive(Debug)]
pub struct CreateOptions<'a> {
    /// Project name.
    pub name: &'a str,
    /// Project directory.
    pub dir: &'a Path,
    /// Number of developer keys to create (when `developer_keys` is empty).
    pub developers: u32,
    /// Developer keys the developers already have (their OpenSSH Ed25519 keys, say), recorded
    /// in the policy as they are; none are created then.
    pub developer_keys: &'a [PublicKey],
    /// Developer signatures a release needs.
    pub threshold: u32,
    /// Number of root keys.
    pub roots: u32,
    /// Root signatures a root change needs.
    pub root_threshold: u32,
    /// Witness roster file.
    pub roster: &'a Path,
    /// Node APIs.
    pub nodes: &'a Nodes,
    /// Build verifiers whose attestations count.
    pub verifiers: &'a [PublicKey],
    /// Matching attestations each release needs (k).
    pub attestations: u32,
    /// The API token file of the nodes, recorded for later commands.
    pub api_token_file: Option<&'a Path>,
    /// The timeline the policy names (clients check the project's heads against it).
    pub timeline: TimelineChoice,
}

/// Which timeline a policy names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineChoice {
    /// The one timeline every node serves (they must agree); none if they serve none; an
    /// error if several.
    Auto,
    /// No timeline: clients get no freshness guarantee unless they pin one themselves.
    Without,
    /// This timeline chain.
    Chain(Hash),
}

impl std::str::FromStr for TimelineChoice {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::Without),
            hex => Hash::from_hex(hex).map(Self::Chain).map_err(|_| {
                format!("{hex:?} is not a timeline chain id (64 hex digits), 'auto' or 'none'")
            }),
        }
    }
}

impl TimelineChoice {
    /// The timeline chain id this choice names, asking `nodes` for `Auto`.
    pub fn resolve(self, nodes: &Nodes) -> Result<Option<Hash>> {
        match self {
            Self::Without => Ok(None),
            Self::Chain(chain) => Ok(Some(chain)),
            Self::Auto => {
                // Every node is asked, and they must agree: one node alone (behind, or run by
                // someone else) does not choose the timeline clients will trust.
                let mut answers = Vec::new();
                let mut unreached = Vec::new();
                for &address in nodes.addresses() {
                    match chainiac_api::http::get_json::<Vec<TimelineJson>>(address, "/timeline") {
                        Ok(list) => {
                            let mut ids: Vec<String> =
                                list.into_iter().map(|t| t.chain_id).collect();
                            ids.sort();
                            answers.push((address, ids));
                        }
                        Err(error) => unreached.push(format!("{address}: {error}")),
                    }
                }
                let Some((_, first)) = answers.first() else {
                    return Err(PublisherError::Invalid(format!(
                        "no node listed its timelines ({}); name the timeline with --timeline ID (or --timeline none)",
                        unreached.join("; ")
                    )));
                };
                if let Some((address, other)) = answers.iter().find(|(_, ids)| ids != first) {
                    return Err(PublisherError::Invalid(format!(
                        "the nodes disagree about their timelines ({} lists {other:?}, another {first:?}); name one with --timeline ID",
                        address
                    )));
                }
                match first.as_slice() {
                    [] => Ok(None),
                    [only] => Hash::from_hex(only).map(Some).map_err(|_| {
                        PublisherError::Invalid(format!(
                            "the nodes list a timeline with an invalid id {only:?}"
                        ))
                    }),
                    several => Err(PublisherError::Invalid(format!(
                        "the nodes serve {} timelines; choose one with --timeline ID (or --timeline none)",
                        several.len()
                    ))),
                }
            }
        }
    }
}

fn chain_head(nodes: &Nodes, chain: &Hash, what: &'static str) -> Result<ChainJson> {
    nodes
        .get(&format!("/chains/{}", chain.to_hex()))
        .map_err(self::nodes(what))
}

/// Creates the project's keys, its genesis policy, and its policy and release chains.
pub fn create_project(options: &CreateOptions<'_>) -> Result<ProjectFile> {
    let dir = options.dir;
    if dir.join("project.json").exists() {
        return Err(PublisherError::Invalid(format!(
            "{} already holds a project; choose another directory",
            dir.display()
        )));
    }
    let roster = read_roster(options.roster)?;
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|source| PublisherError::Write {
        path: keys.clone(),
        source,
    })?;
    let make_keys = |prefix: &str, count: u32| -> Result<Vec<PublicKey>> {
        (1..=count)
            .map(|i| {
                let identity = Identity::generate();
                identity.save(&key_path(dir, &format!("{prefix}-{i}")))?;
                Ok(identity.public().key)
            })
            .collect()
    };
    let root_keys = make_keys("root", options.roots)?;
    let developer_keys = if options.developer_keys.is_empty() {
        make_keys("dev", options.developers)?
    } else {
        options.developer_keys.to_vec()
    };
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
        witnesses: roster_of(&roster, options.roster)?.hash(),
        timeline: options.timeline.resolve(options.nodes)?,
    };
    policy
        .check()
        .map_err(protocol("invalid project settings"))?;
    let digest = policy.digest();
    let roots = (1..=options.root_threshold)
        .map(|i| load_key(dir, &format!("root-{i}")))
        .collect::<Result<Vec<_>>>()?;
    let signatures = roots
        .iter()
        .map(|root| KeySignature::sign(root.secret(), &digest))
        .collect();
    let genesis = ChainGenesis::Policy(SignedPolicy { policy, signatures });
    let create = |payload: Vec<u8>, what: &'static str| -> Result<ChainHeadJson> {
        options
            .nodes
            .post(
                "/chains",
                &CreateChainRequest {
                    roster: roster.clone(),
                    threshold: None,
                    base: None,
                    max_height: None,
                    payload: hex::encode(payload),
                },
            )
            .map_err(nodes(what))
    };
    let policy_chain = create(genesis.to_bytes(), "cannot create the policy chain")?.chain_id;
    // The release chain is created by the same root keys (its witnesses check them against
    // the policy chain).
    let release_genesis = ChainGenesis::release(
        options.name,
        Hash::from_hex(&policy_chain).map_err(protocol("chain id from the node"))?,
        &roots.iter().map(Identity::secret).collect::<Vec<_>>(),
    );
    let release_chain = create(
        release_genesis.to_bytes(),
        "cannot create the release chain",
    )?
    .chain_id;
    let project = ProjectFile {
        name: options.name.to_owned(),
        policy_chain,
        release_chain,
        nodes: options.nodes.addresses().to_vec(),
        api_token_file: options.api_token_file.map(Path::to_path_buf),
    };
    project.save(dir)?;
    Ok(project)
}

/// The policy in force as a node reports it: the policy, its block hash and index.
pub fn current_policy(nodes: &Nodes, project: &ProjectFile) -> Result<(SignedPolicy, Hash, u64)> {
    let chain = project.policy_chain()?;
    let head = chain_head(nodes, &chain, "cannot read the policy chain")?;
    let payload: Vec<u8> = hex::decode(&head.head.payload).map_err(|_| {
        PublisherError::Invalid("the node sent a policy payload that is not hex".into())
    })?;
    let signed = chainiac_protocol::project::policy_of_block(head.index, &payload)
        .map_err(protocol("the policy chain's head is not a policy"))?;
    let hash = Hash::from_hex(&head.head.hash).map_err(protocol("policy head hash"))?;
    Ok((signed, hash, head.index))
}

/// Changes of `project policy`.
#[derive(Debug, Default)]
pub struct PolicyChange<'a> {
    /// Developer slots (1-based) that get a fresh key; the old key file is kept as `.retired`.
    pub rotate: &'a [u32],
    /// New developer threshold.
    pub threshold: Option<u32>,
    /// Keys that sign the change (names or paths); default: the first t current developers.
    pub sign_with: &'a [String],
    /// New witness roster for the policy chain.
    pub roster: Option<&'a Path>,
    /// Another timeline (`Some(Without)` removes it); a root change.
    pub timeline: Option<TimelineChoice>,
}

/// Appends a policy change to the project's policy chain. Returns the new policy and the index
/// of the block holding it.
pub fn change_policy(
    dir: &Path,
    nodes: &Nodes,
    change: &PolicyChange<'_>,
) -> Result<(Policy, u64)> {
    let project = ProjectFile::load(dir)?;
    let nodes = project.nodes(nodes)?;
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
            return Err(PublisherError::Invalid(format!(
                "developer slot {slot} does not exist (the policy has {} developers)",
                new.developer_keys.len()
            )));
        };
        let identity = Identity::generate();
        new.developer_keys[index as usize] = identity.public().key;
        fresh.push((slot, identity));
    }
    if let Some(threshold) = change.threshold {
        new.developer_threshold = threshold;
    }
    let new_roster = change
        .roster
        .map(|path| Ok::<_, PublisherError>((read_roster(path)?, path)))
        .transpose()?;
    if let Some((members, path)) = &new_roster {
        new.witnesses = roster_of(members, path)?.hash();
    }
    if let Some(choice) = change.timeline {
        new.timeline = choice.resolve(&nodes)?;
    }
    new.check().map_err(protocol("the new policy is invalid"))?;
    // Moving the project to other witnesses or another timeline is the roots' decision.
    let signers: Vec<String> = if !change.sign_with.is_empty() {
        change.sign_with.to_vec()
    } else if new.witnesses != old.witnesses || new.timeline != old.timeline {
        (1..=old.root_threshold)
            .map(|i| format!("root-{i}"))
            .collect()
    } else {
        (1..=old.developer_threshold)
            .map(|i| format!("dev-{i}"))
            .collect()
    };
    let digest = new.digest();
    let signatures = signers
        .iter()
        .map(|name| Ok(KeySignature::sign(load_key(dir, name)?.secret(), &digest)))
        .collect::<Result<Vec<_>>>()?;
    let signed = SignedPolicy {
        policy: new.clone(),
        signatures,
    };
    // Check locally first: the witnesses would refuse for the same reason, less readably.
    signed
        .verify_change(&old)
        .map_err(protocol("the policy change would be refused"))?;
    let body = AppendRequest {
        payload: hex::encode(signed.to_bytes()),
        roster: new_roster.map(|(members, _)| members),
        threshold: None,
    };
    let chain = project.policy_chain()?;
    let answer: ChainHeadJson = nodes
        .post(&format!("/chains/{}/blocks", chain.to_hex()), &body)
        .map_err(self::nodes("the policy change was not logged"))?;
    // Only now that the change is logged do the new keys replace the old files.
    for (slot, identity) in fresh {
        let path = key_path(dir, &format!("dev-{slot}"));
        let retired = path.with_extension(format!("key.retired-{}", new.sequence));
        std::fs::rename(&path, &retired).map_err(|source| PublisherError::Write {
            path: path.clone(),
            source,
        })?;
        identity.save(&path)?;
    }
    Ok((new, answer.index))
}

/// A release being prepared: the manifest, the signatures collected so far, and where its
/// files are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// Canonical manifest encoding, hex.
    pub manifest: String,
    /// Developer signatures, hex of their canonical encoding.
    pub signatures: Vec<String>,
    /// Artifact hash (hex) -> file path.
    pub files: BTreeMap<String, PathBuf>,
    /// Build verifiers' attestations, hex of their canonical encoding.
    #[serde(default)]
    pub attestations: Vec<String>,
}

impl Bundle {
    /// Loads a bundle file.
    pub fn load(path: &Path) -> Result<Self> {
        serde_json::from_str(&read_text(path)?).map_err(|e| PublisherError::Malformed {
            path: path.to_path_buf(),
            what: "a release bundle",
            detail: e.to_string(),
        })
    }

    /// Saves it.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| PublisherError::Invalid(e.to_string()))?;
        write(path, text)
    }

    /// The manifest.
    pub fn manifest(&self) -> Result<ReleaseManifest> {
        hex_field(&self.manifest, "the bundle's manifest")
    }

    /// The build attestations.
    pub fn attestations(&self) -> Result<Vec<BuildAttestation>> {
        self.attestations
            .iter()
            .map(|a| hex_field(a, "a build attestation in the bundle"))
            .collect()
    }

    /// Adds (or replaces) the attestation of its verifier.
    pub fn add_attestation(&mut self, attestation: &BuildAttestation) -> Result<()> {
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
    pub fn signatures(&self) -> Result<Vec<KeySignature>> {
        self.signatures
            .iter()
            .map(|s| hex_field(s, "a signature in the bundle"))
            .collect()
    }
}

/// Options of `release create`.
#[derive(Debug)]
pub struct ReleaseOptions<'a> {
    /// Version (semver).
    pub version: &'a str,
    /// Source archive.
    pub source: &'a Path,
    /// (platform, file) per binary.
    pub binaries: &'a [(String, PathBuf)],
    /// Build script.
    pub script: String,
    /// (platform, output path) per binary, as the recipe produces them.
    pub outputs: Vec<(String, String)>,
}

/// Prepares a release bundle for the next release of the project.
pub fn create_release(dir: &Path, nodes: &Nodes, options: &ReleaseOptions<'_>) -> Result<Bundle> {
    let project = ProjectFile::load(dir)?;
    let nodes = project.nodes(nodes)?;
    let (_, policy_block, _) = current_policy(&nodes, &project)?;
    let chain = project.release_chain()?;
    let head = chain_head(&nodes, &chain, "cannot read the release chain")?;
    let sequence = if head.index == 0 {
        1
    } else {
        let release: Release = hex_field(&head.head.payload, "the release chain's head")?;
        release.manifest.sequence + 1
    };
    let mut files = BTreeMap::new();
    let mut reference = |path: &Path| -> Result<ArtifactRef> {
        let bytes = read(path)?;
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
        .collect::<Result<Vec<_>>>()?;
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
    manifest.check().map_err(protocol("invalid release"))?;
    Ok(Bundle {
        manifest: hex::encode(manifest.to_bytes()),
        signatures: Vec::new(),
        files,
        attestations: Vec::new(),
    })
}

/// Adds `key`'s signature to the bundle (offline). Returns the signer's public key.
pub fn sign_release(bundle: &mut Bundle, key: &Identity) -> Result<PublicKey> {
    let manifest = bundle.manifest()?;
    let signer = key.public().key;
    let mut signatures = bundle.signatures()?;
    if signatures.iter().any(|s| s.signer == signer) {
        return Err(PublisherError::Invalid(
            "this key already signed the bundle".into(),
        ));
    }
    signatures.push(KeySignature::sign(key.secret(), &manifest.digest()));
    bundle.signatures = signatures
        .iter()
        .map(|s| hex::encode(s.to_bytes()))
        .collect();
    Ok(signer)
}

/// The roster the release chain must move to with its next release: the witnesses of the
/// policy in force when they differ from the release chain's roster, `None` when they are the
/// same. The roster is read by its hash from a node and checked against it.
fn following_roster(
    nodes: &Nodes,
    project: &ProjectFile,
) -> Result<Option<(Vec<RosterMemberJson>, u32)>> {
    let (policy, _, _) = current_policy(nodes, project)?;
    let chain = project.release_chain()?;
    let head = chain_head(nodes, &chain, "cannot read the release chain")?;
    if head.head.roster_hash == policy.policy.witnesses.to_hex() {
        return Ok(None);
    }
    let described: RosterJson = nodes
        .get(&format!("/rosters/{}", policy.policy.witnesses.to_hex()))
        .map_err(self::nodes("cannot read the witnesses the policy names"))?;
    let roster: Roster = hex_field(&described.encoding, "the witnesses the policy names")?;
    if roster.hash() != policy.policy.witnesses {
        return Err(PublisherError::Invalid(
            "a node answered with another roster than the policy names".into(),
        ));
    }
    Ok(Some((described.members, roster.threshold() as u32)))
}

/// Uploads the bundle's artifacts to a node and asks it to lead the release's signing round;
/// another node takes over if it fails. Returns the release chain index.
pub fn publish_release(
    dir: &Path,
    nodes: &Nodes,
    bundle: &Bundle,
    roster: Option<&Path>,
) -> Result<u64> {
    let project = ProjectFile::load(dir)?;
    let nodes = project.nodes(nodes)?;
    let release = Release {
        manifest: bundle.manifest()?,
        signatures: bundle.signatures()?,
        attestations: bundle.attestations()?,
    };
    // The release chain runs under the witnesses of the policy in force: after a witness
    // change, the next release moves it there.
    let (roster, threshold) = match roster {
        Some(path) => (Some(read_roster(path)?), None),
        None => match following_roster(&nodes, &project)? {
            Some((members, threshold)) => (Some(members), Some(threshold)),
            None => (None, None),
        },
    };
    let body = AppendRequest {
        payload: hex::encode(release.to_bytes()),
        roster,
        threshold,
    };
    let mut contents = Vec::new();
    for (hash, path) in &bundle.files {
        let bytes = read(path)?;
        if Hash::of_artifact(&bytes).to_hex() != *hash {
            return Err(PublisherError::Invalid(format!(
                "{} changed since the release was prepared (its hash is no longer {hash})",
                path.display()
            )));
        }
        contents.push(bytes);
    }
    let chain = project.release_chain()?;
    let answer: ChainHeadJson = nodes
        .run(|node| {
            for bytes in &contents {
                let _: ArtifactStored = put_bytes(node, "/artifacts", bytes, nodes.token())?;
            }
            chainiac_api::http::post_json(
                node,
                &format!("/chains/{}/blocks", chain.to_hex()),
                &body,
                nodes.token(),
            )
        })
        .map_err(self::nodes("the release was not logged"))?;
    Ok(answer.index)
}
