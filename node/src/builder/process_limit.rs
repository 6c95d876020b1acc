//! Bounding how many processes (and threads) one build may run, so that a fork bomb fails the
//! build instead of the machine.
//!
//! Where the node may create cgroups (as root: cgroup v2 with the `pids` controller, or the v1
//! `pids` hierarchy), each build runs in a cgroup of its own whose `pids.max` is the limit; the
//! cgroup is emptied and removed after the build. Otherwise `RLIMIT_NPROC` is used, which the
//! kernel counts over all of the user's tasks (so it is set to the user's current tasks plus
//! the limit) and ignores for root: a root node without a writable pids cgroup has no process
//! limit, and builds are refused there.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How this machine bounds a build's processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ProcessLimit {
    /// A pids cgroup per build, created under this directory.
    Cgroup { parent: PathBuf },
    /// `RLIMIT_NPROC`, for a node that does not run as root.
    Rlimit,
}

/// The process limit of one running build.
#[derive(Debug)]
pub(super) enum AppliedLimit {
    /// The build's own cgroup (removed when dropped): its process list is where the build's
    /// first process writes itself before it starts the sandbox.
    Cgroup(BuildCgroup),
    /// The `RLIMIT_NPROC` value to set.
    Rlimit(u64),
}

const CGROUP_V2: &str = "/sys/fs/cgroup";
const CGROUP_V1_PIDS: &str = "/sys/fs/cgroup/pids";

impl ProcessLimit {
    /// The way this machine can bound a build's processes, or `None` if it cannot (root
    /// without a writable pids cgroup).
    pub(super) fn detect() -> Option<Self> {
        let v2 = Path::new(CGROUP_V2);
        let v2_has_pids = std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "pids"));
        if v2_has_pids && can_create_cgroup(v2) {
            return Some(Self::Cgroup { parent: v2.into() });
        }
        let v1 = Path::new(CGROUP_V1_PIDS);
        if v1.join("cgroup.procs").is_file() && can_create_cgroup(v1) {
            return Some(Self::Cgroup { parent: v1.into() });
        }
        (effective_uid() != Some(0)).then_some(Self::Rlimit)
    }

    /// Sets up the limit of `max` processes for one build.
    pub(super) fn apply(&self, max: u64) -> std::io::Result<AppliedLimit> {
        match self {
            Self::Cgroup { parent } => BuildCgroup::create(parent, max).map(AppliedLimit::Cgroup),
            Self::Rlimit => {
                let uid = effective_uid().ok_or_else(|| {
                    std::io::Error::other("cannot tell which user this node runs as")
                })?;
                Ok(AppliedLimit::Rlimit(tasks_of(uid).saturating_add(max)))
            }
        }
    }
}

/// The cgroup of one build. Dropping it kills what is left in it and removes it.
#[derive(Debug)]
pub(super) struct BuildCgroup {
    dir: PathBuf,
}

impl BuildCgroup {
    fn create(parent: &Path, max: u64) -> std::io::Result<Self> {
        let dir = parent.join(format!(
            "chainiac-build-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        std::fs::create_dir(&dir)?;
        let cgroup = Self { dir };
        std::fs::write(cgroup.dir.join("pids.max"), max.to_string())?;
        Ok(cgroup)
    }

    /// The file a process writes its pid to in order to join the cgroup.
    pub(super) fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The processes still in the cgroup.
    pub(super) fn processes(&self) -> Vec<u32> {
        std::fs::read_to_string(self.procs_file())
            .map(|list| list.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process left in the cgroup and waits (at most 5 s) until it is empty.
    pub(super) fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.processes();
            if left.is_empty() || Instant::now() >= deadline {
                return;
            }
            // cgroup v2 kills the whole group at once; v1 needs each process killed, and a
            // process may fork while we do, so this repeats until the group is empty.
            let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .args(left.iter().map(u32::to_string))
                .stderr(std::process::Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BuildCgroup {
    fn drop(&mut self) {
        self.kill_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn can_create_cgroup(parent: &Path) -> bool {
    let probe = parent.join(format!(
        "chainiac-probe-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let created = std::fs::create_dir(&probe).is_ok();
    if created {
        let _ = std::fs::remove_dir(&probe);
    }
    created
}

/// The effective user id of this process (the owner of `/proc/self`).
fn effective_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// How many tasks (processes and threads) user `uid` runs: what `RLIMIT_NPROC` counts.
fn tasks_of(uid: u32) -> u64 {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|entry| entry.metadata().is_ok_and(|m| m.uid() == uid))
        .map(|entry| {
            std::fs::read_dir(entry.path().join("task")).map_or(1, |tasks| tasks.count() as u64)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked on the cgroup itself rather than through a whole build, where other builds of
    /// the same test process (run in parallel) create cgroups with the same name prefix.
    #[test]
    fn a_build_cgroup_full_of_processes_is_emptied_and_removed_when_dropped() {
        let Some(limit @ ProcessLimit::Cgroup { .. }) = ProcessLimit::detect() else {
            eprintln!("no writable pids cgroup here: builds use RLIMIT_NPROC, nothing to remove");
            return;
        };
        let Ok(AppliedLimit::Cgroup(cgroup)) = limit.apply(16) else {
            panic!("a cgroup limit applies as a cgroup");
        };
        let dir = cgroup.dir.clone();
        let mut sleepers = std::process::Command::new("sh")
            .arg("-c")
            // More sleepers than the limit: the cgroup fills up and stays full (a fork bomb's
            // population may die out when its forks fail, which makes a flaky test).
            .arg("echo $$ > \"$1\" && i=0 && while [ $i -lt 32 ]; do sleep 60 & i=$((i+1)); done; wait")
            .arg("sh")
            .arg(cgroup.procs_file())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sh runs");
        // pids.current counts every task of the cgroup (v1 and v2); cgroup.procs may list
        // fewer while processes fork and exit.
        let tasks = || {
            std::fs::read_to_string(dir.join("pids.current"))
                .ok()
                .and_then(|count| count.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tasks() < 16 {
            assert!(
                Instant::now() < deadline,
                "the processes never reached the limit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(tasks(), 16, "pids.max bounds the tasks of the cgroup");
        drop(cgroup);
        assert!(!dir.exists(), "the cgroup directory is removed");
        let _ = sleepers.wait();
    }
}
