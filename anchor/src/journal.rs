//! What the anchoring account has sent, kept on disk so that a restarted node neither sends a
//! second transaction for a timeline block whose first is still pending (it replaces it, same
//! nonce) nor forgets what it spent today. Written atomically (temporary file, then rename).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fees::Fees;

/// Seconds in the window of the daily cap.
const DAY: u64 = 24 * 60 * 60;
/// Largest journal file read (it holds a day of spending and a few pending transactions).
const MAX_JOURNAL: u64 = 8 << 20;

/// A transaction sent for a timeline block and not yet known to be mined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// Timeline chain id, hex.
    pub timeline: String,
    /// Timeline block index.
    pub index: u64,
    /// The nonce every version of the transaction uses.
    pub nonce: u64,
    /// Gas limit of every version.
    pub gas_limit: u64,
    /// Every version sent, oldest first: hash (`0x` hex) and fees.
    pub sent: Vec<(String, Fees)>,
    /// When the newest version was sent, unix seconds.
    pub last_sent_at: u64,
}

/// Wei spent (or reserved: the worst case of a pending transaction) at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spending {
    /// Unix seconds.
    pub at: u64,
    /// Nonce of the transaction.
    pub nonce: u64,
    /// Wei, decimal.
    pub wei: String,
}

/// The journal's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalState {
    /// Pending transactions.
    pub pending: Vec<Pending>,
    /// Spending in the last 24 hours.
    pub spending: Vec<Spending>,
}

/// Journal failures.
#[derive(Debug, thiserror::Error)]
#[error("anchoring journal {path}: {reason}")]
pub struct JournalError {
    path: PathBuf,
    reason: String,
}

/// The journal: in memory only when no path is given (tests, one-shot commands).
#[derive(Debug)]
pub(crate) struct Journal {
    path: Option<PathBuf>,
    state: JournalState,
}

