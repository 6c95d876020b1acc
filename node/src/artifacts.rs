//! Release artifacts on disk: stored content-addressed by their BLAKE3 hash and served in
//! slices that prove themselves (downloading them is `chainiac_net::download`).
//!
//! Each artifact lives in `DIR/<hash>` with its BLAKE3 tree (a bao "outboard" encoding) in
//! `DIR/<hash>.obao`. A slice sent to a peer carries the tree nodes that prove it against the
//! artifact's hash, so a downloader checks each slice as it arrives.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
            // Uploaded again: fresh for the garbage collector's grace period.
            self.touch(&hash)?;
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

    /// Marks a stored artifact as written now, so that the garbage collector keeps it for
    /// another grace period (a release about to be published names it).
    pub fn touch(&self, hash: &Hash) -> Result<(), ArtifactError> {
        let now = SystemTime::now();
        for path in [self.content_path(hash), self.tree_path(hash)] {
            let file = File::options()
                .append(true)
                .open(&path)
                .map_err(io_error(&path))?;
            file.set_modified(now).map_err(io_error(&path))?;
        }
        Ok(())
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

/// Files of the artifact directory not written since some time: artifacts (content or tree)
/// and the temporary files of writes that never finished.
#[derive(Debug)]
pub struct StaleFiles {
    /// The time the files were not written since.
    pub written_before: SystemTime,
    /// Artifacts whose content and tree were both last written before the time.
    pub artifacts: BTreeSet<Hash>,
    /// Temporary files of interrupted writes.
    pub leftovers: Vec<PathBuf>,
}

impl StaleFiles {
    /// Whether there is nothing to collect.
    pub fn is_empty(&self) -> bool {
        self.artifacts.is_empty() && self.leftovers.is_empty()
    }
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Artifacts removed.
    pub artifacts: usize,
    /// Temporary files removed.
    pub leftovers: usize,
    /// Bytes freed.
    pub bytes: u64,
}

impl ArtifactStore {
    /// The files not written since `written_before`. Files that are neither artifacts nor
    /// temporary files of this store are not ours and are left alone.
    pub fn stale(&self, written_before: SystemTime) -> Result<StaleFiles, ArtifactError> {
        let mut stale = StaleFiles {
            written_before,
            artifacts: BTreeSet::new(),
            leftovers: Vec::new(),
        };
        let mut fresh = HashSet::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let entry = entry.map_err(io_error(&self.dir))?;
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let old = metadata
                .modified()
                .is_ok_and(|modified| modified < written_before);
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let stem = name.strip_suffix(".obao").unwrap_or(name);
            if let Ok(hash) = Hash::from_hex(stem) {
                if old {
                    stale.artifacts.insert(hash);
                } else {
                    fresh.insert(hash);
                }
            } else if old
                && name.contains(".tmp-")
                && name
                    .get(..64)
                    .is_some_and(|hex| Hash::from_hex(hex).is_ok())
            {
                stale.leftovers.push(entry.path());
            }
        }
        // An artifact one of whose files was written recently is being written now.
        stale.artifacts.retain(|hash| !fresh.contains(hash));
        Ok(stale)
    }

    /// Removes the `stale` artifacts that are not `referenced`, and the leftovers.
    pub fn collect(
        &self,
        stale: &StaleFiles,
        referenced: &HashSet<Hash>,
    ) -> Result<Collected, ArtifactError> {
        let mut collected = Collected::default();
        let mut remove = |path: &Path| -> Result<bool, ArtifactError> {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(path) {
                Ok(()) => {
                    collected.bytes += size;
                    Ok(true)
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(source) => Err(ArtifactError::Io {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        };
        let mut artifacts = 0;
        let mut leftovers = 0;
        for hash in stale.artifacts.iter().filter(|h| !referenced.contains(h)) {
            // Touched since it was found stale (uploaded again, or named by a release being
            // published): kept.
            let fresh = |path: PathBuf| {
                std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified >= stale.written_before)
            };
            if fresh(self.content_path(hash)) || fresh(self.tree_path(hash)) {
                continue;
            }
            // The content first: without it the artifact is not `has`, whatever happens next.
            let content = remove(&self.content_path(hash))?;
            let tree = remove(&self.tree_path(hash))?;
            if content || tree {
                artifacts += 1;
            }
        }
        for path in &stale.leftovers {
            if remove(path)? {
                leftovers += 1;
            }
        }
        collected.artifacts = artifacts;
        collected.leftovers = leftovers;
        Ok(collected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainiac_net::download::verify_slice;
    use std::time::Duration;

    #[test]
    fn unreferenced_artifacts_and_leftovers_older_than_the_grace_are_collected() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let kept = store.put(b"named by a logged release").unwrap();
        let orphan = store.put(b"uploaded for a refused release").unwrap();
        let republished = store.put(b"uploaded long before its release").unwrap();
        let leftover = dir.path().join(format!("{}.tmp-77", orphan.to_hex()));
        std::fs::write(&leftover, b"half").unwrap();
        let foreign = dir.path().join("README");
        std::fs::write(&foreign, b"the operator's").unwrap();
        let referenced = HashSet::from([kept]);

        // Everything was written just now: nothing is stale yet.
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        assert!(store.stale(hour_ago).unwrap().is_empty());

        // Two hours later (every file aged by two hours).
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let file = File::options()
                .append(true)
                .open(entry.unwrap().path())
                .unwrap();
            file.set_modified(two_hours_ago).unwrap();
        }
        let stale = store.stale(hour_ago).unwrap();
        assert_eq!(stale.artifacts, BTreeSet::from([kept, orphan, republished]));
        assert_eq!(stale.leftovers, vec![leftover.clone()]);
        // Uploaded again (its release is being published) after the collector looked: kept.
        store.put(b"uploaded long before its release").unwrap();
        let collected = store.collect(&stale, &referenced).unwrap();
        assert_eq!(collected.artifacts, 1);
        assert_eq!(collected.leftovers, 1);
        assert!(collected.bytes >= b"uploaded for a refused release".len() as u64 + 4);
        assert!(store.has(&kept));
        assert!(store.has(&republished));
        assert!(!store.has(&orphan));
        assert!(!store.tree_path(&orphan).exists());
        assert!(!leftover.exists());
        assert!(foreign.exists(), "files that are not ours stay");
        // Collecting again finds nothing more.
        let again = store
            .collect(&store.stale(hour_ago).unwrap(), &referenced)
            .unwrap();
        assert_eq!(again, Collected::default());
    }

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
