//! A skipchain held in memory, with the append rules witnesses apply to a proposed block.
//!
//! The node keeps its chains in a database; it applies the same rules through
//! [`SkipChain::check_successor`], which only needs the previous block, its roster and a way to
//! look up earlier block hashes.

use std::collections::BTreeMap;

use crate::cosi::Roster;
use crate::{Error, Hash, Result};

use super::block::back_link_indices;
use super::{BlockRoster, ChainParams, ForwardLink, ProofStep, SkipBlock, SkipProof, TrustedBlock};

/// A forward link the roster of block `from_index` must sign for a proposed block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRequest {
    /// Index of the source block.
    pub from_index: u64,
    /// Hash of the source block.
    pub from: Hash,
    /// Hash of the proposed block.
    pub to: Hash,
    /// The link level.
    pub level: u32,
    /// What the source roster signs.
    pub message: Hash,
}

impl LinkRequest {
    /// The links that must be signed for `block` (already checked as a successor): one per
    /// level of its height, from the block its back link at that level names. Level 0 first.
    pub fn for_block(block: &SkipBlock) -> Vec<LinkRequest> {
        back_link_indices(block.params(), block.index())
            .into_iter()
            .zip(block.back_links())
            .zip(0u32..)
            .map(|((from_index, from), level)| LinkRequest {
                from_index,
                from: *from,
                to: block.hash(),
                level,
                message: ForwardLink::message_for(&block.chain_id(), from, &block.hash(), level),
            })
            .collect()
    }

    /// The genesis certificate a new chain needs before any node stores, relays or syncs it:
    /// a link from the genesis to itself at level 0, signed by the genesis roster (which thereby
    /// says that it admits the chain). No forward link of a chain points back at its source
    /// (a proof step must move forward, a block's link at level `l` goes `base^l` blocks on),
    /// so a certificate never stands in for a forward link, nor the converse.
    pub fn for_genesis(genesis: &SkipBlock) -> Result<LinkRequest> {
        if genesis.index() != 0 {
            return Err(Error::InvalidBlock {
                index: genesis.index(),
                reason: "only a genesis block has a genesis certificate".into(),
            });
        }
        let hash = genesis.hash();
        Ok(LinkRequest {
            from_index: 0,
            from: hash,
            to: hash,
            level: 0,
            message: ForwardLink::message_for(&hash, &hash, &hash, 0),
        })
    }

    /// Signs this request in one process with the secrets of `roster`'s members that
    /// `secrets` holds (every member whose secret is there participates): for tests,
    /// benchmarks and single-process tools. Networked rounds go through the node's leader.
    pub fn sign_locally<R: rand_core::CryptoRng + ?Sized>(
        &self,
        chain_id: Hash,
        roster: &Roster,
        secrets: &[&crate::keys::SecretKey],
        rng: &mut R,
    ) -> Result<ForwardLink> {
        let held: Vec<Option<&crate::keys::SecretKey>> = roster
            .members()
            .iter()
            .map(|member| {
                secrets
                    .iter()
                    .copied()
                    .find(|s| s.public_key() == member.key)
            })
            .collect();
        let participants: Vec<usize> = (0..held.len()).filter(|&i| held[i].is_some()).collect();
        let Some(any) = held.iter().flatten().next().copied() else {
            return Err(Error::BelowThreshold {
                participants: 0,
                threshold: roster.threshold(),
            });
        };
        // local_round indexes secrets like the roster; slots of absent members are never read.
        let indexed: Vec<&crate::keys::SecretKey> =
            held.iter().map(|secret| secret.unwrap_or(any)).collect();
        let signature = crate::cosi::local_round(
            roster,
            &indexed,
            self.message.as_bytes(),
            &participants,
            rng,
        )?;
        Ok(ForwardLink {
            chain_id,
            from: self.from,
            to: self.to,
            level: self.level,
            signature,
        })
    }

    /// Checks `certificate` for `genesis`: the genesis link request, signed by the genesis
    /// roster.
    pub fn check_genesis(genesis: &SkipBlock, certificate: &ForwardLink) -> Result<()> {
        let request = Self::for_genesis(genesis)?;
        let BlockRoster::Full(roster) = genesis.roster() else {
            return Err(Error::InvalidBlock {
                index: 0,
                reason: "a genesis names its roster in full".into(),
            });
        };
        if certificate.chain_id != genesis.chain_id() {
            return Err(Error::WrongChain);
        }
        request.check(certificate, roster)
    }

