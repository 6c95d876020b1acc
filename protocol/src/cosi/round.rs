//! The two steps of a signing round, for witnesses ([`commit`], [`SigningNonces::respond`]) and
//! for aggregators ([`Aggregator`]: the leader, or an interior node of an aggregation tree).

use core::fmt;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::encoding::{Decode, Encode, Reader, Writer};
use crate::hash::domain;
use crate::keys::SecretKey;
use crate::{Error, Hash, Result};

use super::{CollectiveSignature, ParticipationMask, Roster};

/// A witness's two secret nonces for one round.
///
/// Not `Clone`, not `Copy`, not serializable: [`SigningNonces::respond`] consumes them, so the
/// type system forbids answering twice with the same nonces. They are zeroized on drop and
/// print as `<redacted>`. They are bound to the message they were drawn for.
///
/// ```compile_fail
/// # use chainiac_protocol::cosi::SigningNonces;
/// fn reuse(nonces: SigningNonces) -> (SigningNonces, SigningNonces) {
///     (nonces.clone(), nonces)
/// }
/// ```
pub struct SigningNonces {
    first: Scalar,
    second: Scalar,
    message: Hash,
}

impl Drop for SigningNonces {
    fn drop(&mut self) {
        self.first.zeroize();
        self.second.zeroize();
    }
}

impl fmt::Debug for SigningNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningNonces(<redacted>)")
    }
}

/// The public points of a witness's two nonces, sent to its aggregator.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commitment {
    /// `r1·B`, encoded.
    pub first: [u8; 32],
    /// `r2·B`, encoded.
    pub second: [u8; 32],
}

impl Encode for Commitment {
    fn encode_to(&self, writer: &mut Writer) {
        writer.fixed(&self.first).fixed(&self.second);
    }
}

impl Decode for Commitment {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            first: reader.array("commitment")?,
            second: reader.array("commitment")?,
        })
    }
}

/// Step 1 for a witness: draws two nonces for `message` and returns them with their commitment.
///
/// Each nonce is BLAKE3 (context [`domain::COSI_NONCE`]) of 32 bytes from `rng`, the secret key,
/// the message and the nonce's position, reduced modulo the group order: hedged, so that a weak
/// random generator alone does not leak the key.
pub fn commit<R: CryptoRng + ?Sized>(
    secret: &SecretKey,
    message: &[u8],
    rng: &mut R,
) -> (SigningNonces, Commitment) {
    let mut randomness = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(randomness.as_mut());
    let seed = secret.to_seed();
    let derive = |position: u8| {
        let mut hasher = blake3::Hasher::new_derive_key(domain::COSI_NONCE);
        hasher
            .update(randomness.as_ref())
            .update(seed.as_ref())
            .update(&[position])
            .update(message);
        let mut wide = Zeroizing::new([0u8; 64]);
        hasher.finalize_xof().fill(wide.as_mut());
        Scalar::from_bytes_mod_order_wide(&wide)
    };
    let nonces = SigningNonces {
        first: derive(1),
        second: derive(2),
        message: message_digest(message),
    };
    let commitment = Commitment {
        first: EdwardsPoint::mul_base(&nonces.first).compress().to_bytes(),
        second: EdwardsPoint::mul_base(&nonces.second).compress().to_bytes(),
    };
    (nonces, commitment)
}

fn message_digest(message: &[u8]) -> Hash {
    Hash::of(domain::COSI_NONCE, &[b"message", message])
}

/// What the leader sends to every participant once commitments are in: who takes part, and
/// the sums of their first and second nonce points.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Challenge {
    /// The participants; the final signature carries this mask.
    pub participants: ParticipationMask,
    /// Sum of the participants' first nonce points.
    pub first: [u8; 32],
    /// Sum of the participants' second nonce points.
    pub second: [u8; 32],
}

impl Encode for Challenge {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .value(&self.participants)
            .fixed(&self.first)
            .fixed(&self.second);
    }
}

impl Decode for Challenge {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            participants: ParticipationMask::decode_from(reader)?,
            first: reader.array("challenge")?,
            second: reader.array("challenge")?,
        })
    }
}

/// The values every party derives from a challenge.
struct RoundContext {
    /// `b`: binds the second nonces to all commitments, the key and the message.
    binding: Scalar,
    /// `c = SHA-512(R || A || M) mod l`, the Ed25519 challenge.
    challenge: Scalar,
    /// Encoding of `R = R1 + b·R2`.
    nonce_point: [u8; 32],
}

