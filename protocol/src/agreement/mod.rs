//! Agreement on one chain position with views: which block a roster signs at (chain, index),
//! safe with up to `f` Byzantine members and live once the network is synchronous again.
//!
//! A CoSi round alone cannot be both: if the round that locked witnesses on a block fails after
//! its challenge, no other round can start at that position without risking that two blocks get
//! signed, and two leaders proposing at once can split the witnesses for ever. This module runs
//! a position as a sequence of **views** in the style of Tendermint and two-phase HotStuff:
//!
//! * the **leader** of each view is fixed by (chain, index, view) and rotates through the
//!   roster ([`Quorum::leader`]); members answer only the leader of the view they are in;
//! * a view has two phases. The leader proposes a block; members **prepare** (vote) if they are
//!   not locked, locked on that block, or shown a prepare certificate for it from a view at
//!   least as recent as their lock. `threshold` prepare votes form a **prepare certificate**;
//!   members that see it **lock** on it and **commit** (vote again); `threshold` commit votes
//!   form the **commit certificate**, which decides the position. In the node the commit
//!   certificate is the forward link's collective signature;
//! * a member whose view times out moves to the next view (with exponential backoff) and tells
//!   every member its highest prepare certificate; the next leader proposes the block of the
//!   highest certificate it learnt, so that a lock never blocks the position.
//!
//! Safety (never two decided blocks at one position) needs `2·threshold > members + f`: two
//! quorums then share an honest member, who votes once per view and phase and respects its
//! lock. Liveness needs `members − f ≥ threshold`. [`Quorum::faults_tolerated`] is the largest
//! `f` with both, `f` of `3f + 1` with the default threshold `2f + 1`.
//!
//! [`Agreement`] is pure: `handle(event, now) -> actions`, no I/O, no clock, no randomness.
//! The host delivers messages whose sender the transport authenticated and whose certificates'
//! signatures it verified, and a `Propose` only once it holds the proposed block and its rules
//! accept it (a member votes for the hash it is given: validity is the host's); it performs the
//! actions in order — a [`Action::Persist`] is durable
//! before any later action leaves the node — and calls `handle(Event::Tick, now)` at
//! [`Agreement::next_deadline`].

mod machine;
mod signed;
#[cfg(test)]
mod tests;

pub use machine::{Agreement, Durable};
pub use signed::{
    DurableRecord, EvidenceError, Position, SignedCertificate, SignedMessage, quorum_of,
};

use crate::Hash;

/// A view number: views count from 0 at every position.
pub type View = u32;

/// A roster member, by its position in the roster.
pub type Member = u32;

/// Most views a member looks ahead: proposals for views further ahead are dropped, not kept.
pub const MAX_VIEWS_AHEAD: View = 64;

/// Most blocks a member keeps as candidates for a position (the oldest are proposed first).
pub const MAX_CANDIDATES: usize = 64;

/// The two votes of a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// A member is willing to lock on the block.
    Prepare,
    /// A member locked on the block (it saw its prepare certificate).
    Commit,
}

/// What a vote or a certificate is about (the position is the machine's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Statement {
    /// The vote.
    pub phase: Phase,
    /// The view it belongs to.
    pub view: View,
    /// The block voted for.
    pub block: Hash,
}

/// Votes of at least `threshold` distinct members on one statement (in the node: a collective
/// signature with its participation mask, verified before the machine sees it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Certificate {
    /// What the signers voted.
    pub statement: Statement,
    /// The members who signed, strictly increasing.
    pub signers: Vec<Member>,
}

/// A message between roster members about one position.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// The leader of `view` proposes `block`; `justification` is a prepare certificate for the
    /// same block from an earlier view, which lets members locked on another block vote for it.
    Propose {
        view: View,
        block: Hash,
        justification: Option<Certificate>,
    },
    /// A member's vote, sent to the leader of the statement's view.
    Vote(Statement),
    /// A prepare certificate (members lock on it and commit) or a commit certificate (the
    /// position is decided).
    Certified(Certificate),
    /// The sender entered `view`; `prepared` is the highest prepare certificate it knows.
    ViewChange {
        view: View,
        prepared: Option<Certificate>,
    },
}

