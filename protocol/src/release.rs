//! Releases: the manifest developers sign, the build attestations verifiers sign, and the rules
//! witnesses check before they cosign a release against the policy in force.

use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::hash::domain;
use crate::keys::{KeySignature, PublicKey, SecretKey, Signature, count_valid_signers};
use crate::policy::{MAX_POLICY_KEYS, MAX_PROJECT_NAME_LEN, Policy, check_project_name};
use crate::{Error, Hash, Result};

/// Longest version string, artifact name, platform name or output path, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest build script, in bytes.
pub const MAX_SCRIPT_LEN: usize = 64 * 1024;
/// Most binary artifacts (platforms) per release.
pub const MAX_BINARIES: usize = 64;

fn check_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::InvalidName {
            what,
            reason: "must be 1 to 256 bytes with no control characters",
        });
    }
    Ok(())
}

/// A file a release refers to, addressed by the plain BLAKE3 hash of its bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ArtifactRef {
    /// File name, for people and downloads.
    pub name: String,
    /// BLAKE3 of the content ([`Hash::of_artifact`]).
    pub hash: Hash,
    /// Size in bytes.
    pub size: u64,
}

impl ArtifactRef {
    /// The reference to `bytes` under `name`.
    pub fn of(name: &str, bytes: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            hash: Hash::of_artifact(bytes),
            size: bytes.len() as u64,
        }
    }

    /// Checks downloaded `bytes` against the reference.
    pub fn check(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != self.size || Hash::of_artifact(bytes) != self.hash {
            return Err(Error::ArtifactMismatch {
                name: self.name.clone(),
                expected: self.hash,
                found: Hash::of_artifact(bytes),
            });
        }
        Ok(())
    }
}

impl Encode for ArtifactRef {
    fn encode_to(&self, writer: &mut Writer) {
        writer.str(&self.name).value(&self.hash).u64(self.size);
    }
}

impl Decode for ArtifactRef {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let artifact = Self {
            name: reader.string(MAX_NAME_LEN, "artifact name")?,
            hash: Hash::decode_from(reader)?,
            size: reader.u64("artifact size")?,
        };
        check_name("artifact name", &artifact.name)?;
        Ok(artifact)
    }
}

/// A binary built for one platform.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BinaryArtifact {
    /// Platform name, e.g. `x86_64-linux`.
    pub platform: String,
    /// The file.
    pub artifact: ArtifactRef,
}

impl Encode for BinaryArtifact {
    fn encode_to(&self, writer: &mut Writer) {
        writer.str(&self.platform).value(&self.artifact);
    }
}

impl Decode for BinaryArtifact {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let binary = Self {
            platform: reader.string(MAX_NAME_LEN, "platform")?,
            artifact: ArtifactRef::decode_from(reader)?,
        };
        check_name("platform", &binary.platform)?;
        Ok(binary)
    }
}

/// How to rebuild the binaries from the source: a script run in the unpacked source tree, and
/// for each platform the path of the file it produces.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BuildRecipe {
    /// The build script (POSIX shell).
    pub script: String,
    /// (platform, output path relative to the source tree), one per binary of the release.
    pub outputs: Vec<(String, String)>,
}

impl Encode for BuildRecipe {
    fn encode_to(&self, writer: &mut Writer) {
        writer.str(&self.script).count(self.outputs.len());
        for (platform, path) in &self.outputs {
            writer.str(platform).str(path);
        }
    }
}

impl Decode for BuildRecipe {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let script = reader.string(MAX_SCRIPT_LEN, "build script")?;
        let count = reader.count(MAX_BINARIES, "recipe outputs")?;
        let mut outputs = Vec::with_capacity(count);
        for _ in 0..count {
            let platform = reader.string(MAX_NAME_LEN, "platform")?;
            let path = reader.string(MAX_NAME_LEN, "output path")?;
            check_name("platform", &platform)?;
            check_name("output path", &path)?;
            outputs.push((platform, path));
        }
        Ok(Self { script, outputs })
    }
}

/// What developers sign for a release.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReleaseManifest {
    /// The project's name.
    pub project: String,
    /// Semantic version, strictly greater than the previous release's.
    pub version: String,
    /// 1 for the first release, then +1 per release.
    pub sequence: u64,
    /// The source archive.
    pub source: ArtifactRef,
    /// How to rebuild the binaries.
    pub recipe: BuildRecipe,
    /// The binaries, one per platform.
    pub binaries: Vec<BinaryArtifact>,
    /// Hash of the policy-chain block whose policy this release follows.
    pub policy: Hash,
    /// Unix time in seconds when the release was made.
    pub timestamp: u64,
}