impl RoundContext {
    fn derive(roster: &Roster, message: &[u8], challenge: &Challenge) -> Result<Self> {
        let participants = challenge.participants.count();
        if participants < roster.threshold() {
            return Err(Error::BelowThreshold {
                participants,
                threshold: roster.threshold(),
            });
        }
        let aggregate = roster
            .aggregate_key(&challenge.participants)?
            .compress()
            .to_bytes();
        let first = decompress(&challenge.first).ok_or(Error::InvalidChallenge)?;
        let second = decompress(&challenge.second).ok_or(Error::InvalidChallenge)?;
        let mut hasher = blake3::Hasher::new_derive_key(domain::COSI_BINDING);
        hasher
            .update(roster.hash().as_bytes())
            .update(&challenge.participants.to_bytes())
            .update(&challenge.first)
            .update(&challenge.second)
            .update(&aggregate)
            .update(message);
        let mut wide = [0u8; 64];
        hasher.finalize_xof().fill(&mut wide);
        let binding = Scalar::from_bytes_mod_order_wide(&wide);
        let nonce_point = (first + second * binding).compress().to_bytes();
        let mut sha = Sha512::new();
        sha.update(nonce_point);
        sha.update(aggregate);
        sha.update(message);
        let mut digest = [0u8; 64];
        digest.copy_from_slice(&sha.finalize());
        let challenge = Scalar::from_bytes_mod_order_wide(&digest);
        Ok(Self {
            binding,
            challenge,
            nonce_point,
        })
    }
}

fn decompress(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(*bytes).decompress()
}

/// A partial response: the sum of the responses of one witness or of a whole subtree, tagged
/// with the witness that sent it (the subtree's root).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ResponseShare {
    /// Roster index of the sender.
    pub origin: u32,
    /// The response scalar, encoded.
    pub s: [u8; 32],
}

impl Encode for ResponseShare {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u32(self.origin).fixed(&self.s);
    }
}

impl Decode for ResponseShare {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            origin: reader.u32("response origin")?,
            s: reader.array("response")?,
        })
    }
}

impl SigningNonces {
    /// Step 2 for a witness: answers `challenge` for `message`, consuming the nonces.
    ///
    /// Refuses if the nonces were drawn for another message, if `secret` is not in `roster`, or
    /// if the challenge does not count this witness as a participant.
    pub fn respond(
        self,
        secret: &SecretKey,
        roster: &Roster,
        message: &[u8],
        challenge: &Challenge,
    ) -> Result<ResponseShare> {
        if message_digest(message) != self.message {
            return Err(Error::NonceMessageMismatch);
        }
        let key = secret.public_key();
        let index = roster
            .index_of(&key)
            .ok_or(Error::NotInRoster { key: key.id() })?;
        if !challenge.participants.contains(index) {
            return Err(Error::NotAParticipant { index });
        }
        let context = RoundContext::derive(roster, message, challenge)?;
        let scalar = secret.scalar();
        let s = Zeroizing::new(
            self.first + context.binding * self.second + context.challenge * *scalar,
        );
        Ok(ResponseShare {
            origin: index_u32(index),
            s: s.to_bytes(),
        })
    }
}

fn index_u32(index: usize) -> u32 {
    // Roster indices are below MAX_ROSTER_SIZE.
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// The commitment of one witness or of a subtree: who it covers and the sums of their nonce
/// points, tagged with the witness that sent it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Contribution {
    /// Roster index of the sender (the subtree's root).
    pub origin: u32,
    /// Every witness covered.
    pub participants: ParticipationMask,
    /// Sum of their first nonce points.
    pub first: [u8; 32],
    /// Sum of their second nonce points.
    pub second: [u8; 32],
}

impl Contribution {
    /// The contribution of a single witness.
    pub fn single(roster: &Roster, index: usize, commitment: &Commitment) -> Self {
        Self {
            origin: index_u32(index),
            participants: ParticipationMask::from_indices(roster.len(), [index]),
            first: commitment.first,
            second: commitment.second,
        }
    }
}

impl Encode for Contribution {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u32(self.origin)
            .value(&self.participants)
            .fixed(&self.first)
            .fixed(&self.second);
    }
}

impl Decode for Contribution {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            origin: reader.u32("contribution origin")?,
            participants: ParticipationMask::decode_from(reader)?,
            first: reader.array("contribution")?,
            second: reader.array("contribution")?,
        })
    }
}

struct Entry {
    origin: usize,
    participants: ParticipationMask,
    first: EdwardsPoint,
    second: EdwardsPoint,
    response: Option<Scalar>,
}

/// Collects commitments and responses for one round: the leader uses it for the whole roster;
/// an interior node of an aggregation tree uses it for its own subtree.
pub struct Aggregator<'a> {
    roster: &'a Roster,
    message: &'a [u8],
    entries: Vec<Entry>,
    covered: ParticipationMask,
    round: Option<(Challenge, RoundContext)>,
}

impl fmt::Debug for Aggregator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Aggregator")
            .field("roster", self.roster)
            .field("contributions", &self.entries.len())
            .field("covered", &self.covered.count())
            .field("challenged", &self.round.is_some())
            .finish()
    }
}

