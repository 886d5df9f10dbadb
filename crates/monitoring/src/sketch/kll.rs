//! A KLL quantile sketch (Karnin, Lang and Liberty, "Optimal quantile approximation in
//! streams", 2016), in the lazy form of Apache DataSketches' `KllSketch`: a stack of
//! compactors, level `h` holding values of weight `2^h`; a level's capacity shrinks by
//! 2/3 per level below the top (`K` at the top, never under 8); when the sketch holds more
//! than the sum of the capacities, the lowest full level is sorted and every other value
//! (offset by a coin) moves up a level with twice the weight.
//!
//! - Protected tails: each of the lowest 32 levels keeps its 16 smallest and 16 largest
//!   values out of its compactions (a two-sided form of the relative-error sketches'
//!   idea). Level 0 so holds the 16 most extreme values of each side exactly, level 1 the
//!   next ones with weight 2, and so on: the error of a rank near either end is a small
//!   share of its distance to that end, not `N/K`. Evidently's Sturges bins put many bins
//!   in the sparse tails, where an absolute error of `N/K` empties or fills a bin and
//!   moves `psi`, `jensenshannon` and `hellinger` by more than 0.01 (measured: 0.014 for
//!   `psi` on a lognormal window of 50,000 rows without them, 0.0004 with them).
//! - Exact while small: up to `RAW_LIMIT` (4,096) values stay in level 0 uncompacted,
//!   weight 1.
//! - Bounded: at rest it holds at most `max(RAW_LIMIT, TOTAL[64])` = 6,812 values (64
//!   levels is the most a `u64` count allows), whatever the number of rows.
//! - Reproducible: the coin of a compaction is a hash of the number of compactions so far
//!   (SplitMix64), which the encoding keeps; a merge adds those numbers, so merging A into
//!   B or B into A gives the same sketch.
//!
//! `K = 1800` keeps a column's heap under 64 KB at its fullest (every level at its
//! capacity, level 0's buffer with its slack: measured by `make bench`, about 57 KB per
//! sketched column over a million rows; 2,050, the largest whose encoding fits in 64,000
//! bytes, peaked at 65 KB); the KS statistic from it is within 0.002 of the exact one on
//! the test windows (`super::tests::accuracy`).

use crate::stats::rng::Rng;

/// The capacity of the top level (above the protected tails).
pub(super) const K: usize = 1800;
/// The smallest capacity of a level.
const MIN_WIDTH: usize = 8;
/// How many of its smallest and of its largest values each of the lowest
/// `PROTECTED_LEVELS` levels keeps out of its compactions.
const TAIL: usize = 16;
/// The levels whose tails are protected: enough for any window below ~10^12 rows.
const PROTECTED_LEVELS: usize = 32;
/// The most levels a sketch can have: an item of level `h` weighs `2^h` and the count is
/// a `u64`.
pub(super) const MAX_LEVELS: usize = 64;
/// How many values stay raw (level 0, uncompacted, so the sketch is exact) before the
/// first compaction: what 32 KB hold. The raw buffer is the largest allocation a column
/// ever makes, and it is made while the buffers of the exact phase lie freed on the heap
/// (every column of a window grows in step, so no other column can reuse them yet): with
/// 7,000 values a window's RSS peaked at about 100 KB per column; with 4,096, under 64 KB.
pub(super) const RAW_LIMIT: usize = 4096;
/// Where a raw buffer that grows (a decoded sketch's) stops doubling and takes its full
/// size (8 KB of values).
const RAW_GROWTH: usize = 1024;
/// Seeds the compaction coin.
const COIN_SEED: u64 = 0x6b6c_6c5f_636f_696e;

/// `CAPACITY[d]`: the compacted capacity of the level `d` below the top,
/// `max(8, ceil(K (2/3)^d))`, in integers so that every platform agrees.
const CAPACITY: [usize; MAX_LEVELS] = {
    let mut out = [0usize; MAX_LEVELS];
    let mut d = 0;
    while d < MAX_LEVELS {
        let num = K as u128 * (1u128 << d);
        let den = 3u128.pow(d as u32);
        let c = num.div_ceil(den) as usize;
        out[d] = if c < MIN_WIDTH { MIN_WIDTH } else { c };
        d += 1;
    }
    out
};

