//! The two-sample Kolmogorov–Smirnov test: a port of scipy 1.17's
//! `scipy.stats.ks_2samp(data1, data2, alternative='two-sided', method='auto')`
//! (`scipy/stats/_stats_py.py`):
//!
//! - the exact branch, `_attempt_exact_2kssamp`: `_compute_prob_outside_square` when the
//!   sizes are equal, else the pythran kernel `_compute_outer_prob_inside_method`
//!   (`scipy/stats/_stats_pythran.py`, Viehmann's recursion for `1 - p`);
//! - the asymptotic branch, `kstwo.sf(d, round(n1·n2/(n1+n2)))`: the one-sample
//!   distribution, in `kolmogorov` (with `scipy.special.smirnov` in `special`).
//!
//! The branches, thresholds and floating-point operations are scipy's, in scipy's order;
//! everything matches scipy to the bit on the golden cases except where `kolmogorov`'s
//! plain dot products stand in for BLAS (see there).

use super::kolmogorov::{clip01, kstwo_sf};
use super::{sorted, TestResult};

/// `ks_2samp`'s `MAX_AUTO_N`: method 'auto' is exact when both sizes are at most this.
const MAX_AUTO_N: usize = 10_000;

/// scipy's `ks_2samp(a, b)`: two-sided, method 'auto'.
///
/// The statistic is `D = max |F_a(x) - F_b(x)|` over the pooled values, with the empirical
/// CDFs counting values `<= x` (ties handled as scipy's `searchsorted(side='right')`).
///
/// The p-value is exact when `max(n1, n2) <= 10000`: then `D` is first snapped to the
/// lattice, `D = round(D·lcm(n1, n2)) / lcm(n1, n2)` — the statistic returned is that
/// snapped value, as scipy returns it. If the exact computation is out of `[0, 1]` (it
/// happens with equal sizes and `D = 1/n` or `2/n`, where the alternating series rounds to
/// `1 + 2^-52`), scipy warns and falls back to the asymptotic distribution, and so does
/// this. Otherwise the p-value is `kstwo.sf(D, round(n1·n2/(n1+n2)))` (round half to even),
/// see `kstwo_sf`. The p-value is clipped to `[0, 1]`.
///
/// The samples need not be sorted. Both must be non-empty and finite (scipy raises on an
/// empty sample; here the statistic and p-value are NaN).
pub fn ks_2samp(a: &[f64], b: &[f64]) -> TestResult {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return TestResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
        };
    }
    let mut d = ks_statistic(&sorted(a), &sorted(b));
    let mut prob = f64::NAN;
    let mut asymptotic = n1.max(n2) > MAX_AUTO_N;
    if !asymptotic {
        let (success, snapped, p) = attempt_exact(n1 as u64, n2 as u64, d);
        d = snapped;
        prob = p;
        asymptotic = !success;
    }
    if asymptotic {
        let (m, n) = if n1 >= n2 {
            (n1 as f64, n2 as f64)
        } else {
            (n2 as f64, n1 as f64)
        };
        let en = m * n / (m + n);
        prob = kstwo_sf(d, en.round_ties_even());
    }
    TestResult {
        statistic: d,
        pvalue: clip01(prob),
    }
}

/// The two-sided statistic from sorted samples: scipy evaluates
/// `searchsorted(a, x, 'right')/n1 - searchsorted(b, x, 'right')/n2` at every pooled `x`
/// and takes `max(max(diff), clip(-min(diff), 0, 1))`; the same differences are visited
/// here once per distinct value, in one merge pass.
fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut max_diff = f64::NEG_INFINITY;
    let mut min_diff = f64::INFINITY;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        let diff = i as f64 / n1 - j as f64 / n2;
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

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `_attempt_exact_2kssamp(n1, n2, g, d, 'two-sided')`: `(success, snapped d, p)`.
fn attempt_exact(n1: u64, n2: u64, d: f64) -> (bool, f64, f64) {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return (true, d, 1.0);
    }
    let prob = if n1 == n2 {
        prob_outside_square(n1, h)
    } else {
        outer_prob_inside(n1, n2, g, h)
    };
    // `not (0 <= prob <= 1)`: NaN fails too
    let ok = (0.0..=1.0).contains(&prob);
    (ok, d, prob)
}