impl ReleaseManifest {
    /// What developers sign: BLAKE3 under [`domain::RELEASE_MANIFEST`] of the encoding.
    pub fn digest(&self) -> Hash {
        Hash::of(domain::RELEASE_MANIFEST, &[&self.to_bytes()])
    }

    /// The parsed semantic version.
    pub fn semver(&self) -> Result<semver::Version> {
        semver::Version::parse(&self.version).map_err(|_| Error::InvalidVersion {
            version: self.version.clone(),
        })
    }

    /// Checks the manifest on its own: names, version syntax, one binary per platform, and
    /// recipe outputs for exactly the platforms of the binaries.
    pub fn check(&self) -> Result<()> {
        check_project_name(&self.project)?;
        self.semver()?;
        if self.binaries.len() > MAX_BINARIES {
            return Err(Error::TooLong {
                what: "binaries",
                len: self.binaries.len(),
                max: MAX_BINARIES,
            });
        }
        let mut platforms: Vec<&str> = self.binaries.iter().map(|b| b.platform.as_str()).collect();
        platforms.sort_unstable();
        if platforms.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Error::InvalidManifest {
                reason: "two binaries for the same platform".into(),
            });
        }
        let mut outputs: Vec<&str> = self
            .recipe
            .outputs
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        outputs.sort_unstable();
        if outputs != platforms {
            return Err(Error::InvalidManifest {
                reason: "the recipe must name one output per binary platform, and no other".into(),
            });
        }
        Ok(())
    }

    /// Every artifact the release names: the source, then the binaries.
    pub fn artifacts(&self) -> Vec<ArtifactRef> {
        core::iter::once(self.source.clone())
            .chain(self.binaries.iter().map(|b| b.artifact.clone()))
            .collect()
    }

    /// The (platform, hash) pairs of the binaries, sorted by platform.
    pub fn binary_hashes(&self) -> Vec<(String, Hash)> {
        let mut hashes: Vec<(String, Hash)> = self
            .binaries
            .iter()
            .map(|b| (b.platform.clone(), b.artifact.hash))
            .collect();
        hashes.sort();
        hashes
    }
}

impl Encode for ReleaseManifest {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .str(&self.project)
            .str(&self.version)
            .u64(self.sequence)
            .value(&self.source)
            .value(&self.recipe)
            .list(&self.binaries)
            .value(&self.policy)
            .u64(self.timestamp);
    }
}

impl Decode for ReleaseManifest {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("release manifest")?;
        let manifest = Self {
            project: reader.string(MAX_PROJECT_NAME_LEN, "project name")?,
            version: reader.string(MAX_NAME_LEN, "version")?,
            sequence: reader.u64("release sequence")?,
            source: ArtifactRef::decode_from(reader)?,
            recipe: BuildRecipe::decode_from(reader)?,
            binaries: reader.list(MAX_BINARIES, "binaries")?,
            policy: Hash::decode_from(reader)?,
            timestamp: reader.u64("timestamp")?,
        };
        manifest.check()?;
        Ok(manifest)
    }
}

/// What a build verifier found when it rebuilt a release.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BuildOutcome {
    /// The build ran and its outputs are the hashes reported.
    Built,
    /// The build failed (error, time or resource limit, forbidden action).
    Failed,
}

/// A build verifier's signed report on one manifest.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BuildAttestation {
    /// The verifier's key.
    pub verifier: PublicKey,
    /// Digest of the manifest rebuilt.
    pub manifest: Hash,
    /// Whether the build ran.
    pub outcome: BuildOutcome,
    /// The (platform, BLAKE3 hash) of each output the verifier got, sorted by platform.
    pub outputs: Vec<(String, Hash)>,
    /// BLAKE3 of the build log, so the log can be published and checked.
    pub log_digest: Hash,
    /// The verifier's signature over [`BuildAttestation::digest`].
    pub signature: Signature,
}

impl BuildAttestation {
    /// Signs an attestation with the verifier's key.
    pub fn sign(
        verifier: &SecretKey,
        manifest: Hash,
        outcome: BuildOutcome,
        mut outputs: Vec<(String, Hash)>,
        log_digest: Hash,
    ) -> Self {
        outputs.sort();
        let mut attestation = Self {
            verifier: verifier.public_key(),
            manifest,
            outcome,
            outputs,
            log_digest,
            signature: Signature([0; 64]),
        };
        attestation.signature = verifier.sign_digest(&attestation.digest());
        attestation
    }

    /// What the verifier signs: BLAKE3 under [`domain::BUILD_ATTESTATION`] of the encoding
    /// without the signature.
    pub fn digest(&self) -> Hash {
        let mut writer = Writer::new();
        self.encode_unsigned(&mut writer);
        Hash::of(domain::BUILD_ATTESTATION, &[&writer.finish()])
    }

