//! Which roster members took part in a collective signature.

use crate::encoding::{Decode, Encode, Reader, Writer};
use crate::{Error, Result};

use super::MAX_ROSTER_SIZE;

/// A bitmask over a roster: bit `i` (byte `i / 8`, bit `i % 8`, least significant first) is set
/// when member `i` participates. Padding bits of the last byte are always zero.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ParticipationMask {
    len: u32,
    bits: Vec<u8>,
}

impl ParticipationMask {
    /// A mask over `len` members with nobody set.
    pub fn empty(len: usize) -> Self {
        Self {
            len: len_u32(len),
            bits: vec![0; len.div_ceil(8)],
        }
    }

    /// A mask over `len` members with everybody set.
    pub fn full(len: usize) -> Self {
        let mut mask = Self::empty(len);
        for index in 0..len {
            mask.set(index);
        }
        mask
    }

    /// A mask over `len` members with exactly `indices` set (indices out of range are ignored).
    pub fn from_indices(len: usize, indices: impl IntoIterator<Item = usize>) -> Self {
        let mut mask = Self::empty(len);
        for index in indices {
            mask.set(index);
        }
        mask
    }

    /// Number of roster members the mask is over.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the mask is over an empty roster.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Marks member `index` as participating; out-of-range indices are ignored.
    pub fn set(&mut self, index: usize) {
        if index < self.len() {
            self.bits[index / 8] |= 1 << (index % 8);
        }
    }

    /// Marks member `index` as absent.
    pub fn clear(&mut self, index: usize) {
        if index < self.len() {
            self.bits[index / 8] &= !(1 << (index % 8));
        }
    }

    /// Whether member `index` participates.
    pub fn contains(&self, index: usize) -> bool {
        index < self.len() && self.bits[index / 8] & (1 << (index % 8)) != 0
    }

    /// Number of participants.
    pub fn count(&self) -> usize {
        self.bits
            .iter()
            .map(|byte| byte.count_ones() as usize)
            .sum()
    }

    /// Indices of the participants, ascending.
    pub fn present(&self) -> impl Iterator<Item = usize> + '_ {
        self.set_bits(false)
    }

    /// Indices of the members that do not participate, ascending.
    pub fn absent(&self) -> impl Iterator<Item = usize> + '_ {
        self.set_bits(true)
    }

    /// Indices of the set bits (or of the clear ones, if `inverted`), a byte at a time so that
    /// full and empty bytes cost one step: verifying a nearly full mask must not walk every bit.
    fn set_bits(&self, inverted: bool) -> impl Iterator<Item = usize> + '_ {
        let len = self.len();
        self.bits
            .iter()
            .enumerate()
            .flat_map(move |(position, &byte)| {
                let mut bits = if inverted { !byte } else { byte };
                let base = position * 8;
                if len - base < 8 {
                    bits &= (1u16 << (len - base)).wrapping_sub(1) as u8;
                }
                core::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let offset = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    Some(base + offset)
                })
            })
    }

    /// Whether no member is in both masks.
    pub fn is_disjoint(&self, other: &Self) -> bool {
        self.bits.iter().zip(&other.bits).all(|(a, b)| a & b == 0)
    }

    /// Adds every participant of `other` (masks over the same roster size).
    pub fn union_with(&mut self, other: &Self) {
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= b;
        }
    }

    /// Whether every participant of `other` is in `self`.
    pub fn contains_all(&self, other: &Self) -> bool {
        self.len == other.len && self.bits.iter().zip(&other.bits).all(|(a, b)| b & !a == 0)
    }
}

fn len_u32(len: usize) -> u32 {
    // Masks are only built for rosters, whose size is bounded by MAX_ROSTER_SIZE.
    u32::try_from(len.min(MAX_ROSTER_SIZE)).unwrap_or(u32::MAX)
}

impl Encode for ParticipationMask {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u32(self.len).fixed(&self.bits);
    }
}

impl Decode for ParticipationMask {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let len = reader.u32("participation mask length")? as usize;
        if len > MAX_ROSTER_SIZE {
            return Err(Error::TooLong {
                what: "participation mask",
                len,
                max: MAX_ROSTER_SIZE,
            });
        }
        let bits = reader.take(len.div_ceil(8), "participation mask")?.to_vec();
        if !len.is_multiple_of(8) {
            let padding = bits.last().copied().unwrap_or(0) >> (len % 8);
            if padding != 0 {
                return Err(Error::NonCanonical {
                    what: "participation mask padding bits",
                });
            }
        }
        Ok(Self {
            len: len_u32(len),
            bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn set_count_and_iterate() {
        let mut mask = ParticipationMask::empty(10);
        mask.set(0);
        mask.set(9);
        mask.set(42);
        assert_eq!(mask.count(), 2);
        assert_eq!(mask.present().collect::<Vec<_>>(), vec![0, 9]);
        assert_eq!(mask.absent().count(), 8);
        mask.clear(0);
        assert!(!mask.contains(0));
        assert_eq!(mask.to_bytes(), vec![10, 0, 0, 0, 0, 0b10]);
    }

    #[test]
    fn padding_bits_must_be_zero() {
        assert!(matches!(
            ParticipationMask::from_bytes(&[3, 0, 0, 0, 0b1000]),
            Err(Error::NonCanonical { .. })
        ));
        assert!(ParticipationMask::from_bytes(&[3, 0, 0, 0, 0b100]).is_ok());
    }

    #[test]
    fn oversized_mask_is_rejected() {
        let len = (MAX_ROSTER_SIZE as u32 + 1).to_le_bytes();
        assert!(matches!(
            ParticipationMask::from_bytes(&len),
            Err(Error::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trips(len in 0usize..300, picks in proptest::collection::vec(0usize..300, 0..50)) {
            let mask = ParticipationMask::from_indices(len, picks.iter().copied());
            let decoded = ParticipationMask::from_bytes(&mask.to_bytes())?;
            prop_assert_eq!(&decoded, &mask);
            prop_assert_eq!(mask.count(), mask.present().count());
            prop_assert_eq!(mask.count() + mask.absent().count(), len);
            let naive_present: Vec<usize> = (0..len).filter(|&i| mask.contains(i)).collect();
            let naive_absent: Vec<usize> = (0..len).filter(|&i| !mask.contains(i)).collect();
            prop_assert_eq!(mask.present().collect::<Vec<_>>(), naive_present);
            prop_assert_eq!(mask.absent().collect::<Vec<_>>(), naive_absent);
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = ParticipationMask::from_bytes(&bytes);
        }
    }
}
