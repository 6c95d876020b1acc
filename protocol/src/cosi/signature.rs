//! The collective signature: an Ed25519 signature plus the participation mask.

use crate::Result;
use crate::encoding::{Decode, Encode, Reader, Writer};

use super::ParticipationMask;

/// `(R, s, mask)`. `R || s` is a standard RFC 8032 Ed25519 signature under the sum of the keys
/// of the roster members set in `mask`; any Ed25519 library verifies it given that sum.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CollectiveSignature {
    /// Encoding of the aggregate nonce point `R`.
    pub r: [u8; 32],
    /// Encoding of the aggregate response scalar `s`.
    pub s: [u8; 32],
    /// Which roster members signed.
    pub mask: ParticipationMask,
}

impl CollectiveSignature {
    /// The 64-byte Ed25519 signature `R || s`.
    pub fn to_ed25519_bytes(&self) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.r);
        bytes[32..].copy_from_slice(&self.s);
        bytes
    }
}

impl Encode for CollectiveSignature {
    fn encode_to(&self, writer: &mut Writer) {
        writer.fixed(&self.r).fixed(&self.s).value(&self.mask);
    }
}

impl Decode for CollectiveSignature {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self {
            r: reader.array("signature R")?,
            s: reader.array("signature s")?,
            mask: ParticipationMask::decode_from(reader)?,
        })
    }
}
