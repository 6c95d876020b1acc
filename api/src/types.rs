//! The JSON bodies of a node's HTTP API, shared by the server (the node) and its clients (the
//! command line, the publisher library, tests). Hashes, keys and binary values are lower-case
//! hex; `encoding` fields hold the canonical encoding of the object (docs/protocol.md), so a
//! client that trusts nothing re-checks what it reads.

use chainiac_protocol::anchor::{AnchorAccount, AnchorEvidence, AnchorProof};
use chainiac_protocol::cosi::{Roster, RosterMember};
use chainiac_protocol::encoding::Encode;
use chainiac_protocol::keys::{KeySignature, ProofOfPossession, PublicKey, Signature};
use chainiac_protocol::skipchain::SkipBlock;
use serde::{Deserialize, Serialize};

/// A roster entry: a witness's public key and proof of possession (`node.pub.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterMemberJson {
    /// The public key, hex.
    pub public_key: String,
    /// The proof of possession (a signature by the key over itself), hex.
    pub proof_of_possession: String,
}

/// A roster entry that does not hold a valid key or proof.
#[derive(Debug, thiserror::Error)]
#[error("invalid roster entry: {0}")]
pub struct InvalidMember(String);

impl From<&RosterMember> for RosterMemberJson {
    fn from(member: &RosterMember) -> Self {
        Self {
            public_key: member.key.to_hex(),
            proof_of_possession: hex::encode(member.possession.0.0),
        }
    }
}

impl TryFrom<&RosterMemberJson> for RosterMember {
    type Error = InvalidMember;

    fn try_from(json: &RosterMemberJson) -> Result<Self, InvalidMember> {
        let key = PublicKey::from_hex(&json.public_key)
            .map_err(|e| InvalidMember(format!("public_key: {e}")))?;
        let mut proof = [0u8; 64];
        hex::decode_to_slice(&json.proof_of_possession, &mut proof).map_err(|_| {
            InvalidMember("proof_of_possession: 128 hex characters expected".into())
        })?;
        Ok(RosterMember {
            key,
            possession: ProofOfPossession(Signature(proof)),
        })
    }
}

/// The members of a roster as JSON entries.
pub fn members_json(roster: &Roster) -> Vec<RosterMemberJson> {
    roster
        .members()
        .iter()
        .map(RosterMemberJson::from)
        .collect()
}

/// A roster from JSON entries, with `threshold` or the default (more than two thirds).
pub fn roster_from_json(
    members: &[RosterMemberJson],
    threshold: Option<u32>,
) -> Result<Roster, InvalidMember> {
    let members = members
        .iter()
        .map(RosterMember::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    match threshold {
        Some(threshold) => Roster::new(members, threshold),
        None => Roster::with_default_threshold(members),
    }
    .map_err(|e| InvalidMember(e.to_string()))
}

/// `GET /rosters/{hash}`: a roster by its hash (blocks name unchanged rosters by hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterJson {
    /// The roster's hash, hex.
    pub hash: String,
    /// Signatures a forward link needs.
    pub threshold: usize,
    /// The members, in roster order.
    pub members: Vec<RosterMemberJson>,
    /// The roster's canonical encoding, hex.
    pub encoding: String,
}

impl From<&Roster> for RosterJson {
    fn from(roster: &Roster) -> Self {
        Self {
            hash: roster.hash().to_hex(),
            threshold: roster.threshold(),
            members: members_json(roster),
            encoding: hex::encode(roster.to_bytes()),
        }
    }
}

/// A chain's head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHeadJson {
    /// The chain id, hex.
    pub chain_id: String,
    /// Index of the head.
    pub index: u64,
    /// Hash of the head, hex.
    pub head: String,
}

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusJson {
    /// The node's public key, hex.
    pub public_key: String,
    /// Its libp2p peer id.
    pub peer_id: Option<String>,
    /// Addresses its swarm listens on.
    pub listen: Vec<String>,
    /// Connected peers.
    pub peers: Vec<String>,
    /// Chains it holds (at most 1,000; `GET /chains` lists all).
    pub chains: Vec<ChainHeadJson>,
}