impl<'a> Aggregator<'a> {
    /// A new round of `roster` over `message`.
    pub fn new(roster: &'a Roster, message: &'a [u8]) -> Self {
        Self {
            roster,
            message,
            entries: Vec::new(),
            covered: ParticipationMask::empty(roster.len()),
            round: None,
        }
    }

    /// Witnesses covered by the commitments received so far.
    pub fn covered(&self) -> &ParticipationMask {
        &self.covered
    }

    /// Accepts the commitment of a witness or a subtree. Refuses one whose points do not
    /// decode, whose sender is not among its participants, or that overlaps another.
    pub fn add_commitment(&mut self, contribution: &Contribution) -> Result<()> {
        if self.round.is_some() {
            return Err(Error::RoundState {
                reason: "commitments are closed once the challenge is set",
            });
        }
        let origin = contribution.origin as usize;
        if contribution.participants.len() != self.roster.len() {
            return Err(Error::MaskLengthMismatch {
                mask: contribution.participants.len(),
                roster: self.roster.len(),
            });
        }
        if !contribution.participants.contains(origin) {
            return Err(Error::InvalidCommitment {
                witness: origin,
                reason: "sender not among its participants",
            });
        }
        if !contribution.participants.is_disjoint(&self.covered) {
            return Err(Error::InvalidCommitment {
                witness: origin,
                reason: "overlaps another commitment",
            });
        }
        let first = decompress(&contribution.first).ok_or(Error::InvalidCommitment {
            witness: origin,
            reason: "first point does not decode",
        })?;
        let second = decompress(&contribution.second).ok_or(Error::InvalidCommitment {
            witness: origin,
            reason: "second point does not decode",
        })?;
        self.covered.union_with(&contribution.participants);
        self.entries.push(Entry {
            origin,
            participants: contribution.participants.clone(),
            first,
            second,
            response: None,
        });
        Ok(())
    }

    fn sums(&self) -> (EdwardsPoint, EdwardsPoint) {
        self.entries.iter().fold(
            (EdwardsPoint::identity(), EdwardsPoint::identity()),
            |(a, b), e| (a + e.first, b + e.second),
        )
    }

    /// The combined commitment of everything received, sent up the tree by `origin`.
    pub fn commitment(&self, origin: usize) -> Contribution {
        let (first, second) = self.sums();
        Contribution {
            origin: index_u32(origin),
            participants: self.covered.clone(),
            first: first.compress().to_bytes(),
            second: second.compress().to_bytes(),
        }
    }

    /// For the leader: closes commitments and derives the challenge for everyone covered.
    /// Fails if fewer witnesses than the threshold committed.
    pub fn challenge(&mut self) -> Result<Challenge> {
        let (first, second) = self.sums();
        let challenge = Challenge {
            participants: self.covered.clone(),
            first: first.compress().to_bytes(),
            second: second.compress().to_bytes(),
        };
        self.set_challenge(challenge.clone())?;
        Ok(challenge)
    }

    /// For an interior node: adopts the leader's challenge, which must cover this subtree.
    pub fn set_challenge(&mut self, challenge: Challenge) -> Result<()> {
        if self.round.is_some() {
            return Err(Error::RoundState {
                reason: "the challenge is already set",
            });
        }
        if !challenge.participants.contains_all(&self.covered) {
            return Err(Error::InvalidChallenge);
        }
        let context = RoundContext::derive(self.roster, self.message, &challenge)?;
        self.round = Some((challenge, context));
        Ok(())
    }

    /// Accepts the response share of a witness or subtree that committed. It is checked, with
    /// all others, when the round is finished.
    pub fn add_response(&mut self, share: &ResponseShare) -> Result<()> {
        if self.round.is_none() {
            return Err(Error::RoundState {
                reason: "responses come after the challenge",
            });
        }
        let origin = share.origin as usize;
        let entry = self
            .entries
            .iter_mut()
            .find(|entry| entry.origin == origin)
            .ok_or(Error::UnexpectedResponse { witness: origin })?;
        if entry.response.is_some() {
            return Err(Error::UnexpectedResponse { witness: origin });
        }
        let scalar: Option<Scalar> = Scalar::from_canonical_bytes(share.s).into();
        let scalar = scalar.ok_or(Error::InvalidResponses {
            culprits: vec![origin],
        })?;
        entry.response = Some(scalar);
        Ok(())
    }

    /// Senders whose response has not arrived.
    pub fn missing(&self) -> Vec<usize> {
        self.entries
            .iter()
            .filter(|e| e.response.is_none())
            .map(|e| e.origin)
            .collect()
    }

