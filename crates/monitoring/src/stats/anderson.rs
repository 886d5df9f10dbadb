//! The k-sample Anderson–Darling test: a port of `scipy.stats.anderson_ksamp` from SciPy
//! 1.17.1 (`scipy/stats/_morestats.py`), called the way Evidently 0.7.23's `anderson` drift
//! test calls it: `anderson_ksamp([reference, current])` with every default (`midrank`
//! and `variant` unset — SciPy's `_NoValue` sentinel is truthy, so the midrank statistic
//! `A2akN` of Scholz & Stephens (1987), eq. 7 — and `method=None`, the p-value interpolated
//! from the table of critical values).
//!
//! Every arithmetic step follows SciPy's order of operations (numpy's pairwise sums,
//! sequential `cumsum`, Python's int→float conversions), so statistic and p-value agree
//! with SciPy's to about 1e-15 relative (see the tests and the fixture
//! `fixtures/scipy_b.json`, written by `scripts/monitoring/scipy_golden_b.py`).

use super::{pairwise_sum, StatsError, TestResult};

/// The significance levels of Scholz & Stephens' table 2, as SciPy lists them.
const SIG: [f64; 7] = [0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001];
/// The interpolation coefficients `b0`, `b1`, `b2` of that table.
const B0: [f64; 7] = [0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085];
const B1: [f64; 7] = [-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615];
const B2: [f64; 7] = [-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154];