/// A block, as `GET /chains/{id}/blocks/{index}` and `GET /chains/{id}` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockJson {
    /// The chain id, hex.
    pub chain_id: String,
    /// The block's index.
    pub index: u64,
    /// Its height (number of back links).
    pub height: u32,
    /// Its hash, hex.
    pub hash: String,
    /// Hash of the roster it runs under, hex (`GET /rosters/{hash}`).
    pub roster_hash: String,
    /// The payload, hex.
    pub payload: String,
    /// The block's canonical encoding, hex.
    pub encoding: String,
}

impl From<&SkipBlock> for BlockJson {
    fn from(block: &SkipBlock) -> Self {
        Self {
            chain_id: block.chain_id().to_hex(),
            index: block.index(),
            height: block.height(),
            hash: block.hash().to_hex(),
            roster_hash: block.roster().hash().to_hex(),
            payload: hex::encode(block.payload()),
            encoding: hex::encode(block.to_bytes()),
        }
    }
}

/// A block with the level-0 forward link into it, as `GET /chains/{id}/blocks?from=F&count=N`
/// lists them: enough to check each block from the one before (protocol §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedBlockJson {
    /// The block.
    #[serde(flatten)]
    pub block: BlockJson,
    /// The canonical encoding (hex) of the level-0 forward link from the block before into
    /// this one; `null` for the genesis.
    pub link: Option<String>,
}

/// `GET /chains/{id}/blocks?from=F&count=N`: consecutive blocks from index `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockBatchJson {
    /// The chain id, hex.
    pub chain_id: String,
    /// Index of the first block asked for.
    pub from: u64,
    /// The blocks from `from` on, at most `count`, never past the head; empty when `from` is
    /// past the head.
    pub blocks: Vec<LinkedBlockJson>,
}

/// `GET /chains/{id}/releases?before=B&count=N`: the newest releases of a release chain,
/// decoded (what the node stored; a client verifies the blocks themselves).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseListJson {
    /// The release chain id, hex.
    pub chain_id: String,
    /// Index of the chain's head.
    pub head_index: u64,
    /// Releases in blocks below `before` (default: all), newest first, at most `count`.
    pub releases: Vec<ReleaseJson>,
}

/// One release, decoded from its release-chain block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseJson {
    /// Index of its block in the release chain.
    pub index: u64,
    /// Hash of that block, hex.
    pub block: String,
    /// The project.
    pub project: String,
    /// Its version.
    pub version: String,
    /// Its sequence (equal to `index`).
    pub sequence: u64,
    /// Unix seconds when it was made.
    pub timestamp: u64,
    /// Hash of the policy-chain block whose policy it follows, hex.
    pub policy: String,
    /// The manifest digest the developers and verifiers signed, hex.
    pub manifest_digest: String,
    /// The source archive.
    pub source: ArtifactJson,
    /// The binaries, one per platform.
    pub binaries: Vec<BinaryJson>,
    /// Keys of the developers who signed it, hex.
    pub signers: Vec<String>,
    /// The build attestations it carries.
    pub attestations: Vec<AttestationJson>,
}

/// A file of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactJson {
    /// Its file name.
    pub name: String,
    /// BLAKE3 of its bytes, hex.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A release's binary for one platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryJson {
    /// The platform.
    pub platform: String,
    /// The file.
    pub artifact: ArtifactJson,
}

/// A build verifier's attestation in a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationJson {
    /// The verifier's key, hex.
    pub verifier: String,
    /// `built` or `failed`.
    pub outcome: String,
    /// What it built: `platform` and BLAKE3 `hash`, hex.
    pub outputs: Vec<AttestationOutputJson>,
}

