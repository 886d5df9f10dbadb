//! The summary of a numerical column: exact while it can be, a KLL sketch after.
//!
//! - Up to `EXACT_DISTINCT` (1,024) distinct values, every distinct value and its count:
//!   exact for any number of rows (a flag, a rating, a count column stays exact).
//! - Past that, a KLL sketch with protected tails (`kll`, k = 1,800), itself exact until
//!   `kll::RAW_LIMIT` (4,096) rows, and a distinct-count sketch (`distinct`) for the
//!   Hellinger distance's bins.
//! - Always exact: the count, the missing count (NaN and ±inf, as `Sample::numerical`;
//!   -0.0 is 0.0), the minimum and the maximum; the mean and the sum of squared
//!   deviations by Welford's update and Chan's merge, exact up to rounding (not to the
//!   bit: numpy sums pairwise).
//!
//! Encoded it is at most `MAX_ENCODED_LEN` = 56,745 bytes whatever the number of rows (a
//! compile-time check below; measured: 47,943 bytes after 10^7 rows), in memory about as
//! much (level 0's buffer may keep up to twice its capacity).

use super::codec::{corrupt, Reader, Writer};
use super::distinct::{Distinct, KMV_K};
use super::kll::{self, Kll};
use super::SketchError;
use crate::drift::Sample;

/// The most distinct values kept exactly, with their counts.
pub const EXACT_DISTINCT: usize = 1024;
/// Where the exact pairs stop doubling and take their full size (1 KB of pairs).
const PAIRS_GROWTH: usize = 64;

const MAGIC: &[u8; 4] = b"MLSN";
const VERSION: u8 = 1;
const MODE_EXACT: u8 = 0;
const MODE_KLL: u8 = 1;

/// The most bytes an encoded numerical sketch takes: the header (magic, version, mode,
/// two varints, four floats), then the larger of the exact body (1,024 values with
/// varint counts) and the KLL body (k, the coin, 64 level lengths, the values, the
/// distinct-count hashes).
pub const MAX_ENCODED_LEN: usize = {
    let header = 4 + 1 + 1 + 10 + 10 + 4 * 8;
    let exact = 2 + EXACT_DISTINCT * (8 + 10);
    let kll = 2 + 10 + 1 + kll::MAX_LEVELS * 2 + kll::MAX_RETAINED * 8 + 2 + KMV_K * 8;
    header + if exact > kll { exact } else { kll }
};
const _: () = assert!(MAX_ENCODED_LEN <= 64_000);
// a level's length is a varint of at most 2 bytes
const _: () = assert!(kll::MAX_RETAINED < 1 << 14);

/// A streaming summary of a numerical column in bounded memory.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericSketch {
    count: u64,
    missing: u64,
    min: f64,
    max: f64,
    mean: f64,
    /// The sum of squared deviations from the mean (Welford's M2).
    m2: f64,
    body: Body,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// Every distinct value with its count, ascending, at most `EXACT_DISTINCT`.
    Exact(Vec<(f64, u64)>),
    Kll {
        kll: Kll,
        distinct: Distinct,
    },
}

impl Default for NumericSketch {
    fn default() -> Self {
        NumericSketch {
            count: 0,
            missing: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
            body: Body::Exact(Vec::new()),
        }
    }
}

