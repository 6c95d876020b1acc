//! Proofs of possession already checked. Every block that carries a full roster, every proof a
//! light client reads and every `Commit` a leader sends repeats the same members; checking a
//! member's proof costs an Ed25519 verification (~50-100 µs), remembering it a hash. The memo
//! changes no result: a member is skipped only when the very same key and proof were verified
//! before, so a roster decodes to the same value (or the same error) with or without it.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::RosterMember;
use crate::Result;

/// Most verified (key, proof) pairs remembered; the oldest are forgotten first (~4 MiB).
pub const MAX_REMEMBERED_POSSESSIONS: usize = 1 << 16;

#[derive(Default)]
struct Remembered {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

fn remembered() -> &'static Mutex<Remembered> {
    static REMEMBERED: OnceLock<Mutex<Remembered>> = OnceLock::new();
    REMEMBERED.get_or_init(Mutex::default)
}

/// The exact key and proof bytes, hashed (a local memo key, never sent or stored).
fn fingerprint(member: &RosterMember) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(member.key.as_bytes());
    hasher.update(&member.possession.0.0);
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
thread_local! {
    /// Proofs this thread verified (rather than found in the memo).
    pub(super) static VERIFIED_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Checks every member's proof of possession, verifying only those not verified before.
pub(super) fn check(members: &[RosterMember]) -> Result<()> {
    let fingerprints: Vec<[u8; 32]> = members.iter().map(fingerprint).collect();
    let unverified: Vec<usize> = {
        let memo = remembered().lock().unwrap_or_else(PoisonError::into_inner);
        (0..members.len())
            .filter(|&i| !memo.seen.contains(&fingerprints[i]))
            .collect()
    };
    // Verified outside the lock: other threads decode their rosters meanwhile.
    for &i in &unverified {
        #[cfg(test)]
        VERIFIED_HERE.with(|count| count.set(count.get() + 1));
        members[i].key.verify_possession(&members[i].possession)?;
    }
    let mut memo = remembered().lock().unwrap_or_else(PoisonError::into_inner);
    for &i in &unverified {
        if memo.seen.insert(fingerprints[i]) {
            memo.order.push_back(fingerprints[i]);
        }
    }
    while memo.order.len() > MAX_REMEMBERED_POSSESSIONS {
        if let Some(oldest) = memo.order.pop_front() {
            memo.seen.remove(&oldest);
        }
    }
    Ok(())
}