/// One output of a verifier's rebuild.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationOutputJson {
    /// The platform.
    pub platform: String,
    /// BLAKE3 of the rebuilt file, hex.
    pub hash: String,
}

/// `GET /chains/{id}`: a chain's head block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainJson {
    /// The chain id, hex.
    pub chain_id: String,
    /// Index of the head.
    pub index: u64,
    /// The head block.
    pub head: BlockJson,
}

/// `GET /chains/{id}/proof?from=F&to=T`: a skip proof from block index `from` (default 0) to
/// block index `to` (default the head).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofJson {
    /// The chain id, hex.
    pub chain_id: String,
    /// Index of the trusted block the proof starts from.
    pub from: u64,
    /// Index of the block it ends at.
    pub to: u64,
    /// Number of steps.
    pub steps: usize,
    /// The proof's canonical encoding, hex.
    pub encoding: String,
}

/// `POST /chains`: create a chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateChainRequest {
    /// The witnesses.
    pub roster: Vec<RosterMemberJson>,
    /// Signatures a forward link needs (default: more than two thirds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    /// Skipchain base (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u32>,
    /// Skipchain maximum height (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u32>,
    /// The genesis payload, hex.
    #[serde(default)]
    pub payload: String,
}

/// `POST /chains/{id}/blocks`: append a block, led by this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// The payload, hex.
    #[serde(default)]
    pub payload: String,
    /// A new roster for the chain from this block on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster: Option<Vec<RosterMemberJson>>,
    /// The new roster's threshold (default: more than two thirds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

/// `PUT /artifacts`: the stored artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactStored {
    /// BLAKE3 of the bytes, hex (`b3sum`).
    pub hash: String,
    /// Size in bytes.
    pub size: usize,
}

/// One project chain in `GET /projects`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectChainJson {
    /// The chain id, hex.
    pub chain_id: String,
    /// The project's name.
    pub project: Option<String>,
    /// Index of the head.
    pub index: u64,
    /// Hash of the head, hex.
    pub head: String,
    /// `policy` or `release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Policy chains: developer signatures a release needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer_threshold: Option<u32>,
    /// Policy chains: the developer keys, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developers: Option<Vec<String>>,
    /// Policy chains: matching build attestations a release needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestations_required: Option<u32>,
    /// Policy chains: the build verifiers' keys, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifiers: Option<Vec<String>>,
    /// Policy chains: the timeline the policy commits the project to, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<String>,
    /// Release chains: the project's policy chain, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_chain: Option<String>,
    /// Release chains: the latest release's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Release chains: the latest release's sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// `POST /timeline/{id}/roster`: the node's operator approves moving the timeline to `roster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterApprovalRequest {
    /// The new roster's members.
    pub roster: Vec<RosterMemberJson>,
    /// Its threshold (default: more than two thirds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

/// A move of a timeline to another roster, waiting for its members' approvals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterChangeJson {
    /// The timeline chain id, hex.
    pub timeline: String,
    /// Hash of the roster approved, hex.
    pub roster: String,
    /// Approvals of members of the current roster this node holds.
    pub approvals: usize,
    /// Approvals needed (the current roster's threshold).
    pub threshold: usize,
    /// Members this node could not send its approval to (answer to a `POST` only).
    #[serde(default)]
    pub unreached: Vec<String>,
}

/// A timeline change: a chain and its new head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineChangeJson {
    /// The chain id, hex.
    pub chain_id: String,
    /// Its head, hex.
    pub head: String,
}

/// One timeline chain in `GET /timeline`, with its latest epoch (fields of the epoch are null
/// before the first epoch block).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineJson {
    /// The timeline chain id, hex.
    pub chain_id: String,
    /// Length of an epoch, in seconds.
    pub epoch_seconds: u64,
    /// Index of the latest timeline block.
    pub index: u64,
    /// Its hash, hex.
    pub head: String,
    /// Its epoch (Unix time / epoch_seconds).
    pub epoch: Option<u64>,
    /// Its timestamp, Unix seconds.
    pub timestamp: Option<u64>,
    /// Chains its tree covers.
    pub chain_count: Option<u64>,
    /// Root of its tree, hex.
    pub root: Option<String>,
    /// The heads that moved in it.
    pub changes: Option<Vec<TimelineChangeJson>>,
}

