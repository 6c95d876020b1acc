//! Votes and certificates as they travel between nodes and rest on disk: every vote is an
//! Ed25519 signature by the member over its statement at the position, and a certificate is
//! `threshold` such signatures. The machine ([`super::Agreement`]) works on unsigned
//! [`Certificate`]s; the host verifies what arrives here before the machine sees it.
//!
//! Certificates are lists of plain signatures rather than collective signatures because a vote
//! must be attributable on its own, before anyone knows who else votes: a prepare certificate
//! is shown in later views to members that never saw the votes, and a collective signature
//! needs every signer online twice. The forward link of a decided block is still one
//! collective signature, produced once the commit certificate exists (docs/protocol.md §9.5).

use crate::Hash;
use crate::cosi::{MAX_ROSTER_SIZE, Roster};
use crate::encoding::{Decode, Encode, Reader, Writer};
use crate::hash::domain;
use crate::keys::{SecretKey, Signature};

use super::{Certificate, Durable, Member, Message, Phase, Quorum, QuorumError, Statement, View};

/// A chain position agreement decides: the block at `index` of `chain_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The chain.
    pub chain_id: Hash,
    /// The index being decided.
    pub index: u64,
}

impl Position {
    /// The seed of this position's view leaders.
    pub fn seed(&self) -> Hash {
        Quorum::position_seed(&self.chain_id, self.index)
    }

    /// What a member signs to vote `statement` here.
    pub fn vote_digest(&self, statement: &Statement) -> Hash {
        Hash::of(
            domain::AGREEMENT_VOTE,
            &[
                self.chain_id.as_bytes(),
                &self.index.to_le_bytes(),
                &[phase_tag(statement.phase)],
                &statement.view.to_le_bytes(),
                statement.block.as_bytes(),
            ],
        )
    }

    /// A member's signature of its vote for `statement`.
    pub fn sign_vote(&self, secret: &SecretKey, statement: &Statement) -> Signature {
        secret.sign_digest(&self.vote_digest(statement))
    }
}

/// Why evidence from another member is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// The roster cannot run agreement.
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    /// A signer is not a roster member, or signers are repeated or out of order.
    #[error("certificate signers must be distinct roster members in increasing order")]
    Signers,
    /// Fewer signatures than the threshold.
    #[error("certificate has {signers} signatures but the threshold is {threshold}")]
    BelowThreshold { signers: usize, threshold: usize },
    /// A signature does not verify.
    #[error("the vote of roster member {member} has an invalid signature")]
    BadSignature { member: Member },
    /// A certificate of the wrong phase where another is required.
    #[error("a {expected:?} certificate was expected")]
    WrongPhase { expected: Phase },
}

/// The roster's shape as agreement sees it.
pub fn quorum_of(roster: &Roster) -> Result<Quorum, QuorumError> {
    let members = u32::try_from(roster.len()).unwrap_or(u32::MAX);
    let threshold = u32::try_from(roster.threshold()).unwrap_or(u32::MAX);
    Quorum::new(members, threshold)
}

/// A certificate with its signatures, strictly increasing by member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCertificate {
    /// What was voted.
    pub statement: Statement,
    /// Each signer's vote signature.
    pub signatures: Vec<(Member, Signature)>,
}

impl SignedCertificate {
    /// The certificate without its signatures (what the machine works on).
    pub fn certificate(&self) -> Certificate {
        Certificate {
            statement: self.statement,
            signers: self.signatures.iter().map(|(member, _)| *member).collect(),
        }
    }

    /// Checks the signers (distinct members, at least the threshold) and every signature of
    /// this certificate at `position` under `roster`.
    pub fn verify(
        &self,
        position: &Position,
        roster: &Roster,
    ) -> Result<Certificate, EvidenceError> {
        let quorum = quorum_of(roster)?;
        let certificate = self.certificate();
        if !certificate.signers.windows(2).all(|pair| pair[0] < pair[1])
            || certificate
                .signers
                .last()
                .is_some_and(|&last| last >= quorum.members())
        {
            return Err(EvidenceError::Signers);
        }
        if !quorum.certifies(&certificate) {
            return Err(EvidenceError::BelowThreshold {
                signers: certificate.signers.len(),
                threshold: quorum.threshold() as usize,
            });
        }
        let digest = position.vote_digest(&self.statement);
        for (member, signature) in &self.signatures {
            let key = &roster.members()[*member as usize].key;
            key.verify_digest(&digest, signature)
                .map_err(|_| EvidenceError::BadSignature { member: *member })?;
        }
        Ok(certificate)
    }