    /// Checks every share and returns their sum. The sum is checked first (one multi-scalar
    /// multiplication); only if it fails is each share checked, to name the culprits.
    fn checked_sum(&self) -> Result<Scalar> {
        let Some((_, context)) = &self.round else {
            return Err(Error::RoundState {
                reason: "no challenge yet",
            });
        };
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(Error::MissingResponses { witnesses: missing });
        }
        let total: Scalar = self.entries.iter().filter_map(|e| e.response).sum();
        let (first, second) = self.sums();
        let key = self.roster.aggregate_key(&self.covered)?;
        if share_is_valid(total, first, second, key, context) {
            return Ok(total);
        }
        let keys = self
            .entries
            .iter()
            .map(|entry| self.roster.aggregate_key(&entry.participants))
            .collect::<Result<Vec<_>>>()?;
        let all: Vec<usize> = (0..self.entries.len()).collect();
        let mut culprits = Vec::new();
        self.blame(&all, &keys, context, &mut culprits);
        culprits.sort_unstable();
        Err(Error::InvalidResponses { culprits })
    }

    /// Finds the wrong shares among `suspects`, whose sum is known to be wrong, by bisection:
    /// a half whose sum checks out is cleared with one check, so k culprits among n shares
    /// cost O(k log n) checks instead of n. Wrong shares whose errors cancel out inside one half
    /// are not named: together they contribute a correct sum, so the signature is unaffected.
    fn blame(
        &self,
        suspects: &[usize],
        keys: &[EdwardsPoint],
        context: &RoundContext,
        culprits: &mut Vec<usize>,
    ) {
        if let [single] = suspects {
            culprits.push(self.entries[*single].origin);
            return;
        }
        let (left, right) = suspects.split_at(suspects.len() / 2);
        for half in [left, right] {
            let mut s = Scalar::ZERO;
            let (mut first, mut second, mut key) = (
                EdwardsPoint::identity(),
                EdwardsPoint::identity(),
                EdwardsPoint::identity(),
            );
            for &i in half {
                let entry = &self.entries[i];
                s += entry.response.unwrap_or(Scalar::ZERO);
                first += entry.first;
                second += entry.second;
                key += keys[i];
            }
            if !share_is_valid(s, first, second, key, context) {
                self.blame(half, keys, context, culprits);
            }
        }
    }

    /// For an interior node: the checked sum of its subtree's responses, sent up by `origin`.
    pub fn response(&self, origin: usize) -> Result<ResponseShare> {
        Ok(ResponseShare {
            origin: index_u32(origin),
            s: self.checked_sum()?.to_bytes(),
        })
    }

    /// For the leader: checks the responses and outputs the collective signature.
    pub fn finish(self) -> Result<CollectiveSignature> {
        let s = self.checked_sum()?;
        let Some((challenge, context)) = self.round else {
            return Err(Error::RoundState {
                reason: "no challenge yet",
            });
        };
        if challenge.participants != self.covered {
            return Err(Error::RoundState {
                reason: "only the leader, which covers every participant, can finish",
            });
        }
        Ok(CollectiveSignature {
            r: context.nonce_point,
            s: s.to_bytes(),
            mask: challenge.participants,
        })
    }
}

/// `s·B == R1 + b·R2 + c·A`, as `s·B - c·A - b·R2 - R1 == 0` in one multi-scalar multiplication.
fn share_is_valid(
    s: Scalar,
    first: EdwardsPoint,
    second: EdwardsPoint,
    key: EdwardsPoint,
    context: &RoundContext,
) -> bool {
    let check = EdwardsPoint::vartime_multiscalar_mul(
        [s, -context.challenge, -context.binding, -Scalar::ONE],
        [ED25519_BASEPOINT_POINT, key, second, first],
    );
    check == EdwardsPoint::identity()
}

/// Runs a complete star round in one process: every index in `participants` commits and
/// responds with its secret from `secrets` (indexed like the roster). For tests, simulations,
/// test vectors and single-process tools; networked rounds drive [`Aggregator`] directly.
pub fn local_round<R: CryptoRng + ?Sized>(
    roster: &Roster,
    secrets: &[&SecretKey],
    message: &[u8],
    participants: &[usize],
    rng: &mut R,
) -> Result<CollectiveSignature> {
    let mut aggregator = Aggregator::new(roster, message);
    let mut pending = Vec::with_capacity(participants.len());
    for &index in participants {
        let secret = secrets.get(index).ok_or(Error::NotAParticipant { index })?;
        let (nonces, commitment) = commit(secret, message, rng);
        aggregator.add_commitment(&Contribution::single(roster, index, &commitment))?;
        pending.push((secret, nonces));
    }
    let challenge = aggregator.challenge()?;
    for (secret, nonces) in pending {
        aggregator.add_response(&nonces.respond(secret, roster, message, &challenge)?)?;
    }
    aggregator.finish()
}