/// `GET /timeline/{id}/chains/{chain}?index=N`: the head timeline block `N` (default: the
/// newest) records for a chain, with its inclusion proof and the head's index in its chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntryJson {
    /// The timeline chain id, hex.
    pub timeline: String,
    /// Index of the timeline block.
    pub index: u64,
    /// Its epoch.
    pub epoch: u64,
    /// Its timestamp, Unix seconds.
    pub timestamp: u64,
    /// Root of its tree, hex.
    pub root: String,
    /// Chains its tree covers.
    pub chain_count: u64,
    /// The chain, hex.
    pub chain_id: String,
    /// The head recorded for it, hex.
    pub head: String,
    /// The index of `head` in its own chain.
    pub head_index: u64,
    /// The inclusion proof's canonical encoding, hex.
    pub proof: String,
}

/// An anchor proof as JSON (`GET /anchors`, `chainiac anchor verify --proof FILE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorProofJson {
    /// EIP-155 chain id of the Ethereum network.
    pub chain_id: u64,
    /// Transaction hash, `0x`-prefixed hex.
    pub transaction: String,
    /// Number of the block that includes it.
    pub block_number: u64,
    /// Hash of that block, `0x`-prefixed hex.
    pub block_hash: String,
    /// The timeline chain, hex.
    pub timeline: String,
    /// The anchored timeline block's index.
    pub timeline_index: u64,
    /// The anchored timeline block's hash, hex.
    pub timeline_block: String,
    /// What the anchor cost in wei, decimal (as the anchoring node's endpoint reported it).
    #[serde(default)]
    pub cost_wei: String,
    /// The self-contained Ethereum evidence (absent in proofs recorded by older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<AnchorEvidenceJson>,
}

/// The Ethereum evidence of an anchor as JSON: every byte string `0x`-prefixed hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorEvidenceJson {
    /// Block header, RLP.
    pub header: String,
    /// Position of the transaction in the block.
    pub transaction_index: u64,
    /// The transaction, EIP-2718 encoding.
    pub transaction: String,
    /// Merkle-Patricia proof of the transaction, root node first.
    pub transaction_proof: Vec<String>,
    /// The receipt, EIP-2718 encoding.
    pub receipt: String,
    /// Merkle-Patricia proof of the receipt, root node first.
    pub receipt_proof: Vec<String>,
    /// The sending account (20 bytes).
    pub account: String,
    /// Where its anchoring transactions go: the account itself, or the event contract.
    pub recipient: String,
    /// The roster member vouching for the account, hex public key.
    pub member: String,
    /// The member's signature over the chain id and account, hex.
    pub member_signature: String,
}

/// An anchor proof JSON that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("invalid anchor proof: {0}")]
pub struct InvalidAnchorProof(String);

fn to_hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

fn from_hex0x(text: &str, what: &str) -> Result<Vec<u8>, InvalidAnchorProof> {
    hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|e| InvalidAnchorProof(format!("{what}: {e}")))
}

fn from_hex0x_fixed<const N: usize>(text: &str, what: &str) -> Result<[u8; N], InvalidAnchorProof> {
    from_hex0x(text, what)?
        .try_into()
        .map_err(|_| InvalidAnchorProof(format!("{what}: {N} bytes expected")))
}

