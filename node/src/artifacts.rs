//! Release artifacts on disk: stored content-addressed by their BLAKE3 hash and served in
//! slices that prove themselves (downloading them is `chainiac_net::download`).
//!
//! Each artifact lives in `DIR/<hash>` with its BLAKE3 tree (a bao "outboard" encoding) in
//! `DIR/<hash>.obao`. A slice sent to a peer carries the tree nodes that prove it against the
//! artifact's hash, so a downloader checks each slice as it arrives.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chainiac_net::download::MAX_ARTIFACT_SIZE;
use chainiac_net::wire::SLICE_LEN;
use chainiac_protocol::Hash;

/// Artifact storage and transfer errors.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file system failed.
    #[error("artifact store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The node does not hold the artifact.
    #[error("artifact {0} is not stored here")]
    Missing(Hash),
    /// Too large to store.
    #[error("artifact of {size} bytes exceeds the limit of {MAX_ARTIFACT_SIZE} bytes")]
    TooLarge { size: u64 },
    /// A slice request outside the artifact.
    #[error("slice {start}+{len} is outside the artifact ({size} bytes)")]
    OutOfRange { start: u64, len: u64, size: u64 },
    /// The stored bytes no longer match their hash (disk corruption).
    #[error("stored artifact {0} is corrupt; delete it so it is fetched again")]
    Corrupt(Hash),
}

/// Content-addressed artifact files.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    dir: PathBuf,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ArtifactStore {
    /// Opens (creating if needed) the artifact directory.
    pub fn open(dir: &Path) -> Result<Self, ArtifactError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn content_path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    fn tree_path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(format!("{}.obao", hash.to_hex()))
    }

    /// Stores `bytes` and returns their hash. Content and tree are written to temporary files,
    /// synced, then renamed (tree first), so a crash never leaves a half-written artifact that
    /// looks complete.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash, ArtifactError> {
        let size = bytes.len() as u64;
        if size > MAX_ARTIFACT_SIZE {
            return Err(ArtifactError::TooLarge { size });
        }
        let (tree, root) = bao::encode::outboard(bytes);
        let hash = Hash(*root.as_bytes());
        if self.has(&hash) {
            return Ok(hash);
        }
        for (path, data) in [
            (self.tree_path(&hash), tree.as_slice()),
            (self.content_path(&hash), bytes),
        ] {
            let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
            let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
            file.write_all(data).map_err(io_error(&temporary))?;
            file.sync_all().map_err(io_error(&temporary))?;
            std::fs::rename(&temporary, &path).map_err(io_error(&path))?;
        }
        if let Ok(dir) = File::open(&self.dir) {
            // Make the renames durable; a failure here only risks refetching after a crash.
            let _ = dir.sync_all();
        }
        Ok(hash)
    }

    /// Whether the artifact is stored.
    pub fn has(&self, hash: &Hash) -> bool {
        self.content_path(hash).is_file() && self.tree_path(hash).is_file()
    }

    /// Size of a stored artifact.
    pub fn size(&self, hash: &Hash) -> Result<u64, ArtifactError> {
        if !self.has(hash) {
            return Err(ArtifactError::Missing(*hash));
        }
        let path = self.content_path(hash);
        Ok(std::fs::metadata(&path).map_err(io_error(&path))?.len())
    }

    /// The bao slice proving content bytes `start..start+len` (clamped to the end).
    pub fn slice(
        &self,
        hash: &Hash,
        start: u64,
        len: u64,
    ) -> Result<(u64, Vec<u8>), ArtifactError> {
        let size = self.size(hash)?;
        let len = len.min(SLICE_LEN);
        if start > size || (start == size && size > 0) {
            return Err(ArtifactError::OutOfRange { start, len, size });
        }
        let content_path = self.content_path(hash);
        let tree_path = self.tree_path(hash);
        let content = File::open(&content_path).map_err(io_error(&content_path))?;
        let tree = File::open(&tree_path).map_err(io_error(&tree_path))?;
        let mut slice = Vec::new();
        bao::encode::SliceExtractor::new_outboard(content, tree, start, len)
            .read_to_end(&mut slice)
            .map_err(io_error(&content_path))?;
        Ok((size, slice))
    }

    /// Reads a whole artifact, checking it against its hash.
    pub fn read(&self, hash: &Hash) -> Result<Vec<u8>, ArtifactError> {
        if !self.has(hash) {
            return Err(ArtifactError::Missing(*hash));
        }
        let path = self.content_path(hash);
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        if Hash::of_artifact(&bytes) != *hash {
            return Err(ArtifactError::Corrupt(*hash));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainiac_net::download::verify_slice;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn stored_artifacts_are_served_in_verifiable_slices() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        for len in [0usize, 1, 1024, 1025, 3 * SLICE_LEN as usize + 17] {
            let bytes = content(len);
            let hash = store.put(&bytes).unwrap();
            assert_eq!(hash, Hash::of_artifact(&bytes));
            assert_eq!(store.read(&hash).unwrap(), bytes);
            let mut start = 0;
            let mut rebuilt = Vec::new();
            loop {
                let want = (len as u64 - start).min(SLICE_LEN);
                let (size, slice) = store.slice(&hash, start, want).unwrap();
                assert_eq!(size, len as u64);
                rebuilt.extend(verify_slice(&hash, start, want, &slice).unwrap());
                start += want;
                if start >= len as u64 {
                    break;
                }
            }
            assert_eq!(rebuilt, bytes);
        }
    }

    #[test]
    fn a_tampered_slice_or_wrong_hash_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let bytes = content(5000);
        let hash = store.put(&bytes).unwrap();
        let (_, mut slice) = store.slice(&hash, 1024, 2048).unwrap();
        assert!(verify_slice(&hash, 1024, 2048, &slice).is_ok());
        let last = slice.len() - 1;
        slice[last] ^= 1;
        assert!(verify_slice(&hash, 1024, 2048, &slice).is_err());
        let (_, slice) = store.slice(&hash, 0, 1024).unwrap();
        assert!(verify_slice(&Hash::of_artifact(b"other"), 0, 1024, &slice).is_err());
    }

    #[test]
    fn missing_out_of_range_and_corrupt_artifacts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let absent = Hash::of_artifact(b"absent");
        assert!(matches!(
            store.slice(&absent, 0, 1),
            Err(ArtifactError::Missing(_))
        ));
        let hash = store.put(b"hello").unwrap();
        assert!(matches!(
            store.slice(&hash, 6, 1),
            Err(ArtifactError::OutOfRange { .. })
        ));
        std::fs::write(dir.path().join(hash.to_hex()), b"jello").unwrap();
        assert!(matches!(store.read(&hash), Err(ArtifactError::Corrupt(_))));
    }
}
