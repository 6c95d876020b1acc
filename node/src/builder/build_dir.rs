//! The directory a build writes to, seen from the host after (or while) the hostile recipe ran
//! in it: how much disk it uses, where a declared output really is, and how to remove it
//! whatever the recipe did to its permissions. Symbolic links the recipe made are never
//! followed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Deepest directory nesting looked into (deeper trees are counted as over any quota).
const MAX_DEPTH: usize = 256;

/// Disk space used under `dir` in bytes (allocated blocks, so sparse files count for what
/// they occupy), without following symbolic links and without changing anything: the recipe
/// may still be running and swapping entries. `None` (to be treated as over any quota) when
/// part of the tree cannot be measured: deeper than [`MAX_DEPTH`], a path too long to stat, or
/// a directory the recipe made unreadable.
pub(super) fn disk_usage(dir: &Path) -> Option<u64> {
    let mut total = 0u64;
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    while let Some((path, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return None;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Removed by the build since it was listed.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        total = total.saturating_add(meta.blocks().saturating_mul(512));
        if !meta.is_dir() {
            continue;
        }
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        for entry in entries {
            pending.push((entry.ok()?.path(), depth + 1));
        }
    }
    Some(total)
}

/// The entries of directory `path` (no process of the build is left: the recipe cannot swap
/// it for a link any more); if it is unreadable, its owner's permissions are restored first.
fn read_dir_forcing(path: &Path, meta: &std::fs::Metadata) -> Option<Vec<PathBuf>> {
    let list = |path: &Path| {
        std::fs::read_dir(path).map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .collect::<Vec<_>>()
        })
    };
    match list(path) {
        Ok(entries) => Some(entries),
        Err(_) => {
            let mode = meta.permissions().mode() | 0o700;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ok()?;
            list(path).ok()
        }
    }
}

/// Gives the owner full access to every directory under `dir` (not following symbolic links),
/// so that the tree can be removed even where the recipe ran `chmod 000`. Only once nothing of
/// the build runs any more: it changes permissions by path.
pub(super) fn make_removable(dir: &Path) {
    let mut pending = vec![(dir.to_path_buf(), 0usize)];
    while let Some((path, depth)) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || depth > MAX_DEPTH {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o700));
        }
        for entry in read_dir_forcing(&path, &meta).into_iter().flatten() {
            pending.push((entry, depth + 1));
        }
    }
}

/// Why a declared output cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum OutputError {
    /// The path is absolute or climbs out (`..`).
    #[error("output path {0:?} leaves the build directory")]
    Outside(String),
    /// A directory on the way is a symbolic link (it could point anywhere on the host).
    #[error(
        "output {declared}: {parent} is a symbolic link, and outputs are resolved inside the build directory only"
    )]
    SymlinkedParent { declared: String, parent: String },
    /// The output is a link, a directory or a device.
    #[error("output {0} is not a regular file")]
    NotAFile(String),
    /// Nothing is there.
    #[error("output {0} was not produced")]
    Missing(String),
}

/// Resolves the output the recipe declared as `declared` inside `build_dir`, component by
/// component, refusing absolute paths, `..`, and any symbolic link on the way or at the end.
pub(super) fn output_path(build_dir: &Path, declared: &str) -> Result<PathBuf, OutputError> {
    let relative = Path::new(declared);
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            _ => return Err(OutputError::Outside(declared.to_owned())),
        }
    }
    let Some((last, parents)) = parts.split_last() else {
        return Err(OutputError::NotAFile(declared.to_owned()));
    };
    let mut path = build_dir.to_path_buf();
    for parent in parents {
        path.push(parent);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(OutputError::SymlinkedParent {
                    declared: declared.to_owned(),
                    parent: path
                        .strip_prefix(build_dir)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(OutputError::NotAFile(declared.to_owned())),
            Err(_) => return Err(OutputError::Missing(declared.to_owned())),
        }
    }
    path.push(last);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(OutputError::NotAFile(declared.to_owned())),
        Err(_) => Err(OutputError::Missing(declared.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_resolve_only_through_real_directories() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("out/bin")).expect("dirs");
        std::fs::write(root.join("out/bin/tool"), b"tool").expect("file");
        std::os::unix::fs::symlink("/etc", root.join("etc")).expect("link");
        std::os::unix::fs::symlink(root.join("out"), root.join("alias")).expect("link");
        std::os::unix::fs::symlink("/etc/hostname", root.join("out/host")).expect("link");
        assert_eq!(
            output_path(root, "./out/bin/tool"),
            Ok(root.join("out/bin/tool"))
        );
        assert!(matches!(
            output_path(root, "etc/passwd"),
            Err(OutputError::SymlinkedParent { .. })
        ));
        assert!(matches!(
            output_path(root, "alias/bin/tool"),
            Err(OutputError::SymlinkedParent { .. })
        ));
        for (declared, expected) in [
            ("out/host", OutputError::NotAFile("out/host".into())),
            ("out/bin", OutputError::NotAFile("out/bin".into())),
            ("out/none", OutputError::Missing("out/none".into())),
            ("../x", OutputError::Outside("../x".into())),
            ("/etc/passwd", OutputError::Outside("/etc/passwd".into())),
            (
                "out/bin/tool/x",
                OutputError::NotAFile("out/bin/tool/x".into()),
            ),
        ] {
            assert_eq!(output_path(root, declared), Err(expected), "{declared}");
        }
    }

    #[test]
    fn locked_directories_are_opened_for_removal_and_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("build");
        std::fs::create_dir_all(root.join("a/b")).expect("dirs");
        std::fs::write(root.join("a/b/data"), vec![7u8; 64 * 1024]).expect("file");
        for locked in ["a/b", "a"] {
            std::fs::set_permissions(root.join(locked), std::fs::Permissions::from_mode(0o000))
                .expect("chmod 000");
        }
        // Measuring changes nothing (as root the locked directories are read anyway; as
        // another user they cannot be measured, which counts as over the quota).
        if let Some(used) = disk_usage(&root) {
            assert!(used >= 64 * 1024, "{used}");
        }
        assert_eq!(
            std::fs::symlink_metadata(root.join("a"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0
        );
        make_removable(&root);
        for path in ["a", "a/b"] {
            let mode = std::fs::symlink_metadata(root.join(path))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o700, 0o700, "{path}");
        }
        std::fs::remove_dir_all(&root).expect("removable");
    }
}