/// The k-sample Anderson–Darling test of SciPy 1.17's `anderson_ksamp(samples)` (midrank
/// variant, no permutation method): the normalized statistic `A2 = (A2akN - (k-1)) / σ`
/// and its p-value.
///
/// The p-value is SciPy's: a quadratic fit (`np.polyfit`) of `ln(significance)` against
/// the seven critical values for `k` samples, evaluated at the statistic and
/// exponentiated. Outside the table SciPy caps it, with a warning, and so do we (without
/// one): a statistic below the smallest critical value gives exactly `0.25`, above the
/// largest exactly `0.001`. Inside, the interpolated value is returned as is (it may
/// stray slightly beyond `[0.001, 0.25]` near the ends, as SciPy's does).
///
/// Errors, with SciPy's messages, where SciPy raises: fewer than two samples, fewer than
/// two distinct observations in all (which includes all samples empty), an empty sample,
/// and exactly two observations in all (SciPy fails with an `IndexError` there). With
/// exactly three observations SciPy divides by zero and returns NaN for both values, and
/// so does this function. NaN and infinities are refused (an error).
///
/// Cost: one sort of each sample and a merge, `O(N log N)`; memory `O(N)`.
pub fn anderson_ksamp(samples: &[&[f64]]) -> Result<TestResult, StatsError> {
    let k = samples.len();
    if k < 2 {
        return Err(StatsError(
            "anderson_ksamp needs at least two samples".to_string(),
        ));
    }
    if samples.iter().any(|s| s.iter().any(|v| !v.is_finite())) {
        return Err(non_finite_error("anderson_ksamp"));
    }
    let sorted_samples: Vec<Vec<f64>> = samples
        .iter()
        .map(|s| {
            let mut v = s.to_vec();
            v.sort_unstable_by(f64::total_cmp);
            v
        })
        .collect();
    let pooled = merge_all(&sorted_samples);
    let total = pooled.len();
    // The distinct values of the pooled sample: for each, how many observations lie
    // strictly below it (`Z.searchsorted(Zstar, 'left')`) and how many equal it (`lj`).
    let groups = distinct_groups(&pooled);
    if groups.len() < 2 {
        return Err(StatsError(
            "anderson_ksamp needs more than one distinct observation".to_string(),
        ));
    }
    if samples.iter().any(|s| s.is_empty()) {
        return Err(StatsError(
            "anderson_ksamp encountered sample without observations".to_string(),
        ));
    }
    if total < 3 {
        // `hs_cs[-1]` on an empty array: SciPy raises an IndexError.
        return Err(StatsError(
            "index -1 is out of bounds for axis 0 with size 0 (anderson_ksamp needs at least 3 observations)"
                .to_string(),
        ));
    }

    let a2akn = a2akn_midrank(&sorted_samples, &groups, total);
    let n = total as f64;
    let kf = k as f64;

    // The constants of Scholz & Stephens' variance of A2akN: H = sum(1/n_i),
    // h = sum_{i=1}^{N-1} 1/i and g, computed as SciPy does: hs_cs is the sequential
    // cumsum of 1/(N-1), 1/(N-2), ..., 1/2, h = hs_cs[-1] + 1, g = sum(hs_cs / arange(2, N))
    // (a pairwise sum).
    let inv_sizes: Vec<f64> = samples.iter().map(|s| 1.0 / s.len() as f64).collect();
    let big_h = pairwise_sum(&inv_sizes);
    let mut hs_cs = Vec::with_capacity(total - 2);
    let mut acc = 0.0;
    for i in (2..total).rev() {
        acc += 1.0 / i as f64;
        hs_cs.push(acc);
    }
    let h = acc + 1.0;
    let ratios: Vec<f64> = hs_cs
        .iter()
        .enumerate()
        .map(|(j, v)| v / (j + 2) as f64)
        .collect();
    let g = pairwise_sum(&ratios);

    let k2 = (k * k) as f64;
    let a = (4.0 * g - 6.0) * (kf - 1.0) + (10.0 - 6.0 * g) * big_h;
    let b = (2.0 * g - 4.0) * k2 + 8.0 * h * kf + (2.0 * g - 14.0 * h - 4.0) * big_h - 8.0 * h
        + 4.0 * g
        - 6.0;
    let c = (6.0 * h + 2.0 * g - 2.0) * k2
        + (4.0 * h - 4.0 * g + 6.0) * kf
        + (2.0 * h - 6.0) * big_h
        + 4.0 * h;
    let d = (2.0 * h + 6.0) * k2 - 4.0 * h * kf;
    // N**3 and N**2 are Python ints, converted to float when multiplied (correctly
    // rounded, as `as f64` from u128 is).
    let n2 = (total as u128 * total as u128) as f64;
    let n3 = (total as u128 * total as u128 * total as u128) as f64;
    let sigmasq = (a * n3 + b * n2 + c * n + d) / ((n - 1.0) * (n - 2.0) * (n - 3.0));
    if sigmasq < 0.0 {
        // math.sqrt of a negative number
        return Err(StatsError(
            "math domain error (anderson_ksamp: negative variance)".to_string(),
        ));
    }
    let m = (k - 1) as f64;
    let statistic = (a2akn - m) / sigmasq.sqrt();

    let sqrt_m = m.sqrt();
    let critical: [f64; 7] = std::array::from_fn(|i| B0[i] + B1[i] / sqrt_m + B2[i] / m);
    let crit_min = critical.iter().copied().fold(f64::INFINITY, f64::min);
    let crit_max = critical.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pvalue = if statistic < crit_min {
        0.25 // SciPy: "p-value capped: true value larger than 0.25"
    } else if statistic > crit_max {
        0.001 // SciPy: "p-value floored: true value smaller than 0.001"
    } else {
        let log_sig = SIG.map(f64::ln);
        let coef = polyfit2(&critical, &log_sig);
        // np.polyval: y = 0; y = y * x + c for each coefficient (highest power first)
        let y = coef.iter().fold(0.0, |y, c| y * statistic + c);
        y.exp()
    };
    Ok(TestResult { statistic, pvalue })
}

/// The error for NaN or infinite input (Evidently drops those values before its tests).
fn non_finite_error(test: &str) -> StatsError {
    StatsError(format!(
        "{test}: the samples must be finite (drop NaN and infinite values first, as Evidently does)"
    ))
}

