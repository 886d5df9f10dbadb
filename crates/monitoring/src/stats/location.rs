//! Location tests on two samples, ported from scipy 1.17:
//!
//! - [`ttest_ind`]: `scipy.stats.ttest_ind(a, b)` (pooled variance, two-sided;
//!   `scipy/stats/_stats_py.py`), the p-value from `scipy.special.stdtr`, which scipy takes
//!   from Boost.Math's Student's t CDF (`special::stdtr`, to about 1e-14);
//! - [`mannwhitneyu_less`]: `scipy.stats.mannwhitneyu(x, y, alternative='less')`
//!   (`scipy/stats/_mannwhitneyu.py`): method 'auto', continuity correction, the exact null
//!   distribution of `U` (scipy's `_MWU`) or the normal approximation with the tie
//!   correction, `ndtr` from cephes (`special::ndtr`).

use super::special::{ndtr, stdtr};
use super::{mean, pairwise_sum, rank_average, TestResult};

/// scipy's `ttest_ind(a, b)`: Student's two-sample t-test with pooled variance
/// (`equal_var=True`), two-sided.
///
/// `t = (mean(a) - mean(b)) / sqrt(s² (1/n1 + 1/n2))` with
/// `s² = ((n1-1) var(a) + (n2-1) var(b)) / (n1 + n2 - 2)` (a sample of size 1 contributes a
/// variance of 0), means and variances computed as numpy does (pairwise sums,
/// `mean((x - mean)²) · n/(n-1)`); p-value `2·stdtr(n1 + n2 - 2, -|t|)`.
///
/// Edge cases as scipy: zero pooled variance gives `t = ±inf` and p-value 0 when the means
/// differ, NaN and NaN when they are equal; two samples of size 1 (0 degrees of freedom)
/// give NaN and NaN; an empty sample gives NaN and NaN.
pub fn ttest_ind(a: &[f64], b: &[f64]) -> TestResult {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return TestResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
        };
    }
    let (m1, v1) = mean_and_var_ddof1(a);
    let (m2, v2) = mean_and_var_ddof1(b);
    let v1 = if n1 == 1 { 0.0 } else { v1 };
    let v2 = if n2 == 1 { 0.0 } else { v2 };
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let df = n1f + n2f - 2.0;
    let svar = ((n1f - 1.0) * v1 + (n2f - 1.0) * v2) / df;
    let denom = (svar * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let t = (m1 - m2) / denom;
    TestResult {
        statistic: t,
        pvalue: 2.0 * stdtr(df, -t.abs()),
    }
}

/// numpy's `mean(x)` and scipy's `_var(x, ddof=1)`: `mean((x - mean)^2) * (n / (n - 1))`
/// (NaN for `n == 1`).
fn mean_and_var_ddof1(x: &[f64]) -> (f64, f64) {
    let m = mean(x);
    let sq: Vec<f64> = x.iter().map(|&v| (v - m) * (v - m)).collect();
    let n = x.len() as f64;
    let var = pairwise_sum(&sq) / n;
    (m, var * (n / (n - 1.0)))
}

/// scipy's `mannwhitneyu(x, y, alternative='less')` with its defaults
/// (`use_continuity=True`, `method='auto'`).
///
/// The statistic is `U1 = R1 - n1(n1+1)/2`, `R1` the sum of `x`'s ranks in the pooled
/// sample (ties get average ranks); the p-value is `P(U >= U2)` under the null, for
/// `U2 = n1·n2 - U1`. Method 'auto' is exact when `min(n1, n2) <= 8` and there are no ties
/// (the exact distribution of `U`, scipy's `_MWU.sf`), else asymptotic: `ndtr(-z)` with
/// `z = (U2 - n1·n2/2 - 1/2) / s`, `s² = n1·n2/12 · ((n+1) - sum(t³ - t)/(n(n-1)))` over the
/// tie groups `t`. Clipped to `[0, 1]`. Empty samples (scipy raises) give NaN and NaN.
pub fn mannwhitneyu_less(x: &[f64], y: &[f64]) -> TestResult {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return TestResult {
            statistic: f64::NAN,
            pvalue: f64::NAN,
        };
    }
    let n = n1 + n2;
    let mut xy = Vec::with_capacity(n);
    xy.extend_from_slice(x);
    xy.extend_from_slice(y);
    let ranks = rank_average(&xy);
    let r1 = pairwise_sum(&ranks[..n1]);
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let u2 = (n1 * n2) as f64 - u1;

    // scipy's tie array: the size of each tie group at its first position in sorted
    // order, zeros elsewhere; the tie term sums t³ - t over it (numpy's pairwise sum)
    let mut sorted_xy = xy;
    sorted_xy.sort_by(f64::total_cmp);
    let mut tie_terms = vec![0.0; n];
    let mut ties = false;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && sorted_xy[j] == sorted_xy[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties |= j - i > 1;
        tie_terms[i] = t.powf(3.0) - t;
        i = j;
    }

    // scipy's _mwu_choose_method: asymptotic when both sizes exceed 8 or there are ties
    let exact = !(ties || (n1 > 8 && n2 > 8));
    let p = if exact {
        mwu_exact_sf(u2 as u64, n1, n2)
    } else {
        let mu = (n1 * n2) as f64 / 2.0;
        let tie_term = pairwise_sum(&tie_terms);
        let s =
            ((n1 * n2) as f64 / 12.0 * ((n + 1) as f64 - tie_term / (n * (n - 1)) as f64)).sqrt();
        let numerator = u2 - mu - 0.5;
        let z = numerator / s;
        ndtr(-z)
    };
    TestResult {
        statistic: u1,
        pvalue: if p.is_nan() { p } else { p.clamp(0.0, 1.0) },
    }
}