    /// [`SignedCertificate::verify`] for a commit certificate: the proof that the position
    /// is decided for `self.statement.block`.
    pub fn verify_decision(
        &self,
        position: &Position,
        roster: &Roster,
    ) -> Result<Certificate, EvidenceError> {
        if self.statement.phase != Phase::Commit {
            return Err(EvidenceError::WrongPhase {
                expected: Phase::Commit,
            });
        }
        self.verify(position, roster)
    }
}

/// A [`Message`] with its evidence, as it travels between members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignedMessage {
    /// See [`Message::Propose`].
    Propose {
        view: View,
        block: Hash,
        justification: Option<SignedCertificate>,
    },
    /// See [`Message::Vote`]: the statement with the sender's signature of it.
    Vote {
        statement: Statement,
        signature: Signature,
    },
    /// See [`Message::Certified`].
    Certified(SignedCertificate),
    /// See [`Message::ViewChange`].
    ViewChange {
        view: View,
        prepared: Option<SignedCertificate>,
    },
}

impl SignedMessage {
    /// Checks the evidence of a message that roster member `from` sent about `position`, and
    /// returns what the machine is given. A justification or announced certificate must be a
    /// prepare certificate.
    pub fn verify(
        &self,
        position: &Position,
        roster: &Roster,
        from: Member,
    ) -> Result<Message, EvidenceError> {
        let prepare = |certificate: &Option<SignedCertificate>| {
            certificate
                .as_ref()
                .map(|certificate| {
                    if certificate.statement.phase != Phase::Prepare {
                        return Err(EvidenceError::WrongPhase {
                            expected: Phase::Prepare,
                        });
                    }
                    certificate.verify(position, roster)
                })
                .transpose()
        };
        Ok(match self {
            Self::Propose {
                view,
                block,
                justification,
            } => Message::Propose {
                view: *view,
                block: *block,
                justification: prepare(justification)?,
            },
            Self::Vote {
                statement,
                signature,
            } => {
                let key = &roster
                    .members()
                    .get(from as usize)
                    .ok_or(EvidenceError::Signers)?
                    .key;
                key.verify_digest(&position.vote_digest(statement), signature)
                    .map_err(|_| EvidenceError::BadSignature { member: from })?;
                Message::Vote(*statement)
            }
            Self::Certified(certificate) => {
                Message::Certified(certificate.verify(position, roster)?)
            }
            Self::ViewChange { view, prepared } => Message::ViewChange {
                view: *view,
                prepared: prepare(prepared)?,
            },
        })
    }

    /// The block this message is about, if any (a receiver must hold it to use the message).
    pub fn block(&self) -> Option<Hash> {
        match self {
            Self::Propose { block, .. } => Some(*block),
            Self::Vote { statement, .. } => Some(statement.block),
            Self::Certified(certificate) => Some(certificate.statement.block),
            Self::ViewChange { prepared, .. } => prepared
                .as_ref()
                .map(|certificate| certificate.statement.block),
        }
    }
}

/// What a member persists for a position: the machine's [`Durable`] state with the signatures
/// of the certificates it holds, so that a restarted member can still show them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableRecord {
    /// See [`Durable::view`].
    pub view: View,
    /// See [`Durable::lock`].
    pub lock: Option<SignedCertificate>,
    /// See [`Durable::prepared`].
    pub prepared: Option<(View, Hash)>,
    /// See [`Durable::committed`].
    pub committed: Option<(View, Hash)>,
    /// See [`Durable::proposal`].
    pub proposal: Option<(View, Hash, Option<SignedCertificate>)>,
    /// See [`Durable::decided`].
    pub decided: Option<SignedCertificate>,
}

impl DurableRecord {
    /// The record of `durable`, with the signatures `sign` finds for its certificates; `None`
    /// if one is missing.
    pub fn of(
        durable: &Durable,
        mut sign: impl FnMut(&Certificate) -> Option<SignedCertificate>,
    ) -> Option<Self> {
        let mut signed = |certificate: &Option<Certificate>| match certificate {
            Some(certificate) => sign(certificate).map(Some),
            None => Some(None),
        };
        Some(Self {
            view: durable.view,
            lock: signed(&durable.lock)?,
            prepared: durable.prepared,
            committed: durable.committed,
            proposal: match &durable.proposal {
                Some((view, block, justification)) => Some((*view, *block, signed(justification)?)),
                None => None,
            },
            decided: signed(&durable.decided)?,
        })
    }

