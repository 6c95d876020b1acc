//! The fee policy of anchoring transactions: EIP-1559 fees under a configured ceiling, bumped
//! for a replacement by the 12.5 % Ethereum nodes require, and a daily spending cap that
//! counts every transaction at its worst case until it is mined.

/// One gwei in wei.
pub const GWEI: u128 = 1_000_000_000;
/// Replacement bump, in eighths: nodes refuse a replacement under +10 %; +12.5 % is safe.
const BUMP_EIGHTHS: u128 = 9;

/// The operator's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeePolicy {
    /// Highest `max_fee_per_gas` ever offered, wei.
    pub max_fee_per_gas: u128,
    /// Priority fee (tip) offered first, wei.
    pub priority_fee_per_gas: u128,
    /// Most wei spent in any 24 hours (worst case of unmined transactions included).
    pub daily_cap_wei: u128,
}

impl Default for FeePolicy {
    /// 50 gwei at most, 1 gwei tip, 0.05 ETH a day.
    fn default() -> Self {
        Self {
            max_fee_per_gas: 50 * GWEI,
            priority_fee_per_gas: GWEI,
            daily_cap_wei: 50_000_000 * GWEI,
        }
    }
}

/// The fees of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fees {
    /// `max_fee_per_gas`, wei.
    pub max_fee_per_gas: u128,
    /// `max_priority_fee_per_gas`, wei.
    pub priority_fee_per_gas: u128,
}

impl Fees {
    /// The most a transaction with these fees and `gas_limit` can cost, wei.
    pub fn worst_case(&self, gas_limit: u64) -> u128 {
        u128::from(gas_limit).saturating_mul(self.max_fee_per_gas)
    }
}

/// Why no transaction is sent now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeeRefusal {
    /// The base fee alone is above what the operator allows.
    #[error(
        "the base fee is {} gwei, above the configured max fee per gas of {} gwei (anchor.max_fee_gwei); anchoring waits for cheaper blocks",
        gwei(*base_fee),
        gwei(*max_fee_per_gas)
    )]
    BaseFeeAboveCap {
        base_fee: u128,
        max_fee_per_gas: u128,
    },
    /// A replacement would need more than the ceiling.
    #[error(
        "the stuck transaction already offers {} gwei; a replacement needs {} gwei, above the configured {} gwei",
        gwei(*offered),
        gwei(*needed),
        gwei(*max_fee_per_gas)
    )]
    CannotBump {
        offered: u128,
        needed: u128,
        max_fee_per_gas: u128,
    },
    /// The daily budget would be exceeded.
    #[error(
        "anchoring would spend up to {} gwei more, but {} gwei of the daily cap of {} gwei (anchor.daily_cap_gwei) is already spent or reserved in the last 24 hours",
        gwei(*wanted),
        gwei(*spent),
        gwei(*cap)
    )]
    DailyCap {
        wanted: u128,
        spent: u128,
        cap: u128,
    },
}

/// Wei as decimal gwei, for messages.
pub fn gwei(wei: u128) -> String {
    let whole = wei / GWEI;
    let fraction = wei % GWEI;
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{:09}", fraction)
            .trim_end_matches('0')
            .to_owned()
    }
}

fn bumped(value: u128) -> u128 {
    (value * BUMP_EIGHTHS).div_ceil(8).max(value + 1)
}

impl FeePolicy {
    /// Fees for a first transaction at `base_fee`: room for the base fee to double, never
    /// above the ceiling.
    pub fn first(&self, base_fee: u128) -> Result<Fees, FeeRefusal> {
        let tip = self.priority_fee_per_gas.min(self.max_fee_per_gas);
        if base_fee.saturating_add(tip) > self.max_fee_per_gas {
            return Err(FeeRefusal::BaseFeeAboveCap {
                base_fee,
                max_fee_per_gas: self.max_fee_per_gas,
            });
        }
        Ok(Fees {
            max_fee_per_gas: base_fee
                .saturating_mul(2)
                .saturating_add(tip)
                .min(self.max_fee_per_gas),
            priority_fee_per_gas: tip,
        })
    }

