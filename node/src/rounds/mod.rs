//! Signing rounds: the leader's side ([`leader`]), the witness's side ([`witness`]), tree rounds
//! through interior nodes ([`tree`]), and how they reach each other ([`transport`]). The rules
//! (tree layouts, a child's answers, the collective signature) are in `chainiac_protocol::cosi`;
//! these modules move the messages and keep the time.

pub mod leader;
#[cfg(test)]
pub mod simulation;
pub mod transport;
pub mod tree;
pub mod witness;
#[cfg(test)]
mod witness_fuzz;

pub use leader::{AppendError, MAX_TREE_ATTEMPTS, RoundConfig, RoundReport, sign_link};
pub use transport::{BoxFuture, WitnessTransport, call};
pub use tree::{SubtreeHost, SubtreeRounds};
pub use witness::{AnyPayload, Asker, Committed, PayloadRules, Refusal, Witness};