/// The values of level `h` kept out of its compactions at each end.
const fn tail(h: usize) -> usize {
    if h < PROTECTED_LEVELS {
        TAIL
    } else {
        0
    }
}

/// The capacity of level `h` of a sketch of `height` levels.
fn capacity(h: usize, height: usize) -> usize {
    CAPACITY[height - 1 - h] + 2 * tail(h)
}

/// `TOTAL[h]`: the capacity of a sketch of `h` levels.
const TOTAL: [usize; MAX_LEVELS + 1] = {
    let mut out = [0usize; MAX_LEVELS + 1];
    let mut h = 1;
    while h <= MAX_LEVELS {
        out[h] = out[h - 1] + CAPACITY[h - 1] + 2 * tail(h - 1);
        h += 1;
    }
    out
};

/// The most values a sketch holds at rest.
pub(super) const MAX_RETAINED: usize = if RAW_LIMIT > TOTAL[MAX_LEVELS] {
    RAW_LIMIT
} else {
    TOTAL[MAX_LEVELS]
};

/// The compactors.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Kll {
    /// `levels[h]`: values of weight `2^h`; level 0 in arrival order, the others sorted.
    levels: Vec<Vec<f64>>,
    /// The number of values held, all levels.
    retained: usize,
    /// The number of compactions so far: the coin's state.
    compactions: u64,
}

impl Default for Kll {
    fn default() -> Self {
        Kll {
            levels: vec![Vec::new()],
            retained: 0,
            compactions: 0,
        }
    }
}

impl Kll {
    /// An empty sketch whose raw buffer is allocated at its full size at once: for a
    /// column already past its exact phase, which will likely fill it.
    pub(super) fn with_raw_capacity() -> Self {
        Kll {
            levels: vec![Vec::with_capacity(RAW_LIMIT + 1)],
            ..Kll::default()
        }
    }

    /// Whether it holds every value with weight 1: nothing has been compacted.
    pub(super) fn is_raw(&self) -> bool {
        self.levels.len() == 1
    }

    pub(super) fn compactions(&self) -> u64 {
        self.compactions
    }

    pub(super) fn levels(&self) -> &[Vec<f64>] {
        &self.levels
    }

    pub(super) fn push(&mut self, x: f64) {
        let level = &mut self.levels[0];
        if level.len() == level.capacity() && self.retained < RAW_LIMIT {
            // Double up to RAW_GROWTH values, then take RAW_LIMIT + 1 at once: every
            // column of a window grows in step, so the buffers each doubling frees are
            // too small for the next request of any column and stay on the heap as holes.
            let want = if level.len() < RAW_GROWTH {
                (2 * level.len()).max(16)
            } else {
                RAW_LIMIT + 1
            };
            level.reserve_exact(want - level.len());
        }
        level.push(x);
        self.retained += 1;
        self.settle();
    }

    /// `count` copies of `x`: as raw values while they fit, else one value at each level
    /// `h` where bit `h` of `count` is set (the weights sum to `count` exactly).
    pub(super) fn push_weighted(&mut self, x: f64, count: u64) {
        if self.is_raw() && self.retained as u64 + count <= RAW_LIMIT as u64 {
            self.levels[0].extend(std::iter::repeat_n(x, count as usize));
            self.retained += count as usize;
            return;
        }
        for h in 0..MAX_LEVELS {
            if count >> h & 1 == 1 {
                while self.levels.len() <= h {
                    self.levels.push(Vec::new());
                }
                let level = &mut self.levels[h];
                let at = if h == 0 {
                    level.len()
                } else {
                    level.partition_point(|v| *v <= x)
                };
                level.insert(at, x);
                self.retained += 1;
            }
        }
        self.settle();
    }

    /// Adds the values of `other`.
    pub(super) fn merge(&mut self, other: &Kll) {
        while self.levels.len() < other.levels.len() {
            self.levels.push(Vec::new());
        }
        self.levels[0].extend_from_slice(&other.levels[0]);
        for (h, theirs) in other.levels.iter().enumerate().skip(1) {
            if !theirs.is_empty() {
                self.levels[h] = merge_sorted(&self.levels[h], theirs);
            }
        }
        self.retained += other.retained;
        self.compactions = self.compactions.wrapping_add(other.compactions);
        self.settle();
    }