impl Journal {
    /// Opens (or starts) the journal at `path`.
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, JournalError> {
        let Some(path) = path else {
            return Ok(Self {
                path: None,
                state: JournalState::default(),
            });
        };
        let failed = |reason: String| JournalError {
            path: path.to_owned(),
            reason,
        };
        let state = match std::fs::metadata(path) {
            Ok(meta) if meta.len() > MAX_JOURNAL => {
                return Err(failed(format!("larger than {MAX_JOURNAL} bytes")));
            }
            Ok(_) => {
                let text = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
                serde_json::from_slice(&text).map_err(|e| {
                    failed(format!("unreadable ({e}); move it away to start a new one"))
                })?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => JournalState::default(),
            Err(error) => return Err(failed(error.to_string())),
        };
        Ok(Self {
            path: Some(path.to_owned()),
            state,
        })
    }

    fn save(&self) -> Result<(), JournalError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let failed = |reason: String| JournalError {
            path: path.clone(),
            reason,
        };
        let text = serde_json::to_vec_pretty(&self.state).map_err(|e| failed(e.to_string()))?;
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary).map_err(|e| failed(e.to_string()))?;
        std::io::Write::write_all(&mut file, &text).map_err(|e| failed(e.to_string()))?;
        file.sync_all().map_err(|e| failed(e.to_string()))?;
        std::fs::rename(&temporary, path).map_err(|e| failed(e.to_string()))
    }

    /// The pending transaction of timeline block `index`.
    pub(crate) fn pending(&self, timeline: &str, index: u64) -> Option<&Pending> {
        self.state
            .pending
            .iter()
            .find(|p| p.timeline == timeline && p.index == index)
    }

    /// The pending transactions, lowest nonce first (the order they can be mined in).
    pub(crate) fn pending_by_nonce(&self) -> Vec<Pending> {
        let mut pending = self.state.pending.clone();
        pending.sort_by_key(|p| p.nonce);
        pending
    }

    /// Whether a pending transaction uses `nonce`.
    pub(crate) fn holds_nonce(&self, nonce: u64) -> bool {
        self.state.pending.iter().any(|p| p.nonce == nonce)
    }

    /// Records a version of the transaction of a timeline block (the first or a replacement)
    /// and reserves its worst case against the daily cap, before it is sent. A nonce keeps the
    /// larger reservation: an earlier transaction at the same nonce may still be the one mined.
    pub(crate) fn record_sent(
        &mut self,
        pending: Pending,
        worst_case_wei: u128,
    ) -> Result<(), JournalError> {
        let nonce = pending.nonce;
        let at = pending.last_sent_at;
        self.state
            .pending
            .retain(|p| !(p.timeline == pending.timeline && p.index == pending.index));
        self.state.pending.push(pending);
        let reserved = self.reserved(nonce, at);
        self.set_spending(nonce, at, worst_case_wei.max(reserved));
        self.save()
    }

    /// Forgets the pending transaction of a timeline block whose nonce is spent without a
    /// proof (failed, or taken by another transaction); its reservation stays counted.
    pub(crate) fn abandon(&mut self, timeline: &str, index: u64) -> Result<(), JournalError> {
        self.state
            .pending
            .retain(|p| !(p.timeline == timeline && p.index == index));
        self.save()
    }

    /// The transaction of a timeline block is mined and cost `cost_wei`. Every pending
    /// transaction with a lower nonce is forgotten too: its nonce is used (mined, or taken by
    /// another transaction), and a block given up after failed attempts is covered by this
    /// later anchor; its reservation stays counted at the worst case.
    pub(crate) fn settle(
        &mut self,
        timeline: &str,
        index: u64,
        cost_wei: u128,
        now: u64,
    ) -> Result<(), JournalError> {
        if let Some(pending) = self.pending(timeline, index).cloned() {
            self.state.pending.retain(|p| {
                p.nonce > pending.nonce && !(p.timeline == timeline && p.index == index)
            });
            self.set_spending(pending.nonce, now, cost_wei);
        }
        self.save()
    }

    fn set_spending(&mut self, nonce: u64, at: u64, wei: u128) {
        self.state.spending.retain(|s| s.nonce != nonce);
        if wei > 0 {
            self.state.spending.push(Spending {
                at,
                nonce,
                wei: wei.to_string(),
            });
        }
    }

    /// Wei reserved or spent by the transaction with `nonce`, if within the last 24 hours.
    pub(crate) fn reserved(&self, nonce: u64, now: u64) -> u128 {
        self.state
            .spending
            .iter()
            .filter(|s| s.nonce == nonce && s.at + DAY > now)
            .filter_map(|s| s.wei.parse::<u128>().ok())
            .sum()
    }

    /// Wei spent or reserved in the 24 hours before `now`; older entries are forgotten.
    pub(crate) fn spent_today(&mut self, now: u64) -> u128 {
        self.state.spending.retain(|s| s.at + DAY > now);
        self.state
            .spending
            .iter()
            .filter_map(|s| s.wei.parse::<u128>().ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(nonce: u64, at: u64) -> Pending {
        Pending {
            timeline: "aa".into(),
            index: 4,
            nonce,
            gas_limit: 30_000,
            sent: vec![(
                "0x01".into(),
                Fees {
                    max_fee_per_gas: 10,
                    priority_fee_per_gas: 1,
                },
            )],
            last_sent_at: at,
        }
    }

    #[test]
    fn pending_transactions_and_spending_survive_a_restart()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("anchor-journal.json");
        let mut journal = Journal::open(Some(&path))?;
        journal.record_sent(pending(7, 1_000), 300_000)?;
        assert_eq!(journal.spent_today(1_000), 300_000);
        let mut reopened = Journal::open(Some(&path))?;
        assert_eq!(reopened.pending("aa", 4).map(|p| p.nonce), Some(7));
        // A replacement reserves its own worst case in place of the first, never less.
        reopened.record_sent(pending(7, 1_010), 400_000)?;
        assert_eq!(reopened.spent_today(1_010), 400_000);
        reopened.record_sent(pending(7, 1_015), 350_000)?;
        assert_eq!(reopened.spent_today(1_015), 400_000);
        assert!(reopened.holds_nonce(7) && !reopened.holds_nonce(8));
        reopened.settle("aa", 4, 250_000, 1_020)?;
        assert!(reopened.pending("aa", 4).is_none());
        assert_eq!(reopened.spent_today(1_020), 250_000);
        // A day later it no longer counts.
        assert_eq!(reopened.spent_today(1_020 + DAY), 0);
        // A block given up on (nonce 8) is forgotten once a later one (nonce 9) is mined; the
        // given-up one keeps its worst case counted, and a later nonce stays pending.
        let given_up = Pending {
            index: 5,
            ..pending(8, 1_030)
        };
        let mined = Pending {
            index: 6,
            ..pending(9, 1_040)
        };
        let later = Pending {
            timeline: "bb".into(),
            ..pending(10, 1_050)
        };
        reopened.record_sent(given_up, 100_000)?;
        reopened.record_sent(mined, 200_000)?;
        reopened.record_sent(later, 300_000)?;
        let by_nonce: Vec<u64> = reopened
            .pending_by_nonce()
            .iter()
            .map(|p| p.nonce)
            .collect();
        assert_eq!(by_nonce, [8, 9, 10]);
        reopened.settle("aa", 6, 150_000, 1_060)?;
        let reopened = Journal::open(Some(&path))?;
        assert!(reopened.pending("aa", 5).is_none());
        assert!(reopened.pending("aa", 6).is_none());
        assert_eq!(reopened.pending("bb", 4).map(|p| p.nonce), Some(10));
        assert_eq!(reopened.reserved(8, 1_060), 100_000);
        assert_eq!(reopened.reserved(9, 1_060), 150_000);
        std::fs::write(&path, "{not json")?;
        assert!(Journal::open(Some(&path)).is_err());
        Ok(())
    }
}