impl From<&AnchorEvidence> for AnchorEvidenceJson {
    fn from(evidence: &AnchorEvidence) -> Self {
        Self {
            header: to_hex0x(&evidence.header),
            transaction_index: evidence.transaction_index,
            transaction: to_hex0x(&evidence.transaction),
            transaction_proof: evidence
                .transaction_proof
                .iter()
                .map(|n| to_hex0x(n))
                .collect(),
            receipt: to_hex0x(&evidence.receipt),
            receipt_proof: evidence.receipt_proof.iter().map(|n| to_hex0x(n)).collect(),
            account: to_hex0x(&evidence.account.address),
            recipient: to_hex0x(&evidence.account.recipient),
            member: evidence.account.vouched.signer.to_hex(),
            member_signature: hex::encode(evidence.account.vouched.signature.0),
        }
    }
}

impl TryFrom<&AnchorEvidenceJson> for AnchorEvidence {
    type Error = InvalidAnchorProof;

    fn try_from(json: &AnchorEvidenceJson) -> Result<Self, InvalidAnchorProof> {
        let nodes = |nodes: &[String], what: &str| {
            nodes
                .iter()
                .map(|node| from_hex0x(node, what))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            header: from_hex0x(&json.header, "header")?,
            transaction_index: json.transaction_index,
            transaction: from_hex0x(&json.transaction, "transaction")?,
            transaction_proof: nodes(&json.transaction_proof, "transaction_proof")?,
            receipt: from_hex0x(&json.receipt, "receipt")?,
            receipt_proof: nodes(&json.receipt_proof, "receipt_proof")?,
            account: AnchorAccount {
                address: from_hex0x_fixed(&json.account, "account")?,
                recipient: from_hex0x_fixed(&json.recipient, "recipient")?,
                vouched: KeySignature {
                    signer: PublicKey::from_hex(&json.member)
                        .map_err(|e| InvalidAnchorProof(format!("member: {e}")))?,
                    signature: Signature(from_hex0x_fixed(
                        &json.member_signature,
                        "member_signature",
                    )?),
                },
            },
        })
    }
}

impl From<&AnchorProof> for AnchorProofJson {
    fn from(proof: &AnchorProof) -> Self {
        Self {
            chain_id: proof.chain_id,
            transaction: proof.transaction.clone(),
            block_number: proof.block_number,
            block_hash: proof.block_hash.clone(),
            timeline: proof.timeline.clone(),
            timeline_index: proof.timeline_index,
            timeline_block: proof.timeline_block.clone(),
            cost_wei: proof.cost_wei.to_string(),
            evidence: proof.evidence.as_ref().map(AnchorEvidenceJson::from),
        }
    }
}

impl TryFrom<AnchorProofJson> for AnchorProof {
    type Error = InvalidAnchorProof;

    fn try_from(json: AnchorProofJson) -> Result<Self, InvalidAnchorProof> {
        let cost_wei = if json.cost_wei.is_empty() {
            0
        } else {
            json.cost_wei
                .parse()
                .map_err(|e| InvalidAnchorProof(format!("cost_wei: {e}")))?
        };
        Ok(Self {
            chain_id: json.chain_id,
            transaction: json.transaction,
            block_number: json.block_number,
            block_hash: json.block_hash,
            timeline: json.timeline,
            timeline_index: json.timeline_index,
            timeline_block: json.timeline_block,
            cost_wei,
            evidence: json
                .evidence
                .as_ref()
                .map(AnchorEvidence::try_from)
                .transpose()?,
        })
    }
}

/// The anchors of one timeline in `GET /anchors`, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineAnchorsJson {
    /// The timeline chain id, hex.
    pub timeline: String,
    /// Its anchor proofs.
    pub anchors: Vec<AnchorProofJson>,
    /// This node's anchoring account as last seen (absent when it does not anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AnchorAccountJson>,
}

/// A node's anchoring account: balance and spending, wei as decimal strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorAccountJson {
    /// The Ethereum address, `0x` hex.
    pub address: String,
    /// Its balance, wei.
    pub balance_wei: String,
    /// Spent or reserved in the last 24 hours, wei.
    pub spent_today_wei: String,
    /// The daily cap, wei.
    pub daily_cap_wei: String,
    /// The fee ceiling, wei per gas.
    pub max_fee_per_gas_wei: String,
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    /// What went wrong.
    pub error: String,
}

