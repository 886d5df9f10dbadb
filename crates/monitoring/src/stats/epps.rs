//! The Epps–Singleton two-sample test: a port of `scipy.stats.epps_singleton_2samp(x, y,
//! t=(0.4, 0.8))` from SciPy 1.17.1 (`scipy/stats/_hypotests.py`), behind the check
//! Evidently 0.7.23's `es` drift test adds (`epps_singleton_stattest.py`: an error when
//! the pooled sample's interquartile range is 0).
//!
//! The test compares the empirical characteristic functions of the samples at the points
//! `t / (IQR/2)`: `g(x) = (cos(t1 x), cos(t2 x), sin(t1 x), sin(t2 x))`, the statistic is
//! `W = N · Δḡᵀ Σ⁺ Δḡ` with `Σ` the pooled (biased) covariance estimate and `Σ⁺` its
//! pseudo-inverse, asymptotically chi-squared with `rank(Σ⁺)` degrees of freedom.
//!
//! Numerics follow SciPy's: the IQR is `scipy.stats.quantile(method='linear')`'s (not
//! numpy's percentile), means are numpy pairwise sums, the covariance is `np.cov` scaled
//! as SciPy scales it, and the pseudo-inverse is `array_api_compat`'s `pinv`, whose
//! default cut-off is `max(M, N)·eps = 4·eps` times the largest singular value (not
//! numpy's `1e-15`). For the symmetric 4×4 covariance the singular values are the
//! eigenvalues' magnitudes, computed here with a cyclic Jacobi iteration (as accurate as
//! LAPACK's SVD, and without a LAPACK dependency). BLAS sums the covariance products in
//! its own order, so results agree with SciPy's to rounding amplified by the covariance's
//! condition number — about 1e-14 relative on the fixture's cases.

use super::{chi2_sf, pairwise_sum, StatsError, TestResult};

/// Evidently's message when the pooled interquartile range is zero (verbatim, typos
/// included).
pub const IQR_ZERO_MESSAGE: &str = "Epps-Singleton testsinterquartile range (IQR) is zero. \
IQR of 0 means there is no variability in the middle 50% of your data, but the center of \
the distribution can be anywhere. Expected: your data sould have higher variability/variance.";

/// The Epps–Singleton test of SciPy 1.17's `epps_singleton_2samp(x, y)` (with
/// `t = (0.4, 0.8)`), as Evidently 0.7.23 runs it.
///
/// * The statistic `W` is multiplied by SciPy's small-sample correction
///   `1 / (1 + N^-0.45 + 10.1 (nx^-1.7 + ny^-1.7))` when `max(nx, ny) < 25`.
/// * The p-value is the chi-squared survival function at `W` with `r = rank(Σ⁺)` degrees
///   of freedom (SciPy's `chdtrc(r, W)`; here `stats::chi2_sf`, cephes' `igamc`): 4 for
///   continuous data, fewer when the data take very few distinct values (e.g. 1 for two
///   distinct values). SciPy warns when `r < 4`; we do not. With `r = 0` (each sample
///   constant, the two constants different; then `Σ⁺ = 0` and `W = 0`) SciPy's `chdtrc`
///   gives NaN, and so do we (`Ok` with a NaN p-value).
///
/// Errors:
/// * the pooled sample's IQR is 0 (Evidently raises before calling SciPy;
///   [`IQR_ZERO_MESSAGE`]), checked first as Evidently does;
/// * a sample has fewer than 5 observations. SciPy 1.17 does not raise there: its
///   `_axis_nan_policy` decorator (`too_small=4`) returns NaN for both values with a
///   `SmallSampleWarning`, so Evidently reports p = NaN ("no drift"); we report an error
///   instead;
/// * a NaN or an infinity in the samples (SciPy would return NaN).
///
/// Cost `O(N)` (a selection for the quartiles, one pass of `cos` and `sin`); memory
/// `O(N)`.
pub fn epps_singleton_2samp(x: &[f64], y: &[f64]) -> Result<TestResult, StatsError> {
    let (nx, ny) = (x.len(), y.len());
    let too_small = || {
        StatsError(format!(
            "x and y should have at least 5 elements, but len(x) = {nx} and len(y) = {ny}. \
             (SciPy 1.17 returns NaN for both values here.)"
        ))
    };
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(non_finite_error("epps_singleton_2samp"));
    }
    if nx == 0 || ny == 0 {
        return Err(too_small());
    }
    let mut pooled: Vec<f64> = x.iter().chain(y).copied().collect();
    let iqr = iqr_linear(&mut pooled);
    if iqr == 0.0 {
        return Err(StatsError(IQR_ZERO_MESSAGE.to_string()));
    }
    if nx < 5 || ny < 5 {
        return Err(too_small());
    }
    let n = nx + ny;
    let sigma = iqr / 2.0;
    let ts = [0.4 / sigma, 0.8 / sigma];

    let (mean_x, cov_x) = ecf_moments(x, ts);
    let (mean_y, cov_y) = ecf_moments(y, ts);
    let (wx, wy) = (n as f64 / nx as f64, n as f64 / ny as f64);
    let mut est_cov = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            est_cov[i][j] = wx * cov_x[i][j] + wy * cov_y[i][j];
        }
    }
    let (pinv, rank) = pinv_symmetric(est_cov);

    let g_diff: [f64; 4] = std::array::from_fn(|i| mean_x[i] - mean_y[i]);
    let pg: [f64; 4] = std::array::from_fn(|i| (0..4).map(|j| pinv[i][j] * g_diff[j]).sum());
    let quad: f64 = (0..4).map(|i| g_diff[i] * pg[i]).sum();
    let mut w = n as f64 * quad;
    if nx.max(ny) < 25 {
        let corr = 1.0
            / (1.0
                + (n as f64).powf(-0.45)
                + 10.1 * ((nx as f64).powf(-1.7) + (ny as f64).powf(-1.7)));
        w *= corr;
    }
    Ok(TestResult {
        statistic: w,
        pvalue: chi2_sf(w, rank as f64),
    })
}

