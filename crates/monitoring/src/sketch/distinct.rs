//! The number of distinct values of a long numerical column, estimated: a k-minimum-values
//! sketch (Bar-Yossef et al., 2002) of 64-bit hashes of the values. Evidently's Hellinger
//! distance bins a numerical column in as many Sturges bins as both windows have distinct
//! values, and a quantile sketch does not know that number.
//!
//! With `KMV_K = 256` hashes (2 KB) the relative error of the estimate is about
//! `1/sqrt(k - 2)`, 6%; the number of Sturges bins, `ceil(log2(d) + 1)`, changes only
//! when that error crosses a power of two. Below 256 distinct values it is exact (barring a
//! collision of 64-bit hashes). Merging keeps the smallest hashes of the union: exact and
//! independent of the order.

use crate::stats::rng::Rng;

/// How many of the smallest hashes are kept.
pub(super) const KMV_K: usize = 256;

/// Salts the hash so that it is not SplitMix64 of the raw bits the compaction coin uses.
const SALT: u64 = 0x6d6c_6f70_735f_6b6d;

/// The smallest distinct hashes seen, ascending, at most `KMV_K`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Distinct {
    hashes: Vec<u64>,
}

/// SplitMix64's output function on the value's bits (finite values, -0.0 already 0.0).
fn hash(x: f64) -> u64 {
    Rng::new(x.to_bits() ^ SALT).next_u64()
}

impl Distinct {
    pub(super) fn insert(&mut self, x: f64) {
        let h = hash(x);
        if self.hashes.len() == KMV_K && self.hashes.last().is_some_and(|&m| h >= m) {
            return;
        }
        if let Err(i) = self.hashes.binary_search(&h) {
            self.hashes.insert(i, h);
            self.hashes.truncate(KMV_K);
        }
    }

    pub(super) fn merge(&mut self, other: &Distinct) {
        let (a, b) = (&self.hashes, &other.hashes);
        let mut out = Vec::with_capacity(KMV_K.min(a.len() + b.len()));
        let (mut i, mut j) = (0, 0);
        while out.len() < KMV_K && (i < a.len() || j < b.len()) {
            let h = match (a.get(i), b.get(j)) {
                (Some(&x), Some(&y)) if x == y => {
                    i += 1;
                    j += 1;
                    x
                }
                (Some(&x), Some(&y)) if x < y => {
                    i += 1;
                    x
                }
                (Some(&x), None) => {
                    i += 1;
                    x
                }
                (_, Some(&y)) => {
                    j += 1;
                    y
                }
                (None, None) => break,
            };
            out.push(h);
        }
        self.hashes = out;
    }

    /// The estimated number of distinct values: exact below `KMV_K`, else the unbiased
    /// `(k - 1) / h_k` with `h_k` the largest kept hash as a share of 2^64.
    pub(super) fn estimate(&self) -> f64 {
        match self.hashes.last() {
            Some(&m) if self.hashes.len() == KMV_K => {
                (KMV_K - 1) as f64 / (m as f64 / 18_446_744_073_709_551_616.0)
            }
            _ => self.hashes.len() as f64,
        }
    }

    pub(super) fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// From decoded hashes: strictly ascending, at most `KMV_K`.
    pub(super) fn from_hashes(hashes: Vec<u64>) -> Option<Self> {
        let ok = hashes.len() <= KMV_K && hashes.windows(2).all(|w| w[0] < w[1]);
        ok.then_some(Distinct { hashes })
    }
}

/// The estimated number of distinct values of a sorted sample and a sketched window
/// together.
pub(super) fn union_estimate(sorted: &[f64], sketch: &Distinct) -> f64 {
    let mut d = sketch.clone();
    let mut last = None;
    for &x in sorted {
        if last != Some(x) {
            d.insert(x);
            last = Some(x);
        }
    }
    d.estimate()
}