/// scipy's `_MWU(n1, n2).sf(k)`: `P(U >= k)` under the null, summed from whichever tail is
/// shorter: `1 - cdf(k) + pmf(k)` when `k < n1·n2 - k`, else `cdf(n1·n2 - k)`, where the
/// pmf is `count(u) / C(n1 + n2, n1)` and the cdf numpy's running sum of the pmf.
fn mwu_exact_sf(k: u64, n1: usize, n2: usize) -> f64 {
    let (n1, n2) = (n1.min(n2) as u64, n1.max(n2) as u64);
    let kc = n1 * n2 - k;
    let total = xsf_binom((n1 + n2) as f64, n1 as f64);
    let (maxu, complement) = if k < kc { (k, true) } else { (kc, false) };
    let counts = mwu_counts(n1, n2, maxu as usize);
    let mut cdf = 0.0;
    let mut pmf = 0.0;
    for &c in &counts {
        pmf = c / total;
        cdf += pmf;
    }
    if complement {
        1.0 - cdf + pmf
    } else {
        cdf
    }
}

/// The number of arrangements with `U = u`, `u = 0..=maxu`: the coefficients of the
/// Gaussian binomial `[n1+n2 choose n1]_q = prod_{j=1..n1} (1 - q^(n2+j)) / (1 - q^j)`,
/// truncated at `q^maxu`, `O(n1·maxu)`. scipy builds the same counts by Löffler's
/// recursion (`O(maxu²)`); both are exact integers below 2^53 and rounded alike above.
fn mwu_counts(n1: u64, n2: u64, maxu: usize) -> Vec<f64> {
    let mut c = vec![0.0; maxu + 1];
    c[0] = 1.0;
    for j in 1..=n1 as usize {
        // multiply by (1 - q^(n2 + j))
        let shift = n2 as usize + j;
        if shift <= maxu {
            for u in (shift..=maxu).rev() {
                c[u] -= c[u - shift];
            }
        }
        // divide by (1 - q^j)
        for u in j..=maxu {
            c[u] += c[u - j];
        }
    }
    c
}

/// xsf's `binom(n, k)` for an integer `0 <= k < 20` (the multiplication formula, in the
/// order xsf multiplies).
fn xsf_binom(n: f64, k: f64) -> f64 {
    let mut kx = k.floor();
    let nx = n.floor();
    if nx == n && kx > nx / 2.0 && nx > 0.0 {
        kx = nx - kx;
    }
    let mut num = 1.0;
    let mut den = 1.0;
    for i in 1..=(kx as i32) {
        num *= f64::from(i) + n - kx;
        den *= f64::from(i);
        if num.abs() > 1e50 {
            num /= den;
            den = 1.0;
        }
    }
    num / den
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::golden::scipy_a::{check, fixture, num, sample};

    const RTOL: f64 = 1e-10;

    fn two_sample_section(section: &str, f: fn(&[f64], &[f64]) -> TestResult) {
        let doc = fixture();
        let cases = doc[section].as_array().expect("cases");
        assert!(cases.len() > 30);
        let (mut worst_s, mut worst_p) = (0.0f64, 0.0f64);
        for case in cases {
            let name = case["name"].as_str().unwrap_or("?");
            let r = f(&sample(&case["a"]), &sample(&case["b"]));
            worst_s = worst_s.max(check(
                r.statistic,
                num(&case["statistic"]),
                RTOL,
                &format!("{section} {name}: statistic"),
            ));
            worst_p = worst_p.max(check(
                r.pvalue,
                num(&case["pvalue"]),
                RTOL,
                &format!("{section} {name}: pvalue"),
            ));
        }
    }

    #[test]
    fn ttest_ind_matches_scipy() {
        two_sample_section("ttest_ind", ttest_ind);
    }

    #[test]
    fn mannwhitneyu_less_matches_scipy() {
        two_sample_section("mannwhitneyu_less", mannwhitneyu_less);
    }

    #[test]
    fn hand_written_cases() {
        // scipy's docstring example: males vs females, exact, 'less' from the females' side
        let males = [19.0, 22.0, 16.0, 29.0, 24.0];
        let females = [20.0, 11.0, 17.0, 12.0];
        let r = mannwhitneyu_less(&females, &males);
        assert_eq!(r.statistic, 3.0);
        assert!((r.pvalue - 0.055_555_555_555_555_55).abs() < 1e-16);
        // U counts for n1 = 2, n2 = 2: 1 1 2 1 1
        assert_eq!(mwu_counts(2, 2, 4), vec![1.0, 1.0, 2.0, 1.0, 1.0]);
        assert_eq!(xsf_binom(10.0, 3.0), 120.0);
        // t-test: equal constant samples give NaN, different constants ±inf and p 0
        let r = ttest_ind(&[2.0, 2.0], &[2.0, 2.0, 2.0]);
        assert!(r.statistic.is_nan() && r.pvalue.is_nan());
        let r = ttest_ind(&[2.0, 2.0], &[3.0, 3.0, 3.0]);
        assert_eq!((r.statistic, r.pvalue), (f64::NEG_INFINITY, 0.0));
    }
}
