//! A build verifier's durable queue and results: manifests waiting to be rebuilt, and the
//! attestations signed for them, so that a restart neither loses a request nor builds twice.

use chainiac_protocol::Hash;
use chainiac_protocol::encoding::{Decode, Encode};
use chainiac_protocol::release::{BuildAttestation, ReleaseManifest};

use super::{Batch, Column, Store, StoreError, StoreResult};

const PENDING_PREFIX: &[u8] = b"build/pending/";
const DONE_PREFIX: &[u8] = b"build/done/";

fn key(prefix: &[u8], digest: &Hash) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(digest.as_bytes());
    key
}

fn corrupt(what: &'static str) -> impl Fn(chainiac_protocol::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

impl Store {
    /// Queues `manifest` for a rebuild (durably).
    pub fn queue_build(&self, manifest: &ReleaseManifest) -> StoreResult<()> {
        let mut batch = Batch::new();
        batch.put(
            Column::Meta,
            key(PENDING_PREFIX, &manifest.digest()),
            manifest.to_bytes(),
        );
        self.kv.write(batch)
    }

    /// Whether a rebuild of the manifest with `digest` is queued.
    pub fn build_queued(&self, digest: &Hash) -> StoreResult<bool> {
        Ok(self
            .kv
            .get(Column::Meta, &key(PENDING_PREFIX, digest))?
            .is_some())
    }

    /// The queued manifests, at most `limit` (checked against the digest they are filed under).
    pub fn queued_builds(&self, limit: usize) -> StoreResult<Vec<ReleaseManifest>> {
        self.kv
            .scan_prefix(Column::Meta, PENDING_PREFIX, limit)?
            .into_iter()
            .map(|(key, value)| {
                let manifest =
                    ReleaseManifest::from_bytes(&value).map_err(corrupt("queued manifest"))?;
                if key[PENDING_PREFIX.len()..] != manifest.digest().0 {
                    return Err(StoreError::Corrupt {
                        what: "queued manifest",
                        detail: "filed under another digest".into(),
                    });
                }
                Ok(manifest)
            })
            .collect()
    }

    /// Records the attestation of a finished rebuild and takes it off the queue, in one write.
    pub fn finish_build(&self, attestation: &BuildAttestation) -> StoreResult<()> {
        let mut batch = Batch::new();
        batch.delete(Column::Meta, key(PENDING_PREFIX, &attestation.manifest));
        batch.put(
            Column::Meta,
            key(DONE_PREFIX, &attestation.manifest),
            attestation.to_bytes(),
        );
        self.kv.write(batch)
    }

    /// The attestation this verifier signed for the manifest with `digest`, if it rebuilt it
    /// (its signature and digest are checked on the way out of the store).
    pub fn build_attestation(&self, digest: &Hash) -> StoreResult<Option<BuildAttestation>> {
        let Some(value) = self.kv.get(Column::Meta, &key(DONE_PREFIX, digest))? else {
            return Ok(None);
        };
        let attestation =
            BuildAttestation::from_bytes(&value).map_err(corrupt("build attestation"))?;
        if attestation.manifest != *digest {
            return Err(StoreError::Corrupt {
                what: "build attestation",
                detail: "filed under another manifest".into(),
            });
        }
        attestation.verify().map_err(corrupt("build attestation"))?;
        Ok(Some(attestation))
    }
}
