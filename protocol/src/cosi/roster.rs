//! A roster: the witnesses of a chain, their proofs of possession and the signing threshold.

use core::fmt;
use std::sync::Arc;

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::traits::Identity;

use crate::encoding::{Decode, Encode, Reader, Writer};
use crate::hash::domain;
use crate::keys::{ProofOfPossession, PublicKey, SecretKey};
use crate::{Error, Hash, Result};

use super::{CollectiveSignature, ParticipationMask};

/// Largest roster this crate accepts (bounds masks, decoding and verification work).
pub const MAX_ROSTER_SIZE: usize = 16_384;

/// One witness of a roster.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RosterMember {
    /// The witness's public key.
    pub key: PublicKey,
    /// Its proof of possession, checked whenever a roster is built or decoded.
    pub possession: ProofOfPossession,
}

impl RosterMember {
    /// The member entry for `secret`, with a fresh proof of possession.
    pub fn from_secret(secret: &SecretKey) -> Self {
        Self {
            key: secret.public_key(),
            possession: secret.proof_of_possession(),
        }
    }
}

impl Encode for RosterMember {
    fn encode_to(&self, writer: &mut Writer) {
        writer.value(&self.key).value(&self.possession);
    }
}

impl Decode for RosterMember {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            key: PublicKey::decode_from(reader)?,
            possession: ProofOfPossession::decode_from(reader)?,
        })
    }
}

/// A validated roster. Holds the sum of all member keys so that the aggregate key of a nearly
/// full participation mask costs a few point subtractions. Cloning is cheap (shared).
#[derive(Clone)]
pub struct Roster {
    inner: Arc<RosterInner>,
}

struct RosterInner {
    members: Vec<RosterMember>,
    threshold: u32,
    full_sum: EdwardsPoint,
    /// `full_sum` as a verifying key, compressed once: the common case is a full mask.
    full_key: ed25519_dalek::VerifyingKey,
    hash: Hash,
}

impl Roster {
    /// Validates a roster: 1 to [`MAX_ROSTER_SIZE`] distinct members, each with a valid proof
    /// of possession, and a threshold that is a strict majority and at most the roster size.
    pub fn new(members: Vec<RosterMember>, threshold: u32) -> Result<Self> {
        let len = members.len();
        if len == 0 {
            return Err(Error::InvalidRoster {
                reason: "a roster needs at least one member".into(),
            });
        }
        if len > MAX_ROSTER_SIZE {
            return Err(Error::TooLong {
                what: "roster",
                len,
                max: MAX_ROSTER_SIZE,
            });
        }
        let minimum = Self::minimum_threshold(len);
        if (threshold as usize) < minimum || threshold as usize > len {
            return Err(Error::InvalidRoster {
                reason: format!(
                    "threshold {threshold} must be between {minimum} (a strict majority) and {len}"
                ),
            });
        }
        let mut sorted: Vec<&PublicKey> = members.iter().map(|member| &member.key).collect();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::InvalidRoster {
                reason: format!("key {} appears twice", pair[0]),
            });
        }
        for member in &members {
            member.key.verify_possession(&member.possession)?;
        }
        let full_sum = members.iter().map(|member| member.key.point()).sum();
        let full_key = ed25519_dalek::VerifyingKey::from(full_sum);
        let hash = Hash::of(domain::ROSTER, &[&encode_roster(&members, threshold)]);
        Ok(Self {
            inner: Arc::new(RosterInner {
                members,
                threshold,
                full_sum,
                full_key,
                hash,
            }),
        })
    }

    /// A roster with the default threshold: more than two thirds of the members.
    pub fn with_default_threshold(members: Vec<RosterMember>) -> Result<Self> {
        let threshold = u32::try_from(Self::default_threshold(members.len())).unwrap_or(u32::MAX);
        Self::new(members, threshold)
    }

    /// More than two thirds of `len`: `floor(2·len / 3) + 1`.
    pub fn default_threshold(len: usize) -> usize {
        2 * len / 3 + 1
    }

    /// The smallest threshold accepted: a strict majority, `floor(len / 2) + 1`.
    pub fn minimum_threshold(len: usize) -> usize {
        len / 2 + 1
    }

    /// The members, in roster order (the order of mask bits).
    pub fn members(&self) -> &[RosterMember] {
        &self.inner.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.inner.members.len()
    }

    /// Always false: a validated roster has members.
    pub fn is_empty(&self) -> bool {
        self.inner.members.is_empty()
    }

    /// How many members must sign.
    pub fn threshold(&self) -> usize {
        self.inner.threshold as usize
    }

    /// The roster's identity: BLAKE3 under [`domain::ROSTER`] of its encoding.
    pub fn hash(&self) -> Hash {
        self.inner.hash
    }

    /// Position of `key` in the roster.
    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        self.inner
            .members
            .iter()
            .position(|member| &member.key == key)
    }

    /// Sum of the keys of the participants in `mask`, computed from the cached sum of all keys
    /// minus the absent ones when that is fewer additions.
    pub fn aggregate_key(&self, mask: &ParticipationMask) -> Result<EdwardsPoint> {
        if mask.len() != self.len() {
            return Err(Error::MaskLengthMismatch {
                mask: mask.len(),
                roster: self.len(),
            });
        }
        let present = mask.count();
        let sum = if present * 2 >= self.len() {
            let absent: EdwardsPoint = mask
                .absent()
                .map(|index| self.inner.members[index].key.point())
                .sum();
            self.inner.full_sum - absent
        } else {
            mask.present()
                .map(|index| self.inner.members[index].key.point())
                .sum()
        };
        Ok(sum)
    }

    /// Sum of all keys in the roster (empty mask sums to the identity).
    pub fn full_key(&self) -> EdwardsPoint {
        self.inner.full_sum
    }

    /// Checks a collective signature of this roster over `message`: the mask is over this
    /// roster and meets the threshold, and `R || s` is a valid RFC 8032 Ed25519 signature
    /// (strict verification) under the aggregate key of the participants.
    pub fn verify(&self, message: &[u8], signature: &CollectiveSignature) -> Result<()> {
        let participants = signature.mask.count();
        if participants < self.threshold() {
            return Err(Error::BelowThreshold {
                participants,
                threshold: self.threshold(),
            });
        }
        let key = if participants == self.len() && signature.mask.len() == self.len() {
            self.inner.full_key
        } else {
            let aggregate = self.aggregate_key(&signature.mask)?;
            if aggregate == EdwardsPoint::identity() {
                return Err(Error::InvalidCollectiveSignature);
            }
            ed25519_dalek::VerifyingKey::from(aggregate)
        };
        let ed_signature = ed25519_dalek::Signature::from_bytes(&signature.to_ed25519_bytes());
        key.verify_strict(message, &ed_signature)
            .map_err(|_| Error::InvalidCollectiveSignature)
    }
}

