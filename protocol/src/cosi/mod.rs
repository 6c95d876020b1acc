//! Collective signing (CoSi): Schnorr multi-signatures of a roster of witnesses that verify as
//! plain RFC 8032 Ed25519 signatures under the sum of the participating witnesses' keys.
//!
//! A round has two steps after the announcement of the message:
//! 1. **commit**: each witness draws two secret nonces ([`SigningNonces`]) and sends their
//!    points ([`Commitment`]); aggregators (the leader, or interior nodes of a tree) sum them
//!    into [`Contribution`]s and the leader derives the [`Challenge`];
//! 2. **respond**: each witness consumes its nonces to answer the challenge with a partial
//!    [`ResponseShare`]; aggregators check and sum the shares, naming any culprit, and the
//!    leader outputs the [`CollectiveSignature`].
//!
//! Two nonces combined with a binding factor over all commitments (as in MuSig2) keep
//! concurrent sessions safe; proofs of possession on every roster key keep key summation safe.

mod decoded_rosters;
mod layout;
mod mask;
mod roster;
mod round;
mod signature;
mod tree;

pub use decoded_rosters::MAX_REMEMBERED_MEMBERS;
pub use layout::{
    MAX_TREE_BRANCHING, MAX_TREE_DEPTH, RoundTree, TreeLayout, blame_for_incomplete_subtree,
    child_budget,
};
pub use mask::ParticipationMask;
pub use roster::{MAX_ROSTER_SIZE, Roster, RosterMember};
pub use round::{
    Aggregator, Challenge, Commitment, Contribution, ResponseShare, SigningNonces, commit,
    local_round,
};
pub use signature::CollectiveSignature;
pub use tree::AggregationTree;

#[cfg(test)]
mod tests;