/// The error for NaN or infinite input (Evidently drops those values before its tests).
fn non_finite_error(test: &str) -> StatsError {
    StatsError(format!(
        "{test}: the samples must be finite (drop NaN and infinite values first, as Evidently does)"
    ))
}

/// `scipy.stats.iqr(values)` (SciPy 1.17: `stats.quantile(x, [0.25, 0.75],
/// method='linear')`, upper minus lower). Reorders `values`.
fn iqr_linear(values: &mut [f64]) -> f64 {
    let n = values.len() as f64;
    // quantile p: jg = p n + (1 - p), j = floor(jg) - 1, g = jg mod 1,
    // result (1 - g) y[j] + g y[j + 1] with indices clipped to [0, n - 1]
    let plan = |p: f64| {
        let jg = p * n + (1.0 - p);
        let jp1 = jg.floor();
        let j = jp1 - 1.0;
        let g = if j < 0.0 { 0.0 } else { jg - jp1 };
        let clip = |i: f64| i.clamp(0.0, n - 1.0) as usize;
        (clip(j), clip(jp1), g)
    };
    let (lo_j, lo_j1, lo_g) = plan(0.25);
    let (hi_j, hi_j1, hi_g) = plan(0.75);
    let stats = order_statistics(values, &[lo_j, lo_j1, hi_j, hi_j1]);
    let q = |a: f64, b: f64, g: f64| (1.0 - g) * a + g * b;
    q(stats[2], stats[3], hi_g) - q(stats[0], stats[1], lo_g)
}

/// The order statistics of `values` (0-based ranks `ranks`), by repeated selection on
/// shrinking prefixes: `O(len)` per distinct rank. Reorders `values`.
fn order_statistics(values: &mut [f64], ranks: &[usize]) -> Vec<f64> {
    let mut distinct: Vec<usize> = ranks.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut found = Vec::with_capacity(distinct.len());
    let mut end = values.len();
    for &r in distinct.iter().rev() {
        // every element before `end` is <= values[end]: the r-th smallest of the whole
        // is the r-th smallest of that prefix
        let (_, v, _) = values[..end].select_nth_unstable_by(r, f64::total_cmp);
        found.push((r, *v));
        end = r;
    }
    ranks
        .iter()
        .map(|r| {
            found
                .iter()
                .find(|(fr, _)| fr == r)
                .map_or(f64::NAN, |(_, v)| *v)
        })
        .collect()
}

