//! The statistics `stats` computes on two samples, with the current window given as
//! weighted values (a sketch's): each loop is the one of `stats::ks` or
//! `stats::distance`, with a value of weight `w` consumed as `w` equal values at once.
//! On exact counts they give the same numbers as on the expanded sample (the steps they
//! skip are the zero-width ones; only the grouping of the pairwise sums differs).

use crate::stats::pairwise_sum;

/// Sorted distinct values and the number of values each stands for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Weighted<'a> {
    pub values: &'a [f64],
    pub weights: &'a [u64],
    /// Σ weights: the window's count.
    pub total: u64,
}

impl Weighted<'_> {
    /// The sample the weights stand for (for small windows only).
    pub(super) fn expand(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.total as usize);
        for (&v, &w) in self.values.iter().zip(self.weights) {
            out.extend(std::iter::repeat_n(v, w as usize));
        }
        out
    }
}

/// `stats::ks`' two-sided statistic, `a` sorted: `max(max diff, clip(-min diff, 0, 1))`
/// over the pooled values, the CDFs counting the values `<= x`.
pub(super) fn ks_statistic(a: &[f64], b: &Weighted<'_>) -> f64 {
    let (n1, n2) = (a.len() as f64, b.total as f64);
    let (v, w) = (b.values, b.weights);
    let (mut i, mut j, mut cw) = (0usize, 0usize, 0u64);
    let mut max_diff = f64::NEG_INFINITY;
    let mut min_diff = f64::INFINITY;
    while i < a.len() || j < v.len() {
        let x = match (a.get(i), v.get(j)) {
            (Some(&p), Some(&q)) => p.min(q),
            (Some(&p), None) => p,
            (None, Some(&q)) => q,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < v.len() && v[j] <= x {
            cw += w[j];
            j += 1;
        }
        let diff = i as f64 / n1 - cw as f64 / n2;
        max_diff = max_diff.max(diff);
        min_diff = min_diff.min(diff);
    }
    let min_s = (-min_diff).clamp(0.0, 1.0);
    if min_s > max_diff {
        min_s
    } else {
        max_diff
    }
}

/// scipy's `_cdf_distance(p, u, v)` (p 1 or 2), `u` sorted: `stats::distance`'s walk
/// over the merged values, the term between two consecutive values the gap of the CDFs
/// (to the power p) times their distance.
pub(super) fn cdf_distance(p: u8, u: &[f64], v: &Weighted<'_>) -> f64 {
    let (nu, nv) = (u.len() as f64, v.total as f64);
    let (vals, w) = (v.values, v.weights);
    let (mut i, mut j, mut cw) = (0usize, 0usize, 0u64);
    let mut terms = Vec::with_capacity(u.len() + vals.len());
    let mut prev: Option<f64> = None;
    while i < u.len() || j < vals.len() {
        // the CDFs after the values consumed so far, before the next one
        let diff = i as f64 / nu - cw as f64 / nv;
        let cur = if j == vals.len() || (i < u.len() && u[i] <= vals[j]) {
            i += 1;
            u[i - 1]
        } else {
            cw += w[j];
            j += 1;
            vals[j - 1]
        };
        if let Some(prev) = prev {
            let delta = cur - prev;
            terms.push(if p == 1 {
                diff.abs() * delta
            } else {
                diff * diff * delta
            });
        }
        prev = Some(cur);
    }
    let sum = pairwise_sum(&terms);
    if p == 1 {
        sum
    } else {
        sum.sqrt()
    }
}

/// `np.histogram(values, bins=edges, weights=...)[0]`: bin `i` holds the weight of
/// `edges[i] <= x < edges[i+1]`, the last bin also its right edge; outside, nothing.
pub(super) fn histogram(v: &Weighted<'_>, edges: &[f64]) -> Vec<u64> {
    let bins = edges.len() - 1;
    let mut cum = Vec::with_capacity(v.values.len() + 1);
    cum.push(0u64);
    for &w in v.weights {
        cum.push(cum[cum.len() - 1] + w);
    }
    let bounds: Vec<usize> = edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if i == bins {
                v.values.partition_point(|x| x <= e)
            } else {
                v.values.partition_point(|x| x < e)
            }
        })
        .collect();
    bounds.windows(2).map(|b| cum[b[1]] - cum[b[0]]).collect()
}
