//! Rebuilding a release from its published source, the way a build verifier does before it
//! attests: the recipe runs in a fresh directory inside a bubblewrap sandbox (no network, no
//! host files but read-only system and toolchain directories, a cleared environment with fixed
//! `SOURCE_DATE_EPOCH`, `TZ=UTC`, `LC_ALL=C` and umask 022), under time, memory, file-size,
//! process-count and disk limits (`/tmp` is a directory of the build, on disk and within its
//! quota); then the declared outputs are hashed, resolved inside the build directory without
//! following links. Builds never run without these limits. What the recipe does is hostile input: a
//! failure, a timeout, a forbidden action or a missing output is a *failed* build, reported in
//! the attestation, never an error of the verifier.

mod build_dir;
mod process_limit;

use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chainiac_protocol::Hash;
use chainiac_protocol::keys::SecretKey;
use chainiac_protocol::release::{BuildAttestation, BuildOutcome, ReleaseManifest};

/// Where the build directory appears inside the sandbox.
pub const SANDBOX_BUILD_DIR: &str = "/build";
/// How much of the log's end a rebuild keeps to show (the digest covers all of it).
const LOG_TAIL: usize = 16 * 1024;
/// How often a running build is polled for its end.
const POLL: Duration = Duration::from_millis(20);
/// How often a running build's disk use is measured (a build can exceed its quota by what it
/// writes in this time, each file being capped by the file-size limit, before it is stopped).
const DISK_CHECK: Duration = Duration::from_millis(250);

use process_limit::{AppliedLimit, ProcessLimit};

/// Resource limits of one build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildLimits {
    /// Wall-clock time before the build is killed.
    pub time: Duration,
    /// Address space of each process, in bytes.
    pub memory_bytes: u64,
    /// Largest file a process may write, in bytes (also bounds the log).
    pub file_bytes: u64,
    /// Most processes and threads the build may run at once.
    pub processes: u64,
    /// Most disk space the build directory (with `/tmp` and the log) may use, in bytes.
    pub disk_bytes: u64,
}

impl Default for BuildLimits {
    /// 15 minutes, 8 GiB of address space, 2 GiB per file, 1,024 processes, 20 GiB of disk.
    fn default() -> Self {
        Self {
            time: Duration::from_secs(15 * 60),
            memory_bytes: 8 << 30,
            file_bytes: 2 << 30,
            processes: 1024,
            disk_bytes: 20 << 30,
        }
    }
}

/// What can stop a verifier from running a build at all (as opposed to a build that fails).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// bubblewrap is not installed.
    #[error(
        "bubblewrap (bwrap) is not installed, and builds never run unsandboxed; install it (Debian: apt-get install bubblewrap)"
    )]
    NoSandbox,
    /// prlimit is not installed.
    #[error(
        "prlimit is not installed, and builds never run without resource limits; install it (Debian: apt-get install util-linux)"
    )]
    NoPrlimit,
    /// Nothing can bound the number of processes of a build here.
    #[error(
        "cannot limit the number of build processes: this node runs as root, which the per-user process limit does not bind, and cannot create a cgroup with the pids controller under /sys/fs/cgroup; builds never run without a process limit; run the node as an unprivileged user, or give it a writable pids cgroup"
    )]
    NoProcessLimit,
    /// The source bytes are not the ones the manifest names.
    #[error("the source does not match the manifest: expected {expected}, got {found}")]
    WrongSource { expected: Hash, found: Hash },
    /// The verifier's own disk or process handling failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// A directory of the host visible, read-only, inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOnlyBind {
    /// Path on the host.
    pub host: PathBuf,
    /// Path inside the sandbox.
    pub sandbox: String,
}

/// The isolated environment builds run in.
#[derive(Clone, Debug)]
pub struct Sandbox {
    bwrap: PathBuf,
    prlimit: Option<PathBuf>,
    process_limit: Option<ProcessLimit>,
    binds: Vec<ReadOnlyBind>,
    path: Vec<String>,
    env: Vec<(String, String)>,
}

fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

impl Sandbox {
    /// The system sandbox: bubblewrap with `/usr` (and the usual `/bin`, `/lib` links) and
    /// `/etc/alternatives` read-only; nothing else of the host.
    pub fn system() -> Result<Self, BuildError> {
        let bwrap = find_program("bwrap").ok_or(BuildError::NoSandbox)?;
        let mut binds = vec![ReadOnlyBind {
            host: "/usr".into(),
            sandbox: "/usr".into(),
        }];
        if Path::new("/etc/alternatives").is_dir() {
            binds.push(ReadOnlyBind {
                host: "/etc/alternatives".into(),
                sandbox: "/etc/alternatives".into(),
            });
        }
        Ok(Self {
            bwrap,
            prlimit: find_program("prlimit"),
            process_limit: ProcessLimit::detect(),
            binds,
            path: vec!["/usr/local/bin".into(), "/usr/bin".into(), "/bin".into()],
            env: Vec::new(),
        })
    }

    /// Also makes the host's Rust toolchain (rustup's `RUSTUP_HOME` and cargo's `bin`)
    /// available, read-only, at `/opt/rustup` and `/opt/cargo/bin`, if there is one. Recipes
    /// that need a given compiler version check it themselves (`rustc --version`).
    pub fn with_host_rust(mut self) -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let rustup = std::env::var_os("RUSTUP_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".rustup")));
        let cargo_bin = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".cargo")))
            .map(|cargo| cargo.join("bin"));
        if let (Some(rustup), Some(cargo_bin)) = (rustup, cargo_bin)
            && rustup.is_dir()
            && cargo_bin.is_dir()
        {
            self.binds.push(ReadOnlyBind {
                host: rustup,
                sandbox: "/opt/rustup".into(),
            });
            self.binds.push(ReadOnlyBind {
                host: cargo_bin,
                sandbox: "/opt/cargo/bin".into(),
            });
            self.path.insert(0, "/opt/cargo/bin".into());
            self.env.push(("RUSTUP_HOME".into(), "/opt/rustup".into()));
            self.env
                .push(("CARGO_HOME".into(), format!("{SANDBOX_BUILD_DIR}/.cargo")));
        }
        self
    }

    /// Adds a read-only directory (a toolchain) at `sandbox` inside the sandbox.
    pub fn with_bind(mut self, bind: ReadOnlyBind) -> Self {
        self.binds.push(bind);
        self
    }

    /// The read-only directories builds see.
    pub fn binds(&self) -> &[ReadOnlyBind] {
        &self.binds
    }

    /// Whether builds can run here with every limit in force (what a verifier checks before
    /// it starts).
    pub fn check_limits(&self) -> Result<(), BuildError> {
        if self.prlimit.is_none() {
            return Err(BuildError::NoPrlimit);
        }
        if self.process_limit.is_none() {
            return Err(BuildError::NoProcessLimit);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn command(
        &self,
        limits: &BuildLimits,
        applied: &AppliedLimit,
        build_dir: &Path,
        tmp_dir: &Path,
        recipe: &Path,
        source: &str,
        epoch: u64,
    ) -> Result<Command, BuildError> {
        let prlimit = self.prlimit.as_ref().ok_or(BuildError::NoPrlimit)?;
        // The first process joins the build's cgroup (if any), then becomes prlimit, which
        // becomes bwrap: everything the recipe starts is inside the limits.
        let mut command = Command::new("/bin/sh");
        command.arg("-c");
        match applied {
            AppliedLimit::Cgroup(cgroup) => {
                command
                    .arg("echo $$ > \"$0\" && exec \"$@\"")
                    .arg(cgroup.procs_file());
            }
            AppliedLimit::Rlimit(_) => {
                command.arg("exec \"$@\"").arg("sh");
            }
        }
        command
            .arg(prlimit)
            .arg(format!("--as={}", limits.memory_bytes))
            // A file may not be larger than the whole quota either.
            .arg(format!(
                "--fsize={}",
                limits.file_bytes.min(limits.disk_bytes)
            ))
            .arg("--core=0");
        if let AppliedLimit::Rlimit(tasks) = applied {
            command.arg(format!("--nproc={tasks}"));
        }
        command.arg("--").arg(&self.bwrap);
        command.args([
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
        ]);
        for bind in &self.binds {
            command.arg("--ro-bind").arg(&bind.host).arg(&bind.sandbox);
        }
        for (link, target) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            if Path::new("/usr")
                .join(target.trim_start_matches("usr/"))
                .exists()
            {
                command.args(["--symlink", target, link]);
            }
        }
        command
            .args(["--proc", "/proc", "--dev", "/dev"])
            .arg("--bind")
            .arg(tmp_dir)
            .arg("/tmp")
            .arg("--bind")
            .arg(build_dir)
            .arg(SANDBOX_BUILD_DIR)
            .arg("--ro-bind")
            .arg(recipe)
            .arg("/recipe.sh")
            .args(["--chdir", SANDBOX_BUILD_DIR]);
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), self.path.join(":")),
            ("HOME".into(), SANDBOX_BUILD_DIR.into()),
            ("SOURCE".into(), format!("{SANDBOX_BUILD_DIR}/{source}")),
            ("SOURCE_DATE_EPOCH".into(), epoch.to_string()),
            ("TZ".into(), "UTC".into()),
            ("LC_ALL".into(), "C".into()),
            ("LANG".into(), "C".into()),
            ("TMPDIR".into(), "/tmp".into()),
        ];
        env.extend(self.env.iter().cloned());
        for (key, value) in env {
            command.arg("--setenv").arg(key).arg(value);
        }
        command.args([
            "--",
            "/bin/sh",
            "-c",
            "umask 022; exec /bin/sh -eu /recipe.sh",
        ]);
        Ok(command)
    }
}

