//! Choosing a target for a request, in proportion to the targets' weights,
//! without a lock.
//!
//! Each route precomputes a wheel when the table is built: a sequence of
//! target indices in which every target appears in proportion to its weight,
//! spread out evenly (stride scheduling: each slot goes to the target whose
//! next turn comes first). Round robin walks the wheel with one atomic
//! counter; random picks a uniform slot, which is weighted random. Both are
//! O(1) per request, and nothing is written but the counter.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

/// How one target is picked among a route's targets (the CLI's
/// `--strategy` converts to this; the routing core does not know the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Round robin, in proportion to weights.
    Rr,
    /// Random, in proportion to weights.
    Rnd,
}

/// Slots one unit of weight gets at least: weights are kept to 1/1000.
const RESOLUTION: f64 = 1000.0;

/// A route's target schedule; immutable but for the round-robin counter.
#[derive(Debug, Default)]
pub struct Picker {
    wheel: Box<[u32]>,
    /// `wheel[0]`, kept inline: with one slot (most routes) a pick reads no
    /// heap memory and writes no counter.
    first: u32,
    next: AtomicUsize,
}

impl Picker {
    /// Builds the wheel for weights that sum to 1 (or are all 0). Targets
    /// with weight 0 are never picked.
    pub fn new(weights: &[f64]) -> Picker {
        // The common case: every target alike, one slot each.
        if weights.first().is_some_and(|&w| w > 0.0 && weights.iter().all(|&x| x == w)) {
            let wheel: Box<[u32]> = (0..weights.len() as u32).collect();
            return Picker::from_wheel(wheel);
        }
        // Finer resolution for many targets so small shares do not vanish.
        let scale = RESOLUTION.max(weights.len() as f64 * 10.0);
        let slots: Vec<u64> =
            weights.iter().map(|&w| if w > 0.0 { ((w * scale).round() as u64).max(1) } else { 0 }).collect();
        let g = slots.iter().copied().filter(|&s| s > 0).fold(0, gcd);
        if g == 0 {
            return Picker::default();
        }
        let slots: Vec<u64> = slots.iter().map(|s| s / g).collect();
        Picker::from_wheel(stride_schedule(&slots).into_boxed_slice())
    }

    fn from_wheel(wheel: Box<[u32]>) -> Picker {
        Picker { first: wheel.first().copied().unwrap_or(0), wheel, next: AtomicUsize::new(0) }
    }

    /// Length of the wheel; 0 when no target can be picked.
    pub fn len(&self) -> usize {
        self.wheel.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wheel.is_empty()
    }

    /// Picks a target index, skipping those in `exclude`; None when every
    /// target with a weight is excluded.
    pub fn pick(&self, strategy: Strategy, exclude: &[usize]) -> Option<usize> {
        let n = self.wheel.len();
        if n == 0 {
            return None;
        }
        if n == 1 {
            let t = self.first as usize;
            return (!exclude.contains(&t)).then_some(t);
        }
        let start = match strategy {
            Strategy::Rr => self.next.fetch_add(1, AtomicOrdering::Relaxed) % n,
            Strategy::Rnd => rand::random_range(0..n),
        };
        // Excluded targets are rare (a retry); walking on from a start slot
        // keeps the remaining targets in proportion.
        (0..n).map(|i| self.wheel[(start + i) % n] as usize).find(|t| !exclude.contains(t))
    }