    /// The machine's state.
    pub fn durable(&self) -> Durable {
        let plain = |certificate: &Option<SignedCertificate>| {
            certificate.as_ref().map(SignedCertificate::certificate)
        };
        Durable {
            view: self.view,
            lock: plain(&self.lock),
            prepared: self.prepared,
            committed: self.committed,
            proposal: self
                .proposal
                .as_ref()
                .map(|(view, block, justification)| (*view, *block, plain(justification))),
            decided: plain(&self.decided),
        }
    }

    /// Every certificate the record holds.
    pub fn certificates(&self) -> impl Iterator<Item = &SignedCertificate> {
        self.lock
            .iter()
            .chain(self.proposal.iter().filter_map(|(_, _, j)| j.as_ref()))
            .chain(self.decided.iter())
    }
}

fn phase_tag(phase: Phase) -> u8 {
    match phase {
        Phase::Prepare => 0,
        Phase::Commit => 1,
    }
}

impl Encode for Statement {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(phase_tag(self.phase))
            .u32(self.view)
            .value(&self.block);
    }
}

impl Decode for Statement {
    fn decode_from(reader: &mut Reader<'_>) -> crate::Result<Self> {
        let phase = match reader.u8("vote phase")? {
            0 => Phase::Prepare,
            1 => Phase::Commit,
            tag => {
                return Err(crate::Error::InvalidTag {
                    what: "vote phase",
                    tag,
                });
            }
        };
        Ok(Self {
            phase,
            view: reader.u32("view")?,
            block: Hash::decode_from(reader)?,
        })
    }
}

/// `u32 member ‖ signature (64)`.
struct MemberSignature(Member, Signature);

impl Encode for MemberSignature {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u32(self.0).value(&self.1);
    }
}

impl Decode for MemberSignature {
    fn decode_from(reader: &mut Reader<'_>) -> crate::Result<Self> {
        Ok(Self(reader.u32("member")?, Signature::decode_from(reader)?))
    }
}

impl Encode for SignedCertificate {
    fn encode_to(&self, writer: &mut Writer) {
        let signatures: Vec<MemberSignature> = self
            .signatures
            .iter()
            .map(|(member, signature)| MemberSignature(*member, *signature))
            .collect();
        writer.value(&self.statement).list(&signatures);
    }
}

impl Decode for SignedCertificate {
    fn decode_from(reader: &mut Reader<'_>) -> crate::Result<Self> {
        let statement = Statement::decode_from(reader)?;
        let signatures: Vec<MemberSignature> =
            reader.list(MAX_ROSTER_SIZE, "certificate signatures")?;
        Ok(Self {
            statement,
            signatures: signatures
                .into_iter()
                .map(|MemberSignature(member, signature)| (member, signature))
                .collect(),
        })
    }
}

fn write_optional<T: Encode>(writer: &mut Writer, value: &Option<T>) {
    match value {
        Some(value) => writer.u8(1).value(value),
        None => writer.u8(0),
    };
}

fn read_optional<T: Decode>(
    reader: &mut Reader<'_>,
    what: &'static str,
) -> crate::Result<Option<T>> {
    Ok(if reader.bool(what)? {
        Some(T::decode_from(reader)?)
    } else {
        None
    })
}

const PROPOSE: u8 = 0;
const VOTE: u8 = 1;
const CERTIFIED: u8 = 2;
const VIEW_CHANGE: u8 = 3;

impl Encode for SignedMessage {
    fn encode_to(&self, writer: &mut Writer) {
        match self {
            Self::Propose {
                view,
                block,
                justification,
            } => {
                writer.u8(PROPOSE).u32(*view).value(block);
                write_optional(writer, justification);
            }
            Self::Vote {
                statement,
                signature,
            } => {
                writer.u8(VOTE).value(statement).value(signature);
            }
            Self::Certified(certificate) => {
                writer.u8(CERTIFIED).value(certificate);
            }
            Self::ViewChange { view, prepared } => {
                writer.u8(VIEW_CHANGE).u32(*view);
                write_optional(writer, prepared);
            }
        }
    }
}