/// The result of one rebuild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuild {
    /// Whether the build ran and produced every declared output.
    pub outcome: BuildOutcome,
    /// (platform, BLAKE3) of each output, sorted by platform (empty if the build failed).
    pub outputs: Vec<(String, Hash)>,
    /// Plain BLAKE3 of the whole log (standard output and error, interleaved).
    pub log_digest: Hash,
    /// The end of the log.
    pub log_tail: String,
    /// Why the build failed.
    pub failure: Option<String>,
    /// How long the build ran.
    pub elapsed: Duration,
}

impl Rebuild {
    /// The verifier's signed attestation of this rebuild of `manifest`.
    pub fn attest(&self, verifier: &SecretKey, manifest: &ReleaseManifest) -> BuildAttestation {
        BuildAttestation::sign(
            verifier,
            manifest.digest(),
            self.outcome,
            self.outputs.clone(),
            self.log_digest,
        )
    }

    /// Whether the outputs are exactly the binaries the manifest declares.
    pub fn reproduces(&self, manifest: &ReleaseManifest) -> bool {
        self.outcome == BuildOutcome::Built && self.outputs == manifest.binary_hashes()
    }
}

/// A file name the manifest gives (the source's): one plain component.
fn plain_file_name(name: &str) -> Option<&str> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Some(name),
        _ => None,
    }
}

/// The scratch directory of one build: removed when dropped, whatever permissions the recipe
/// left in it.
struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    fn path(&self) -> &Path {
        self.0.as_ref().map_or(Path::new(""), |dir| dir.path())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            build_dir::make_removable(dir.path());
            let path = dir.path().to_path_buf();
            if let Err(error) = dir.close() {
                tracing::warn!(path = %path.display(), %error, "cannot remove a build directory");
            }
        }
    }
}

