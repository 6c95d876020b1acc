//! Messages between nodes, in the protocol's canonical encoding, with bounds on everything a
//! peer controls. One request-response protocol carries sync and signing-round requests; one
//! gossip topic carries new blocks.

use chainiac_protocol::agreement::{SignedCertificate, SignedMessage};
use chainiac_protocol::anchor::AnchorProof;
use chainiac_protocol::cosi::{
    Challenge, Commitment, Contribution, ParticipationMask, ResponseShare, Roster, TreeLayout,
};
use chainiac_protocol::encoding::{Decode, Encode, Reader, VERSION, Writer};
use chainiac_protocol::keys::KeySignature;
use chainiac_protocol::policy::MAX_POLICY_KEYS;
use chainiac_protocol::release::{BuildAttestation, ReleaseManifest};
use chainiac_protocol::skipchain::{ForwardLink, MAX_HEIGHT, SkipBlock, SkipProof};
use chainiac_protocol::timeline::{InclusionProof, TimelineEntry};
use chainiac_protocol::{Error, Hash, Result};

/// Name of the request-response protocol.
pub const REQUEST_PROTOCOL: &str = "/chainiac/request/1";
/// Gossip topic for new blocks with their forward links.
pub const BLOCKS_TOPIC: &str = "chainiac/blocks/1";
/// Largest request a node reads (1 MiB).
pub const MAX_REQUEST_LEN: usize = 1 << 20;
/// Largest response a node reads (32 MiB: a batch of blocks).
pub const MAX_RESPONSE_LEN: usize = 32 << 20;
/// Largest gossip message (8 MiB: one block with its roster and links).
pub const MAX_GOSSIP_LEN: usize = 8 << 20;
/// Most blocks asked or served in one request.
pub const MAX_BLOCKS_PER_REQUEST: u32 = 256;
/// Most bytes of blocks a `Blocks` answer carries (it stops before the block that would pass
/// this, but always carries one block): under [`MAX_RESPONSE_LEN`], so that any run of large
/// blocks can be synced, a few answers at a time.
pub const MAX_BLOCKS_ANSWER_BYTES: usize = 24 << 20;
/// Most chains listed in one heads response.
pub const MAX_HEADS: usize = 100_000;
/// Longest error text.
pub const MAX_ERROR_LEN: usize = 1024;
/// Buckets of the heads digest (anti-entropy): a chain is in bucket `chain_id[0]`.
pub const HEAD_BUCKETS: usize = 256;
/// Longest time budget a tree request may give a subtree.
pub const MAX_TREE_BUDGET_MS: u32 = 60_000;
/// Content bytes per artifact slice request (1 MiB).
pub const SLICE_LEN: u64 = 1 << 20;
pub use chainiac_protocol::cosi::{MAX_TREE_BRANCHING, MAX_TREE_DEPTH};

/// A block with the forward links that point to it: what sync and gossip move around.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedBlock {
    /// The block.
    pub block: SkipBlock,
    /// Signed forward links into the block, level 0 first.
    pub links: Vec<ForwardLink>,
}

impl Encode for LinkedBlock {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(VERSION).value(&self.block).list(&self.links);
    }
}

impl Decode for LinkedBlock {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("linked block")?;
        Ok(Self {
            block: SkipBlock::decode_from(reader)?,
            links: reader.list(MAX_HEIGHT as usize, "forward links")?,
        })
    }
}

/// A chain's head as a peer reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadInfo {
    /// The chain.
    pub chain_id: Hash,
    /// Index of its head.
    pub index: u64,
    /// Hash of its head.
    pub hash: Hash,
}

impl Encode for HeadInfo {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .value(&self.chain_id)
            .u64(self.index)
            .value(&self.hash);
    }
}

impl Decode for HeadInfo {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            chain_id: Hash::decode_from(reader)?,
            index: reader.u64("head index")?,
            hash: Hash::decode_from(reader)?,
        })
    }
}