    /// The request among `requests` (those of one block) that `link` answers: the one at its
    /// level.
    pub fn matching<'a>(
        requests: &'a [LinkRequest],
        link: &ForwardLink,
    ) -> Result<&'a LinkRequest> {
        requests
            .iter()
            .find(|request| request.level == link.level)
            .ok_or(Error::LinkMismatch {
                reason: "no link at this level points to the block",
            })
    }

    /// The links an append stores with a block, paired with the requests they answer: the
    /// level-0 link is required (it is what makes the block part of the chain), higher levels
    /// may be missing (added later), and each level at most once. Signatures are checked by
    /// the caller, which knows the source rosters ([`LinkRequest::check`]).
    pub fn for_append<'a, 'b>(
        requests: &'a [LinkRequest],
        links: &'b [ForwardLink],
        head_index: u64,
    ) -> Result<Vec<(&'a LinkRequest, &'b ForwardLink)>> {
        if !links.iter().any(|link| link.level == 0) {
            return Err(Error::MissingForwardLink {
                from: head_index,
                level: 0,
            });
        }
        let mut paired: Vec<(&LinkRequest, &ForwardLink)> = Vec::with_capacity(links.len());
        for link in links {
            if paired.iter().any(|(_, seen)| seen.level == link.level) {
                return Err(Error::LinkMismatch {
                    reason: "two links at one level",
                });
            }
            paired.push((Self::matching(requests, link)?, link));
        }
        Ok(paired)
    }

    /// Checks that `link` is this request, signed by `source_roster` (the roster of the
    /// source block).
    pub fn check(&self, link: &ForwardLink, source_roster: &Roster) -> Result<()> {
        if link.level != self.level
            || link.from != self.from
            || link.to != self.to
            || link.message() != self.message
        {
            return Err(Error::LinkMismatch {
                reason: "link endpoints do not match the blocks",
            });
        }
        link.verify(source_roster)
    }
}

/// Read access to a chain, enough to build skip proofs: the in-memory [`SkipChain`] and the
/// node's store both provide it.
pub trait ChainSource {
    /// Errors of the source (the protocol's own errors must convert into it).
    type Error: From<Error>;

    /// The chain parameters.
    fn params(&self) -> ChainParams;
    /// Block `index`.
    fn block_at(&self, index: u64) -> core::result::Result<Option<SkipBlock>, Self::Error>;
    /// The roster block `index` runs under.
    fn roster_at(&self, index: u64) -> core::result::Result<Option<Roster>, Self::Error>;
    /// The signed forward link at `level` from block `from`.
    fn link_at(
        &self,
        from: u64,
        level: u32,
    ) -> core::result::Result<Option<ForwardLink>, Self::Error>;

    /// A skip proof from block `from` to block `to`, following at each block the highest
    /// signed link that does not overshoot. A step carries the target's roster when the target
    /// names it by hash and it is not the roster the verifier holds at that point.
    fn skip_proof(&self, from: u64, to: u64) -> core::result::Result<SkipProof, Self::Error> {
        let params = self.params();
        let route = params.route(from, to, |at, level| {
            matches!(self.link_at(at, level), Ok(Some(_)))
        })?;
        let mut steps = Vec::with_capacity(route.len());
        let mut roster_hash = self
            .roster_at(from)?
            .ok_or(Error::MissingBlock { index: from })?
            .hash();
        for (source, level) in route {
            let link = self
                .link_at(source, level)?
                .ok_or(Error::MissingForwardLink {
                    from: source,
                    level,
                })?;
            let target = source.saturating_add(params.span(level).unwrap_or(1));
            let block = self
                .block_at(target)?
                .ok_or(Error::MissingBlock { index: target })?;
            let target_roster = self
                .roster_at(target)?
                .ok_or(Error::MissingBlock { index: target })?;
            let roster = match block.roster() {
                BlockRoster::Unchanged(hash) if *hash != roster_hash => Some(target_roster.clone()),
                _ => None,
            };
            roster_hash = target_roster.hash();
            steps.push(ProofStep {
                link,
                block,
                roster,
            });
        }
        Ok(SkipProof { steps })
    }
}