impl ArtifactJson {
    fn of(artifact: &chainiac_protocol::release::ArtifactRef) -> Self {
        Self {
            name: artifact.name.clone(),
            hash: artifact.hash.to_hex(),
            size: artifact.size,
        }
    }
}

impl ReleaseJson {
    /// The release in block `index` (hash `block`) of its chain.
    pub fn from_release(
        index: u64,
        block: &chainiac_protocol::Hash,
        release: &chainiac_protocol::release::Release,
    ) -> Self {
        use chainiac_protocol::release::BuildOutcome;
        let manifest = &release.manifest;
        Self {
            index,
            block: block.to_hex(),
            project: manifest.project.clone(),
            version: manifest.version.clone(),
            sequence: manifest.sequence,
            timestamp: manifest.timestamp,
            policy: manifest.policy.to_hex(),
            manifest_digest: manifest.digest().to_hex(),
            source: ArtifactJson::of(&manifest.source),
            binaries: manifest
                .binaries
                .iter()
                .map(|b| BinaryJson {
                    platform: b.platform.clone(),
                    artifact: ArtifactJson::of(&b.artifact),
                })
                .collect(),
            signers: release
                .signatures
                .iter()
                .map(|s| s.signer.to_hex())
                .collect(),
            attestations: release
                .attestations
                .iter()
                .map(|a| AttestationJson {
                    verifier: a.verifier.to_hex(),
                    outcome: match a.outcome {
                        BuildOutcome::Built => "built",
                        BuildOutcome::Failed => "failed",
                    }
                    .to_owned(),
                    outputs: a
                        .outputs
                        .iter()
                        .map(|(platform, hash)| AttestationOutputJson {
                            platform: platform.clone(),
                            hash: hash.to_hex(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainiac_protocol::keys::SecretKey;

    #[test]
    fn roster_entries_round_trip_and_bad_entries_are_refused() {
        let members: Vec<RosterMember> = (1..=4u8)
            .map(|i| RosterMember::from_secret(&SecretKey::from_seed(&[i; 32])))
            .collect();
        let roster = Roster::with_default_threshold(members).expect("roster");
        let json = members_json(&roster);
        let back = roster_from_json(&json, Some(roster.threshold() as u32)).expect("roster");
        assert_eq!(back.hash(), roster.hash());
        let text = serde_json::to_string(&json[0]).expect("json");
        assert!(text.contains("\"public_key\""), "{text}");
        let mut bad = json;
        bad[1].proof_of_possession = bad[0].proof_of_possession.clone();
        assert!(roster_from_json(&bad, None).is_err(), "a stolen proof");
        bad[1].proof_of_possession = "zz".into();
        assert!(roster_from_json(&bad, None).is_err());
        let described = RosterJson::from(&roster);
        assert_eq!(described.hash, roster.hash().to_hex());
        assert_eq!(described.members.len(), 4);
    }

    #[test]
    fn optional_fields_are_left_out_or_null_as_documented() {
        let append = AppendRequest {
            payload: "00".into(),
            roster: None,
            threshold: None,
        };
        assert_eq!(
            serde_json::to_string(&append).expect("json"),
            r#"{"payload":"00"}"#
        );
        let parsed: AppendRequest = serde_json::from_str("{}").expect("defaults");
        assert_eq!(parsed.payload, "");
        let timeline = TimelineJson {
            chain_id: "00".into(),
            epoch_seconds: 10,
            index: 0,
            head: "00".into(),
            epoch: None,
            timestamp: None,
            chain_count: None,
            root: None,
            changes: None,
        };
        let text = serde_json::to_string(&timeline).expect("json");
        assert!(text.contains(r#""epoch":null"#), "{text}");
    }
}