/// The means of `g(x) = (cos(t1 x), cos(t2 x), sin(t1 x), sin(t2 x))` over the sample and
/// their covariance as SciPy computes it: `np.cov` (centred products, times `1/(n-1)`),
/// then `* (n-1) / n` (the biased estimate).
fn ecf_moments(sample: &[f64], ts: [f64; 2]) -> ([f64; 4], [[f64; 4]; 4]) {
    let n = sample.len();
    let mut rows: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(n));
    for &v in sample {
        let (a, b) = (ts[0] * v, ts[1] * v);
        rows[0].push(a.cos());
        rows[1].push(b.cos());
        rows[2].push(a.sin());
        rows[3].push(b.sin());
    }
    let nf = n as f64;
    let means: [f64; 4] = std::array::from_fn(|i| pairwise_sum(&rows[i]) / nf);
    for (row, m) in rows.iter_mut().zip(means) {
        for v in row.iter_mut() {
            *v -= m;
        }
    }
    let inv_fact = 1.0 / (nf - 1.0);
    let mut cov = [[0.0; 4]; 4];
    let mut products = vec![0.0; n];
    for i in 0..4 {
        for j in i..4 {
            for (p, (a, b)) in products.iter_mut().zip(rows[i].iter().zip(&rows[j])) {
                *p = a * b;
            }
            let c = pairwise_sum(&products) * inv_fact * (nf - 1.0) / nf;
            cov[i][j] = c;
            cov[j][i] = c;
        }
    }
    (means, cov)
}

/// The pseudo-inverse of a symmetric 4×4 matrix as `array_api_compat`'s
/// `pinv(a)` computes it (`np.linalg.pinv(a, rcond=4·eps)`: singular values at most
/// `4·eps·s_max` are dropped), and the rank of that pseudo-inverse
/// (`matrix_rank(pinv)`: its singular values `1/s` above `4·eps·max(1/s)`).
///
/// For a symmetric matrix the singular values are the eigenvalues' magnitudes and the
/// SVD's pseudo-inverse is `Σ v vᵀ / λ` over the kept eigenpairs.
fn pinv_symmetric(a: [[f64; 4]; 4]) -> ([[f64; 4]; 4], usize) {
    let (lambda, vectors) = jacobi_eigen(a);
    let s_max = lambda.iter().fold(0.0_f64, |m, l| m.max(l.abs()));
    let cutoff = 4.0 * f64::EPSILON * s_max;
    let kept: Vec<usize> = (0..4).filter(|&i| lambda[i].abs() > cutoff).collect();
    let mut pinv = [[0.0; 4]; 4];
    for &k in &kept {
        for i in 0..4 {
            for j in 0..4 {
                pinv[i][j] += vectors[i][k] * vectors[j][k] / lambda[k];
            }
        }
    }
    let inv_max = kept
        .iter()
        .fold(0.0_f64, |m, &k| m.max(1.0 / lambda[k].abs()));
    let tol = inv_max * 4.0 * f64::EPSILON;
    let rank = kept
        .iter()
        .filter(|&&k| 1.0 / lambda[k].abs() > tol)
        .count();
    (pinv, rank)
}