    /// The wheel itself, for tests and the bench.
    #[cfg(test)]
    pub(crate) fn wheel(&self) -> &[u32] {
        &self.wheel
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A target's next turn: at `pass`, advancing by 1/slots per turn. Compared
/// as exact fractions `num / slots` so the schedule does not depend on float
/// rounding; ties go to the lower index.
#[derive(PartialEq, Eq)]
struct Turn {
    num: u64,
    slots: u64,
    index: u32,
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the earliest turn must compare greatest.
        let a = u128::from(self.num) * u128::from(other.slots);
        let b = u128::from(other.num) * u128::from(self.slots);
        b.cmp(&a).then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Spreads `slots[i]` occurrences of each index `i` evenly over one cycle.
fn stride_schedule(slots: &[u64]) -> Vec<u32> {
    let total: u64 = slots.iter().sum();
    let mut heap: BinaryHeap<Turn> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > 0)
        .map(|(i, &s)| Turn { num: 1, slots: s, index: i as u32 })
        .collect();
    // Every target's turn k is at k/slots; advancing the numerator by 2 puts
    // turns at odd multiples of 1/(2 slots), i.e. in the middle of each
    // target's share, which interleaves unequal targets smoothly.
    let mut wheel = Vec::with_capacity(total as usize);
    while let Some(mut t) = heap.pop() {
        wheel.push(t.index);
        if t.num.div_ceil(2) < t.slots {
            t.num += 2;
            heap.push(t);
        }
    }
    wheel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(p: &Picker, targets: usize, strategy: Strategy, picks: usize, exclude: &[usize]) -> Vec<usize> {
        let mut c = vec![0; targets];
        for _ in 0..picks {
            c[p.pick(strategy, exclude).expect("a target")] += 1;
        }
        c
    }

    #[test]
    fn equal_weights_make_a_short_fair_wheel() {
        let p = Picker::new(&[1.0 / 3.0; 3]);
        assert_eq!(p.wheel(), &[0, 1, 2]);
        assert_eq!(counts(&p, 3, Strategy::Rr, 300, &[]), vec![100, 100, 100]);
    }

    #[test]
    fn rr_follows_weights_exactly_per_cycle() {
        let p = Picker::new(&[0.1, 0.3, 0.6]);
        assert_eq!(p.len(), 10);
        assert_eq!(counts(&p, 3, Strategy::Rr, 1000, &[]), vec![100, 300, 600]);
    }

    #[test]
    fn rr_interleaves_rather_than_bursts() {
        // Not 0,0,0,0,1: the light target sits between the heavy one's turns.
        assert_eq!(Picker::new(&[0.8, 0.2]).wheel(), &[0, 0, 1, 0, 0]);
        assert_eq!(Picker::new(&[0.5, 0.25, 0.25]).wheel(), &[0, 1, 2, 0]);
    }

    #[test]
    fn zero_weight_targets_are_never_picked() {
        let p = Picker::new(&[0.0, 1.0, 0.0]);
        assert_eq!(p.wheel(), &[1]);
        assert_eq!(p.pick(Strategy::Rr, &[1]), None);
        assert_eq!(p.pick(Strategy::Rnd, &[1]), None);
    }

    #[test]
    fn all_zero_or_no_targets_pick_nothing() {
        assert!(Picker::new(&[]).is_empty());
        assert!(Picker::new(&[0.0, 0.0]).is_empty());
        assert_eq!(Picker::new(&[0.0]).pick(Strategy::Rr, &[]), None);
        assert_eq!(Picker::new(&[]).pick(Strategy::Rnd, &[]), None);
    }

    #[test]
    fn exclude_skips_failed_targets() {
        let p = Picker::new(&[0.25; 4]);
        for strategy in [Strategy::Rr, Strategy::Rnd] {
            let c = counts(&p, 4, strategy, 400, &[1, 2]);
            assert_eq!(c[1] + c[2], 0);
            assert_eq!(c[0] + c[3], 400);
            assert_eq!(p.pick(strategy, &[0, 1, 2, 3]), None);
        }
    }

    #[test]
    fn rnd_is_weighted() {
        let p = Picker::new(&[0.1, 0.9]);
        let c = counts(&p, 2, Strategy::Rnd, 20_000, &[]);
        // Expected 2,000 for target 0; 10 standard deviations is ±424.
        assert!((1_576..=2_424).contains(&c[0]), "{c:?}");
        let p = Picker::new(&[0.5, 0.5]);
        let c = counts(&p, 2, Strategy::Rnd, 20_000, &[]);
        assert!(c[0] > 9_000 && c[1] > 9_000, "{c:?}");
    }

    #[test]
    fn tiny_shares_keep_a_slot() {
        let mut w = vec![0.0001];
        w.extend([0.9999 / 3.0; 3]);
        let p = Picker::new(&w);
        assert!(p.wheel().contains(&0));
        assert!(p.len() <= 1000 + 4);
    }

    #[test]
    fn many_equal_targets_each_get_one_slot() {
        let n = 10_000;
        let p = Picker::new(&vec![1.0 / n as f64; n]);
        assert_eq!(p.len(), n);
        let mut seen = p.wheel().to_vec();
        seen.sort_unstable();
        assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
    }

    #[test]
    fn stride_schedule_counts() {
        let w = stride_schedule(&[3, 1, 0, 2]);
        assert_eq!(w.len(), 6);
        for (i, want) in [3, 1, 0, 2].into_iter().enumerate() {
            assert_eq!(w.iter().filter(|&&x| x == i as u32).count(), want);
        }
    }
}