/// The sorted union of sorted samples, by rounds of pairwise merges (`O(N log k)`).
fn merge_all(sorted: &[Vec<f64>]) -> Vec<f64> {
    let merge_pairs = |runs: &[Vec<f64>]| -> Vec<Vec<f64>> {
        runs.chunks(2)
            .map(|pair| match pair {
                [a, b] => merge_two(a, b),
                [a] => a.clone(),
                _ => Vec::new(),
            })
            .collect()
    };
    let mut runs = merge_pairs(sorted);
    while runs.len() > 1 {
        runs = merge_pairs(&runs);
    }
    runs.pop().unwrap_or_default()
}

fn merge_two(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j].total_cmp(&a[i]).is_lt() {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// One distinct value of the sorted pooled sample.
struct Group {
    value: f64,
    /// Observations strictly below `value` (`searchsorted(..., 'left')`).
    below: usize,
    /// Observations equal to `value`.
    count: usize,
}

fn distinct_groups(sorted: &[f64]) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        groups.push(Group {
            value: sorted[i],
            below: i,
            count: j - i,
        });
        i = j;
    }
    groups
}

/// SciPy's `_anderson_ksamp_midrank`: eq. 7 of Scholz & Stephens,
/// `A2akN = (N-1)/N * sum_i 1/n_i * sum_j l_j/N * (N M_ij - B_j n_i)^2 / (B_j (N - B_j) - N l_j / 4)`
/// with midranks `B_j = (#Z < z_j) + l_j/2` and `M_ij = (#s_i <= z_j) - f_ij/2`.
fn a2akn_midrank(sorted_samples: &[Vec<f64>], groups: &[Group], total: usize) -> f64 {
    let n = total as f64;
    let mut a2akn = 0.0;
    let mut inner = Vec::with_capacity(groups.len());
    for s in sorted_samples {
        let ni = s.len() as f64;
        inner.clear();
        // Walk the sample's sorted values along the distinct pooled values: `left` counts
        // s < z_j, `right` counts s <= z_j.
        let mut left = 0;
        let mut right = 0;
        for grp in groups {
            while left < s.len() && s[left] < grp.value {
                left += 1;
            }
            right = right.max(left);
            while right < s.len() && s[right] <= grp.value {
                right += 1;
            }
            let lj = grp.count as f64;
            let bj = grp.below as f64 + lj / 2.0;
            let fij = (right - left) as f64;
            let mij = right as f64 - fij / 2.0;
            let dev = n * mij - bj * ni;
            inner.push(lj / n * (dev * dev) / (bj * (n - bj) - (n * lj) / 4.0));
        }
        a2akn += pairwise_sum(&inner) / ni;
    }
    a2akn * ((n - 1.0) / n)
}