    /// Compacts until the sketch holds no more than its capacity (or, raw, `RAW_LIMIT`).
    fn settle(&mut self) {
        let limit = if self.is_raw() {
            RAW_LIMIT
        } else {
            TOTAL[self.levels.len()]
        };
        if self.retained <= limit {
            return;
        }
        while self.retained > TOTAL[self.levels.len()] {
            let top = self.levels.len();
            // some level is over its capacity, since the total is
            let Some(h) = (0..top).find(|&h| self.levels[h].len() >= capacity(h, top)) else {
                break;
            };
            if h + 1 == top {
                if top == MAX_LEVELS {
                    // only a count past 2^64 gets here (merged decoded sketches)
                    break;
                }
                self.levels.push(Vec::new());
            }
            self.compact(h);
        }
        // level 0's buffer outlives its compactions: keep it near its capacity (it was
        // larger in the raw phase, and when the sketch had fewer levels)
        let cap0 = capacity(0, self.levels.len());
        if self.levels[0].capacity() > 2 * cap0 {
            self.levels[0].shrink_to(cap0 + 1);
        }
    }

    /// Moves every other value of level `h` (sorted) up one level, but for its `tail(h)`
    /// smallest and largest values and an odd one out, which stay.
    fn compact(&mut self, h: usize) {
        let mut run = std::mem::take(&mut self.levels[h]);
        if h == 0 {
            run.sort_unstable_by(f64::total_cmp);
        }
        // run.len() >= capacity(h, _) >= 8 + 2 tail(h)
        let keep = tail(h);
        let (start, end) = (keep + (run.len() - 2 * keep) % 2, run.len() - keep);
        let coin = (Rng::new(COIN_SEED ^ self.compactions).next_u64() & 1) as usize;
        let promoted: Vec<f64> = run[start + coin..end].iter().step_by(2).copied().collect();
        run.drain(start..end);
        // level 0 keeps its buffer (it is pushed into); the others are rebuilt by merges
        self.levels[h] = if h == 0 { run } else { run.to_vec() };
        self.retained -= end - start - promoted.len();
        self.levels[h + 1] = if self.levels[h + 1].is_empty() {
            promoted
        } else {
            merge_sorted(&self.levels[h + 1], &promoted)
        };
        self.compactions = self.compactions.wrapping_add(1);
    }

    /// The values and their weights, sorted by value, equal values summed.
    pub(super) fn weighted(&self) -> (Vec<f64>, Vec<u64>) {
        let mut all: Vec<(f64, u64)> = Vec::with_capacity(self.retained);
        for (h, level) in self.levels.iter().enumerate() {
            all.extend(level.iter().map(|&v| (v, 1u64 << h)));
        }
        all.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let (mut values, mut weights): (Vec<f64>, Vec<u64>) = (Vec::new(), Vec::new());
        for (v, w) in all {
            match (values.last(), weights.last_mut()) {
                (Some(&last), Some(lw)) if last == v => *lw = lw.saturating_add(w),
                _ => {
                    values.push(v);
                    weights.push(w);
                }
            }
        }
        (values, weights)
    }

    /// A sketch from decoded levels (level 0 in any order, the others sorted ascending),
    /// or why they cannot be one; `count` is the number of values they must stand for.
    pub(super) fn from_levels(
        levels: Vec<Vec<f64>>,
        compactions: u64,
        count: u64,
    ) -> Result<Self, String> {
        if levels.is_empty() || levels.len() > MAX_LEVELS {
            return Err(format!(
                "{} levels, 1 to {MAX_LEVELS} expected",
                levels.len()
            ));
        }
        let mut weight: u128 = 0;
        for (h, level) in levels.iter().enumerate() {
            if h > 0 && !level.windows(2).all(|w| w[0] <= w[1]) {
                return Err(format!("level {h} is not sorted"));
            }
            weight += (level.len() as u128) << h;
        }
        if weight != u128::from(count) {
            return Err(format!(
                "the levels stand for {weight} values, the count is {count}"
            ));
        }
        let retained = levels.iter().map(Vec::len).sum();
        let limit = if levels.len() == 1 {
            RAW_LIMIT
        } else {
            TOTAL[levels.len()]
        };
        if retained > limit {
            return Err(format!(
                "{retained} values in {} levels, at most {limit} expected",
                levels.len()
            ));
        }
        Ok(Kll {
            levels,
            retained,
            compactions,
        })
    }
}

fn merge_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}