impl Decode for SignedMessage {
    fn decode_from(reader: &mut Reader<'_>) -> crate::Result<Self> {
        Ok(match reader.u8("agreement message kind")? {
            PROPOSE => Self::Propose {
                view: reader.u32("view")?,
                block: Hash::decode_from(reader)?,
                justification: read_optional(reader, "justification")?,
            },
            VOTE => Self::Vote {
                statement: Statement::decode_from(reader)?,
                signature: Signature::decode_from(reader)?,
            },
            CERTIFIED => Self::Certified(SignedCertificate::decode_from(reader)?),
            VIEW_CHANGE => Self::ViewChange {
                view: reader.u32("view")?,
                prepared: read_optional(reader, "prepared certificate")?,
            },
            tag => {
                return Err(crate::Error::InvalidTag {
                    what: "agreement message kind",
                    tag,
                });
            }
        })
    }
}

/// `(view, block)` of a vote record.
struct Voted((View, Hash));

impl Encode for Voted {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u32(self.0.0).value(&self.0.1);
    }
}

impl Decode for Voted {
    fn decode_from(reader: &mut Reader<'_>) -> crate::Result<Self> {
        Ok(Self((reader.u32("view")?, Hash::decode_from(reader)?)))
    }
}

impl Encode for DurableRecord {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(crate::encoding::VERSION).u32(self.view);
        write_optional(writer, &self.lock);
        write_optional(writer, &self.prepared.map(Voted));
        write_optional(writer, &self.committed.map(Voted));
        match &self.proposal {
            Some((view, block, justification)) => {
                writer.u8(1).u32(*view).value(block);
                write_optional(writer, justification);
            }
            None => {
                writer.u8(0);
            }
        }
        write_optional(writer, &self.decided);
    }
}