/// Eigenvalues and eigenvectors (columns of the second result) of a symmetric 4×4
/// matrix by the cyclic Jacobi method (Numerical Recipes' `jacobi`): rotations until the
/// off-diagonal part vanishes in floating point. Relative accuracy of the small
/// eigenvalues is as good as LAPACK's SVD's.
fn jacobi_eigen(mut a: [[f64; 4]; 4]) -> ([f64; 4], [[f64; 4]; 4]) {
    const N: usize = 4;
    let mut v = [[0.0; N]; N];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let mut d: [f64; N] = std::array::from_fn(|i| a[i][i]);
    let mut b = d;
    let mut z = [0.0; N];
    for sweep in 0..100 {
        let off: f64 = (0..N)
            .flat_map(|p| (p + 1..N).map(move |q| (p, q)))
            .map(|(p, q)| a[p][q].abs())
            .sum();
        if off == 0.0 {
            break;
        }
        let thresh = if sweep < 3 {
            0.2 * off / (N * N) as f64
        } else {
            0.0
        };
        for p in 0..N - 1 {
            for q in p + 1..N {
                let g = 100.0 * a[p][q].abs();
                if sweep > 3 && d[p].abs() + g == d[p].abs() && d[q].abs() + g == d[q].abs() {
                    a[p][q] = 0.0;
                } else if a[p][q].abs() > thresh {
                    let h = d[q] - d[p];
                    let t = if h.abs() + g == h.abs() {
                        a[p][q] / h
                    } else {
                        let theta = 0.5 * h / a[p][q];
                        let t = 1.0 / (theta.abs() + (1.0 + theta * theta).sqrt());
                        if theta < 0.0 {
                            -t
                        } else {
                            t
                        }
                    };
                    let c = 1.0 / (1.0 + t * t).sqrt();
                    let s = t * c;
                    let tau = s / (1.0 + c);
                    let h = t * a[p][q];
                    z[p] -= h;
                    z[q] += h;
                    d[p] -= h;
                    d[q] += h;
                    a[p][q] = 0.0;
                    let rotate = |m: &mut [[f64; N]; N], i: usize, j: usize, k: usize, l: usize| {
                        let g = m[i][j];
                        let h = m[k][l];
                        m[i][j] = g - s * (h + g * tau);
                        m[k][l] = h + s * (g - h * tau);
                    };
                    for j in 0..p {
                        rotate(&mut a, j, p, j, q);
                    }
                    for j in p + 1..q {
                        rotate(&mut a, p, j, j, q);
                    }
                    for j in q + 1..N {
                        rotate(&mut a, p, j, q, j);
                    }
                    for j in 0..N {
                        rotate(&mut v, j, p, j, q);
                    }
                }
            }
        }
        for p in 0..N {
            b[p] += z[p];
            d[p] = b[p];
            z[p] = 0.0;
        }
    }
    (d, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::golden::scipy_b::{expected, fixture, rel_err, sample};

    const FIXTURE: &str = include_str!("../../fixtures/scipy_b.json");

    #[test]
    fn matches_scipy_golden_values() {
        let data = fixture(FIXTURE);
        let cases = data["epps"].as_array().expect("epps cases");
        assert!(cases.len() > 25);
        let (mut worst_stat, mut worst_p) = (0.0_f64, 0.0_f64);
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let (x, y) = (sample(&case["x"]), sample(&case["y"]));
            let got = epps_singleton_2samp(&x, &y);
            if let Some(err) = case.get("error") {
                let got = got.expect_err(name);
                let want = err.as_str().expect("error text");
                let want = want.split_once(": ").map_or(want, |(_, m)| m);
                assert_eq!(got.0, want, "{name}");
                continue;
            }
            if case.get("scipy_nan_too_small").is_some() {
                // SciPy returns NaN (SmallSampleWarning); we refuse
                let e = got.expect_err(name);
                assert!(e.0.starts_with("x and y should have at least 5"), "{name}");
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let (want_w, want_p) = (expected(case, "statistic"), expected(case, "pvalue"));
            let (es, ep) = (rel_err(got.statistic, want_w), rel_err(got.pvalue, want_p));
            worst_stat = worst_stat.max(es);
            worst_p = worst_p.max(ep);
            assert!(
                es <= 1e-10,
                "{name}: statistic {} vs {want_w} ({es:e})",
                got.statistic
            );
            assert!(
                ep <= 1e-10,
                "{name}: pvalue {} vs {want_p} ({ep:e})",
                got.pvalue
            );
        }
        // observed: statistic 9.0e-13, p-value 2.6e-13 relative (BLAS sums the covariance in
        // its own order; the pseudo-inverse amplifies that by the condition number)
        assert!(
            worst_stat < 1e-11 && worst_p < 1e-11,
            "{worst_stat:e} {worst_p:e}"
        );
    }

    #[test]
    fn jacobi_diagonalizes() {
        let a = [
            [4.0, 1.0, 0.5, 0.0],
            [1.0, 3.0, 0.25, 0.1],
            [0.5, 0.25, 2.0, 0.3],
            [0.0, 0.1, 0.3, 1.0],
        ];
        let (d, v) = jacobi_eigen(a);
        for k in 0..4 {
            for i in 0..4 {
                let av: f64 = (0..4).map(|j| a[i][j] * v[j][k]).sum();
                assert!((av - d[k] * v[i][k]).abs() < 1e-14);
            }
        }
        let (p, r) = pinv_symmetric(a);
        assert_eq!(r, 4);
        // a · pinv(a) = I
        for (i, row) in a.iter().enumerate() {
            for (j, want) in (0..4).map(|j| (j, if i == j { 1.0 } else { 0.0 })) {
                let e: f64 = row.iter().zip(&p).map(|(r, prow)| r * prow[j]).sum();
                assert!((e - want).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn quartiles_follow_scipy_quantile() {
        // scipy.stats.iqr([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) = 4.5
        let mut v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(iqr_linear(&mut v), 4.5);
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(iqr_linear(&mut v), 1.0);
        let mut v = vec![5.0];
        assert_eq!(iqr_linear(&mut v), 0.0);
    }
}