/// A request from one node to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// The heads of every chain the peer holds.
    Heads,
    /// Up to `count` blocks of a chain from index `from`, with their forward links.
    Blocks {
        chain_id: Hash,
        from: u64,
        count: u32,
    },
    /// A skip proof between two blocks.
    Proof { chain_id: Hash, from: u64, to: u64 },
    /// Signing step 1: validate `block` and commit to signing its link at `level`.
    Commit {
        round: Hash,
        block: Box<SkipBlock>,
        level: u32,
    },
    /// Signing step 2: respond to the challenge of round `round`.
    Respond { round: Hash, challenge: Challenge },
    /// The head of one chain.
    Head { chain_id: Hash },
    /// Content bytes `start..start+len` of an artifact (at most one slice), with their proof.
    ArtifactSlice { hash: Hash, start: u64, len: u64 },
    /// The newest anchor proofs of a timeline this node recorded.
    Anchors { timeline: Hash },
    /// The head of `chain_id` recorded in block `index` of the timeline chain `timeline`, with
    /// its inclusion proof.
    TimelineInclusion {
        timeline: Hash,
        index: u64,
        chain_id: Hash,
    },
    /// Ask a build verifier for its attestation of `manifest`, with the developers' signatures
    /// over it (a verifier builds only what the developer threshold approved): it answers with
    /// the attestation once it has rebuilt the release, and queues the rebuild otherwise.
    Attest {
        manifest: Box<ReleaseManifest>,
        signatures: Vec<KeySignature>,
    },
    /// Anti-entropy, step 1: the digest of every head the peer holds.
    HeadsSummary,
    /// Anti-entropy, step 2: the digest of each of the [`HEAD_BUCKETS`] buckets of heads.
    HeadsBuckets,
    /// Anti-entropy, step 3: the heads in one bucket (answered with [`Response::Heads`]).
    HeadsInBucket { bucket: u8 },
    /// Tree round, step 1, from a node's parent in the tree: validate `block`, commit, ask the
    /// children (laid out by `layout`) to do the same, and answer with the subtree's aggregate
    /// commitment within `budget_ms` milliseconds.
    TreeCommit {
        round: Hash,
        block: Box<SkipBlock>,
        level: u32,
        layout: TreeLayout,
        budget_ms: u32,
    },
    /// Tree round, step 2, from a node's parent: respond to the challenge, collect the
    /// responses of the children that committed, and answer with the subtree's checked
    /// response within `budget_ms` milliseconds.
    TreeRespond {
        round: Hash,
        challenge: Challenge,
        budget_ms: u32,
    },
    /// A timeline member's approval of moving the timeline `timeline` to `roster`, sent by the
    /// approving member's node to the other members (whichever leads the next epoch includes
    /// the approvals once a threshold of them is in). Answered with [`Response::Approvals`].
    ApproveRoster {
        timeline: Hash,
        roster: Box<Roster>,
        approval: Box<KeySignature>,
    },
    /// Agreement on position (`chain_id`, `index`) between members of the roster of block
    /// `index - 1` (docs/protocol.md §9.5): `message` with its evidence, and the block it is
    /// about when the sender holds it (a proposal always carries it). Answered with
    /// [`Response::Noted`] or a refusal.
    Agreement {
        chain_id: Hash,
        index: u64,
        message: SignedMessage,
        block: Option<Box<SkipBlock>>,
    },
    /// A block a publisher wants logged as the next block of its chain, forwarded to the
    /// members of the roster that decides it. Answered with [`Response::Noted`].
    Candidate { block: Box<SkipBlock> },
    /// The commit certificate deciding `block` at its position: a witness signs a forward
    /// link into a block only once shown its decision. Answered with [`Response::Noted`].
    Decided {
        block: Box<SkipBlock>,
        certificate: SignedCertificate,
    },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Chain heads.
    Heads(Vec<HeadInfo>),
    /// Blocks with their links, in order.
    Blocks(Vec<LinkedBlock>),
    /// A skip proof.
    Proof(Box<SkipProof>),
    /// The witness's commitment.
    Committed(Commitment),
    /// The witness's response share.
    Responded(ResponseShare),
    /// The request was refused; the text says why.
    Refused(String),
    /// A chain's head, or `None` if the peer does not hold the chain.
    Head(Option<HeadInfo>),
    /// An artifact slice: the artifact's size and the bao slice encoding of the bytes asked.
    Slice { size: u64, data: Vec<u8> },
    /// Anchor proofs, newest first.
    Anchors(Vec<AnchorProof>),
    /// A timeline entry, its inclusion proof, and the index of the head block it names.
    Inclusion {
        entry: TimelineEntry,
        proof: InclusionProof,
        head_index: u64,
    },
    /// A build verifier's attestation, or `None` while the rebuild is queued or running.
    Attestation(Option<Box<BuildAttestation>>),
    /// A subtree's aggregate commitment (its mask says which members it covers), and the
    /// members below the sender that failed to commit (timed out, refused or answered wrongly).
    SubtreeCommitted {
        contribution: Contribution,
        failed: ParticipationMask,
    },
    /// A subtree's response: the checked sum of its members' shares.
    SubtreeResponded(ResponseShare),
    /// The subtree cannot respond for everyone it committed for: these members failed.
    SubtreeIncomplete { culprits: ParticipationMask },
    /// Answer to a Commit: the witness already released a share for this other block at the
    /// proposed position (equivocation guard); the leader may complete it instead.
    Locked(Box<SkipBlock>),
    /// The digest of every head the peer holds, and how many chains it holds.
    HeadsSummary { root: Hash, chains: u64 },
    /// The digest of each bucket of heads, [`HEAD_BUCKETS`] of them.
    HeadsBuckets(Vec<Hash>),
    /// How many approvals of the roster change the peer now holds.
    Approvals(u32),
    /// An agreement message, candidate or decision was checked and taken into account.
    Noted,
}

