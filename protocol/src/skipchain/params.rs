//! Chain parameters fixed in the genesis block: the skip base and the maximum height.

use crate::{Error, Result};

/// Largest base accepted.
pub const MAX_BASE: u32 = 256;
/// Largest maximum height accepted.
pub const MAX_HEIGHT: u32 = 32;

/// The shape of a skipchain: block `i` has links at levels `0 .. height(i)`, the link at level
/// `k` spanning `base^k` blocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChainParams {
    base: u32,
    max_height: u32,
}

impl ChainParams {
    /// Parameters with `2 <= base <= MAX_BASE` and `1 <= max_height <= MAX_HEIGHT`.
    pub fn new(base: u32, max_height: u32) -> Result<Self> {
        if !(2..=MAX_BASE).contains(&base) {
            return Err(Error::InvalidChainParams {
                reason: "base must be between 2 and 256",
            });
        }
        if !(1..=MAX_HEIGHT).contains(&max_height) {
            return Err(Error::InvalidChainParams {
                reason: "max height must be between 1 and 32",
            });
        }
        Ok(Self { base, max_height })
    }

    /// The skip base.
    pub fn base(&self) -> u32 {
        self.base
    }

    /// The maximum height.
    pub fn max_height(&self) -> u32 {
        self.max_height
    }

    /// Blocks spanned by a link at `level`: `base^level`, or `None` if it exceeds `u64`.
    pub fn span(&self, level: u32) -> Option<u64> {
        u64::from(self.base).checked_pow(level)
    }

    /// The height of block `index`: `max_height` for the genesis, otherwise one more than the
    /// largest `k` with `base^k` dividing `index`, capped at `max_height`.
    pub fn height_of(&self, index: u64) -> u32 {
        if index == 0 {
            return self.max_height;
        }
        let mut height = 1;
        let mut rest = index;
        let base = u64::from(self.base);
        while height < self.max_height && rest.is_multiple_of(base) {
            rest /= base;
            height += 1;
        }
        height
    }

    /// The links a skip proof follows from `from` to `to` (`from <= to`), as (source index,
    /// level) pairs: at each block, the highest link that does not overshoot. `has_link` says
    /// whether a link exists (a chain may lack a higher link whose old roster could not sign).
    pub fn route(
        &self,
        from: u64,
        to: u64,
        has_link: impl Fn(u64, u32) -> bool,
    ) -> Result<Vec<(u64, u32)>> {
        if from > to {
            return Err(Error::InvalidProofRequest { from, to });
        }
        let mut route = Vec::new();
        let mut at = from;
        while at < to {
            let level = (0..self.height_of(at)).rev().find(|&level| {
                self.span(level)
                    .and_then(|span| at.checked_add(span))
                    .is_some_and(|target| target <= to && has_link(at, level))
            });
            let Some(level) = level else {
                return Err(Error::MissingForwardLink { from: at, level: 0 });
            };
            route.push((at, level));
            at += self.span(level).unwrap_or(1);
        }
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(base: u32, max_height: u32) -> ChainParams {
        let Ok(p) = ChainParams::new(base, max_height) else {
            panic!("valid params")
        };
        p
    }

    #[test]
    fn heights_follow_divisibility() {
        let p = params(2, 32);
        let heights: Vec<u32> = (0..9).map(|i| p.height_of(i)).collect();
        assert_eq!(heights, vec![32, 1, 2, 1, 3, 1, 2, 1, 4]);
        let p = params(4, 3);
        assert_eq!(p.height_of(16), 3);
        assert_eq!(p.height_of(64), 3);
        assert_eq!(p.height_of(8), 2);
        assert_eq!(p.height_of(5), 1);
    }

    #[test]
    fn invalid_params_are_rejected() {
        assert!(ChainParams::new(1, 4).is_err());
        assert!(ChainParams::new(257, 4).is_err());
        assert!(ChainParams::new(2, 0).is_err());
        assert!(ChainParams::new(2, 33).is_err());
    }

    /// `ceil(log_base(n))` for n >= 1.
    fn log_ceil(base: u64, n: u64) -> u64 {
        let mut levels = 0;
        let mut reach = 1u64;
        while reach < n {
            reach = reach.saturating_mul(base);
            levels += 1;
        }
        levels
    }

    /// The bound checked for every route: climbing to the highest useful level and coming
    /// down again takes at most `base - 1` links per level each way.
    fn bound(base: u64, distance: u64) -> u64 {
        2 * (base - 1) * (log_ceil(base, distance + 1) + 1)
    }

    #[test]
    fn routes_are_logarithmic_up_to_1e5_blocks() {
        for base in [2u32, 4] {
            let p = params(base, 32);
            let b = u64::from(base);
            let mut worst = 0;
            for n in [
                1u64, 2, 3, 10, 99, 1000, 4095, 4096, 65_537, 99_999, 100_000,
            ] {
                // from genesis: only descending, at most (base-1) links per level
                let Ok(route) = p.route(0, n, |_, _| true) else {
                    panic!()
                };
                assert!(
                    route.len() as u64 <= (b - 1) * log_ceil(b, n + 1),
                    "base {base} n {n}"
                );
                // from arbitrary trusted blocks
                for from in [1u64, 7, 1023, 12_345, n / 2] {
                    if from > n {
                        continue;
                    }
                    let Ok(route) = p.route(from, n, |_, _| true) else {
                        panic!()
                    };
                    assert!(
                        route.len() as u64 <= bound(b, n - from),
                        "base {base} {from}->{n}: {}",
                        route.len()
                    );
                    worst = worst.max(route.len());
                }
            }
            // log2(1e5) is about 17, so nothing near a linear walk.
            assert!(worst <= 2 * 3 * 10, "base {base}: worst {worst}");
        }
    }

    #[test]
    fn route_from_genesis_to_1e5_has_expected_length() {
        // 100_000 = 0b11000011010100000: one link per set bit, highest first.
        let p = params(2, 32);
        let Ok(route) = p.route(0, 100_000, |_, _| true) else {
            panic!()
        };
        assert_eq!(route.len(), 100_000u64.count_ones() as usize);
        assert_eq!(route[0], (0, 16));
    }

    #[test]
    fn route_uses_lower_links_when_higher_ones_are_missing() {
        let p = params(2, 32);
        let Ok(route) = p.route(0, 8, |_, level| level < 2) else {
            panic!()
        };
        assert_eq!(route, vec![(0, 1), (2, 1), (4, 1), (6, 1)]);
        assert!(p.route(0, 3, |_, _| false).is_err());
        assert!(p.route(5, 3, |_, _| true).is_err());
        assert_eq!(p.route(3, 3, |_, _| true).ok(), Some(vec![]));
    }

    proptest! {
        #[test]
        fn routes_land_exactly_and_respect_heights(
            base in 2u32..6, from in 0u64..5000, distance in 0u64..5000,
        ) {
            let p = params(base, 32);
            let to = from + distance;
            let route = p.route(from, to, |_, _| true)?;
            let mut at = from;
            for &(source, level) in &route {
                prop_assert_eq!(source, at);
                prop_assert!(level < p.height_of(source));
                at += p.span(level).unwrap_or(0);
            }
            prop_assert_eq!(at, to);
            prop_assert!(route.len() as u64 <= bound(u64::from(base), distance));
        }
    }
}
