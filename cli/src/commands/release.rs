//! `chainiac release`: prepare a release bundle, sign it offline, attest it as a build
//! verifier, publish it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chainiac_cli::publisher::{
    Bundle, ReleaseOptions, create_release, load_key_with, publish_release, sign_release,
};
use chainiac_node::config::Identity;
use clap::Subcommand;

use super::NodesArg;

#[derive(Debug, Subcommand)]
pub(crate) enum ReleaseCommand {
    /// Prepare the next release: a bundle file holding the manifest, to be signed offline.
    Create {
        /// The project directory.
        #[arg(long)]
        project_dir: PathBuf,
        /// Version (semantic versioning, greater than the last release).
        #[arg(long)]
        version: String,
        /// The source archive.
        #[arg(long)]
        source: PathBuf,
        /// A binary as PLATFORM=FILE (repeatable).
        #[arg(long = "binary")]
        binaries: Vec<String>,
        /// The build script verifiers run in the unpacked source (default: `make`).
        #[arg(long, default_value = "make")]
        script: String,
        /// Output path of each platform's binary in the build tree, as PLATFORM=PATH
        /// (default: the binary's file name).
        #[arg(long = "output")]
        outputs: Vec<String>,
        /// Where to write the bundle.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        nodes: NodesArg,
    },
    /// Sign a bundle with one developer key (offline: no network needed).
    Sign {
        /// The bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// The developer's key file: a chainiac key file, an OpenSSH Ed25519 private key such
        /// as ~/.ssh/id_ed25519 or a minisign secret key (asked for its passphrase on a
        /// terminal, or from CHAINIAC_KEY_PASSPHRASE); or a key name of the project, with
        /// --project-dir.
        #[arg(long)]
        key: String,
        /// Project directory, to find keys by name.
        #[arg(long, default_value = ".")]
        project_dir: PathBuf,
    },
    /// Upload a signed bundle's artifacts and have the witnesses log the release.
    Publish {
        /// The bundle.
        #[arg(long)]
        bundle: PathBuf,
        /// The project directory.
        #[arg(long)]
        project_dir: PathBuf,
        /// Move the release chain to a new witness roster with this release.
        #[arg(long)]
        roster: Option<PathBuf>,
        #[command(flatten)]
        nodes: NodesArg,
    },
    /// Rebuild a bundle's release from its source in a sandbox, as a build verifier, and add
    /// the signed attestation (reproduced or not) to the bundle.
    Attest {
        /// The bundle (its source file must be readable here).
        #[arg(long)]
        bundle: PathBuf,
        /// The verifier's key file (a node.key, for instance).
        #[arg(long)]
        key: PathBuf,
        /// Where the fresh build directory is made (removed afterwards).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        work_dir: PathBuf,
        /// Time limit of the build, in seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Do not make the host's Rust toolchain visible in the sandbox.
        #[arg(long)]
        no_rust: bool,
    },
}

fn split_pair(text: &str, what: &str) -> anyhow::Result<(String, String)> {
    text.split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .with_context(|| format!("{what} must look like PLATFORM=VALUE, got {text:?}"))
}

