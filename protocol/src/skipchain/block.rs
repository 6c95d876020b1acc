//! Skipblocks and their canonical encoding.

use crate::cosi::Roster;
use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::hash::domain;
use crate::{Error, Hash, Result};

use super::{ChainParams, MAX_HEIGHT};

/// Largest payload a block may carry (4 MiB).
pub const MAX_PAYLOAD_LEN: usize = 4 << 20;

/// The roster of a block: written out in full in the genesis and whenever it changes,
/// otherwise referred to by the hash of the roster in force.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum BlockRoster {
    /// A new roster (the genesis roster, or a change signed by the previous roster).
    Full(Roster),
    /// The roster of the previous block, by hash.
    Unchanged(Hash),
}

impl BlockRoster {
    /// The hash of the roster this block runs under.
    pub fn hash(&self) -> Hash {
        match self {
            Self::Full(roster) => roster.hash(),
            Self::Unchanged(hash) => *hash,
        }
    }
}

const ROSTER_FULL: u8 = 0;
const ROSTER_UNCHANGED: u8 = 1;

/// A block of a skipchain. Its hash covers every field; forward links are kept beside it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SkipBlock {
    index: u64,
    chain_id: Option<Hash>,
    params: ChainParams,
    back_links: Vec<Hash>,
    roster: BlockRoster,
    payload: Vec<u8>,
    hash: Hash,
}

impl SkipBlock {
    /// The first block of a new chain; its hash is the chain id.
    pub fn genesis(params: ChainParams, roster: Roster, payload: Vec<u8>) -> Result<Self> {
        Self::build(
            0,
            None,
            params,
            Vec::new(),
            BlockRoster::Full(roster),
            payload,
        )
    }

    /// The block that follows `previous`. `back_link` gives the hash of an earlier block by
    /// index; `roster` is the new roster for a roster change, or `None` to keep the current one.
    pub fn successor(
        previous: &SkipBlock,
        current_roster: &Roster,
        roster: Option<Roster>,
        payload: Vec<u8>,
        back_link: impl Fn(u64) -> Option<Hash>,
    ) -> Result<Self> {
        let index = previous.index.checked_add(1).ok_or(Error::ChainFull)?;
        let params = previous.params;
        let back_links = back_link_indices(params, index)
            .into_iter()
            .map(|source| back_link(source).ok_or(Error::MissingBlock { index: source }))
            .collect::<Result<Vec<_>>>()?;
        let roster = match roster {
            Some(new) if new.hash() != current_roster.hash() => BlockRoster::Full(new),
            _ => BlockRoster::Unchanged(current_roster.hash()),
        };
        Self::build(
            index,
            Some(previous.chain_id()),
            params,
            back_links,
            roster,
            payload,
        )
    }

    pub(super) fn build(
        index: u64,
        chain_id: Option<Hash>,
        params: ChainParams,
        back_links: Vec<Hash>,
        roster: BlockRoster,
        payload: Vec<u8>,
    ) -> Result<Self> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::TooLong {
                what: "block payload",
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        if index == 0 && !matches!(roster, BlockRoster::Full(_)) {
            return Err(Error::InvalidBlock {
                index,
                reason: "the genesis block must carry its roster".into(),
            });
        }
        let expected = if index == 0 {
            0
        } else {
            params.height_of(index) as usize
        };
        if back_links.len() != expected {
            return Err(Error::InvalidBlock {
                index,
                reason: format!(
                    "{} back links where height gives {expected}",
                    back_links.len()
                ),
            });
        }
        let mut block = Self {
            index,
            chain_id,
            params,
            back_links,
            roster,
            payload,
            hash: Hash::default(),
        };
        block.hash = Hash::of(domain::SKIPBLOCK, &[&block.to_bytes()]);
        Ok(block)
    }

    /// Position in the chain, 0 for the genesis.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The chain id: the hash of the genesis block.
    pub fn chain_id(&self) -> Hash {
        self.chain_id.unwrap_or(self.hash)
    }

    /// The chain's parameters.
    pub fn params(&self) -> ChainParams {
        self.params
    }

    /// Number of link levels of this block.
    pub fn height(&self) -> u32 {
        self.params.height_of(self.index)
    }

    /// Hashes of the blocks `base^k` before this one, for each level `k` (empty for the genesis).
    pub fn back_links(&self) -> &[Hash] {
        &self.back_links
    }

    /// The roster this block runs under, in full or by hash.
    pub fn roster(&self) -> &BlockRoster {
        &self.roster
    }

    /// The application payload (policy, release, timeline entry...).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The block's identity: BLAKE3 under [`domain::SKIPBLOCK`] of its encoding.
    pub fn hash(&self) -> Hash {
        self.hash
    }
}

/// Indices of the blocks that block `index` links back to, level 0 first.
pub(crate) fn back_link_indices(params: ChainParams, index: u64) -> Vec<u64> {
    if index == 0 {
        return Vec::new();
    }
    (0..params.height_of(index))
        .filter_map(|level| params.span(level).and_then(|span| index.checked_sub(span)))
        .collect()
}

impl Encode for SkipBlock {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(VERSION).u64(self.index);
        if let Some(chain_id) = &self.chain_id {
            writer.value(chain_id);
        }
        writer
            .u32(self.params.base())
            .u32(self.params.max_height())
            .u32(self.height())
            .list(&self.back_links);
        match &self.roster {
            BlockRoster::Full(roster) => writer.u8(ROSTER_FULL).value(roster),
            BlockRoster::Unchanged(hash) => writer.u8(ROSTER_UNCHANGED).value(hash),
        };
        writer.bytes(&self.payload);
    }
}

impl Decode for SkipBlock {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("skipblock")?;
        let index = reader.u64("block index")?;
        let chain_id = if index == 0 {
            None
        } else {
            Some(Hash::decode_from(reader)?)
        };
        let base = reader.u32("block base")?;
        let max_height = reader.u32("block max height")?;
        let params = ChainParams::new(base, max_height)?;
        let height = reader.u32("block height")?;
        if height != params.height_of(index) {
            return Err(Error::InvalidBlock {
                index,
                reason: format!(
                    "height {height} but the parameters give {}",
                    params.height_of(index)
                ),
            });
        }
        let back_links = reader.list(MAX_HEIGHT as usize, "back links")?;
        let roster = match reader.u8("roster tag")? {
            ROSTER_FULL => BlockRoster::Full(Roster::decode_from(reader)?),
            ROSTER_UNCHANGED => BlockRoster::Unchanged(Hash::decode_from(reader)?),
            tag => {
                return Err(Error::InvalidTag {
                    what: "block roster",
                    tag,
                });
            }
        };
        let payload = reader.bytes(MAX_PAYLOAD_LEN, "block payload")?.to_vec();
        Self::build(index, chain_id, params, back_links, roster, payload)
    }
}