impl Message {
    /// The view a message speaks of.
    pub fn view(&self) -> View {
        match self {
            Self::Propose { view, .. } | Self::ViewChange { view, .. } => *view,
            Self::Vote(statement) => statement.view,
            Self::Certified(certificate) => certificate.statement.view,
        }
    }
}

/// What happens to a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A block the host validated and wants decided at this position (a publisher's proposal,
    /// forwarded to every member).
    Candidate(Hash),
    /// A message from another member (authenticated sender, verified signatures).
    Received { from: Member, message: Message },
    /// Time passed (the host calls it at [`Agreement::next_deadline`]).
    Tick,
}

/// What the host must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this state durably before performing any later action: it holds the votes the
    /// member gave, which it must never contradict, even after a crash.
    Persist(Box<Durable>),
    /// Send a message to one member.
    Send { to: Member, message: Message },
    /// Send a message to every other member.
    Broadcast(Message),
    /// The position is decided by this commit certificate.
    Decided(Certificate),
}

/// The roster's size and threshold, and who leads which view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    members: u32,
    threshold: u32,
}

/// A roster shape agreement cannot run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// No members, or a threshold outside `members/2 < threshold <= members`.
    #[error(
        "a roster of {members} members with threshold {threshold} cannot agree: the threshold must be a strict majority and at most the number of members"
    )]
    Shape { members: u32, threshold: u32 },
}

impl Quorum {
    /// A roster of `members` with `threshold` votes per certificate.
    pub fn new(members: u32, threshold: u32) -> Result<Self, QuorumError> {
        if members == 0 || threshold > members || 2 * u64::from(threshold) <= u64::from(members) {
            return Err(QuorumError::Shape { members, threshold });
        }
        Ok(Self { members, threshold })
    }

    /// Number of members.
    pub fn members(&self) -> u32 {
        self.members
    }

    /// Votes per certificate.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// How many Byzantine members agreement stays safe and live with: the largest `f` with
    /// `2·threshold > members + f` and `members − f >= threshold`.
    pub fn faults_tolerated(&self) -> u32 {
        let (members, threshold) = (u64::from(self.members), u64::from(self.threshold));
        let safe = 2 * threshold - members - 1;
        // Both bounds are below `members`, a u32.
        safe.min(members - threshold) as u32
    }

    /// The leader of `view` at the position whose seed is `seed` ([`Quorum::position_seed`]):
    /// consecutive views rotate through every member, so that among any `f + 1` consecutive
    /// views one has an honest leader.
    pub fn leader(&self, seed: &Hash, view: View) -> Member {
        let bytes = seed.as_bytes();
        let start = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % self.members;
        ((u64::from(start) + u64::from(view)) % u64::from(self.members)) as Member
    }

    /// The seed of a position, from which its leaders follow.
    pub fn position_seed(chain_id: &Hash, index: u64) -> Hash {
        Hash::of(
            crate::hash::domain::ROUND_LEADER,
            &[chain_id.as_bytes(), &index.to_le_bytes()],
        )
    }

    /// Whether `certificate` has enough distinct members of this roster (signatures are the
    /// host's to verify).
    pub fn certifies(&self, certificate: &Certificate) -> bool {
        let signers = &certificate.signers;
        signers.len() >= self.threshold as usize
            && signers.windows(2).all(|pair| pair[0] < pair[1])
            && signers.last().is_some_and(|&last| last < self.members)
    }
}

/// How long a member waits in a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Time a member gives view 0, in milliseconds; each later view doubles it.
    pub base_ms: u64,
    /// Most doublings (the longest view lasts `base_ms · 2^max_doublings`).
    pub max_doublings: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            base_ms: 2_000,
            max_doublings: 6,
        }
    }
}

impl Timing {
    /// How long a member waits in `view` before moving on.
    pub fn view_timeout(&self, view: View) -> u64 {
        self.base_ms
            .saturating_mul(1u64 << view.min(self.max_doublings).min(62))
    }

    /// How long the leader of `view` waits, once a threshold of members entered the view, for
    /// the others' prepare certificates before it proposes.
    pub fn proposal_grace(&self, view: View) -> u64 {
        self.view_timeout(view) / 8
    }
}