/// Rebuilds `manifest` from `source` (its source artifact's bytes) in a fresh directory under
/// `work_dir`, removed afterwards.
pub fn rebuild(
    sandbox: &Sandbox,
    limits: &BuildLimits,
    manifest: &ReleaseManifest,
    source: &[u8],
    work_dir: &Path,
) -> Result<Rebuild, BuildError> {
    rebuild_keeping(sandbox, limits, manifest, source, work_dir, None)
}

/// [`rebuild`], also copying each output of a successful build to `keep/PLATFORM` (what a
/// publisher does to obtain the binaries it declares, built exactly as verifiers will).
pub fn rebuild_keeping(
    sandbox: &Sandbox,
    limits: &BuildLimits,
    manifest: &ReleaseManifest,
    source: &[u8],
    work_dir: &Path,
    keep: Option<&Path>,
) -> Result<Rebuild, BuildError> {
    let found = Hash::of_artifact(source);
    if found != manifest.source.hash {
        return Err(BuildError::WrongSource {
            expected: manifest.source.hash,
            found,
        });
    }
    sandbox.check_limits()?;
    let process_limit = sandbox
        .process_limit
        .as_ref()
        .ok_or(BuildError::NoProcessLimit)?;
    std::fs::create_dir_all(work_dir)
        .map_err(io(format!("cannot create {}", work_dir.display())))?;
    let scratch = Scratch(Some(
        tempfile::Builder::new()
            .prefix("chainiac-build-")
            .tempdir_in(work_dir)
            .map_err(io(format!(
                "cannot create a build directory in {}",
                work_dir.display()
            )))?,
    ));
    let build_dir = scratch.path().join("build");
    std::fs::create_dir(&build_dir).map_err(io("cannot create the build directory"))?;
    let tmp_dir = scratch.path().join("tmp");
    std::fs::create_dir(&tmp_dir).map_err(io("cannot create the build's /tmp"))?;
    let started = Instant::now();
    let failed = |failure: String, log: &[u8]| Rebuild {
        outcome: BuildOutcome::Failed,
        outputs: Vec::new(),
        log_digest: Hash::of_artifact(log),
        log_tail: tail(log),
        failure: Some(failure),
        elapsed: started.elapsed(),
    };
    let Some(source_name) = plain_file_name(&manifest.source.name) else {
        return Ok(failed(
            format!(
                "source name {:?} is not a plain file name",
                manifest.source.name
            ),
            b"",
        ));
    };
    std::fs::write(build_dir.join(source_name), source)
        .map_err(io("cannot write the source into the build directory"))?;
    let recipe = scratch.path().join("recipe.sh");
    std::fs::write(&recipe, &manifest.recipe.script).map_err(io("cannot write the recipe"))?;
    let log_path = scratch.path().join("build.log");
    let log = File::create(&log_path).map_err(io("cannot create the build log"))?;
    let applied = process_limit
        .apply(limits.processes)
        .map_err(io("cannot set up the build's process limit"))?;
    let mut command = sandbox.command(
        limits,
        &applied,
        &build_dir,
        &tmp_dir,
        &recipe,
        source_name,
        manifest.timestamp,
    )?;
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io("cannot share the build log"))?)
        .stderr(log);
    let mut child = command.spawn().map_err(io("cannot start bubblewrap"))?;
    let deadline = started + limits.time;
    let over_quota =
        || build_dir::disk_usage(scratch.path()).is_none_or(|used| used > limits.disk_bytes);
    let mut next_disk_check = Instant::now() + DISK_CHECK;
    let stopped = loop {
        if let Some(status) = child.try_wait().map_err(io("cannot wait for the build"))? {
            break Ok(status);
        }
        let stop = if Instant::now() >= deadline {
            Some(format!(
                "the build ran past its time limit of {} s and was killed",
                limits.time.as_secs()
            ))
        } else if Instant::now() >= next_disk_check {
            next_disk_check = Instant::now() + DISK_CHECK;
            over_quota().then(|| disk_failure(limits))
        } else {
            None
        };
        if let Some(reason) = stop {
            // bwrap's sandbox dies with it (--die-with-parent, and its PID namespace).
            let _ = child.kill();
            let _ = child.wait();
            break Err(reason);
        }
        std::thread::sleep(POLL);
    };
    // Nothing of the build may still run while its outputs are read.
    if let AppliedLimit::Cgroup(cgroup) = &applied {
        cgroup.kill_all();
    }
    let disk_exceeded = over_quota();
    let log = std::fs::read(&log_path).map_err(io("cannot read the build log"))?;
    let status = match stopped {
        Ok(status) => status,
        Err(reason) => return Ok(failed(reason, &log)),
    };
    if disk_exceeded {
        return Ok(failed(disk_failure(limits), &log));
    }
    if !status.success() {
        return Ok(failed(format!("the recipe failed ({status})"), &log));
    }
    let mut outputs = Vec::new();
    for (platform, declared) in &manifest.recipe.outputs {
        let path = match build_dir::output_path(&build_dir, declared) {
            Ok(path) => path,
            Err(error) => return Ok(failed(error.to_string(), &log)),
        };
        let bytes = std::fs::read(&path).map_err(io(format!("cannot read output {declared}")))?;
        outputs.push((platform.clone(), Hash::of_artifact(&bytes)));
        if let Some(keep) = keep {
            let Some(name) = plain_file_name(platform) else {
                return Ok(failed(
                    format!("platform {platform:?} is not a plain file name"),
                    &log,
                ));
            };
            std::fs::create_dir_all(keep)
                .map_err(io(format!("cannot create {}", keep.display())))?;
            std::fs::write(keep.join(name), &bytes)
                .map_err(io(format!("cannot keep output {declared}")))?;
        }
    }
    outputs.sort();
    Ok(Rebuild {
        outcome: BuildOutcome::Built,
        outputs,
        log_digest: Hash::of_artifact(&log),
        log_tail: tail(&log),
        failure: None,
        elapsed: started.elapsed(),
    })
}