const HEADS: u8 = 0;
const BLOCKS: u8 = 1;
const PROOF: u8 = 2;
const COMMIT: u8 = 3;
const RESPOND: u8 = 4;
const COMMITTED: u8 = 5;
const RESPONDED: u8 = 6;
const REFUSED: u8 = 7;
const HEAD: u8 = 16;
const ARTIFACT_SLICE: u8 = 17;
const SLICE: u8 = 18;
const TIMELINE_INCLUSION: u8 = 19;
const INCLUSION: u8 = 20;
const ANCHORS: u8 = 21;
const ATTEST: u8 = 22;
const ATTESTATION: u8 = 23;
/// Most anchor proofs in one answer.
pub const MAX_ANCHORS: usize = 64;
/// Largest slice encoding: one slice of content plus its proof nodes.
pub const MAX_SLICE_ENCODING: usize = (SLICE_LEN as usize) * 17 / 16 + 4096;
const TREE_COMMIT: u8 = 8;
const TREE_RESPOND: u8 = 9;
const SUBTREE_COMMITTED: u8 = 10;
const SUBTREE_RESPONDED: u8 = 11;
const SUBTREE_INCOMPLETE: u8 = 12;
const LOCKED: u8 = 24;
const HEADS_SUMMARY: u8 = 25;
const HEADS_BUCKETS: u8 = 26;
const HEADS_IN_BUCKET: u8 = 27;
const APPROVE_ROSTER: u8 = 28;
const APPROVALS: u8 = 29;
const AGREEMENT: u8 = 30;
const CANDIDATE: u8 = 31;
const DECIDED: u8 = 32;
const NOTED: u8 = 33;

