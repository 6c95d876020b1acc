//! The client's trusted state on disk: the peers to ask, the projects it follows (per project
//! the last verified block of its release and policy chains with their rosters, and every policy
//! verified), the pinned timeline and the freshness bound. One JSON file, replaced atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::Roster;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::light_client::{FollowedProject, PinnedTimeline};
use chainiac_protocol::skipchain::{SkipBlock, TrustedBlock};
use chainiac_protocol::timeline::Freshness;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// Name of the client's state file inside its directory.
pub const STATE_FILE: &str = "client-state.json";

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("client state {path}: {message}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// The client's persistent state: peers to ask, followed projects, the pinned timeline.
#[derive(Clone, Debug, Default)]
pub struct ClientState {
    /// Peer addresses (multiaddresses ending in `/p2p/PEER_ID`).
    pub peers: Vec<Multiaddr>,
    /// Followed projects by name.
    pub projects: BTreeMap<String, FollowedProject>,
    /// The timeline the user pinned: heads of projects whose policy names no timeline are
    /// checked against it (none: no freshness guarantee for those).
    pub timeline: Option<PinnedTimeline>,
    /// Timelines learned from the policies of followed projects, by chain id.
    pub policy_timelines: BTreeMap<Hash, PinnedTimeline>,
    /// How old the timeline may be, in seconds (default 3600).
    pub max_age: Option<u64>,
}

#[derive(Serialize, Deserialize, Default)]
struct StateFile {
    peers: Vec<String>,
    projects: BTreeMap<String, ProjectFile>,
    #[serde(default)]
    timeline: Option<TimelineFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    policy_timelines: Vec<TimelineFile>,
    #[serde(default)]
    max_age: Option<u64>,
}

impl TimelineFile {
    fn of(timeline: &PinnedTimeline) -> Self {
        Self {
            chain: timeline.chain.to_hex(),
            block: hex::encode(timeline.trusted.block().to_bytes()),
            roster: hex::encode(timeline.trusted.roster().to_bytes()),
        }
    }

    fn load(&self) -> Result<PinnedTimeline, String> {
        Ok(PinnedTimeline {
            chain: hash(&self.chain, "timeline chain")?,
            trusted: trusted(&self.block, &self.roster)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct TimelineFile {
    chain: String,
    block: String,
    roster: String,
}

#[derive(Serialize, Deserialize)]
struct ProjectFile {
    release_chain: String,
    policy_chain: String,
    release_block: String,
    release_roster: String,
    policy_block: String,
    policy_roster: String,
    policies: BTreeMap<String, String>,
}

fn decode_hex<T: Decode>(text: &str, what: &str) -> Result<T, String> {
    let bytes = hex::decode(text).map_err(|_| format!("{what}: not hex"))?;
    T::from_bytes(&bytes).map_err(|e| format!("{what}: {e}"))
}

fn trusted(block: &str, roster: &str) -> Result<TrustedBlock, String> {
    let block: SkipBlock = decode_hex(block, "block")?;
    let roster: Roster = decode_hex(roster, "roster")?;
    TrustedBlock::new(block, roster).map_err(|e| e.to_string())
}

fn hash(text: &str, what: &str) -> Result<Hash, String> {
    Hash::from_hex(text).map_err(|e| format!("{what}: {e}"))
}

impl ProjectFile {
    fn load(self, name: &str) -> Result<FollowedProject, String> {
        let mut policies = BTreeMap::new();
        for (block, policy) in &self.policies {
            policies.insert(hash(block, "policy block")?, decode_hex(policy, "policy")?);
        }
        Ok(FollowedProject {
            name: name.to_owned(),
            release_chain: hash(&self.release_chain, "release chain")?,
            policy_chain: hash(&self.policy_chain, "policy chain")?,
            release: trusted(&self.release_block, &self.release_roster)?,
            policy: trusted(&self.policy_block, &self.policy_roster)?,
            policies,
        })
    }

    fn of(project: &FollowedProject) -> Self {
        Self {
            release_chain: project.release_chain.to_hex(),
            policy_chain: project.policy_chain.to_hex(),
            release_block: hex::encode(project.release.block().to_bytes()),
            release_roster: hex::encode(project.release.roster().to_bytes()),
            policy_block: hex::encode(project.policy.block().to_bytes()),
            policy_roster: hex::encode(project.policy.roster().to_bytes()),
            policies: project
                .policies
                .iter()
                .map(|(h, policy)| (h.to_hex(), hex::encode(policy.to_bytes())))
                .collect(),
        }
    }
}

impl ClientState {
    /// The freshness bound in force.
    pub fn freshness(&self) -> Freshness {
        Freshness {
            max_age: self.max_age.unwrap_or(Freshness::default().max_age),
            ..Freshness::default()
        }
    }

    /// Loads the state from `dir` (empty if there is none yet).
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let error = |message: String| StateError {
            path: path.clone(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(error(e.to_string())),
        };
        let file: StateFile = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
        let mut state = Self {
            max_age: file.max_age,
            ..Self::default()
        };
        for peer in &file.peers {
            state.peers.push(
                peer.parse()
                    .map_err(|e| error(format!("peer {peer}: {e}")))?,
            );
        }
        if let Some(timeline) = &file.timeline {
            state.timeline = Some(
                timeline
                    .load()
                    .map_err(|e| error(format!("timeline: {e}")))?,
            );
        }
        for timeline in &file.policy_timelines {
            let timeline = timeline
                .load()
                .map_err(|e| error(format!("policy timeline: {e}")))?;
            state.policy_timelines.insert(timeline.chain, timeline);
        }
        for (name, project) in file.projects {
            let project = project
                .load(&name)
                .map_err(|e| error(format!("project {name}: {e}")))?;
            state.projects.insert(name, project);
        }
        Ok(state)
    }

    /// Saves the state to `dir` atomically (temporary file, sync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let error = |e: &dyn std::fmt::Display| StateError {
            path: path.clone(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| error(&e))?;
        let file = StateFile {
            timeline: self.timeline.as_ref().map(TimelineFile::of),
            policy_timelines: self
                .policy_timelines
                .values()
                .map(TimelineFile::of)
                .collect(),
            max_age: self.max_age,
            peers: self.peers.iter().map(ToString::to_string).collect(),
            projects: self
                .projects
                .iter()
                .map(|(name, p)| (name.clone(), ProjectFile::of(p)))
                .collect(),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| error(&e))?;
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, text).map_err(|e| error(&e))?;
        std::fs::File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(|e| error(&e))?;
        std::fs::rename(&temporary, &path).map_err(|e| error(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainiac_protocol::cosi::RosterMember;
    use chainiac_protocol::keys::SecretKey;
    use chainiac_protocol::project::ChainGenesis;
    use chainiac_protocol::skipchain::ChainParams;

    #[test]
    fn a_state_round_trips_through_its_file_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            ClientState::load(dir.path())
                .expect("empty")
                .projects
                .is_empty()
        );
        let secret = SecretKey::from_seed(&[1; 32]);
        let roster = Roster::with_default_threshold(vec![RosterMember::from_secret(&secret)])
            .expect("roster");
        let genesis = SkipBlock::genesis(
            ChainParams::new(2, 8).expect("params"),
            roster.clone(),
            ChainGenesis::timeline(10, &roster.hash(), &secret).to_bytes(),
        )
        .expect("genesis");
        let state = ClientState {
            peers: vec!["/ip4/127.0.0.1/tcp/7400".parse().expect("address")],
            timeline: Some(PinnedTimeline::start(genesis.hash(), genesis).expect("pin")),
            max_age: Some(60),
            ..ClientState::default()
        };
        state.save(dir.path()).expect("save");
        let loaded = ClientState::load(dir.path()).expect("load");
        assert_eq!(loaded.peers, state.peers);
        assert_eq!(loaded.timeline, state.timeline);
        assert_eq!(loaded.freshness().max_age, 60);
        std::fs::write(dir.path().join(STATE_FILE), "{not json").expect("write");
        let error = ClientState::load(dir.path()).expect_err("malformed");
        assert!(error.to_string().contains(STATE_FILE), "{error}");
    }
}
