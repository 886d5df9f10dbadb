//! Tests on counts, ported from scipy 1.17: [`chisquare`] and [`g_test`],
//! `scipy.stats.chisquare(f_obs, f_exp)` and
//! `scipy.stats.power_divergence(f_obs, f_exp, lambda_='log-likelihood')`, both
//! `_power_divergence` in `scipy/stats/_stats_py.py` (with scipy 1.17's check that the
//! observed and expected totals agree), the p-value from `scipy.special.chdtrc`
//! (`special::chdtrc`, cephes' `igamc`).
//!
//! Fisher's exact test is in `fisher`; [`fisher_exact`] is re-exported here for the
//! callers of its former path.

use super::special::chdtrc;
use super::{pairwise_sum, StatsError, TestResult};

/// scipy's tolerance on `|sum(f_obs) - sum(f_exp)| / min(sum(f_obs), sum(f_exp))`:
/// `sqrt(eps)` of float64.
const SUM_RTOL: f64 = 1.490_116_119_384_765_6e-8;

/// scipy's `chisquare(f_obs, f_exp)` (ddof 0): Pearson's statistic
/// `sum((f_obs - f_exp)^2 / f_exp)` (numpy's pairwise sum) and its p-value
/// `chdtrc(k - 1, statistic)` for `k` categories.
///
/// Errors (where scipy raises `ValueError`) when the sums of `f_obs` and `f_exp` differ by
/// more than `sqrt(eps) ≈ 1.49e-8` relative to the smaller, or when the lengths differ (and
/// neither is 1, which numpy would broadcast). Edge cases follow scipy: an expected count of
/// 0 gives an infinite (or NaN, for 0/0) statistic and a p-value of 0 (or NaN); a single
/// category has 0 degrees of freedom, so the p-value is NaN for a statistic of 0 and 0
/// otherwise; a negative statistic (never for Pearson) would give NaN.
pub fn chisquare(f_obs: &[f64], f_exp: &[f64]) -> Result<TestResult, StatsError> {
    power_divergence(f_obs, f_exp, Lambda::Pearson)
}

/// scipy's `power_divergence(f_obs, f_exp, lambda_='log-likelihood')`, the G-test:
/// statistic `2·sum(xlogy(f_obs, f_obs / f_exp))` (a zero observed count contributes 0),
/// p-value `chdtrc(k - 1, statistic)`.
///
/// The same sum check as [`chisquare`] (Evidently passes raw reference counts as `f_exp`,
/// so samples of different sizes make scipy raise: this returns the error). The statistic
/// can come out slightly negative from rounding when the counts agree; `chdtrc` of a
/// negative value is NaN, as in scipy.
pub fn g_test(f_obs: &[f64], f_exp: &[f64]) -> Result<TestResult, StatsError> {
    power_divergence(f_obs, f_exp, Lambda::LogLikelihood)
}

#[derive(Clone, Copy)]
enum Lambda {
    Pearson,
    LogLikelihood,
}

/// `_power_divergence(f_obs, f_exp, ddof=0, axis=0, lambda_)` for 1-d inputs.
fn power_divergence(
    f_obs: &[f64],
    f_exp: &[f64],
    lambda: Lambda,
) -> Result<TestResult, StatsError> {
    let k = match (f_obs.len(), f_exp.len()) {
        (a, b) if a == b => a,
        (1, b) => b,
        (a, 1) => a,
        (a, b) => {
            return Err(StatsError(format!(
                "shape mismatch: objects cannot be broadcast to a single shape. \
                 Mismatch is between arg 0 with shape ({a},) and arg 1 with shape ({b},)."
            )))
        }
    };
    let obs = |i: usize| f_obs[if f_obs.len() == 1 { 0 } else { i }];
    let exp = |i: usize| f_exp[if f_exp.len() == 1 { 0 } else { i }];
    let obs_b: Vec<f64> = (0..k).map(obs).collect();
    let exp_b: Vec<f64> = (0..k).map(exp).collect();

    let obs_sum = pairwise_sum(&obs_b);
    let exp_sum = pairwise_sum(&exp_b);
    let relative_diff = (obs_sum - exp_sum).abs() / np_minimum(obs_sum, exp_sum);
    if relative_diff > SUM_RTOL {
        return Err(StatsError(format!(
            "For each axis slice, the sum of the observed frequencies must agree with the \
             sum of the expected frequencies to a relative tolerance of \
             1.4901161193847656e-08, but the percent differences are:\n{relative_diff}"
        )));
    }

    let terms: Vec<f64> = obs_b
        .iter()
        .zip(&exp_b)
        .map(|(&o, &e)| match lambda {
            Lambda::Pearson => (o - e) * (o - e) / e,
            Lambda::LogLikelihood => 2.0 * xlogy(o, o / e),
        })
        .collect();
    let statistic = pairwise_sum(&terms);
    let df = k as f64 - 1.0;
    Ok(TestResult {
        statistic,
        pvalue: chdtrc(df, statistic),
    })
}

/// `np.minimum`: NaN if either is NaN.
fn np_minimum(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// `scipy.special.xlogy(x, y)`: `x·log(y)`, and 0 when `x == 0` (unless `y` is NaN).
fn xlogy(x: f64, y: f64) -> f64 {
    if x == 0.0 && !y.is_nan() {
        0.0
    } else {
        x * y.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::golden::scipy_a::{check, fixture, num};

    const RTOL: f64 = 1e-10;

    fn counts_section(section: &str, f: fn(&[f64], &[f64]) -> Result<TestResult, StatsError>) {
        let doc = fixture();
        let cases = doc[section].as_array().expect("cases");
        assert!(cases.len() > 20);
        let (mut worst_s, mut worst_p) = (0.0f64, 0.0f64);
        for case in cases {
            let name = case["name"].as_str().unwrap_or("?");
            let obs: Vec<f64> = case["f_obs"]
                .as_array()
                .expect("f_obs")
                .iter()
                .map(num)
                .collect();
            let exp: Vec<f64> = case["f_exp"]
                .as_array()
                .expect("f_exp")
                .iter()
                .map(num)
                .collect();
            match (f(&obs, &exp), case.get("error")) {
                (Err(e), Some(msg)) => {
                    let msg = msg.as_str().expect("message");
                    let head = "For each axis slice, the sum of the observed frequencies";
                    assert!(
                        msg.starts_with(head) && e.0.starts_with(head),
                        "{name}: {e}"
                    );
                }
                (Ok(r), None) => {
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
                (got, want) => panic!("{section} {name}: got {got:?}, scipy {want:?}"),
            }
        }
    }

    #[test]
    fn chisquare_matches_scipy() {
        counts_section("chisquare", chisquare);
    }

    #[test]
    fn g_test_matches_scipy() {
        counts_section("g_test", g_test);
    }

    #[test]
    fn hand_written_cases() {
        // 2 categories, observed 10/30 against 20/20: statistic 10, p = chi2.sf(10, 1)
        let r = chisquare(&[10.0, 30.0], &[20.0, 20.0]).expect("sums agree");
        assert_eq!(r.statistic, 10.0);
        assert!((r.pvalue - 0.001_565_402_258_002_549_4).abs() < 1e-17);
        // sums that disagree raise
        let e = g_test(&[10.0, 30.0], &[20.0, 30.0]).expect_err("sums differ");
        assert!(e.0.contains("relative tolerance"), "{e}");
    }
}