impl Encode for Request {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(VERSION);
        match self {
            Request::Heads => writer.u8(HEADS),
            Request::Blocks {
                chain_id,
                from,
                count,
            } => writer.u8(BLOCKS).value(chain_id).u64(*from).u32(*count),
            Request::Proof { chain_id, from, to } => {
                writer.u8(PROOF).value(chain_id).u64(*from).u64(*to)
            }
            Request::Commit {
                round,
                block,
                level,
            } => writer
                .u8(COMMIT)
                .value(round)
                .value(block.as_ref())
                .u32(*level),
            Request::Respond { round, challenge } => {
                writer.u8(RESPOND).value(round).value(challenge)
            }
            Request::Head { chain_id } => writer.u8(HEAD).value(chain_id),
            Request::ArtifactSlice { hash, start, len } => {
                writer.u8(ARTIFACT_SLICE).value(hash).u64(*start).u64(*len)
            }
            Request::Anchors { timeline } => writer.u8(ANCHORS).value(timeline),
            Request::Attest {
                manifest,
                signatures,
            } => writer.u8(ATTEST).value(manifest.as_ref()).list(signatures),
            Request::TimelineInclusion {
                timeline,
                index,
                chain_id,
            } => writer
                .u8(TIMELINE_INCLUSION)
                .value(timeline)
                .u64(*index)
                .value(chain_id),
            Request::TreeCommit {
                round,
                block,
                level,
                layout,
                budget_ms,
            } => writer
                .u8(TREE_COMMIT)
                .value(round)
                .value(block.as_ref())
                .u32(*level)
                .value(layout)
                .u32(*budget_ms),
            Request::HeadsSummary => writer.u8(HEADS_SUMMARY),
            Request::HeadsBuckets => writer.u8(HEADS_BUCKETS),
            Request::HeadsInBucket { bucket } => writer.u8(HEADS_IN_BUCKET).u8(*bucket),
            Request::ApproveRoster {
                timeline,
                roster,
                approval,
            } => writer
                .u8(APPROVE_ROSTER)
                .value(timeline)
                .value(roster.as_ref())
                .value(approval.as_ref()),
            Request::TreeRespond {
                round,
                challenge,
                budget_ms,
            } => writer
                .u8(TREE_RESPOND)
                .value(round)
                .value(challenge)
                .u32(*budget_ms),
            Request::Agreement {
                chain_id,
                index,
                message,
                block,
            } => {
                writer
                    .u8(AGREEMENT)
                    .value(chain_id)
                    .u64(*index)
                    .value(message);
                match block {
                    Some(block) => writer.u8(1).value(block.as_ref()),
                    None => writer.u8(0),
                }
            }
            Request::Candidate { block } => writer.u8(CANDIDATE).value(block.as_ref()),
            Request::Decided { block, certificate } => {
                writer.u8(DECIDED).value(block.as_ref()).value(certificate)
            }
        };
    }
}

