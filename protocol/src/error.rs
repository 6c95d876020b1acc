//! The one error type of the protocol crate. Every variant says what was wrong; the messages
//! are meant to be shown to the person who triggered them.

use crate::Hash;
use crate::keys::KeyId;

/// Everything that can go wrong when decoding, signing or validating protocol objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- encoding -----
    /// The input ended before a field was complete.
    #[error("truncated input: {what} needs {needed} more bytes but only {available} remain")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    /// A version byte this implementation does not know.
    #[error(
        "unknown {what} version {found} (this implementation reads version 1; upgrade chainiac)"
    )]
    UnknownVersion { what: &'static str, found: u8 },
    /// A length or count above the field's bound.
    #[error("{what} too long: {len} exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Bytes left after a complete value.
    #[error("{extra} unexpected trailing bytes after a complete value")]
    TrailingBytes { extra: usize },
    /// A string field that is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str },
    /// An enum tag or boolean with an undefined value.
    #[error("invalid {what} tag {tag}")]
    InvalidTag { what: &'static str, tag: u8 },
    /// A value that has another, canonical, encoding.
    #[error("non-canonical encoding of {what}")]
    NonCanonical { what: &'static str },
    /// Hex text of the wrong length or with non-hex characters.
    #[error("invalid {what}: expected {expected_bytes} bytes as hex")]
    InvalidHex {
        what: &'static str,
        expected_bytes: usize,
    },

    // ----- keys and signatures -----
    /// A public key that is not a valid prime-order curve point.
    #[error("invalid public key: {reason}")]
    InvalidPublicKey { reason: &'static str },
    /// A signature that does not verify.
    #[error("invalid signature by {signer}")]
    InvalidSignature { signer: KeyId },
    /// A proof of possession that does not verify.
    #[error(
        "invalid proof of possession for key {key}: the key holder must sign it with its secret key"
    )]
    InvalidProofOfPossession { key: KeyId },
    /// A signature by a key that is not allowed to sign.
    #[error("signature by {signer}, which is not one of the {role} keys entitled to sign")]
    UnknownSigner { signer: KeyId, role: &'static str },
    /// Two signatures by the same key.
    #[error("key {signer} signed twice; each key counts once")]
    DuplicateSigner { signer: KeyId },

    // ----- collective signing -----
    /// A roster that breaks a roster rule.
    #[error("invalid roster: {reason}")]
    InvalidRoster { reason: String },
    /// A mask over a different number of members than the roster has.
    #[error("participation mask covers {mask} members but the roster has {roster}")]
    MaskLengthMismatch { mask: usize, roster: usize },
    /// Too few participants.
    #[error("only {participants} witnesses participate but the threshold is {threshold}")]
    BelowThreshold {
        participants: usize,
        threshold: usize,
    },
    /// A collective signature that does not verify under the participants' aggregate key.
    #[error("collective signature does not verify under the participants' aggregate key")]
    InvalidCollectiveSignature,
    /// A challenge whose points do not decode or that leaves out committed witnesses.
    #[error(
        "invalid challenge: nonce points do not decode or do not cover the committed witnesses"
    )]
    InvalidChallenge,
    /// Nonces used for a message other than the one they were drawn for.
    #[error("signing nonces were drawn for another message; commit again")]
    NonceMessageMismatch,
    /// A key that is not in the roster.
    #[error("key {key} is not a member of the roster")]
    NotInRoster { key: KeyId },
    /// A witness asked to respond that is not among the participants.
    #[error("witness {index} is not a participant of this round")]
    NotAParticipant { index: usize },
    /// A round step taken out of order.
    #[error("signing round out of order: {reason}")]
    RoundState { reason: &'static str },
    /// A commitment that cannot be used.
    #[error("invalid commitment from witness {witness}: {reason}")]
    InvalidCommitment {
        witness: usize,
        reason: &'static str,
    },
    /// A response from a witness that did not commit, or a second one.
    #[error("unexpected response from witness {witness}: it did not commit or already answered")]
    UnexpectedResponse { witness: usize },
    /// Responses that do not check out; the named witnesses must be excluded.
    #[error("wrong responses from witnesses {culprits:?}; restart the round without them")]
    InvalidResponses { culprits: Vec<usize> },
    /// Witnesses that committed but did not respond.
    #[error("no response from witnesses {witnesses:?}; restart the round without them")]
    MissingResponses { witnesses: Vec<usize> },
    /// An aggregation tree that cannot be built.
    #[error("invalid aggregation tree: {reason}")]
    InvalidTree { reason: &'static str },
    /// A child's answer in a tree round that breaks the tree's rules; the child is left out.
    #[error("member {child} of the tree: {reason}")]
    InvalidSubtreeAnswer { child: usize, reason: &'static str },

    // ----- skipchains -----
    /// Chain parameters out of range.
    #[error("invalid chain parameters: {reason}")]
    InvalidChainParams { reason: &'static str },
    /// A block that breaks a block rule.
    #[error("invalid block {index}: {reason}")]
    InvalidBlock { index: u64, reason: String },
    /// A block or link of another chain.
    #[error("block or link belongs to another chain")]
    WrongChain,
    /// A block needed that is not known.
    #[error("block {index} is not known")]
    MissingBlock { index: u64 },
    /// A forward link needed that has not been signed.
    #[error("no forward link at level {level} from block {from}")]
    MissingForwardLink { from: u64, level: u32 },
    /// A forward link that does not connect the blocks it should.
    #[error("forward link mismatch: {reason}")]
    LinkMismatch { reason: &'static str },
    /// A roster that is not the one a block names.
    #[error("the roster given for block {index} is not the one the block names")]
    RosterMismatch { index: u64 },
    /// A proof asked from a later block to an earlier one.
    #[error("cannot prove block {to} from block {from}: proofs only go forward")]
    InvalidProofRequest { from: u64, to: u64 },
    /// A step of a skip proof that does not verify.
    #[error("skip proof step {step} (from block {from}) is invalid: {error}")]
    InvalidProofStep {
        step: usize,
        from: u64,
        error: Box<Error>,
    },
    // ----- policies and releases -----
    /// A name that breaks the naming rules.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        what: &'static str,
        reason: &'static str,
    },
    /// A policy that breaks a policy rule.
    #[error("invalid policy: {reason}")]
    InvalidPolicy { reason: String },
    /// Too few valid signatures of a role.
    #[error("{valid} valid {role} signatures but {threshold} are required")]
    NotEnoughSignatures {
        role: &'static str,
        valid: usize,
        threshold: usize,
    },
    /// An object for another project.
    #[error("this is for project {found:?}, expected {expected:?}")]
    WrongProject { expected: String, found: String },
    /// A manifest that breaks a manifest rule.
    #[error("invalid release manifest: {reason}")]
    InvalidManifest { reason: String },
    /// A version that is not semantic versioning.
    #[error("version {version:?} is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+BUILD])")]
    InvalidVersion { version: String },
    /// A project chain block that does not run under the witnesses its policy names.
    #[error(
        "the chain would run under roster {roster}, but the policy names witnesses {named}: a project's witnesses change only through a policy change the roots sign"
    )]
    WitnessesMismatch { named: Hash, roster: Hash },
    /// A release that follows a policy other than the one in force.
    #[error(
        "release follows policy block {found} but the policy in force is block {expected}; re-sign it against the current policy"
    )]
    StalePolicy { expected: Hash, found: Hash },
    /// A release whose sequence was already used.
    #[error(
        "release sequence {sequence} was already used (next is {expected}): replayed or reordered release"
    )]
    ReplayedRelease { sequence: u64, expected: u64 },
    /// A release that skips sequence numbers.
    #[error(
        "release sequence {sequence} skips ahead; the next release must have sequence {expected}"
    )]
    SequenceGap { sequence: u64, expected: u64 },
    /// A release logged at a release-chain block other than its sequence.
    #[error(
        "release sequence {sequence} is logged at release-chain block {index}; a release's sequence is its block index"
    )]
    SequenceNotIndex { sequence: u64, index: u64 },
    /// A version not greater than the previous release's.
    #[error("version {version} is not greater than the previous release's {previous}")]
    VersionNotIncreasing { version: String, previous: String },
    /// A timestamp outside the accepted window.
    #[error("release timestamp {timestamp} is {reason}")]
    TimestampOutOfBounds {
        timestamp: u64,
        reason: &'static str,
    },
    /// Too few build verifiers reproduced the binaries.
    #[error(
        "{matching} build verifiers reproduced the binaries but {required} are required{}",
        describe_mismatches(mismatches)
    )]
    NotEnoughAttestations {
        matching: usize,
        required: usize,
        mismatches: Vec<String>,
    },
    /// Downloaded bytes that are not the artifact expected.
    #[error("artifact {name} does not match: expected BLAKE3 {expected}, got {found}")]
    ArtifactMismatch {
        name: String,
        expected: Hash,
        found: Hash,
    },

    // ----- timeline -----
    /// Two timeline entries for the same chain.
    #[error("chain {chain_id} appears twice in the timeline")]
    DuplicateTimelineChain { chain_id: Hash },
    /// A malformed inclusion proof.
    #[error("invalid timeline inclusion proof: {reason}")]
    InvalidInclusionProof { reason: &'static str },
    /// A head the timeline does not commit to.
    #[error(
        "head {head} of chain {chain_id} is not in the timeline: the peer shows a head the witnesses did not log (rollback or split view); refusing it"
    )]
    NotInTimeline { chain_id: Hash, head: Hash },
    /// A timeline block older than the freshness bound.
    #[error(
        "the newest timeline block offered is {age} s old, beyond the freshness bound of {max_age} s: the peer may be hiding newer releases (freeze attack); try other peers"
    )]
    StaleTimeline { age: u64, max_age: u64 },
    /// A timeline block from the future.
    #[error(
        "timeline timestamp {timestamp} is ahead of the local clock ({now}); check the system clock"
    )]
    TimelineFromFuture { timestamp: u64, now: u64 },
    /// A timeline block that does not follow its predecessor.
    #[error("invalid timeline block: {reason}")]
    InvalidTimeline { reason: String },

    // ----- authority -----
    /// A data-chain genesis or block that breaks a data-chain rule.
    #[error("invalid data chain: {reason}")]
    InvalidDataChain { reason: String },

    // ----- light clients -----
    /// A block offered as a genesis that is not the genesis of the chain id asked for.
    #[error("the block offered as the genesis of {chain} does not hash to that chain id")]
    GenesisMismatch { chain: Hash },
    /// A chain that is not of the kind the caller needs.
    #[error("chain {chain} is not {expected}")]
    WrongChainKind { chain: Hash, expected: &'static str },
    /// A head older than the block already trusted.
    #[error(
        "rollback: the head offered is block {offered}, the client already trusts block {trusted}"
    )]
    Rollback { offered: u64, trusted: u64 },
    /// Another block at the index of the trusted head.
    #[error(
        "split view: the head offered at index {index} is not the block the client trusts there"
    )]
    SplitView { index: u64 },
    /// A proof that ends elsewhere than the block it was asked for.
    #[error("the proof ends at block {reached}, not at the announced head {expected}")]
    ProofTarget { expected: Hash, reached: Hash },
    /// A release whose sequence is not above the release already trusted.
    #[error(
        "rollback: the new head is release {version} (sequence {sequence}), the client already trusts {trusted_version} (sequence {trusted_sequence})"
    )]
    ReleaseRollback {
        version: String,
        sequence: u64,
        trusted_version: String,
        trusted_sequence: u64,
    },
    /// A release naming an older policy than the release the client trusts named: a release is
    /// logged under the policy in force, and policies only move forward.
    #[error(
        "the release names policy {sequence}, older than policy {trusted} of the release the client already trusts"
    )]
    PolicyRollback { sequence: u64, trusted: u64 },
    /// A timeline commits to a policy-chain block the client has not verified.
    #[error(
        "the timeline commits to policy block {committed} but the peer brought the policy chain only to block {trusted}: it withholds policy changes; ask another peer"
    )]
    PolicyWithheld { committed: u64, trusted: u64 },
    /// A release naming a policy block the client has not verified in the project's chain.
    #[error("the release names policy block {policy}, which is not in the project's policy chain")]
    UnknownPolicy { policy: Hash },

    /// A chain at the largest index.
    #[error("chain has reached the largest block index")]
    ChainFull,
}

fn describe_mismatches(mismatches: &[String]) -> String {
    if mismatches.is_empty() {
        String::new()
    } else {
        format!("; {}", mismatches.join("; "))
    }
}