/// A validated skipchain: blocks, the roster each runs under, and the forward links.
#[derive(Clone, Debug)]
pub struct SkipChain {
    blocks: Vec<SkipBlock>,
    /// Distinct rosters, and for each block the position of its roster in that list.
    rosters: Vec<Roster>,
    roster_of_block: Vec<usize>,
    links: BTreeMap<(u64, u32), ForwardLink>,
}

impl SkipChain {
    /// A chain holding only `genesis`.
    pub fn new(genesis: SkipBlock) -> Result<Self> {
        let trusted = TrustedBlock::genesis(genesis)?;
        Ok(Self {
            rosters: vec![trusted.roster().clone()],
            blocks: vec![trusted.block().clone()],
            roster_of_block: vec![0],
            links: BTreeMap::new(),
        })
    }

    /// The chain id.
    pub fn id(&self) -> Hash {
        self.genesis().hash()
    }

    /// The genesis block.
    pub fn genesis(&self) -> &SkipBlock {
        &self.blocks[0]
    }

    /// The chain parameters.
    pub fn params(&self) -> ChainParams {
        self.genesis().params()
    }

    /// Number of blocks.
    pub fn len(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// Always false: a chain has its genesis.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The latest block.
    pub fn head(&self) -> &SkipBlock {
        &self.blocks[self.blocks.len() - 1]
    }

    /// Block `index`, if the chain has it.
    pub fn block(&self, index: u64) -> Option<&SkipBlock> {
        usize::try_from(index).ok().and_then(|i| self.blocks.get(i))
    }

    /// The roster block `index` runs under.
    pub fn roster(&self, index: u64) -> Option<&Roster> {
        let position = usize::try_from(index).ok()?;
        self.roster_of_block
            .get(position)
            .map(|&r| &self.rosters[r])
    }

    /// The roster of the head: the one that signs the next block.
    pub fn current_roster(&self) -> &Roster {
        &self.rosters[self.roster_of_block[self.blocks.len() - 1]]
    }

    /// The forward link at `level` from block `from`, if signed.
    pub fn forward_link(&self, from: u64, level: u32) -> Option<&ForwardLink> {
        self.links.get(&(from, level))
    }

    /// Builds the next block, with a new roster or the current one.
    pub fn propose(&self, roster: Option<Roster>, payload: Vec<u8>) -> Result<SkipBlock> {
        SkipBlock::successor(self.head(), self.current_roster(), roster, payload, |i| {
            self.block(i).map(SkipBlock::hash)
        })
    }

    /// The append rules for `candidate` after `previous` (running under `previous_roster`):
    /// next index, same chain and parameters, back links equal to the hashes of the blocks
    /// `base^k` before, and a roster that is either the previous one by hash or a new one in
    /// full (whose validity the roster type guarantees).
    pub fn check_successor(
        previous: &SkipBlock,
        previous_roster: &Roster,
        candidate: &SkipBlock,
        back_link: impl Fn(u64) -> Option<Hash>,
    ) -> Result<()> {
        let index = candidate.index();
        let invalid = |reason: String| Error::InvalidBlock { index, reason };
        if previous.roster().hash() != previous_roster.hash() {
            return Err(Error::RosterMismatch {
                index: previous.index(),
            });
        }
        if Some(index) != previous.index().checked_add(1) {
            return Err(invalid(format!(
                "index {index} does not follow the head {}",
                previous.index()
            )));
        }
        if candidate.chain_id() != previous.chain_id() {
            return Err(Error::WrongChain);
        }
        if candidate.params() != previous.params() {
            return Err(invalid("chain parameters differ from the genesis".into()));
        }
        for (level, (&source, link)) in back_link_indices(candidate.params(), index)
            .iter()
            .zip(candidate.back_links())
            .enumerate()
        {
            let expected = back_link(source).ok_or(Error::MissingBlock { index: source })?;
            if *link != expected {
                return Err(invalid(format!(
                    "back link at level {level} is not the hash of block {source}"
                )));
            }
        }
        match candidate.roster() {
            BlockRoster::Unchanged(hash) if *hash == previous_roster.hash() => Ok(()),
            BlockRoster::Unchanged(_) => {
                Err(invalid("names a roster other than the one in force".into()))
            }
            BlockRoster::Full(roster) if roster.hash() == previous_roster.hash() => Err(invalid(
                "repeats the roster in full; an unchanged roster is given by hash".into(),
            )),
            BlockRoster::Full(_) => Ok(()),
        }
    }

    /// Checks `candidate` as the next block of this chain.
    pub fn validate_proposal(&self, candidate: &SkipBlock) -> Result<()> {
        Self::check_successor(self.head(), self.current_roster(), candidate, |i| {
            self.block(i).map(SkipBlock::hash)
        })
    }

    /// The forward links that must be signed for `candidate`: one per level of its height,
    /// from the block `base^level` before it, each by that block's roster. Level 0 comes first.
    pub fn link_requests(&self, candidate: &SkipBlock) -> Result<Vec<LinkRequest>> {
        self.validate_proposal(candidate)?;
        Ok(LinkRequest::for_block(candidate))
    }

    /// Appends `candidate` with its signed forward links. The level-0 link is required; higher
    /// links may be missing (their source roster could not sign) and added later. Every link
    /// is checked against its source block's roster before anything changes.
    pub fn append(&mut self, candidate: SkipBlock, links: Vec<ForwardLink>) -> Result<()> {
        let requests = self.link_requests(&candidate)?;
        for (request, link) in LinkRequest::for_append(&requests, &links, self.head().index())? {
            self.check_link(link, request)?;
        }
        let roster_position = match candidate.roster() {
            BlockRoster::Full(roster) => {
                self.rosters.push(roster.clone());
                self.rosters.len() - 1
            }
            BlockRoster::Unchanged(_) => self.roster_of_block[self.blocks.len() - 1],
        };
        self.blocks.push(candidate);
        self.roster_of_block.push(roster_position);
        for link in links {
            let from = requests
                .iter()
                .find(|r| r.level == link.level)
                .map(|r| r.from_index);
            if let Some(from) = from {
                self.links.insert((from, link.level), link);
            }
        }
        Ok(())
    }

    fn check_link(&self, link: &ForwardLink, request: &LinkRequest) -> Result<()> {
        if link.chain_id != self.id() {
            return Err(Error::WrongChain);
        }
        let roster = self.roster(request.from_index).ok_or(Error::MissingBlock {
            index: request.from_index,
        })?;
        request.check(link, roster)
    }

    /// Adds a higher-level forward link to a block already in the chain.
    pub fn add_forward_link(&mut self, link: ForwardLink) -> Result<()> {
        let target = self
            .blocks
            .iter()
            .find(|block| block.hash() == link.to)
            .ok_or(Error::LinkMismatch {
                reason: "target block is not in the chain",
            })?;
        let requests = LinkRequest::for_block(target);
        let request = LinkRequest::matching(&requests, &link)?;
        self.check_link(&link, request)?;
        self.links.insert((request.from_index, link.level), link);
        Ok(())
    }

    /// A skip proof from block `from` to block `to`.
    pub fn skip_proof(&self, from: u64, to: u64) -> Result<SkipProof> {
        if to >= self.len() {
            return Err(Error::MissingBlock { index: to });
        }
        ChainSource::skip_proof(self, from, to)
    }

    /// Block `index` with its roster, as a client would keep it.
    pub fn trusted(&self, index: u64) -> Result<TrustedBlock> {
        let block = self.block(index).ok_or(Error::MissingBlock { index })?;
        let roster = self.roster(index).ok_or(Error::MissingBlock { index })?;
        TrustedBlock::new(block.clone(), roster.clone())
    }
}

impl ChainSource for SkipChain {
    type Error = Error;

    fn params(&self) -> ChainParams {
        SkipChain::params(self)
    }

    fn block_at(&self, index: u64) -> Result<Option<SkipBlock>> {
        Ok(self.block(index).cloned())
    }

    fn roster_at(&self, index: u64) -> Result<Option<Roster>> {
        Ok(self.roster(index).cloned())
    }

    fn link_at(&self, from: u64, level: u32) -> Result<Option<ForwardLink>> {
        Ok(self.links.get(&(from, level)).cloned())
    }
}