    /// Fees replacing a stuck transaction that offered `stuck`: both fees up by 12.5 % at
    /// least, and enough for `base_fee`; refused above the ceiling.
    pub fn replacement(&self, stuck: Fees, base_fee: u128) -> Result<Fees, FeeRefusal> {
        let priority_fee_per_gas = bumped(stuck.priority_fee_per_gas);
        let needed = bumped(stuck.max_fee_per_gas).max(
            base_fee
                .saturating_mul(2)
                .saturating_add(priority_fee_per_gas),
        );
        let max_fee_per_gas = needed.min(self.max_fee_per_gas);
        if max_fee_per_gas < bumped(stuck.max_fee_per_gas)
            || max_fee_per_gas < base_fee.saturating_add(priority_fee_per_gas)
        {
            return Err(FeeRefusal::CannotBump {
                offered: stuck.max_fee_per_gas,
                needed: bumped(stuck.max_fee_per_gas).max(base_fee + priority_fee_per_gas),
                max_fee_per_gas: self.max_fee_per_gas,
            });
        }
        Ok(Fees {
            max_fee_per_gas,
            priority_fee_per_gas: priority_fee_per_gas.min(max_fee_per_gas),
        })
    }

    /// Whether `wanted` more wei fits the daily cap when `spent` is already counted.
    pub fn within_cap(&self, spent: u128, wanted: u128) -> Result<(), FeeRefusal> {
        if spent.saturating_add(wanted) > self.daily_cap_wei {
            return Err(FeeRefusal::DailyCap {
                wanted,
                spent,
                cap: self.daily_cap_wei,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> FeePolicy {
        FeePolicy {
            max_fee_per_gas: 100 * GWEI,
            priority_fee_per_gas: 2 * GWEI,
            daily_cap_wei: 1_000_000 * GWEI,
        }
    }

    #[test]
    fn first_fees_leave_room_and_respect_the_ceiling() {
        assert_eq!(
            policy().first(10 * GWEI),
            Ok(Fees {
                max_fee_per_gas: 22 * GWEI,
                priority_fee_per_gas: 2 * GWEI
            })
        );
        assert_eq!(
            policy().first(60 * GWEI).map(|f| f.max_fee_per_gas),
            Ok(100 * GWEI)
        );
        let refused = policy().first(99 * GWEI);
        assert!(matches!(refused, Err(FeeRefusal::BaseFeeAboveCap { .. })));
        let text = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("99 gwei") && text.contains("100 gwei"),
            "{text}"
        );
    }

    #[test]
    fn replacements_bump_by_an_eighth_until_the_ceiling() {
        let stuck = Fees {
            max_fee_per_gas: 40 * GWEI,
            priority_fee_per_gas: 2 * GWEI,
        };
        let next = policy().replacement(stuck, 10 * GWEI);
        assert_eq!(
            next,
            Ok(Fees {
                max_fee_per_gas: 45 * GWEI,
                priority_fee_per_gas: 2_250_000_000
            })
        );
        let high = Fees {
            max_fee_per_gas: 95 * GWEI,
            priority_fee_per_gas: 2 * GWEI,
        };
        assert!(matches!(
            policy().replacement(high, 10 * GWEI),
            Err(FeeRefusal::CannotBump { .. })
        ));
    }

    #[test]
    fn the_daily_cap_counts_what_is_spent_and_reserved() {
        assert!(policy().within_cap(0, 1_000_000 * GWEI).is_ok());
        assert!(matches!(
            policy().within_cap(1, 1_000_000 * GWEI),
            Err(FeeRefusal::DailyCap { .. })
        ));
        assert_eq!(gwei(1_500_000_000), "1.5");
        assert_eq!(gwei(3 * GWEI), "3");
    }

    proptest! {
        #[test]
        fn offered_fees_never_exceed_the_ceiling(
            base in 0u128..200_000_000_000,
            max in 1u128..200_000_000_000,
            tip in 0u128..10_000_000_000,
            stuck_max in 0u128..200_000_000_000,
        ) {
            let policy = FeePolicy { max_fee_per_gas: max, priority_fee_per_gas: tip, daily_cap_wei: 0 };
            if let Ok(fees) = policy.first(base) {
                prop_assert!(fees.max_fee_per_gas <= max);
                prop_assert!(fees.max_fee_per_gas >= base + fees.priority_fee_per_gas);
                prop_assert!(fees.priority_fee_per_gas <= fees.max_fee_per_gas);
            }
            let stuck = Fees { max_fee_per_gas: stuck_max, priority_fee_per_gas: tip.min(stuck_max) };
            if let Ok(fees) = policy.replacement(stuck, base) {
                prop_assert!(fees.max_fee_per_gas <= max);
                prop_assert!(fees.max_fee_per_gas * 8 >= stuck.max_fee_per_gas * 9);
                prop_assert!(fees.max_fee_per_gas >= base + fees.priority_fee_per_gas);
            }
        }
    }
}