/// `_compute_prob_outside_square(n, h)`: `P(D_{n,n} >= h/n)` by the alternating series
/// `2·(A0·(1 - A1·(1 - A2·(...))))`, evaluated Horner-like from the innermost term.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0;
    let mut k = (n as f64 / h as f64).floor() as i64;
    while k >= 0 {
        let mut p1 = 1.0;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// `_compute_outer_prob_inside_method(m, n, g, h)` (scipy's pythran kernel): the
/// proportion of lattice paths from `(0, 0)` to `(m, n)` that leave the band
/// `|x/m - y/n| < h/lcm(m, n)`, by Viehmann's recursion for `1 - p` over a sliding window
/// of one column. `O(m · window)`, at most `O(m·n)`.
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (mg, ng) = ((m / g) as i64, (n / g) as i64);
    let (m, n, h) = (m as i64, n as i64, h as i64);

    let mut minj: i64 = 0;
    let mut maxj: i64 = ((h as f64 / mg as f64).ceil() as i64).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0; len_a];
    a[minj as usize..maxj as usize].fill(0.0);
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = (((ng * i - h) as f64 / mg as f64).floor() as i64 + 1).max(0);
        minj = minj.min(n);
        maxj = (((ng * i + h) as f64 / mg as f64).ceil() as i64).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        // The window slides by at most one per column and its width is at most
        // 2·ceil(h/mg) + 1, so every index below is < len_a (see scipy's sizing of A).
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        let fi = i as f64;
        for jj in 0..(maxj - minj) {
            let j = jj + minj;
            val = (a[(jj + minj - lastminj) as usize] * fi + val * j as f64) / (i + j) as f64;
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            // carried-over elements are set back to 1 (numpy clips the slice)
            let start = (maxj - minj) as usize;
            let end = ((maxj - minj + (lastlen - curlen)) as usize).min(len_a);
            if start < end {
                a[start..end].fill(1.0);
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::golden::scipy_a::{check, fixture, num, sample};

    const RTOL: f64 = 1e-10;

    #[test]
    fn ks_2samp_matches_scipy() {
        let doc = fixture();
        let cases = doc["ks_2samp"].as_array().expect("ks_2samp cases");
        assert!(cases.len() > 100);
        let (mut worst_d, mut worst_p) = (0.0f64, 0.0f64);
        for case in cases {
            let name = case["name"].as_str().unwrap_or("?");
            let (a, b) = (sample(&case["a"]), sample(&case["b"]));
            let r = ks_2samp(&a, &b);
            worst_d = worst_d.max(check(
                r.statistic,
                num(&case["statistic"]),
                RTOL,
                &format!("{name}: statistic"),
            ));
            worst_p = worst_p.max(check(
                r.pvalue,
                num(&case["pvalue"]),
                RTOL,
                &format!("{name}: pvalue"),
            ));
        }
        assert!(worst_d <= RTOL && worst_p <= RTOL);
    }

    #[test]
    fn hand_written_cases() {
        // identical samples: D = 0, p = 1
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[3.0, 1.0, 2.0]);
        assert_eq!((r.statistic, r.pvalue), (0.0, 1.0));
        // disjoint 3 vs 3: p = 2 / C(6, 3) = 0.1
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        assert_eq!(r.statistic, 1.0);
        assert!((r.pvalue - 0.1).abs() < 1e-15);
        // the order of the samples does not matter
        let r2 = ks_2samp(&[6.0, 4.0, 5.0], &[3.0, 2.0, 1.0]);
        assert_eq!(r, r2);
        // empty input
        assert!(ks_2samp(&[], &[1.0]).pvalue.is_nan());
    }
}