/// `chainiac release ...`.
pub(crate) fn release(command: ReleaseCommand) -> anyhow::Result<()> {
    match command {
        ReleaseCommand::Create {
            project_dir,
            version,
            source,
            binaries,
            script,
            outputs,
            out,
            nodes,
        } => {
            let binaries = binaries
                .iter()
                .map(|b| split_pair(b, "--binary").map(|(p, f)| (p, PathBuf::from(f))))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut recipe_outputs = outputs
                .iter()
                .map(|o| split_pair(o, "--output"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for (platform, file) in &binaries {
                if !recipe_outputs.iter().any(|(p, _)| p == platform) {
                    let name = file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    recipe_outputs.push((platform.clone(), name));
                }
            }
            let bundle = create_release(
                &project_dir,
                &nodes.nodes()?,
                &ReleaseOptions {
                    version: &version,
                    source: &source,
                    binaries: &binaries,
                    script,
                    outputs: recipe_outputs,
                },
            )?;
            bundle.save(&out)?;
            let manifest = bundle.manifest()?;
            println!(
                "release {} {} (sequence {}) prepared in {}",
                manifest.project,
                manifest.version,
                manifest.sequence,
                out.display()
            );
            println!("  manifest digest {}", manifest.digest());
            println!(
                "  next: each developer runs `chainiac release sign --bundle {} --key KEY`",
                out.display()
            );
            Ok(())
        }
        ReleaseCommand::Sign {
            bundle: path,
            key,
            project_dir,
        } => {
            let mut bundle = Bundle::load(&path)?;
            let identity = load_key_with(&project_dir, &key, &super::ask_passphrase)?;
            let signer = sign_release(&mut bundle, &identity)?;
            bundle.save(&path)?;
            println!(
                "signed by {} ({} signature(s) in the bundle)",
                &signer.to_hex()[..16],
                bundle.signatures.len()
            );
            Ok(())
        }
        ReleaseCommand::Attest {
            bundle,
            key,
            work_dir,
            timeout,
            no_rust,
        } => attest(&bundle, &key, &work_dir, timeout, no_rust),
        ReleaseCommand::Publish {
            bundle,
            project_dir,
            roster,
            nodes,
        } => {
            let loaded = Bundle::load(&bundle)?;
            let manifest = loaded.manifest()?;
            let nodes = nodes.nodes()?;
            // Short enough for one line of a narrow terminal.
            let waiting = crate::progress::Waiting::start("publishing, waiting for the witnesses");
            let index = publish_release(&project_dir, &nodes, &loaded, roster.as_deref());
            drop(waiting);
            let index = index?;
            println!(
                "release {} {} logged as block {index} of the release chain",
                manifest.project, manifest.version
            );
            Ok(())
        }
    }
}

/// `chainiac release attest`: rebuild in the sandbox, sign, record in the bundle.
fn attest(
    path: &Path,
    key: &Path,
    work_dir: &Path,
    timeout: u64,
    no_rust: bool,
) -> anyhow::Result<()> {
    use chainiac_node::builder::{BuildLimits, Sandbox, rebuild};

    let mut bundle = Bundle::load(path)?;
    let manifest = bundle.manifest()?;
    let identity = Identity::load(key)
        .with_context(|| format!("cannot load the verifier key {}", key.display()))?;
    let source_path = bundle
        .files
        .get(&manifest.source.hash.to_hex())
        .with_context(|| "the bundle does not say where the source file is")?;
    let source = std::fs::read(source_path)
        .with_context(|| format!("cannot read the source {}", source_path.display()))?;
    let mut sandbox = Sandbox::system()?;
    if !no_rust {
        sandbox = sandbox.with_host_rust();
    }
    let limits = BuildLimits {
        time: std::time::Duration::from_secs(timeout),
        ..BuildLimits::default()
    };
    println!(
        "rebuilding {} {} from {} in a sandbox (time limit {timeout} s)...",
        manifest.project, manifest.version, manifest.source.name
    );
    let waiting = crate::progress::Waiting::start("  building");
    let result = rebuild(&sandbox, &limits, &manifest, &source, work_dir);
    drop(waiting);
    let result = result?;
    let attestation = result.attest(identity.secret(), &manifest);
    bundle.add_attestation(&attestation)?;
    bundle.save(path)?;
    println!(
        "  build {} in {:.1} s; log digest {}",
        if result.failure.is_none() {
            "ran"
        } else {
            "failed"
        },
        result.elapsed.as_secs_f64(),
        result.log_digest
    );
    let declared = manifest.binary_hashes();
    for (platform, hash) in &result.outputs {
        let expected = declared.iter().find(|(p, _)| p == platform).map(|(_, h)| h);
        println!(
            "  {platform}: {hash} {}",
            if expected == Some(hash) {
                "(matches the release)".to_owned()
            } else {
                format!(
                    "(the release declares {})",
                    expected.map_or("nothing".into(), ToString::to_string)
                )
            }
        );
    }
    println!(
        "  attestation by {} added to {} ({} in the bundle)",
        &identity.public().key.to_hex()[..16],
        path.display(),
        bundle.attestations.len()
    );
    if let Some(failure) = &result.failure {
        bail!(
            "the build failed: {failure}\n--- end of the build log ---\n{}",
            result.log_tail
        );
    }
    if !result.reproduces(&manifest) {
        bail!("the rebuild does NOT reproduce the release's binaries (attested as such)");
    }
    println!("  reproduced: the release's binaries are exactly what the source builds to");
    Ok(())
}