impl Decode for Request {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("request")?;
        Ok(match reader.u8("request kind")? {
            HEADS => Request::Heads,
            BLOCKS => {
                let chain_id = Hash::decode_from(reader)?;
                let from = reader.u64("from")?;
                let count = reader.u32("count")?;
                if count > MAX_BLOCKS_PER_REQUEST {
                    return Err(Error::TooLong {
                        what: "blocks requested",
                        len: count as usize,
                        max: MAX_BLOCKS_PER_REQUEST as usize,
                    });
                }
                Request::Blocks {
                    chain_id,
                    from,
                    count,
                }
            }
            PROOF => Request::Proof {
                chain_id: Hash::decode_from(reader)?,
                from: reader.u64("from")?,
                to: reader.u64("to")?,
            },
            COMMIT => Request::Commit {
                round: Hash::decode_from(reader)?,
                block: Box::new(SkipBlock::decode_from(reader)?),
                level: reader.u32("level")?,
            },
            RESPOND => Request::Respond {
                round: Hash::decode_from(reader)?,
                challenge: Challenge::decode_from(reader)?,
            },
            HEAD => Request::Head {
                chain_id: Hash::decode_from(reader)?,
            },
            ARTIFACT_SLICE => {
                let hash = Hash::decode_from(reader)?;
                let start = reader.u64("slice start")?;
                let len = reader.u64("slice length")?;
                if len > SLICE_LEN {
                    return Err(Error::TooLong {
                        what: "artifact slice",
                        len: len as usize,
                        max: SLICE_LEN as usize,
                    });
                }
                Request::ArtifactSlice { hash, start, len }
            }
            ANCHORS => Request::Anchors {
                timeline: Hash::decode_from(reader)?,
            },
            ATTEST => Request::Attest {
                manifest: Box::new(ReleaseManifest::decode_from(reader)?),
                signatures: reader.list(MAX_POLICY_KEYS, "developer signatures")?,
            },
            TIMELINE_INCLUSION => Request::TimelineInclusion {
                timeline: Hash::decode_from(reader)?,
                index: reader.u64("timeline index")?,
                chain_id: Hash::decode_from(reader)?,
            },
            TREE_COMMIT => Request::TreeCommit {
                round: Hash::decode_from(reader)?,
                block: Box::new(SkipBlock::decode_from(reader)?),
                level: reader.u32("level")?,
                layout: TreeLayout::decode_from(reader)?,
                budget_ms: reader.u32("time budget")?,
            },
            HEADS_SUMMARY => Request::HeadsSummary,
            HEADS_BUCKETS => Request::HeadsBuckets,
            HEADS_IN_BUCKET => Request::HeadsInBucket {
                bucket: reader.u8("bucket")?,
            },
            APPROVE_ROSTER => Request::ApproveRoster {
                timeline: Hash::decode_from(reader)?,
                roster: Box::new(Roster::decode_from(reader)?),
                approval: Box::new(KeySignature::decode_from(reader)?),
            },
            TREE_RESPOND => Request::TreeRespond {
                round: Hash::decode_from(reader)?,
                challenge: Challenge::decode_from(reader)?,
                budget_ms: reader.u32("time budget")?,
            },
            AGREEMENT => Request::Agreement {
                chain_id: Hash::decode_from(reader)?,
                index: reader.u64("index")?,
                message: SignedMessage::decode_from(reader)?,
                block: if reader.bool("block present")? {
                    Some(Box::new(SkipBlock::decode_from(reader)?))
                } else {
                    None
                },
            },
            CANDIDATE => Request::Candidate {
                block: Box::new(SkipBlock::decode_from(reader)?),
            },
            DECIDED => Request::Decided {
                block: Box::new(SkipBlock::decode_from(reader)?),
                certificate: SignedCertificate::decode_from(reader)?,
            },
            tag => {
                return Err(Error::InvalidTag {
                    what: "request kind",
                    tag,
                });
            }
        })
    }
}

impl Encode for Response {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(VERSION);
        match self {
            Response::Heads(heads) => writer.u8(HEADS).list(heads),
            Response::Blocks(blocks) => writer.u8(BLOCKS).list(blocks),
            Response::Proof(proof) => writer.u8(PROOF).value(proof.as_ref()),
            Response::Committed(commitment) => writer.u8(COMMITTED).value(commitment),
            Response::Responded(share) => writer.u8(RESPONDED).value(share),
            Response::Refused(reason) => {
                let cut = reason
                    .char_indices()
                    .map(|(i, _)| i)
                    .take_while(|&i| i <= MAX_ERROR_LEN)
                    .last()
                    .unwrap_or(0);
                let text = if reason.len() <= MAX_ERROR_LEN {
                    reason.as_str()
                } else {
                    &reason[..cut]
                };
                writer.u8(REFUSED).str(text)
            }
            Response::Head(None) => writer.u8(HEAD).u8(0),
            Response::Head(Some(head)) => writer.u8(HEAD).u8(1).value(head),
            Response::Slice { size, data } => writer.u8(SLICE).u64(*size).bytes(data),
            Response::Anchors(anchors) => writer.u8(ANCHORS).list(anchors),
            Response::Attestation(None) => writer.u8(ATTESTATION).u8(0),
            Response::Attestation(Some(attestation)) => {
                writer.u8(ATTESTATION).u8(1).value(attestation.as_ref())
            }
            Response::Inclusion {
                entry,
                proof,
                head_index,
            } => writer
                .u8(INCLUSION)
                .value(entry)
                .value(proof)
                .u64(*head_index),
            Response::SubtreeCommitted {
                contribution,
                failed,
            } => writer
                .u8(SUBTREE_COMMITTED)
                .value(contribution)
                .value(failed),
            Response::SubtreeResponded(share) => writer.u8(SUBTREE_RESPONDED).value(share),
            Response::SubtreeIncomplete { culprits } => {
                writer.u8(SUBTREE_INCOMPLETE).value(culprits)
            }
            Response::Locked(block) => writer.u8(LOCKED).value(block.as_ref()),
            Response::HeadsSummary { root, chains } => {
                writer.u8(HEADS_SUMMARY).value(root).u64(*chains)
            }
            Response::HeadsBuckets(buckets) => writer.u8(HEADS_BUCKETS).list(buckets),
            Response::Approvals(count) => writer.u8(APPROVALS).u32(*count),
            Response::Noted => writer.u8(NOTED),
        };
    }
}