    fn encode_unsigned(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .value(&self.verifier)
            .value(&self.manifest);
        writer.u8(match self.outcome {
            BuildOutcome::Built => 0,
            BuildOutcome::Failed => 1,
        });
        writer.count(self.outputs.len());
        for (platform, hash) in &self.outputs {
            writer.str(platform).value(hash);
        }
        writer.value(&self.log_digest);
    }

    /// Checks the signature.
    pub fn verify(&self) -> Result<()> {
        self.verifier.verify_digest(&self.digest(), &self.signature)
    }

    /// Whether this attestation reproduces exactly the binaries of `manifest`.
    pub fn reproduces(&self, manifest: &ReleaseManifest) -> bool {
        self.outcome == BuildOutcome::Built && self.outputs == manifest.binary_hashes()
    }
}

impl Encode for BuildAttestation {
    fn encode_to(&self, writer: &mut Writer) {
        self.encode_unsigned(writer);
        writer.value(&self.signature);
    }
}

impl Decode for BuildAttestation {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("build attestation")?;
        let verifier = PublicKey::decode_from(reader)?;
        let manifest = Hash::decode_from(reader)?;
        let outcome = match reader.u8("build outcome")? {
            0 => BuildOutcome::Built,
            1 => BuildOutcome::Failed,
            tag => {
                return Err(Error::InvalidTag {
                    what: "build outcome",
                    tag,
                });
            }
        };
        let count = reader.count(MAX_BINARIES, "attested outputs")?;
        let mut outputs = Vec::with_capacity(count);
        for _ in 0..count {
            let platform = reader.string(MAX_NAME_LEN, "platform")?;
            outputs.push((platform, Hash::decode_from(reader)?));
        }
        if outputs.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(Error::NonCanonical {
                what: "attested outputs (must be sorted by platform, once each)",
            });
        }
        Ok(Self {
            verifier,
            manifest,
            outcome,
            outputs,
            log_digest: Hash::decode_from(reader)?,
            signature: Signature::decode_from(reader)?,
        })
    }
}

/// A manifest with its developer signatures and build attestations: the payload of a
/// release-chain block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Release {
    /// The manifest.
    pub manifest: ReleaseManifest,
    /// Developer signatures over [`ReleaseManifest::digest`].
    pub signatures: Vec<KeySignature>,
    /// Build attestations over the same digest.
    pub attestations: Vec<BuildAttestation>,
}

/// The policy a release is checked against, with the hash of the policy-chain block holding it.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInForce<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// Hash of the policy-chain block whose payload it is.
    pub block: Hash,
}

/// Time bounds for release timestamps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimeBounds {
    /// How far in the future (clock skew) a timestamp may be, in seconds.
    pub max_future_skew: u64,
    /// How old a timestamp may be when the release is logged, in seconds.
    pub max_age: u64,
}

impl Default for TimeBounds {
    /// Five minutes of skew, one week to collect signatures and attestations.
    fn default() -> Self {
        Self {
            max_future_skew: 300,
            max_age: 7 * 24 * 3600,
        }
    }
}

impl Release {
    /// The rules witnesses check before cosigning, each failure naming its rule:
    /// the manifest is well formed and for the policy's project; it follows the policy in
    /// force (not an older one); its sequence is the next one and its version greater than
    /// the previous release's (no replay, no reordering); its timestamp is not before the
    /// previous release's, not in the future beyond the skew and not older than the maximum
    /// age; at least t distinct current developer keys signed it and nobody else did; and at
    /// least k distinct listed verifiers attest they rebuilt exactly its binaries.
    pub fn validate(
        &self,
        policy: PolicyInForce<'_>,
        previous: Option<&ReleaseManifest>,
        now: u64,
        bounds: TimeBounds,
    ) -> Result<()> {
        let manifest = &self.manifest;
        manifest.check()?;
        if manifest.project != policy.policy.project {
            return Err(Error::WrongProject {
                expected: policy.policy.project.clone(),
                found: manifest.project.clone(),
            });
        }
        if manifest.policy != policy.block {
            return Err(Error::StalePolicy {
                expected: policy.block,
                found: manifest.policy,
            });
        }
        let expected_sequence = previous.map_or(1, |p| p.sequence.saturating_add(1));
        if manifest.sequence < expected_sequence {
            return Err(Error::ReplayedRelease {
                sequence: manifest.sequence,
                expected: expected_sequence,
            });
        }
        if manifest.sequence > expected_sequence {
            return Err(Error::SequenceGap {
                sequence: manifest.sequence,
                expected: expected_sequence,
            });
        }
        if let Some(previous) = previous {
            if manifest.semver()? <= previous.semver()? {
                return Err(Error::VersionNotIncreasing {
                    version: manifest.version.clone(),
                    previous: previous.version.clone(),
                });
            }
            if manifest.timestamp < previous.timestamp {
                return Err(Error::TimestampOutOfBounds {
                    timestamp: manifest.timestamp,
                    reason: "before the previous release",
                });
            }
        }
        if manifest.timestamp > now.saturating_add(bounds.max_future_skew) {
            return Err(Error::TimestampOutOfBounds {
                timestamp: manifest.timestamp,
                reason: "in the future",
            });
        }
        if manifest.timestamp < now.saturating_sub(bounds.max_age) {
            return Err(Error::TimestampOutOfBounds {
                timestamp: manifest.timestamp,
                reason: "too old",
            });
        }
        self.check_approvals(policy.policy)
    }