fn encode_roster(members: &[RosterMember], threshold: u32) -> Vec<u8> {
    let mut writer = Writer::new();
    writer
        .u8(crate::encoding::VERSION)
        .u32(threshold)
        .list(members);
    writer.finish()
}

impl PartialEq for Roster {
    fn eq(&self, other: &Self) -> bool {
        self.inner.hash == other.inner.hash
    }
}

impl Eq for Roster {}

impl fmt::Debug for Roster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Roster({} of {}, {:?})",
            self.inner.threshold,
            self.len(),
            self.inner.hash
        )
    }
}

impl Encode for Roster {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(crate::encoding::VERSION)
            .u32(self.inner.threshold)
            .list(&self.inner.members);
    }
}

/// Bytes of one encoded member: its key and its proof of possession.
const MEMBER_LEN: usize = 32 + 64;

impl Decode for Roster {
    /// A roster decoded before (the same bytes) comes from memory; others are checked in full.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("roster")?;
        let threshold = reader.u32("roster threshold")?;
        let count = reader.count(MAX_ROSTER_SIZE, "roster members")?;
        let encoded_members = reader.take(count * MEMBER_LEN, "roster members")?;
        let mut header = Writer::new();
        header
            .u8(crate::encoding::VERSION)
            .u32(threshold)
            .count(count);
        let hash = Hash::of(domain::ROSTER, &[&header.finish(), encoded_members]);
        if let Some(roster) = super::decoded_rosters::get(&hash) {
            return Ok(roster);
        }
        let mut members_reader = Reader::new(encoded_members);
        let members = (0..count)
            .map(|_| RosterMember::decode_from(&mut members_reader))
            .collect::<Result<Vec<_>>>()?;
        let roster = Self::new(members, threshold)?;
        super::decoded_rosters::remember(&roster);
        Ok(roster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(n: u8) -> Vec<SecretKey> {
        (0..n).map(|i| SecretKey::from_seed(&[i + 1; 32])).collect()
    }

    fn members(secrets: &[SecretKey]) -> Vec<RosterMember> {
        secrets.iter().map(RosterMember::from_secret).collect()
    }

    #[test]
    fn default_threshold_is_more_than_two_thirds() {
        assert_eq!(Roster::default_threshold(1), 1);
        assert_eq!(Roster::default_threshold(3), 3);
        assert_eq!(Roster::default_threshold(4), 3);
        assert_eq!(Roster::default_threshold(7), 5);
        assert_eq!(Roster::default_threshold(100), 67);
    }

    #[test]
    fn thresholds_below_majority_or_above_size_are_rejected() {
        let s = secrets(4);
        assert!(Roster::new(members(&s), 2).is_err());
        assert!(Roster::new(members(&s), 5).is_err());
        assert!(Roster::new(members(&s), 3).is_ok());
        assert!(Roster::new(Vec::new(), 1).is_err());
    }

    #[test]
    fn a_roster_decoded_again_comes_from_memory_and_other_bytes_are_checked() {
        let s = secrets(5);
        let roster = Roster::new(members(&s), 4).expect("roster");
        let bytes = roster.to_bytes();
        let first = Roster::from_bytes(&bytes).expect("decodes");
        let again = Roster::from_bytes(&bytes).expect("decodes");
        assert!(Arc::ptr_eq(&first.inner, &again.inner), "decoded once");
        assert_eq!(again.hash(), roster.hash());
        assert_eq!(again.to_bytes(), bytes);
        // Another threshold over the same members is another roster.
        let other = Roster::new(members(&s), 5).expect("roster").to_bytes();
        let decoded = Roster::from_bytes(&other).expect("decodes");
        assert_eq!(decoded.threshold(), 5);
        // A member's key with another member's proof: other bytes, checked, refused.
        let mut forged = bytes.clone();
        let proof = |i: usize| 9 + i * MEMBER_LEN + 32;
        let third: Vec<u8> = forged[proof(3)..proof(3) + 64].to_vec();
        forged[proof(2)..proof(2) + 64].copy_from_slice(&third);
        assert!(Roster::from_bytes(&forged).is_err());
        // Truncated or padded encodings still fail or leave bytes, as without the memo.
        assert!(Roster::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut padded = bytes;
        padded.push(0);
        assert!(Roster::from_bytes(&padded).is_err());
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let s = secrets(3);
        let mut m = members(&s);
        m.push(m[0]);
        let err = Roster::new(m, 3)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn rogue_key_without_possession_is_rejected() {
        // The rogue-key attack: an attacker announces A' = X - A (X its own key) to control the
        // sum. It cannot prove possession of A', so the roster refuses it.
        let s = secrets(2);
        let honest = s[0].public_key().point();
        let attacker = SecretKey::from_seed(&[99; 32]);
        let rogue_point = attacker.public_key().point() - honest;
        let rogue = PublicKey::from_bytes(&rogue_point.compress().to_bytes());
        let Ok(rogue) = rogue else { return };
        let mut m = members(&s[..1]);
        m.push(RosterMember {
            key: rogue,
            possession: attacker.proof_of_possession(),
        });
        assert!(matches!(
            Roster::new(m, 2),
            Err(Error::InvalidProofOfPossession { .. })
        ));
    }

    #[test]
    fn aggregate_key_matches_direct_sum() {
        let s = secrets(9);
        let roster = Roster::with_default_threshold(members(&s)).ok();
        let Some(roster) = roster else {
            panic!("valid roster")
        };
        for picks in [
            vec![0usize, 1, 2],
            vec![0, 1, 2, 3, 4, 5, 6, 7],
            vec![8],
            vec![],
        ] {
            let mask = ParticipationMask::from_indices(9, picks.iter().copied());
            let direct: EdwardsPoint = picks.iter().map(|&i| s[i].public_key().point()).sum();
            assert_eq!(roster.aggregate_key(&mask).ok(), Some(direct));
        }
        assert!(roster.aggregate_key(&ParticipationMask::full(8)).is_err());
    }

    #[test]
    fn encoding_round_trips_and_hash_is_stable() {
        let s = secrets(5);
        let Ok(roster) = Roster::with_default_threshold(members(&s)) else {
            panic!()
        };
        let bytes = roster.to_bytes();
        assert_eq!(bytes.len(), 1 + 4 + 4 + 5 * 96);
        let Ok(decoded) = Roster::from_bytes(&bytes) else {
            panic!()
        };
        assert_eq!(decoded.hash(), roster.hash());
        assert_eq!(roster.hash(), Hash::of(domain::ROSTER, &[&bytes]));
        let mut tampered = bytes.clone();
        tampered[1] = 5; // threshold 5 of 5 is valid but a different roster
        let Ok(other) = Roster::from_bytes(&tampered) else {
            panic!()
        };
        assert_ne!(other.hash(), roster.hash());
        let mut broken = bytes;
        let last = broken.len() - 1;
        broken[last] ^= 1; // corrupts the last proof of possession
        assert!(Roster::from_bytes(&broken).is_err());
    }
}