impl NumericSketch {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value: NaN and infinities count as missing.
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            self.missing += 1;
            return;
        }
        let x = x + 0.0; // -0.0 is 0.0, as in `Sample::numerical`
        self.count += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
        match &mut self.body {
            Body::Exact(pairs) => match pairs.binary_search_by(|p| p.0.total_cmp(&x)) {
                Ok(i) => pairs[i].1 += 1,
                Err(i) => {
                    if pairs.len() == pairs.capacity() && pairs.len() >= PAIRS_GROWTH {
                        // the full size at once, not 2,048 pairs for the 1,025th, nor
                        // the holes of doubling (see `kll::RAW_LIMIT`)
                        pairs.reserve_exact(EXACT_DISTINCT + 1 - pairs.len());
                    }
                    pairs.insert(i, (x, 1));
                    if pairs.len() > EXACT_DISTINCT {
                        self.body = to_kll(pairs, None);
                    }
                }
            },
            Body::Kll { kll, distinct } => {
                kll.push(x);
                distinct.insert(x);
            }
        }
    }

    /// Adds every value of `values`.
    pub fn extend(&mut self, values: impl IntoIterator<Item = f64>) {
        for x in values {
            self.update(x);
        }
    }

    /// Adds the values `other` summarizes (another partition, replica or window).
    pub fn merge(&mut self, other: &NumericSketch) {
        if other.count == 0 {
            self.missing = self.missing.saturating_add(other.missing);
            return;
        }
        if self.count == 0 {
            let missing = self.missing.saturating_add(other.missing);
            *self = other.clone();
            self.missing = missing;
            return;
        }
        // Chan et al.'s update in a symmetric form, so that merging A into B and B into A
        // give the same bits
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let d = other.mean - self.mean;
        self.m2 = self.m2 + other.m2 + d * d * (na * nb / n);
        self.mean = (na * self.mean + nb * other.mean) / n;
        self.count = self.count.saturating_add(other.count);
        self.missing = self.missing.saturating_add(other.missing);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        let body = std::mem::replace(&mut self.body, Body::Exact(Vec::new()));
        self.body = match (body, &other.body) {
            (Body::Exact(a), Body::Exact(b)) => {
                let merged = merge_pairs(&a, b);
                if merged.len() > EXACT_DISTINCT {
                    to_kll(&merged, None)
                } else {
                    Body::Exact(merged)
                }
            }
            (Body::Exact(a), Body::Kll { kll, distinct }) => to_kll(&a, Some((kll, distinct))),
            (Body::Kll { kll, distinct }, Body::Exact(b)) => to_kll(b, Some((&kll, &distinct))),
            (
                Body::Kll {
                    mut kll,
                    mut distinct,
                },
                Body::Kll {
                    kll: k2,
                    distinct: d2,
                },
            ) => {
                kll.merge(k2);
                distinct.merge(d2);
                Body::Kll { kll, distinct }
            }
        };
    }

    /// How many values are present (missing ones excluded).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// How many values were missing (NaN or infinite).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Whether it holds every value: then [`NumericSketch::to_sample`] is the exact sample.
    pub fn is_exact(&self) -> bool {
        match &self.body {
            Body::Exact(_) => true,
            Body::Kll { kll, .. } => kll.is_raw(),
        }
    }

    /// The smallest value (exact); `None` when there is none.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value (exact); `None` when there is none.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The mean (exact up to rounding); `None` when there is no value.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// The population standard deviation (`np.std`, exact up to rounding).
    pub fn std_population(&self) -> Option<f64> {
        (self.count > 0).then(|| (self.m2 / self.count as f64).sqrt())
    }

    /// The sample variance (ddof 1, as scipy's t-test takes it); NaN for one value.
    pub(super) fn var_ddof1(&self) -> f64 {
        self.m2 / (self.count as f64 - 1.0)
    }

    /// The number of distinct values: exact while [`NumericSketch::is_exact`], else
    /// estimated (about 6% relative error).
    pub fn distinct(&self) -> f64 {
        match &self.body {
            Body::Exact(pairs) => pairs.len() as f64,
            Body::Kll { distinct, .. } => distinct.estimate(),
        }
    }

    /// The distinct-count sketch, when the values are no longer listed.
    pub(super) fn distinct_sketch(&self) -> Option<&Distinct> {
        match &self.body {
            Body::Exact(_) => None,
            Body::Kll { distinct, .. } => Some(distinct),
        }
    }

    /// Every value, when it holds every value (`count` values: a large exact window
    /// allocates them all; the missing ones are counted, not stored).
    pub fn to_sample(&self) -> Option<Sample> {
        let present = self.present_sample()?;
        // Sample::numerical counts NaN as missing; `from_fn` hides the length of the
        // chain, so that no vector is sized by the missing count
        let values = present.values().unwrap_or(&[]).iter().copied();
        let mut left = self.missing;
        let nan = std::iter::from_fn(move || {
            (left > 0).then(|| {
                left -= 1;
                f64::NAN
            })
        });
        Some(Sample::numerical(values.chain(nan)))
    }

    /// The present values as a sample (its missing count 0), when it holds every value.
    pub(super) fn present_sample(&self) -> Option<Sample> {
        if !self.is_exact() {
            return None;
        }
        let (values, weights) = self.weighted();
        let expanded = values
            .iter()
            .zip(&weights)
            .flat_map(|(&v, &w)| std::iter::repeat_n(v, w as usize));
        Some(Sample::numerical(expanded))
    }

    /// The distinct values it keeps, ascending, with their weights (the number of values
    /// each stands for): the counts while exact; they always sum to `count()`.
    pub fn weighted(&self) -> (Vec<f64>, Vec<u64>) {
        match &self.body {
            Body::Exact(pairs) => pairs.iter().copied().unzip(),
            Body::Kll { kll, .. } => kll.weighted(),
        }
    }

    /// The size of [`NumericSketch::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.encode().len()
    }

    /// The versioned binary form (little-endian): what replicas exchange and stores keep.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, VERSION);
        w.u8(match self.body {
            Body::Exact(_) => MODE_EXACT,
            Body::Kll { .. } => MODE_KLL,
        });
        w.varint(self.count);
        w.varint(self.missing);
        for v in [self.min, self.max, self.mean, self.m2] {
            w.f64(v);
        }
        match &self.body {
            Body::Exact(pairs) => {
                w.varint(pairs.len() as u64);
                for &(v, n) in pairs {
                    w.f64(v);
                    w.varint(n);
                }
            }
            Body::Kll { kll, distinct } => {
                w.varint(kll::K as u64);
                w.varint(kll.compactions());
                w.u8(kll.levels().len() as u8);
                for level in kll.levels() {
                    w.varint(level.len() as u64);
                }
                for (h, level) in kll.levels().iter().enumerate() {
                    // level 0 sorted, so that equal sketches encode the same
                    let mut level = level.clone();
                    if h == 0 {
                        level.sort_unstable_by(f64::total_cmp);
                    }
                    level.iter().for_each(|&v| w.f64(v));
                }
                w.varint(distinct.hashes().len() as u64);
                distinct.hashes().iter().for_each(|&h| w.u64(h));
            }
        }
        w.finish()
    }

    /// Reads [`NumericSketch::encode`]'s output, checking every invariant.
    pub fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
        let mut r = Reader::open(bytes, MAGIC, "a numerical sketch", VERSION)?;
        let mode = r.u8("the mode")?;
        let count = r.varint("the count")?;
        let missing = r.varint("the missing count")?;
        let min = r.f64("the minimum")?;
        let max = r.f64("the maximum")?;
        let mean = r.f64("the mean")?;
        let m2 = r.f64("the sum of squares")?;
        let in_range = |v: f64| v.is_finite() && min <= v && v <= max;
        if count == 0 && (min, max, mean, m2) != (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0) {
            return Err(corrupt("an empty sketch with a minimum or moments".into()));
        }
        if count > 0 && !(min.is_finite() && max.is_finite() && min <= max && m2 >= 0.0) {
            return Err(corrupt(format!(
                "minimum {min}, maximum {max}, sum of squares {m2}: finite, ordered, >= 0 expected"
            )));
        }
        let body = match mode {
            MODE_EXACT => {
                let n = r.len(EXACT_DISTINCT, "the number of distinct values")?;
                let mut pairs: Vec<(f64, u64)> = Vec::with_capacity(n);
                let mut total: u128 = 0;
                for _ in 0..n {
                    let v = r.f64("a value")? + 0.0;
                    let c = r.varint("a value's count")?;
                    if !in_range(v) || c == 0 || pairs.last().is_some_and(|p| p.0 >= v) {
                        return Err(corrupt(format!(
                            "value {v} with count {c}: ascending values within [{min}, {max}] \
                             and counts > 0 expected"
                        )));
                    }
                    total += u128::from(c);
                    pairs.push((v, c));
                }
                let ends = (pairs.first().map(|p| p.0), pairs.last().map(|p| p.0));
                if total != u128::from(count) || (count > 0 && ends != (Some(min), Some(max))) {
                    return Err(corrupt(format!(
                        "the values count {total} and span {ends:?}, the header says {count} \
                         in [{min}, {max}]"
                    )));
                }
                Body::Exact(pairs)
            }
            MODE_KLL => {
                let k = r.varint("k")?;
                if k != kll::K as u64 {
                    return Err(corrupt(format!("k is {k}, {} expected", kll::K)));
                }
                let compactions = r.varint("the number of compactions")?;
                let height = usize::from(r.u8("the number of levels")?);
                if height == 0 || height > kll::MAX_LEVELS {
                    return Err(corrupt(format!(
                        "{height} levels, 1 to {} expected",
                        kll::MAX_LEVELS
                    )));
                }
                let mut lens = Vec::with_capacity(height);
                for _ in 0..height {
                    lens.push(r.len(kll::MAX_RETAINED, "a level's length")?);
                }
                if lens.iter().sum::<usize>() > kll::MAX_RETAINED {
                    return Err(corrupt("more values than a sketch holds".into()));
                }
                let mut levels = Vec::with_capacity(height);
                for len in lens {
                    let mut level = Vec::with_capacity(len);
                    for _ in 0..len {
                        let v = r.f64("a value")? + 0.0;
                        if !in_range(v) {
                            return Err(corrupt(format!("value {v} outside [{min}, {max}]")));
                        }
                        level.push(v);
                    }
                    levels.push(level);
                }
                let kll = Kll::from_levels(levels, compactions, count).map_err(corrupt)?;
                let n = r.len(KMV_K, "the number of distinct-count hashes")?;
                let mut hashes = Vec::with_capacity(n);
                for _ in 0..n {
                    hashes.push(r.u64("a hash")?);
                }
                let distinct = Distinct::from_hashes(hashes)
                    .ok_or_else(|| corrupt("the distinct-count hashes are not ascending".into()))?;
                Body::Kll { kll, distinct }
            }
            m => return Err(corrupt(format!("mode {m}, 0 or 1 expected"))),
        };
        r.finish()?;
        Ok(NumericSketch {
            count,
            missing,
            min,
            max,
            mean,
            m2,
            body,
        })
    }
}

/// The KLL body from exact counts (added to `base` when given).
fn to_kll(pairs: &[(f64, u64)], base: Option<(&Kll, &Distinct)>) -> Body {
    let (mut kll, mut distinct) = match base {
        Some((k, d)) => (k.clone(), d.clone()),
        None => (Kll::with_raw_capacity(), Distinct::default()),
    };
    for &(v, n) in pairs {
        kll.push_weighted(v, n);
        distinct.insert(v);
    }
    Body::Kll { kll, distinct }
}

fn merge_pairs(a: &[(f64, u64)], b: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                i += 1;
                j += 1;
                (x.0, x.1.saturating_add(y.1))
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                i += 1;
                *x
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (_, Some(y)) => {
                j += 1;
                *y
            }
            (None, None) => break,
        };
        out.push(next);
    }
    out
}
