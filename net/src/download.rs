//! Downloading an artifact from any peer, in slices that each carry the BLAKE3 tree nodes
//! proving them against the artifact's hash (bao slices): a lying peer is caught on its first
//! wrong slice, not after the whole file, and the next peer is tried.

use std::io::Read;

use chainiac_protocol::Hash;
use chainiac_protocol::release::ArtifactRef;
use libp2p::PeerId;

use crate::swarm::NetHandle;
use crate::wire::{Request, Response, SLICE_LEN};

/// Largest artifact a node stores or downloads (1 GiB).
pub const MAX_ARTIFACT_SIZE: u64 = 1 << 30;

/// Checks a slice received for content bytes `start..start+len` of the artifact `hash`, and
/// returns those content bytes.
pub fn verify_slice(hash: &Hash, start: u64, len: u64, slice: &[u8]) -> Result<Vec<u8>, String> {
    let root = bao::Hash::from(*hash.as_bytes());
    let mut content = Vec::new();
    bao::decode::SliceDecoder::new(slice, &root, start, len)
        .read_to_end(&mut content)
        .map_err(|e| format!("slice at byte {start} does not verify: {e}"))?;
    if content.len() as u64 != len {
        return Err(format!(
            "slice at byte {start} has {} bytes, {len} expected",
            content.len()
        ));
    }
    Ok(content)
}

/// A peer that failed to deliver an artifact, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFailure {
    /// The peer.
    pub peer: PeerId,
    /// What went wrong (unreachable, does not have it, or sent bytes that do not verify).
    pub reason: String,
    /// Whether the peer sent data that failed verification (it lied, or its disk is corrupt).
    pub sent_bad_data: bool,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[error("could not fetch {name} ({hash}) from any of {tried} peers: {details}")]
pub struct DownloadError {
    /// Artifact name.
    pub name: String,
    /// Its hash.
    pub hash: Hash,
    /// How many peers were tried.
    pub tried: usize,
    /// One line per peer.
    pub details: String,
    /// The failures, per peer.
    pub failures: Vec<PeerFailure>,
}

/// A downloaded artifact, and the peers that failed along the way.
#[derive(Debug)]
pub struct Download {
    /// The verified bytes.
    pub bytes: Vec<u8>,
    /// The peer that delivered them.
    pub from: PeerId,
    /// Peers tried before, and why they failed.
    pub failures: Vec<PeerFailure>,
}

async fn fetch_from(
    net: &NetHandle,
    peer: PeerId,
    artifact: &ArtifactRef,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Vec<u8>, (String, bool)> {
    let mut bytes = Vec::with_capacity(artifact.size.min(SLICE_LEN * 16) as usize);
    let mut start = 0;
    loop {
        let len = (artifact.size - start).min(SLICE_LEN);
        let request = Request::ArtifactSlice {
            hash: artifact.hash,
            start,
            len,
        };
        match net.request(peer, request).await {
            Ok(Response::Slice { size, data }) => {
                if size != artifact.size {
                    return Err((
                        format!("announced {size} bytes, the release says {}", artifact.size),
                        true,
                    ));
                }
                let content =
                    verify_slice(&artifact.hash, start, len, &data).map_err(|e| (e, true))?;
                bytes.extend_from_slice(&content);
            }
            Ok(Response::Refused(reason)) => return Err((reason, false)),
            Ok(_) => return Err(("unexpected answer".into(), true)),
            Err(error) => return Err((error.to_string(), false)),
        }
        start += len;
        progress(start, artifact.size);
        if start >= artifact.size {
            return Ok(bytes);
        }
    }
}

/// Downloads `artifact` from the first of `peers` that delivers it, verifying every slice; a
/// peer whose data fails verification is abandoned at once and reported.
pub async fn download(
    net: &NetHandle,
    peers: &[PeerId],
    artifact: &ArtifactRef,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Download, DownloadError> {
    let mut failures = Vec::new();
    if artifact.size <= MAX_ARTIFACT_SIZE {
        for &peer in peers {
            match fetch_from(net, peer, artifact, progress).await {
                Ok(bytes) => {
                    return Ok(Download {
                        bytes,
                        from: peer,
                        failures,
                    });
                }
                Err((reason, sent_bad_data)) => {
                    if sent_bad_data {
                        tracing::warn!(%peer, artifact = %artifact.hash, %reason, "peer sent artifact data that does not verify");
                    }
                    failures.push(PeerFailure {
                        peer,
                        reason,
                        sent_bad_data,
                    });
                }
            }
        }
    }
    let details = if artifact.size > MAX_ARTIFACT_SIZE {
        format!(
            "the release declares {} bytes, above the {MAX_ARTIFACT_SIZE}-byte limit",
            artifact.size
        )
    } else if failures.is_empty() {
        "no peer to ask".into()
    } else {
        failures
            .iter()
            .map(|f| format!("{}: {}", f.peer, f.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Err(DownloadError {
        name: artifact.name.clone(),
        hash: artifact.hash,
        tried: peers.len(),
        details,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice a serving node would send: the bao slice of `bytes` for `start..start+len`.
    fn slice_of(bytes: &[u8], start: u64, len: u64) -> (Hash, Vec<u8>) {
        let (outboard, root) = bao::encode::outboard(bytes);
        let mut slice = Vec::new();
        bao::encode::SliceExtractor::new_outboard(
            std::io::Cursor::new(bytes),
            std::io::Cursor::new(&outboard),
            start,
            len,
        )
        .read_to_end(&mut slice)
        .expect("slice");
        (Hash(*root.as_bytes()), slice)
    }

    #[test]
    fn slices_verify_and_tampering_is_caught() {
        let bytes: Vec<u8> = (0..5000usize).map(|i| (i * 31 % 251) as u8).collect();
        let (hash, mut slice) = slice_of(&bytes, 1024, 2048);
        assert_eq!(hash, Hash::of_artifact(&bytes));
        assert_eq!(
            verify_slice(&hash, 1024, 2048, &slice).expect("verifies"),
            bytes[1024..3072]
        );
        let last = slice.len() - 1;
        slice[last] ^= 1;
        assert!(verify_slice(&hash, 1024, 2048, &slice).is_err());
        let (_, slice) = slice_of(&bytes, 0, 1024);
        assert!(verify_slice(&Hash::of_artifact(b"other"), 0, 1024, &slice).is_err());
        assert!(verify_slice(&hash, 0, 2048, &slice).is_err(), "short slice");
    }
}