    /// The approval rules alone: at least t distinct developer keys of `policy` signed the
    /// manifest and nobody else did, and at least k listed verifiers attest they rebuilt exactly
    /// its binaries. This is what a light client re-checks on a release it did not see
    /// witnessed (the sequence and time rules need the previous release and the logging time).
    pub fn check_approvals(&self, policy: &Policy) -> Result<()> {
        self.check_signatures(policy)?;
        self.check_attestations(policy, &self.manifest.digest())
    }

    /// The developer rule alone: at least t distinct developer keys of `policy` signed the
    /// manifest and nobody else did. A build verifier checks this before it fetches and builds
    /// anything, so that only a release the developers approved makes it run a recipe.
    pub fn check_signatures(&self, policy: &Policy) -> Result<()> {
        let signers = count_valid_signers(
            &self.signatures,
            &policy.developer_keys,
            &self.manifest.digest(),
            "developer",
        )?;
        let threshold = policy.developer_threshold as usize;
        if signers < threshold {
            return Err(Error::NotEnoughSignatures {
                role: "developer",
                valid: signers,
                threshold,
            });
        }
        Ok(())
    }

    fn check_attestations(&self, policy: &Policy, digest: &Hash) -> Result<()> {
        let (matching, mismatches) = self.count_attestations(policy, digest)?;
        let required = policy.attestations_required as usize;
        if matching < required {
            return Err(Error::NotEnoughAttestations {
                matching,
                required,
                mismatches,
            });
        }
        Ok(())
    }

    /// How many of the attestations reproduce the release, by the rule witnesses apply
    /// ([`Release::check_approvals`]): every attestation must come from a distinct build
    /// verifier of `policy`, be over this manifest and verify; an attestation that breaks one
    /// of these makes the whole set invalid (the error says which). A leader gathering
    /// attestations uses this to know when it has enough.
    pub fn reproducing_attestations(&self, policy: &Policy) -> Result<usize> {
        self.count_attestations(policy, &self.manifest.digest())
            .map(|(matching, _)| matching)
    }

    /// Checks each attestation; returns how many reproduce the release and a description of
    /// each that does not.
    fn count_attestations(&self, policy: &Policy, digest: &Hash) -> Result<(usize, Vec<String>)> {
        let mut seen: Vec<PublicKey> = Vec::new();
        let mut matching = 0;
        let mut mismatches = Vec::new();
        for attestation in &self.attestations {
            if !policy.build_verifiers.contains(&attestation.verifier) {
                return Err(Error::UnknownSigner {
                    signer: attestation.verifier.id(),
                    role: "build verifier",
                });
            }
            if seen.contains(&attestation.verifier) {
                return Err(Error::DuplicateSigner {
                    signer: attestation.verifier.id(),
                });
            }
            if attestation.manifest != *digest {
                return Err(Error::InvalidManifest {
                    reason: format!(
                        "attestation by {} is for another manifest",
                        attestation.verifier
                    ),
                });
            }
            attestation.verify()?;
            seen.push(attestation.verifier);
            if attestation.reproduces(&self.manifest) {
                matching += 1;
            } else {
                mismatches.push(describe_mismatch(attestation));
            }
        }
        Ok((matching, mismatches))
    }
}

fn describe_mismatch(attestation: &BuildAttestation) -> String {
    match attestation.outcome {
        BuildOutcome::Failed => format!("verifier {} could not build it", attestation.verifier),
        BuildOutcome::Built => {
            let outputs: Vec<String> = attestation
                .outputs
                .iter()
                .map(|(p, h)| format!("{p}={h}"))
                .collect();
            format!(
                "verifier {} got {}",
                attestation.verifier,
                outputs.join(", ")
            )
        }
    }
}

impl Encode for Release {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .value(&self.manifest)
            .list(&self.signatures)
            .list(&self.attestations);
    }
}

impl Decode for Release {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("release")?;
        Ok(Self {
            manifest: ReleaseManifest::decode_from(reader)?,
            signatures: reader.list(MAX_POLICY_KEYS, "release signatures")?,
            attestations: reader.list(MAX_POLICY_KEYS, "build attestations")?,
        })
    }
}

#[cfg(test)]
mod tests;