impl Decode for DurableRecord {
    fn decode_from(reader: &mut Reader<'_>) -> crate::Result<Self> {
        reader.version("agreement record")?;
        Ok(Self {
            view: reader.u32("view")?,
            lock: read_optional(reader, "lock")?,
            prepared: read_optional::<Voted>(reader, "prepare vote")?.map(|v| v.0),
            committed: read_optional::<Voted>(reader, "commit vote")?.map(|v| v.0),
            proposal: if reader.bool("proposal")? {
                Some((
                    reader.u32("view")?,
                    Hash::decode_from(reader)?,
                    read_optional(reader, "justification")?,
                ))
            } else {
                None
            },
            decided: read_optional(reader, "decision")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::cosi::RosterMember;

    fn roster(size: u8) -> (Vec<SecretKey>, Roster) {
        let secrets: Vec<SecretKey> = (0..size)
            .map(|i| SecretKey::from_seed(&[i.wrapping_add(1); 32]))
            .collect();
        let members = secrets.iter().map(RosterMember::from_secret).collect();
        (
            secrets,
            Roster::with_default_threshold(members).expect("roster"),
        )
    }

    fn position() -> Position {
        Position {
            chain_id: Hash::of("chainiac test chain", &[]),
            index: 7,
        }
    }

    fn certificate(
        secrets: &[SecretKey],
        signers: &[Member],
        statement: Statement,
    ) -> SignedCertificate {
        SignedCertificate {
            statement,
            signatures: signers
                .iter()
                .map(|&m| (m, position().sign_vote(&secrets[m as usize], &statement)))
                .collect(),
        }
    }

    fn statement(phase: Phase, view: View) -> Statement {
        Statement {
            phase,
            view,
            block: Hash::of("chainiac test block", &[]),
        }
    }

    #[test]
    fn a_certificate_verifies_only_with_a_threshold_of_valid_distinct_signers() {
        let (secrets, roster) = roster(4);
        let prepared = statement(Phase::Prepare, 2);
        let good = certificate(&secrets, &[0, 1, 3], prepared);
        assert_eq!(
            good.verify(&position(), &roster).expect("valid").signers,
            vec![0, 1, 3]
        );
        assert_eq!(
            certificate(&secrets, &[0, 1], prepared).verify(&position(), &roster),
            Err(EvidenceError::BelowThreshold {
                signers: 2,
                threshold: 3
            })
        );
        let mut repeated = certificate(&secrets, &[0, 1, 1], prepared);
        assert_eq!(
            repeated.verify(&position(), &roster),
            Err(EvidenceError::Signers)
        );
        repeated.signatures[2] = (4, repeated.signatures[2].1);
        assert_eq!(
            repeated.verify(&position(), &roster),
            Err(EvidenceError::Signers),
            "member 4 of a roster of 4"
        );
        // A vote signed for another view, phase, position or by another member does not count.
        let mut moved = good.clone();
        moved.statement.view = 3;
        assert!(matches!(
            moved.verify(&position(), &roster),
            Err(EvidenceError::BadSignature { .. })
        ));
        let mut swapped = good.clone();
        swapped.signatures[0].1 = swapped.signatures[1].1;
        assert_eq!(
            swapped.verify(&position(), &roster),
            Err(EvidenceError::BadSignature { member: 0 })
        );
        let other = Position {
            index: 8,
            ..position()
        };
        assert!(good.verify(&other, &roster).is_err());
        assert_eq!(
            good.verify_decision(&position(), &roster),
            Err(EvidenceError::WrongPhase {
                expected: Phase::Commit
            })
        );
        let decided = certificate(&secrets, &[1, 2, 3], statement(Phase::Commit, 2));
        assert!(decided.verify_decision(&position(), &roster).is_ok());
    }

    #[test]
    fn a_vote_verifies_only_from_its_signer_and_announcements_carry_prepare_certificates() {
        let (secrets, roster) = roster(4);
        let voted = statement(Phase::Commit, 1);
        let vote = SignedMessage::Vote {
            statement: voted,
            signature: position().sign_vote(&secrets[2], &voted),
        };
        assert_eq!(
            vote.verify(&position(), &roster, 2),
            Ok(Message::Vote(voted))
        );
        assert_eq!(
            vote.verify(&position(), &roster, 1),
            Err(EvidenceError::BadSignature { member: 1 })
        );
        assert_eq!(
            vote.verify(&position(), &roster, 9),
            Err(EvidenceError::Signers)
        );
        let commit = certificate(&secrets, &[0, 1, 2], voted);
        let announcement = SignedMessage::ViewChange {
            view: 3,
            prepared: Some(commit),
        };
        assert_eq!(
            announcement.verify(&position(), &roster, 0),
            Err(EvidenceError::WrongPhase {
                expected: Phase::Prepare
            })
        );
    }

    #[test]
    fn vote_digest_vector() {
        // chain id derive_key("chainiac test chain", ""), index 7, commit, view 2, block
        // derive_key("chainiac test block", ""): see docs/protocol.md §9.5.
        let digest = position().vote_digest(&statement(Phase::Commit, 2));
        assert_eq!(
            digest.to_string(),
            "d070691f5fa66e05d12a2de761bb10a6cfa79aa27cc94d0ffa973e6f5a5f9e1d"
        );
    }

    fn arbitrary_certificate() -> impl Strategy<Value = SignedCertificate> {
        (
            any::<bool>(),
            any::<u32>(),
            any::<[u8; 32]>(),
            prop::collection::vec((any::<u32>(), any::<[u8; 32]>()), 0..8),
        )
            .prop_map(|(commit, view, block, signatures)| SignedCertificate {
                statement: Statement {
                    phase: if commit {
                        Phase::Commit
                    } else {
                        Phase::Prepare
                    },
                    view,
                    block: Hash(block),
                },
                signatures: signatures
                    .into_iter()
                    .map(|(member, half)| {
                        let mut bytes = [0u8; 64];
                        bytes[..32].copy_from_slice(&half);
                        (member, Signature(bytes))
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn messages_and_records_round_trip(
            certificate in arbitrary_certificate(),
            view in any::<u32>(),
            kind in 0u8..4,
        ) {
            let message = match kind {
                0 => SignedMessage::Propose { view, block: certificate.statement.block, justification: Some(certificate.clone()) },
                1 => SignedMessage::Vote { statement: certificate.statement, signature: Signature([7; 64]) },
                2 => SignedMessage::Certified(certificate.clone()),
                _ => SignedMessage::ViewChange { view, prepared: None },
            };
            prop_assert_eq!(SignedMessage::from_bytes(&message.to_bytes()).expect("decode"), message);
            let record = DurableRecord {
                view,
                lock: Some(certificate.clone()),
                prepared: Some((view, certificate.statement.block)),
                committed: None,
                proposal: Some((view, certificate.statement.block, Some(certificate.clone()))),
                decided: (kind == 2).then(|| certificate.clone()),
            };
            prop_assert_eq!(&DurableRecord::from_bytes(&record.to_bytes()).expect("decode"), &record);
            prop_assert_eq!(DurableRecord::of(&record.durable(), |c| record.certificates().find(|s| s.certificate() == *c).cloned()), Some(record));
        }
    }
}
