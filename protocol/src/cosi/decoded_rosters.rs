//! Rosters already decoded, by hash. Every block that carries a full roster, every proof a light
//! client reads and every `Commit` a leader sends repeats the same roster; decoding one checks
//! every member's key (a torsion check) and proof of possession (an Ed25519 verification), about
//! 80 µs per member, while recognising it costs a hash of its bytes. The memo changes no result:
//! only rosters that decoded are kept, under the hash of their exact encoding (the roster hash),
//! so the same bytes give the same roster, and any other bytes are decoded in full.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::Roster;
use crate::Hash;

/// Most members over all remembered rosters (about 200 bytes each); the oldest rosters are
/// forgotten first.
pub const MAX_REMEMBERED_MEMBERS: usize = 1 << 16;

#[derive(Default)]
struct Remembered {
    rosters: HashMap<Hash, Roster>,
    order: VecDeque<Hash>,
    members: usize,
}

fn remembered() -> &'static Mutex<Remembered> {
    static REMEMBERED: OnceLock<Mutex<Remembered>> = OnceLock::new();
    REMEMBERED.get_or_init(Mutex::default)
}

/// The roster whose encoding hashes to `hash`, if it was decoded before.
pub(super) fn get(hash: &Hash) -> Option<Roster> {
    remembered()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .rosters
        .get(hash)
        .cloned()
}

/// Remembers a roster that decoded.
pub(super) fn remember(roster: &Roster) {
    if roster.len() > MAX_REMEMBERED_MEMBERS {
        return;
    }
    let mut memo = remembered().lock().unwrap_or_else(PoisonError::into_inner);
    let hash = roster.hash();
    if memo.rosters.insert(hash, roster.clone()).is_none() {
        memo.order.push_back(hash);
        memo.members += roster.len();
    }
    while memo.members > MAX_REMEMBERED_MEMBERS {
        let Some(oldest) = memo.order.pop_front() else {
            break;
        };
        if let Some(forgotten) = memo.rosters.remove(&oldest) {
            memo.members -= forgotten.len();
        }
    }
}
