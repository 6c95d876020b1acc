//! Skip proofs: a self-contained chain of forward links and blocks from a trusted block to a
//! later one, checked with nothing but the trusted block and its roster.

use crate::cosi::Roster;
use crate::encoding::{Decode, Encode, Reader, VERSION, Writer};
use crate::{Error, Result};

use super::{BlockRoster, ForwardLink, SkipBlock};

/// Most steps a proof may have (a proof across 2^64 blocks with base 2 needs 128 at most).
pub const MAX_PROOF_STEPS: usize = 512;

/// A block a client trusts, with the roster it runs under.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TrustedBlock {
    block: SkipBlock,
    roster: Roster,
}

impl TrustedBlock {
    /// Trusts a genesis block obtained out of band (for instance its hash is pinned).
    pub fn genesis(block: SkipBlock) -> Result<Self> {
        match block.roster() {
            BlockRoster::Full(roster) if block.index() == 0 => {
                let roster = roster.clone();
                Ok(Self { block, roster })
            }
            _ => Err(Error::InvalidBlock {
                index: block.index(),
                reason: "not a genesis block".into(),
            }),
        }
    }

    /// Trusts `block` running under `roster`; the roster must be the one the block names.
    pub fn new(block: SkipBlock, roster: Roster) -> Result<Self> {
        if block.roster().hash() != roster.hash() {
            return Err(Error::RosterMismatch {
                index: block.index(),
            });
        }
        Ok(Self { block, roster })
    }

    /// The trusted block.
    pub fn block(&self) -> &SkipBlock {
        &self.block
    }

    /// Its roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }
}

/// One step of a proof: a link from the current block and the block it leads to, with that
/// block's roster when the block only names it by hash and it differs from the current one
/// (the proof skipped over the roster change).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProofStep {
    /// The forward link followed.
    pub link: ForwardLink,
    /// The block it leads to.
    pub block: SkipBlock,
    /// The target block's roster, if the verifier cannot know it otherwise.
    pub roster: Option<Roster>,
}

/// Forward links from a trusted block to a later block of the same chain.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SkipProof {
    /// The steps, in chain order.
    pub steps: Vec<ProofStep>,
}

impl SkipProof {
    /// Follows the proof from `trusted` and returns the last block, trusted in turn. Each link
    /// must leave the current block at a level it has, land exactly `base^level` blocks later on
    /// the block given (whose back link at that level names the current block), and carry a
    /// valid collective signature of the current block's roster. The caller checks that the
    /// returned block is the one it asked for.
    pub fn verify(&self, trusted: &TrustedBlock) -> Result<TrustedBlock> {
        if self.steps.len() > MAX_PROOF_STEPS {
            return Err(Error::TooLong {
                what: "skip proof",
                len: self.steps.len(),
                max: MAX_PROOF_STEPS,
            });
        }
        let mut current = trusted.clone();
        for (position, step) in self.steps.iter().enumerate() {
            current = verify_step(&current, step).map_err(|error| Error::InvalidProofStep {
                step: position,
                from: current.block.index(),
                error: Box::new(error),
            })?;
        }
        Ok(current)
    }
}

fn verify_step(current: &TrustedBlock, step: &ProofStep) -> Result<TrustedBlock> {
    let source = &current.block;
    let link = &step.link;
    let target = &step.block;
    if link.chain_id != source.chain_id() || target.chain_id() != source.chain_id() {
        return Err(Error::WrongChain);
    }
    if link.from != source.hash() {
        return Err(Error::LinkMismatch {
            reason: "link does not start at the current block",
        });
    }
    if link.to != target.hash() {
        return Err(Error::LinkMismatch {
            reason: "link does not point to the block given",
        });
    }
    if link.level >= source.height() {
        return Err(Error::LinkMismatch {
            reason: "link level is above the source block's height",
        });
    }
    let expected_index = source
        .params()
        .span(link.level)
        .and_then(|span| source.index().checked_add(span));
    if expected_index != Some(target.index()) || target.params() != source.params() {
        return Err(Error::LinkMismatch {
            reason: "target block is not base^level blocks after the source",
        });
    }
    // The target's own back link at that level must name the source: a link and a block that
    // disagree about their neighbour are never both what the witnesses checked.
    if target.back_links().get(link.level as usize) != Some(&source.hash()) {
        return Err(Error::LinkMismatch {
            reason: "the target block's back link at the link's level is not the source block",
        });
    }
    link.verify(&current.roster)?;
    let roster = match (target.roster(), &step.roster) {
        (BlockRoster::Full(roster), _) => roster.clone(),
        (BlockRoster::Unchanged(hash), _) if *hash == current.roster.hash() => {
            current.roster.clone()
        }
        (BlockRoster::Unchanged(hash), Some(roster)) if *hash == roster.hash() => roster.clone(),
        _ => {
            return Err(Error::RosterMismatch {
                index: target.index(),
            });
        }
    };
    Ok(TrustedBlock {
        block: target.clone(),
        roster,
    })
}

impl Encode for SkipProof {
    fn encode_to(&self, writer: &mut Writer) {
        writer.u8(VERSION).count(self.steps.len());
        for step in &self.steps {
            writer.value(&step.link).value(&step.block);
            match &step.roster {
                None => writer.u8(0),
                Some(roster) => writer.u8(1).value(roster),
            };
        }
    }
}

impl Decode for SkipProof {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        reader.version("skip proof")?;
        let count = reader.count(MAX_PROOF_STEPS, "skip proof steps")?;
        let mut steps = Vec::with_capacity(count);
        for _ in 0..count {
            let link = ForwardLink::decode_from(reader)?;
            let block = SkipBlock::decode_from(reader)?;
            let roster = match reader.bool("proof step roster flag")? {
                false => None,
                true => Some(Roster::decode_from(reader)?),
            };
            steps.push(ProofStep {
                link,
                block,
                roster,
            });
        }
        Ok(Self { steps })
    }
}
