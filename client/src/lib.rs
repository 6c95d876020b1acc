#![doc = include_str!("../README.md")]

mod connection;
mod state;

pub use chainiac_net::download::{Download, DownloadError};
pub use chainiac_protocol::light_client::{FollowedProject, PinnedTimeline, TimelineView};
pub use connection::{Connection, SyncReport, peer_of};
pub use state::{ClientState, STATE_FILE, StateError};

use chainiac_protocol::release::{ArtifactRef, Release, ReleaseManifest};
use libp2p::PeerId;

/// A peer that did not give a verifiable answer, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFailure {
    /// The peer.
    pub peer: PeerId,
    /// What went wrong: unreachable, refused, or an answer that failed verification.
    pub reason: String,
}

impl std::fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.peer, self.reason)
    }
}

/// Light-client errors; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// No peer address was given.
    #[error("no peer to ask: give at least one with --peer /ip4/.../tcp/.../p2p/PEER_ID")]
    NoPeer,
    /// No peer could be reached.
    #[error(
        "none of the {peers} peers answered within {seconds} s; check the addresses and that the nodes run"
    )]
    Unreachable { peers: usize, seconds: u64 },
    /// The network could not start.
    #[error("cannot start the network: {0}")]
    Network(#[from] chainiac_net::NetError),
    /// The project is not followed.
    #[error("project {0:?} is not followed; run `chainiac client follow RELEASE_CHAIN_ID` first")]
    NotFollowed(String),
    /// Every peer failed; each failure names its peer.
    #[error("no peer gave a verifiable answer: {}", describe(.0))]
    AllPeersFailed(Vec<PeerFailure>),
    /// A verification failed on data already trusted or chosen by the user.
    #[error(transparent)]
    Invalid(#[from] chainiac_protocol::Error),
    /// The release has no artifact matching the user's choice.
    #[error("{0}")]
    NoSuchArtifact(String),
    /// An artifact download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// An anchor does not name the timeline's block at its position.
    #[error("the anchor does not match the timeline: {0}")]
    InvalidAnchor(String),
    /// The project's verified policy commits it to a timeline the sync was not given.
    #[error("{}", describe_timeline_needed(project, named, given.as_ref()))]
    TimelineNeeded {
        /// The project.
        project: String,
        /// The timeline its policy names.
        named: chainiac_protocol::Hash,
        /// The timeline the sync was given, if any.
        given: Option<chainiac_protocol::Hash>,
    },
}

fn describe_timeline_needed(
    project: &str,
    named: &chainiac_protocol::Hash,
    given: Option<&chainiac_protocol::Hash>,
) -> String {
    let checked = given.map_or_else(|| "no timeline".to_owned(), |g| format!("timeline {g}"));
    format!(
        "a peer proved a newer policy of {project} that names timeline {named}, but the heads were checked against {checked} and the peers disagree; sync again (a peer that withholds the newer policy is named above)"
    )
}

fn describe(failures: &[PeerFailure]) -> String {
    if failures.is_empty() {
        return "no peer was asked".into();
    }
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The artifact of `release` to fetch: the binary for `platform`, or the source.
pub fn select_artifact(
    release: &Release,
    platform: Option<&str>,
) -> Result<ArtifactRef, ClientError> {
    let manifest = &release.manifest;
    match platform {
        None if manifest.binaries.len() == 1 => Ok(manifest.binaries[0].artifact.clone()),
        None if manifest.binaries.is_empty() => Ok(manifest.source.clone()),
        Some("source") => Ok(manifest.source.clone()),
        Some(platform) => manifest
            .binaries
            .iter()
            .find(|b| b.platform == platform)
            .map(|b| b.artifact.clone())
            .ok_or_else(|| {
                ClientError::NoSuchArtifact(format!(
                    "release {} has no binary for platform {platform}; it has: {}",
                    manifest.version,
                    platforms(manifest)
                ))
            }),
        None => Err(ClientError::NoSuchArtifact(format!(
            "release {} has several binaries; choose one with --platform ({})",
            manifest.version,
            platforms(manifest)
        ))),
    }
}

fn platforms(manifest: &ReleaseManifest) -> String {
    manifest
        .binaries
        .iter()
        .map(|b| b.platform.as_str())
        .chain(std::iter::once("source"))
        .collect::<Vec<_>>()
        .join(", ")
}