fn disk_failure(limits: &BuildLimits) -> String {
    format!(
        "the build used more than its {} MiB of disk and was stopped",
        limits.disk_bytes >> 20
    )
}

fn tail(log: &[u8]) -> String {
    let start = log.len().saturating_sub(LOG_TAIL);
    String::from_utf8_lossy(&log[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use chainiac_protocol::release::{ArtifactRef, BinaryArtifact, BuildRecipe};

    use super::*;

    fn manifest(script: &str, outputs: &[(&str, &str)], source: &[u8]) -> ReleaseManifest {
        ReleaseManifest {
            project: "sandboxed".into(),
            version: "1.0.0".into(),
            sequence: 1,
            source: ArtifactRef::of("source.txt", source),
            recipe: BuildRecipe {
                script: script.into(),
                outputs: outputs
                    .iter()
                    .map(|(p, o)| ((*p).to_owned(), (*o).to_owned()))
                    .collect(),
            },
            binaries: outputs
                .iter()
                .map(|(p, _)| BinaryArtifact {
                    platform: (*p).to_owned(),
                    artifact: ArtifactRef::of("bin", b"unused"),
                })
                .collect(),
            policy: Hash([1; 32]),
            timestamp: 1_700_000_000,
        }
    }

    fn sandbox() -> Sandbox {
        match Sandbox::system() {
            Ok(sandbox) => sandbox,
            Err(error) => panic!("{error} (.ci/run installs it)"),
        }
    }

    fn run(script: &str, outputs: &[(&str, &str)], limits: BuildLimits) -> Rebuild {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = b"hello from the source\n";
        let manifest = manifest(script, outputs, source);
        rebuild(&sandbox(), &limits, &manifest, source, dir.path()).expect("rebuild runs")
    }

    #[test]
    fn a_recipe_sees_a_cleared_fixed_environment_and_its_outputs_are_hashed() {
        let script = "echo \"epoch=$SOURCE_DATE_EPOCH tz=$TZ lc=$LC_ALL home=$HOME umask=$(umask)\"\n\
                      echo \"names: $(env | cut -d= -f1 | sort | tr '\\n' ' ')\"\n\
                      test ! -e /etc/passwd && test ! -e /root && echo no-host-files\n\
                      mkdir -p out && cat \"$SOURCE\" > out/result\n";
        let rebuild = run(script, &[("any", "out/result")], BuildLimits::default());
        assert_eq!(
            rebuild.outcome,
            BuildOutcome::Built,
            "{:?}",
            rebuild.failure
        );
        let log = &rebuild.log_tail;
        assert!(
            log.contains("epoch=1700000000 tz=UTC lc=C home=/build umask=0022"),
            "{log}"
        );
        assert!(log.contains("no-host-files"), "{log}");
        let names = log
            .lines()
            .find_map(|line| line.strip_prefix("names: "))
            .unwrap_or_default();
        let allowed = [
            "HOME",
            "LANG",
            "LC_ALL",
            "OLDPWD",
            "PATH",
            "PWD",
            "SHLVL",
            "SOURCE",
            "SOURCE_DATE_EPOCH",
            "TMPDIR",
            "TZ",
            "_",
        ];
        for name in names.split_whitespace() {
            assert!(
                allowed.contains(&name),
                "{name} leaked into the build: {log}"
            );
        }
        assert_eq!(
            rebuild.outputs,
            vec![(
                "any".to_owned(),
                Hash::of_artifact(b"hello from the source\n")
            )]
        );
        assert_eq!(rebuild.log_digest, Hash::of_artifact(log.as_bytes()));
    }

    #[test]
    fn a_recipe_that_tries_the_network_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let port = listener.local_addr().expect("address").port();
        let script = format!(
            "mkdir -p out\nbash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' && echo connected > out/result\n"
        );
        let rebuild = run(&script, &[("any", "out/result")], BuildLimits::default());
        assert_eq!(rebuild.outcome, BuildOutcome::Failed);
        assert!(rebuild.outputs.is_empty());
        assert!(rebuild.failure.is_some_and(|f| f.contains("recipe failed")));
    }

    #[test]
    fn a_recipe_past_its_time_limit_is_killed_and_fails() {
        let limits = BuildLimits {
            time: Duration::from_millis(500),
            ..BuildLimits::default()
        };
        let started = Instant::now();
        let rebuild = run("sleep 30 & sleep 30\n", &[], limits);
        assert!(started.elapsed() < Duration::from_secs(10), "not a hang");
        assert_eq!(rebuild.outcome, BuildOutcome::Failed);
        assert!(rebuild.failure.is_some_and(|f| f.contains("time limit")));
    }

    #[test]
    fn outputs_outside_the_build_directory_or_missing_fail() {
        for (declared, expected) in [
            ("../escape", "leaves the build directory"),
            ("/etc/passwd", "leaves the build directory"),
            ("out/missing", "was not produced"),
            ("link", "not a regular file"),
            ("", "not a regular file"),
        ] {
            let rebuild = run(
                "ln -s /etc/passwd link\n",
                &[("any", declared)],
                BuildLimits::default(),
            );
            assert_eq!(rebuild.outcome, BuildOutcome::Failed, "{declared}");
            let failure = rebuild.failure.unwrap_or_default();
            assert!(failure.contains(expected), "{declared}: {failure}");
        }
    }

    #[test]
    fn an_output_behind_a_symlinked_directory_fails() {
        // The link would be followed on the host, where /etc is the host's.
        let rebuild = run(
            "ln -s /etc out\n",
            &[("any", "out/passwd")],
            BuildLimits::default(),
        );
        assert_eq!(rebuild.outcome, BuildOutcome::Failed);
        let failure = rebuild.failure.unwrap_or_default();
        assert!(failure.contains("symbolic link"), "{failure}");
        assert!(rebuild.outputs.is_empty());
    }

    /// Whether a build can start more processes than `limits.processes`: what must be false
    /// before anything like a fork bomb is run.
    fn more_processes_than_the_limit_run(limits: BuildLimits) -> bool {
        let script = format!(
            "i=0; while [ $i -lt {} ]; do sleep 2 & i=$((i+1)); done; wait; mkdir -p out; echo ran > out/result\n",
            limits.processes * 2
        );
        run(&script, &[("any", "out/result")], limits).outcome == BuildOutcome::Built
    }

    #[test]
    fn a_fork_bomb_fails_the_build_and_leaves_nothing_running() {
        let limits = BuildLimits {
            time: Duration::from_secs(5),
            processes: 32,
            ..BuildLimits::default()
        };
        assert!(
            !more_processes_than_the_limit_run(limits),
            "the process limit is not in force here: refusing to run a fork bomb"
        );
        let work = tempfile::tempdir().expect("temp dir");
        let source = b"bomb";
        let manifest = manifest(
            "bomb() { bomb | bomb & }\nbomb\nsleep 60\n",
            &[("any", "out/result")],
            source,
        );
        let started = Instant::now();
        let rebuild =
            rebuild(&sandbox(), &limits, &manifest, source, work.path()).expect("rebuild runs");
        assert_eq!(rebuild.outcome, BuildOutcome::Failed);
        assert!(started.elapsed() < Duration::from_secs(30), "not a hang");
        assert_eq!(
            std::fs::read_dir(work.path()).expect("work dir").count(),
            0,
            "the build directory is gone"
        );
        // That the build's cgroup is emptied and removed is tested on the cgroup itself
        // (process_limit.rs): other builds of this test binary share its name prefix.
    }

    #[test]
    fn a_disk_filler_fails_the_build_and_its_files_are_removed() {
        let limits = BuildLimits {
            time: Duration::from_secs(20),
            disk_bytes: 4 << 20,
            ..BuildLimits::default()
        };
        for filler in [
            // Fast, many files: caught at the end of the build at the latest.
            "i=0; while [ $i -lt 16 ]; do head -c 1048576 /dev/zero > f$i; i=$((i+1)); done\n",
            // Into /tmp, which is on disk and inside the quota, then waiting: stopped early.
            "head -c 8388608 /dev/zero > /tmp/fill; sleep 15\n",
        ] {
            let work = tempfile::tempdir().expect("temp dir");
            let source = b"filler";
            let manifest = manifest(filler, &[], source);
            let started = Instant::now();
            let rebuild =
                rebuild(&sandbox(), &limits, &manifest, source, work.path()).expect("rebuild runs");
            assert_eq!(rebuild.outcome, BuildOutcome::Failed, "{filler}");
            let failure = rebuild.failure.unwrap_or_default();
            assert!(failure.contains("MiB of disk"), "{filler}: {failure}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{filler}: stopped early"
            );
            assert_eq!(std::fs::read_dir(work.path()).expect("work").count(), 0);
        }
    }

    #[test]
    fn a_directory_the_recipe_locked_is_removed() {
        let work = tempfile::tempdir().expect("temp dir");
        let source = b"locked";
        let manifest = manifest(
            "mkdir -p a/b && echo x > a/b/f && chmod 000 a/b a && chmod 000 .\n",
            &[],
            source,
        );
        let rebuild = rebuild(
            &sandbox(),
            &BuildLimits::default(),
            &manifest,
            source,
            work.path(),
        )
        .expect("rebuild runs");
        assert_eq!(
            rebuild.outcome,
            BuildOutcome::Built,
            "{:?}",
            rebuild.failure
        );
        assert_eq!(std::fs::read_dir(work.path()).expect("work").count(), 0);
    }

    #[test]
    fn the_source_must_match_the_manifest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = manifest("true", &[], b"the real source");
        assert!(matches!(
            rebuild(
                &sandbox(),
                &BuildLimits::default(),
                &manifest,
                b"another source",
                dir.path()
            ),
            Err(BuildError::WrongSource { .. })
        ));
    }
}
