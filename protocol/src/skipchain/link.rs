//! Forward links: collective signatures, by the roster of the source block, that a later block
//! follows it.

use crate::cosi::{CollectiveSignature, Roster};
use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::hash::domain;
use crate::{Error, Hash, Result};

/// A forward link at `level` from block `from` to block `to` of chain `chain_id`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ForwardLink {
    /// The chain both blocks belong to.
    pub chain_id: Hash,
    /// Hash of the source block.
    pub from: Hash,
    /// Hash of the target block, `base^level` blocks later.
    pub to: Hash,
    /// The link level.
    pub level: u32,
    /// Collective signature of the source block's roster over [`ForwardLink::message_for`].
    pub signature: CollectiveSignature,
}

impl ForwardLink {
    /// The 32-byte message the source roster signs: BLAKE3 under [`domain::FORWARD_LINK`] of
    /// `version || chain_id || from || to || level`.
    pub fn message_for(chain_id: &Hash, from: &Hash, to: &Hash, level: u32) -> Hash {
        let mut writer = Writer::new();
        writer
            .u8(VERSION)
            .value(chain_id)
            .value(from)
            .value(to)
            .u32(level);
        Hash::of(domain::FORWARD_LINK, &[&writer.finish()])
    }

    /// The message this link's signature covers.
    pub fn message(&self) -> Hash {
        Self::message_for(&self.chain_id, &self.from, &self.to, self.level)
    }

    /// Checks the signature against the roster of the source block.
    pub fn verify(&self, source_roster: &Roster) -> Result<()> {
        source_roster.verify(self.message().as_bytes(), &self.signature)
    }
}

impl Encode for ForwardLink {
    fn encode_to(&self, writer: &mut Writer) {
        writer
            .u8(VERSION)
            .value(&self.chain_id)
            .value(&self.from)
            .value(&self.to)
            .u32(self.level)
            .value(&self.signature);
    }
}

impl Decode for ForwardLink {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("forward link")?;
        let chain_id = Hash::decode_from(reader)?;
        let from = Hash::decode_from(reader)?;
        let to = Hash::decode_from(reader)?;
        let level = reader.u32("link level")?;
        // A link leaves a block at one of its levels, and no block has more than MAX_HEIGHT.
        if level >= super::MAX_HEIGHT {
            return Err(Error::TooLong {
                what: "forward link level",
                len: level as usize,
                max: super::MAX_HEIGHT as usize - 1,
            });
        }
        Ok(Self {
            chain_id,
            from,
            to,
            level,
            signature: CollectiveSignature::decode_from(reader)?,
        })
    }
}
