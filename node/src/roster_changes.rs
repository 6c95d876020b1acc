//! Timeline roster changes waiting for approvals. Each operator of a timeline member approves a
//! move to another roster with their node's key (`chainiac node approve-roster`); the node
//! sends the approval to the other members, and every member keeps what it received here.
//! Whichever member leads the next epoch includes the approvals once a threshold of the
//! current roster approved the same move. Approvals are only kept in memory: after a restart
//! an operator approves again (the approval is the same signature).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chainiac_protocol::Hash;
use chainiac_protocol::cosi::Roster;
use chainiac_protocol::keys::KeySignature;
use chainiac_protocol::timeline::check_roster_approval;

/// Most distinct rosters a timeline may be waiting to move to at once.
const MAX_PROPOSALS_PER_TIMELINE: usize = 8;
/// Most timelines with pending changes.
const MAX_TIMELINES: usize = 64;

#[derive(Debug)]
struct PendingChange {
    /// Hash of the roster the approvals move away from.
    from: Hash,
    roster: Roster,
    approvals: Vec<KeySignature>,
}

/// A roster change of one timeline as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRosterChange {
    /// The roster approved.
    pub roster: Hash,
    /// How many members of the current roster approved it.
    pub approvals: usize,
    /// How many must.
    pub threshold: usize,
}

/// The approvals this node holds, per timeline.
#[derive(Debug, Default)]
pub struct RosterChanges {
    pending: Mutex<HashMap<Hash, Vec<PendingChange>>>,
}

impl RosterChanges {
    /// Keeps `approval` of moving `timeline`, which runs under `current`, to `roster`, after
    /// checking it (a current member's valid signature). Returns how many approvals of that
    /// move this node now holds.
    pub fn record(
        &self,
        timeline: Hash,
        current: &Roster,
        roster: Roster,
        approval: KeySignature,
    ) -> Result<usize, String> {
        check_roster_approval(&timeline, current, &roster.hash(), &approval)
            .map_err(|e| format!("roster approval refused: {e}"))?;
        let current_hash = current.hash();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending.contains_key(&timeline) && pending.len() >= MAX_TIMELINES {
            return Err("too many timelines with pending roster changes".into());
        }
        let changes = pending.entry(timeline).or_default();
        // Approvals of moves away from an earlier roster can never be used again.
        changes.retain(|change| change.from == current_hash);
        let target = roster.hash();
        let index = match changes.iter().position(|c| c.roster.hash() == target) {
            Some(index) => index,
            None if changes.len() >= MAX_PROPOSALS_PER_TIMELINE => {
                return Err(format!(
                    "this timeline already has {MAX_PROPOSALS_PER_TIMELINE} proposed rosters waiting for approvals"
                ));
            }
            None => {
                changes.push(PendingChange {
                    from: current_hash,
                    roster,
                    approvals: Vec::new(),
                });
                changes.len() - 1
            }
        };
        let change = &mut changes[index];
        if !change
            .approvals
            .iter()
            .any(|known| known.signer == approval.signer)
        {
            change.approvals.push(approval);
        }
        Ok(change.approvals.len())
    }

    /// A move of `timeline` away from `current` that a threshold of `current` approved: the
    /// roster and exactly the threshold's worth of approvals (the block stays small).
    pub fn ready(&self, timeline: &Hash, current: &Roster) -> Option<(Roster, Vec<KeySignature>)> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let current_hash = current.hash();
        pending
            .get(timeline)?
            .iter()
            .find(|change| {
                change.from == current_hash && change.approvals.len() >= current.threshold()
            })
            .map(|change| {
                (
                    change.roster.clone(),
                    change.approvals[..current.threshold()].to_vec(),
                )
            })
    }

    /// The moves of `timeline` away from `current` waiting for approvals.
    pub fn pending(&self, timeline: &Hash, current: &Roster) -> Vec<PendingRosterChange> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let current_hash = current.hash();
        pending
            .get(timeline)
            .map(|changes| {
                changes
                    .iter()
                    .filter(|change| change.from == current_hash)
                    .map(|change| PendingRosterChange {
                        roster: change.roster.hash(),
                        approvals: change.approvals.len(),
                        threshold: current.threshold(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use chainiac_protocol::cosi::RosterMember;
    use chainiac_protocol::keys::SecretKey;
    use chainiac_protocol::timeline::roster_change_digest;

    use super::*;

    fn roster(keys: &[SecretKey]) -> Roster {
        Roster::with_default_threshold(keys.iter().map(RosterMember::from_secret).collect())
            .expect("roster")
    }

    #[test]
    fn a_change_is_ready_once_a_threshold_of_members_approved_it() {
        let keys: Vec<SecretKey> = (1..=5u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let (current, next) = (roster(&keys[..4]), roster(&keys[1..]));
        let timeline = Hash([7; 32]);
        let digest = roster_change_digest(&timeline, &current.hash(), &next.hash());
        let approve = |i: usize| KeySignature::sign(&keys[i], &digest);
        let changes = RosterChanges::default();
        assert_eq!(
            changes.record(timeline, &current, next.clone(), approve(0)),
            Ok(1)
        );
        // The same member twice counts once; an outsider is refused.
        assert_eq!(
            changes.record(timeline, &current, next.clone(), approve(0)),
            Ok(1)
        );
        assert!(
            changes
                .record(timeline, &current, next.clone(), approve(4))
                .is_err()
        );
        assert_eq!(
            changes.record(timeline, &current, next.clone(), approve(1)),
            Ok(2)
        );
        assert_eq!(changes.ready(&timeline, &current), None);
        assert_eq!(
            changes.record(timeline, &current, next.clone(), approve(2)),
            Ok(3)
        );
        let (roster, approvals) = changes.ready(&timeline, &current).expect("ready");
        assert_eq!(roster.hash(), next.hash());
        assert_eq!(approvals.len(), current.threshold());
        assert_eq!(
            changes.pending(&timeline, &current),
            vec![PendingRosterChange {
                roster: next.hash(),
                approvals: 3,
                threshold: 3,
            }]
        );
        // Once the timeline has moved, nothing is pending from the new roster.
        assert_eq!(changes.ready(&timeline, &next), None);
        assert!(changes.pending(&timeline, &next).is_empty());
    }
}