impl Decode for Response {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("response")?;
        Ok(match reader.u8("response kind")? {
            HEADS => Response::Heads(reader.list(MAX_HEADS, "heads")?),
            BLOCKS => Response::Blocks(reader.list(MAX_BLOCKS_PER_REQUEST as usize, "blocks")?),
            PROOF => Response::Proof(Box::new(SkipProof::decode_from(reader)?)),
            COMMITTED => Response::Committed(Commitment::decode_from(reader)?),
            RESPONDED => Response::Responded(ResponseShare::decode_from(reader)?),
            REFUSED => Response::Refused(reader.string(MAX_ERROR_LEN, "refusal")?),
            HEAD => Response::Head(match reader.bool("head present")? {
                false => None,
                true => Some(HeadInfo::decode_from(reader)?),
            }),
            SLICE => Response::Slice {
                size: reader.u64("artifact size")?,
                data: reader.bytes(MAX_SLICE_ENCODING, "slice")?.to_vec(),
            },
            ANCHORS => Response::Anchors(reader.list(MAX_ANCHORS, "anchor proofs")?),
            ATTESTATION => Response::Attestation(match reader.bool("attestation present")? {
                false => None,
                true => Some(Box::new(BuildAttestation::decode_from(reader)?)),
            }),
            INCLUSION => Response::Inclusion {
                entry: TimelineEntry::decode_from(reader)?,
                proof: InclusionProof::decode_from(reader)?,
                head_index: reader.u64("head index")?,
            },
            SUBTREE_COMMITTED => Response::SubtreeCommitted {
                contribution: Contribution::decode_from(reader)?,
                failed: ParticipationMask::decode_from(reader)?,
            },
            SUBTREE_RESPONDED => Response::SubtreeResponded(ResponseShare::decode_from(reader)?),
            SUBTREE_INCOMPLETE => Response::SubtreeIncomplete {
                culprits: ParticipationMask::decode_from(reader)?,
            },
            LOCKED => Response::Locked(Box::new(SkipBlock::decode_from(reader)?)),
            HEADS_SUMMARY => Response::HeadsSummary {
                root: Hash::decode_from(reader)?,
                chains: reader.u64("chains")?,
            },
            HEADS_BUCKETS => {
                let buckets: Vec<Hash> = reader.list(HEAD_BUCKETS, "head buckets")?;
                if buckets.len() != HEAD_BUCKETS {
                    return Err(Error::NonCanonical {
                        what: "head buckets (exactly 256)",
                    });
                }
                Response::HeadsBuckets(buckets)
            }
            APPROVALS => Response::Approvals(reader.u32("approvals")?),
            NOTED => Response::Noted,
            tag => {
                return Err(Error::InvalidTag {
                    what: "response kind",
                    tag,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bounds_hold() {
        let requests = [
            Request::Heads,
            Request::Blocks {
                chain_id: Hash([1; 32]),
                from: 5,
                count: 10,
            },
            Request::Proof {
                chain_id: Hash([2; 32]),
                from: 0,
                to: 99,
            },
            Request::Head {
                chain_id: Hash([5; 32]),
            },
            Request::ArtifactSlice {
                hash: Hash([6; 32]),
                start: 1 << 20,
                len: 1 << 20,
            },
            Request::TimelineInclusion {
                timeline: Hash([7; 32]),
                index: 3,
                chain_id: Hash([8; 32]),
            },
        ];
        for request in requests {
            assert_eq!(Request::from_bytes(&request.to_bytes()).ok(), Some(request));
        }
        let too_many = Request::Blocks {
            chain_id: Hash([1; 32]),
            from: 0,
            count: MAX_BLOCKS_PER_REQUEST + 1,
        };
        assert!(Request::from_bytes(&too_many.to_bytes()).is_err());
        assert!(Request::from_bytes(&[1, 99]).is_err());
        assert!(Request::from_bytes(&[]).is_err());
        assert!(Request::from_bytes(&[1, 0, 0]).is_err(), "trailing byte");
        let big_slice = Request::ArtifactSlice {
            hash: Hash([6; 32]),
            start: 0,
            len: SLICE_LEN + 1,
        };
        assert!(Request::from_bytes(&big_slice.to_bytes()).is_err());
    }

    #[test]
    fn anti_entropy_messages_round_trip_and_bounds_hold() {
        for request in [
            Request::HeadsSummary,
            Request::HeadsBuckets,
            Request::HeadsInBucket { bucket: 200 },
        ] {
            assert_eq!(Request::from_bytes(&request.to_bytes()).ok(), Some(request));
        }
        let summary = Response::HeadsSummary {
            root: Hash([9; 32]),
            chains: 12,
        };
        assert_eq!(
            Response::from_bytes(&summary.to_bytes()).ok(),
            Some(summary)
        );
        let buckets = Response::HeadsBuckets(vec![Hash([1; 32]); HEAD_BUCKETS]);
        assert_eq!(
            Response::from_bytes(&buckets.to_bytes()).ok(),
            Some(buckets)
        );
        let short = Response::HeadsBuckets(vec![Hash([1; 32]); 3]);
        assert!(Response::from_bytes(&short.to_bytes()).is_err());
    }

    #[test]
    fn roster_approvals_round_trip() {
        use chainiac_protocol::cosi::RosterMember;
        use chainiac_protocol::keys::SecretKey;
        let key = SecretKey::from_seed(&[3; 32]);
        let roster =
            Roster::with_default_threshold(vec![RosterMember::from_secret(&key)]).expect("roster");
        let request = Request::ApproveRoster {
            timeline: Hash([4; 32]),
            roster: Box::new(roster),
            approval: Box::new(KeySignature::sign(&key, &Hash([5; 32]))),
        };
        assert_eq!(Request::from_bytes(&request.to_bytes()).ok(), Some(request));
        let answer = Response::Approvals(3);
        assert_eq!(Response::from_bytes(&answer.to_bytes()).ok(), Some(answer));
    }

    #[test]
    fn heads_and_slices_round_trip() {
        for response in [
            Response::Attestation(None),
            Response::Head(None),
            Response::Head(Some(HeadInfo {
                chain_id: Hash([1; 32]),
                index: 3,
                hash: Hash([2; 32]),
            })),
            Response::Slice {
                size: 10,
                data: vec![7; 100],
            },
        ] {
            assert_eq!(
                Response::from_bytes(&response.to_bytes()).ok(),
                Some(response)
            );
        }
    }

    fn block() -> SkipBlock {
        use chainiac_protocol::cosi::{Roster, RosterMember};
        use chainiac_protocol::skipchain::ChainParams;
        let secret = chainiac_protocol::keys::SecretKey::from_seed(&[3; 32]);
        let roster = Roster::with_default_threshold(vec![RosterMember::from_secret(&secret)])
            .expect("roster");
        SkipBlock::genesis(ChainParams::new(2, 8).expect("params"), roster, vec![7])
            .expect("genesis")
    }

    #[test]
    fn agreement_messages_round_trip() {
        use chainiac_protocol::agreement::{Phase, Statement};
        use chainiac_protocol::keys::Signature;
        let statement = Statement {
            phase: Phase::Commit,
            view: 2,
            block: block().hash(),
        };
        let certificate = SignedCertificate {
            statement,
            signatures: vec![(0, Signature([1; 64])), (2, Signature([2; 64]))],
        };
        let requests = [
            Request::Agreement {
                chain_id: Hash([1; 32]),
                index: 9,
                message: SignedMessage::Propose {
                    view: 3,
                    block: block().hash(),
                    justification: Some(certificate.clone()),
                },
                block: Some(Box::new(block())),
            },
            Request::Agreement {
                chain_id: Hash([1; 32]),
                index: 9,
                message: SignedMessage::Vote {
                    statement,
                    signature: Signature([3; 64]),
                },
                block: None,
            },
            Request::Candidate {
                block: Box::new(block()),
            },
            Request::Decided {
                block: Box::new(block()),
                certificate,
            },
        ];
        for (request, tag) in requests
            .into_iter()
            .zip([AGREEMENT, AGREEMENT, CANDIDATE, DECIDED])
        {
            let bytes = request.to_bytes();
            assert_eq!(bytes[1], tag);
            assert_eq!(Request::from_bytes(&bytes).ok(), Some(request));
            assert!(Request::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        }
        assert_eq!(
            Response::from_bytes(&Response::Noted.to_bytes()).ok(),
            Some(Response::Noted)
        );
    }

    #[test]
    fn a_lock_shows_its_block() {
        let locked = Response::Locked(Box::new(block()));
        let bytes = locked.to_bytes();
        assert_eq!(bytes[1], LOCKED);
        assert_eq!(Response::from_bytes(&bytes).ok(), Some(locked));
        assert!(Response::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn tree_messages_round_trip_and_bounds_hold() {
        let layout = TreeLayout {
            leader: 3,
            candidates: ParticipationMask::from_indices(9, [0, 1, 3, 5, 8]),
            branching: 2,
        };
        let challenge = Challenge {
            participants: ParticipationMask::full(9),
            first: [5; 32],
            second: [6; 32],
        };
        let respond = Request::TreeRespond {
            round: Hash([7; 32]),
            challenge,
            budget_ms: 1500,
        };
        let bytes = respond.to_bytes();
        assert_eq!(bytes[1], 9, "tag");
        assert_eq!(Request::from_bytes(&bytes).ok(), Some(respond));
        let commit = Request::TreeCommit {
            round: Hash([7; 32]),
            block: Box::new(block()),
            level: 0,
            layout,
            budget_ms: 1500,
        };
        let bytes = commit.to_bytes();
        assert_eq!(bytes[1], 8, "tag");
        assert_eq!(Request::from_bytes(&bytes).ok(), Some(commit));
        let responses = [
            Response::SubtreeCommitted {
                contribution: Contribution {
                    origin: 1,
                    participants: ParticipationMask::from_indices(9, [1, 4]),
                    first: [1; 32],
                    second: [2; 32],
                },
                failed: ParticipationMask::from_indices(9, [3]),
            },
            Response::SubtreeResponded(ResponseShare {
                origin: 1,
                s: [3; 32],
            }),
            Response::SubtreeIncomplete {
                culprits: ParticipationMask::from_indices(9, [4]),
            },
        ];
        for (response, tag) in responses.into_iter().zip([10u8, 11, 12]) {
            let bytes = response.to_bytes();
            assert_eq!(bytes[1], tag);
            assert_eq!(Response::from_bytes(&bytes).ok(), Some(response));
        }
    }

    #[test]
    fn refusals_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_ERROR_LEN);
        let bytes = Response::Refused(long).to_bytes();
        let Ok(Response::Refused(text)) = Response::from_bytes(&bytes) else {
            panic!("decodes")
        };
        assert!(text.len() <= MAX_ERROR_LEN);
        let heads = Response::Heads(vec![HeadInfo {
            chain_id: Hash([3; 32]),
            index: 7,
            hash: Hash([4; 32]),
        }]);
        assert_eq!(Response::from_bytes(&heads.to_bytes()).ok(), Some(heads));
    }
}