/// `np.polyfit(x, y, 2)`: the least-squares quadratic through the points, highest power
/// first. numpy scales the Vandermonde columns to unit norm and solves with an SVD
/// (LAPACK `gelsd`); a Householder QR of the same scaled matrix gives the same solution
/// to rounding (the scaled matrix is well conditioned), then the scaling is undone.
fn polyfit2(x: &[f64; 7], y: &[f64; 7]) -> [f64; 3] {
    const ROWS: usize = 7;
    // the Vandermonde matrix [x², x, 1], stored by columns
    let mut cols: [[f64; ROWS]; 3] = [x.map(|v| v * v), *x, [1.0; ROWS]];
    let mut scale = [0.0; 3];
    for (col, s) in cols.iter_mut().zip(scale.iter_mut()) {
        // sum over axis 0 of lhs*lhs: sequential over the rows
        *s = col.iter().fold(0.0, |acc, v| acc + v * v).sqrt();
        for v in col.iter_mut() {
            *v /= *s;
        }
    }
    let mut rhs = *y;
    // Householder QR, applying the reflections to the right-hand side as we go.
    for k in 0..3 {
        let norm = cols[k][k..].iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if cols[k][k] > 0.0 { -norm } else { norm };
        let mut v = [0.0; ROWS];
        v[k..].copy_from_slice(&cols[k][k..]);
        v[k] -= alpha;
        let vnorm2: f64 = v[k..].iter().map(|e| e * e).sum();
        if vnorm2 == 0.0 {
            continue;
        }
        let reflect = |target: &mut [f64; ROWS]| {
            let dot: f64 = (k..ROWS).map(|i| v[i] * target[i]).sum();
            let f = 2.0 * dot / vnorm2;
            for i in k..ROWS {
                target[i] -= f * v[i];
            }
        };
        for col in cols[k..].iter_mut() {
            reflect(col);
        }
        reflect(&mut rhs);
    }
    // back substitution R c = (Q^T y)[..3], R[i][j] = cols[j][i]
    let mut coef = [0.0; 3];
    for j in (0..3).rev() {
        let mut s = rhs[j];
        for l in j + 1..3 {
            s -= cols[l][j] * coef[l];
        }
        coef[j] = s / cols[j][j];
    }
    for (c, s) in coef.iter_mut().zip(scale) {
        *c /= s;
    }
    coef
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::golden::scipy_b::{expected, fixture, rel_err, sample};

    const FIXTURE: &str = include_str!("../../fixtures/scipy_b.json");

    #[test]
    fn matches_scipy_golden_values() {
        let data = fixture(FIXTURE);
        let cases = data["anderson"].as_array().expect("anderson cases");
        assert!(cases.len() > 40);
        let mut worst = (0.0_f64, 0.0_f64);
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let owned: Vec<Vec<f64>> = case["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .map(sample)
                .collect();
            let refs: Vec<&[f64]> = owned.iter().map(Vec::as_slice).collect();
            let got = anderson_ksamp(&refs);
            if let Some(err) = case.get("error") {
                let got = got.expect_err(name);
                // same message as SciPy's (after its exception type)
                let want = err.as_str().expect("error text");
                let want = want.split_once(": ").map_or(want, |(_, m)| m);
                assert!(got.0.starts_with(want), "{name}: {} vs {want}", got.0);
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let (es, ep) = (
                rel_err(got.statistic, expected(case, "statistic")),
                rel_err(got.pvalue, expected(case, "pvalue")),
            );
            worst = (worst.0.max(es), worst.1.max(ep));
            assert!(es <= 1e-10, "{name}: statistic {} ({es:e})", got.statistic);
            assert!(ep <= 1e-10, "{name}: pvalue {} ({ep:e})", got.pvalue);
        }
        // observed: statistic 1.3e-16, p-value 4.4e-15 relative (np.polyfit solves with an SVD, we with a QR)
        assert!(worst.0 < 1e-13 && worst.1 < 1e-13, "worst {worst:?}");
    }

    #[test]
    fn caps_are_exact_and_the_interpolation_is_continuous_inside() {
        // identical samples: the statistic is below every critical value
        let x: Vec<f64> = (0..20).map(f64::from).collect();
        let r = anderson_ksamp(&[&x, &x]).expect("valid");
        assert!(r.statistic < 0.325);
        assert_eq!(r.pvalue, 0.25);
        let y: Vec<f64> = (30..50).map(f64::from).collect();
        let r = anderson_ksamp(&[&x, &y]).expect("valid");
        assert!(r.statistic > 6.546);
        assert_eq!(r.pvalue, 0.001);
    }

    #[test]
    fn polyfit_reproduces_an_exact_quadratic() {
        let x = [0.3, 1.2, 2.0, 2.7, 3.75, 4.6, 6.5];
        let y = x.map(|v| 0.5 * v * v - 1.25 * v + 2.0);
        let c = polyfit2(&x, &y);
        assert!((c[0] - 0.5).abs() < 1e-14);
        assert!((c[1] + 1.25).abs() < 1e-14);
        assert!((c[2] - 2.0).abs() < 1e-14);
    }
}
