//! The empirical maximum mean discrepancy (MMD) permutation test of Evidently 0.7.23's
//! `empirical_mmd` drift test: a port of `mmd_pval`, `mmd_2samp`, `kernel_matrix`, `rbf`,
//! `sigma_median` and `squared_paired_dist` from
//! `evidently/legacy/calculations/stattests/mmd_stattest.py`, for one numeric column.
//!
//! Evidently builds the whole `(n+m)²` kernel matrix and shuffles it 100 times with
//! numpy's *unseeded* global generator, so its p-value is not reproducible even in
//! Evidently. Here:
//!
//! * the statistic is computed exactly as Evidently does (same kernel formula, same
//!   per-row pairwise summation order as numpy's `sum` over the matrix blocks), in
//!   `O(n+m)` memory;
//! * the p-value is the share of [`MMD_PERMUTATIONS`] random relabellings whose MMD is at
//!   least the observed one, drawn from the crate's seeded SplitMix64 generator
//!   ([`super::rng::Rng`], so reproducible),
//!   all relabellings' block sums obtained in one pass over the pairs, kernel values
//!   computed on the fly (`O((n+m)²)` time, `O(n+m)` memory). It is a
//!   Monte-Carlo estimate of the same permutation p-value Evidently estimates, with a
//!   different random stream: two estimates differ by about `sqrt(2p(1-p)/100)`.

use super::rng::Rng;
use super::{pairwise_sum, StatsError, TestResult};

/// The largest total number of rows (`n + m`) [`mmd_pvalue`] accepts: the test costs
/// `1.5·(n+m)²` kernel evaluations (about 0.6 s at this limit) and its p-value's
/// permutations about `100·min(n,m)²/(n+m)²` additions per pair.
pub const MMD_MAX_ROWS: usize = 5_000;

/// The fewest rows a sample may have. Evidently divides by `n(n-1)`, so it fails only
/// for a single row; with two or three rows the permutation test is meaningless, and we
/// refuse those too.
pub const MMD_MIN_ROWS: usize = 4;

/// Evidently's number of permutations (at most 128: one bit each in a `u128` mask).
pub const MMD_PERMUTATIONS: usize = 100;
const _: () = assert!(MMD_PERMUTATIONS <= 128);

/// Values beyond this magnitude would overflow the squared distances.
const MAX_ABS_VALUE: f64 = 1e150;

/// Evidently's `empirical_mmd` test on `x` (reference) and `y` (current): the statistic
/// is Evidently's MMD estimate
/// `A·ΣKxx + B·ΣKyy - 2·mean(Kxy)`, `A = 1/(n(n-1))`, `B = 1/(m(m-1))`, with the RBF kernel
/// `K(a, b) = exp(-d/(2σ²))`, `d = (b² - 2ab) + a²` (Evidently's expansion, rounding
/// included), the diagonal of `Kxx` and `Kyy` zeroed, and `σ = sqrt(d_med / 2)` where
/// `d_med` is numpy's `percentile(..., 50, method='nearest')` of the `n²` reference-to-
/// reference distances (diagonal included, before any zeroing), `σ = sqrt(0.5)` when
/// that median is 0.
///
/// The p-value is the share of [`MMD_PERMUTATIONS`] uniformly random relabellings of the
/// pooled rows (drawn from a SplitMix64 generator seeded with `seed`) whose MMD is at
/// least the observed one — Evidently's `(mmd <= mmd_permuted).mean()`. A permuted MMD
/// within `1e-12` of the observed one (relative to the size of its terms) counts as
/// equal: mathematically tied relabellings (e.g. constant data, where every MMD is 0)
/// then count as Evidently intends rather than by rounding noise.
///
/// Errors: a sample with fewer than [`MMD_MIN_ROWS`] rows, more than [`MMD_MAX_ROWS`] rows
/// in all (Evidently would allocate the full kernel matrix; pick another method or a
/// smaller window), or values above `1e150` in magnitude (the squared distances would
/// overflow; Evidently returns NaN-based garbage there).
pub fn mmd_pvalue(x: &[f64], y: &[f64], seed: u64) -> Result<TestResult, StatsError> {
    let (nx, ny) = (x.len(), y.len());
    if nx < MMD_MIN_ROWS || ny < MMD_MIN_ROWS {
        return Err(StatsError(format!(
            "the MMD test needs at least {MMD_MIN_ROWS} rows in each sample (got {nx} \
             reference and {ny} current rows)"
        )));
    }
    if nx + ny > MMD_MAX_ROWS {
        return Err(StatsError(format!(
            "the MMD test is limited to {MMD_MAX_ROWS} rows in all (its cost grows with the \
             square of the rows; got {nx} reference and {ny} current rows): pick another \
             drift method for this column or a smaller window"
        )));
    }
    if x.iter()
        .chain(y)
        .any(|v| v.is_nan() || v.abs() > MAX_ABS_VALUE)
    {
        return Err(StatsError(format!(
            "the MMD test needs finite values of magnitude at most {MAX_ABS_VALUE:e}"
        )));
    }

    let sigma = sigma_median(x);
    let neg_gamma = -(1.0 / (2.0 * (sigma * sigma)));
    let kernel = |r: f64, c: f64| (neg_gamma * ((c * c - 2.0 * (r * c)) + r * r)).exp();

    // --- the observed statistic, summed as numpy sums the blocks: each row's entries
    // pairwise, the rows' sums one after the other
    let mut row = Vec::with_capacity(nx.max(ny));
    let mut block_sum = |rows: &[f64], cols: &[f64], zero_diagonal: bool, swap: bool| {
        let mut total = 0.0;
        for (i, &r) in rows.iter().enumerate() {
            row.clear();
            row.extend(cols.iter().enumerate().map(|(j, &c)| {
                if zero_diagonal && i == j {
                    0.0
                } else if swap {
                    kernel(c, r)
                } else {
                    kernel(r, c)
                }
            }));
            total += pairwise_sum(&row);
        }
        total
    };
    let sxx = block_sum(x, x, true, false);
    let syy = block_sum(y, y, true, false);
    // Kxy is kernel_matrix[-m:, :-m] = rbf(x, y).T: rows are y, entries K(x_a, y_b)
    let sxy = block_sum(y, x, false, true);
    let a = 1.0 / (nx * (nx - 1)) as f64;
    let b = 1.0 / (ny * (ny - 1)) as f64;
    let nxy = (nx * ny) as f64;
    let observed = a * sxx + b * syy - 2.0 * (sxy / nxy);
    let scale = (a * sxx).abs() + (b * syy).abs() + (2.0 * (sxy / nxy)).abs();
    let threshold = observed - 1e-12 * scale;

    // --- permutations. With z = x ++ y and R_p = sum over q != p of K(z_p, z_q), a
    // relabelling that puts the rows S (|S| = min(n, m)) in the smaller sample has
    //   ΣK_SS (ordered pairs), ΣK_S,rest = Σ_{p∈S} R_p - ΣK_SS,
    //   ΣK_rest,rest = Σ_p R_p - ΣK_SS - 2 ΣK_S,rest.
    // All the subsets are drawn first and recorded as one bit per permutation in a mask
    // per row; a single pass over the pairs then computes each kernel value once and adds
    // it to R and to ΣK_SS of every permutation holding both rows: (n+m)²/2 kernel
    // evaluations in all, instead of 100·min(n, m)²/2.
    let z: Vec<f64> = x.iter().chain(y).copied().collect();
    let big_n = z.len();
    let small = nx.min(ny);
    let small_is_y = ny <= nx;
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..big_n).collect();
    let mut masks = vec![0_u128; big_n];
    for t in 0..MMD_PERMUTATIONS {
        // a partial Fisher–Yates shuffle: order[..small] is a uniform random subset
        for i in 0..small {
            let j = i + rng.below((big_n - i) as u64) as usize;
            order.swap(i, j);
        }
        for &p in &order[..small] {
            masks[p] |= 1 << t;
        }
    }
    let mut row_sums = vec![0.0; big_n];
    let mut within = [0.0; MMD_PERMUTATIONS];
    for p in 0..big_n {
        let (zp, mp) = (z[p], masks[p]);
        let mut own = 0.0;
        for q in p + 1..big_n {
            let k = kernel(zp, z[q]);
            own += k;
            row_sums[q] += k;
            let mut both = mp & masks[q];
            while both != 0 {
                within[both.trailing_zeros() as usize] += k;
                both &= both - 1;
            }
        }
        row_sums[p] += own;
    }
    let total = pairwise_sum(&row_sums);
    let mut subset_sums = [0.0; MMD_PERMUTATIONS];
    for (p, &mask) in masks.iter().enumerate() {
        let mut bits = mask;
        while bits != 0 {
            subset_sums[bits.trailing_zeros() as usize] += row_sums[p];
            bits &= bits - 1;
        }
    }
    let mut hits = 0_usize;
    for (&half_within, &subset_sum) in within.iter().zip(&subset_sums) {
        let within = 2.0 * half_within; // ordered pairs
        let cross = subset_sum - within;
        let rest = total - within - 2.0 * cross;
        let (sxx_p, syy_p) = if small_is_y {
            (rest, within)
        } else {
            (within, rest)
        };
        let permuted = a * sxx_p + b * syy_p - 2.0 * (cross / nxy);
        if permuted >= threshold {
            hits += 1;
        }
    }
    Ok(TestResult {
        statistic: observed,
        pvalue: hits as f64 / MMD_PERMUTATIONS as f64,
    })
}

/// Evidently's `sigma_median(squared_paired_dist(x, x))`: `sqrt(0.5 · d_med)` with
/// `d_med` the element of rank `round_half_even((n² - 1) / 2)` (numpy's
/// `percentile(q=50, method='nearest')`) among the `n²` values
/// `d(x_i, x_j) = (x_j² - 2 x_i x_j) + x_i²` (zero on the diagonal, possibly slightly
/// negative off it), and `sqrt(0.5)` when `d_med` is 0.
///
/// The selection runs without materializing the `n²` distances: four counting passes,
/// each fixing the next 16 bits of the answer's order-preserving bit pattern.
fn sigma_median(x: &[f64]) -> f64 {
    let n = x.len();
    let count = (n as u64) * (n as u64);
    let rank = ((count - 1) as f64 * 0.5).round_ties_even() as u64;
    let dist = |r: f64, c: f64| (c * c - 2.0 * (r * c)) + r * r;
    // f64 -> u64 preserving the order of finite values
    let key = |v: f64| {
        let bits = v.to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        }
    };
    let mut prefix: u64 = 0; // the answer's bits fixed so far
    let mut below: u64 = 0; // elements whose key is below the current prefix range
    let mut histogram = vec![0_u32; 1 << 16];
    for pass in 0..4_u32 {
        let fixed_bits = 16 * pass;
        let shift = 48 - fixed_bits;
        histogram.iter_mut().for_each(|h| *h = 0);
        for &r in x {
            for &c in x {
                let k = key(dist(r, c));
                if fixed_bits == 0 || k >> (64 - fixed_bits) == prefix >> (64 - fixed_bits) {
                    histogram[((k >> shift) & 0xffff) as usize] += 1;
                }
            }
        }
        let mut bucket = 0;
        for (b, &h) in histogram.iter().enumerate() {
            if below + u64::from(h) > rank {
                bucket = b as u64;
                break;
            }
            below += u64::from(h);
        }
        prefix |= bucket << shift;
    }
    let bits = if prefix >> 63 == 1 {
        prefix & !(1 << 63)
    } else {
        !prefix
    };
    let median = f64::from_bits(bits);
    // (0.5 * median) ** 0.5; Evidently's `if sigma == 0: return (0.5 * 1) ** 0.5`
    let sigma = (0.5 * median).sqrt();
    if sigma == 0.0 {
        0.5_f64.sqrt()
    } else {
        sigma
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::golden::scipy_b::{expected, fixture, num, sample};

    const FIXTURE: &str = include_str!("../../fixtures/scipy_b.json");

    /// 4.5 standard deviations of a 100-permutation estimate of `p`, plus the reference's
    /// own Monte-Carlo error (`ref_perms` permutations, 0 for an exact enumeration), plus
    /// one permutation's worth of slack.
    fn p_tolerance(p: f64, draws: f64, ref_perms: f64) -> f64 {
        let var = p * (1.0 - p);
        let ref_var = if ref_perms > 0.0 {
            var / ref_perms
        } else {
            0.0
        };
        4.5 * (var / draws + ref_var).sqrt() + 0.015
    }

    #[test]
    fn matches_evidently_golden_values() {
        let data = fixture(FIXTURE);
        let cases = data["mmd"].as_array().expect("mmd cases");
        assert!(cases.len() > 15);
        let mut worst_stat = 0.0_f64;
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let (x, y) = (sample(&case["x"]), sample(&case["y"]));
            let got = mmd_pvalue(&x, &y, 0);
            if case.get("error").is_some() || x.len() < MMD_MIN_ROWS || y.len() < MMD_MIN_ROWS {
                // Evidently's ZeroDivisionError (1 row), or our own minimum (2-3 rows,
                // which Evidently computes)
                let e = got.expect_err(name);
                assert!(e.0.contains("at least 4 rows"), "{name}: {}", e.0);
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = expected(case, "statistic");
            // The MMD is a difference of terms of size <= 2 whose sums numpy and we
            // round alike (same per-row pairwise order), but numpy's SIMD exp differs
            // from libm's by an ulp for some arguments: the statistic can be off by a few
            // ulps of its terms, hence an absolute floor of 1e-14 for values near 0.
            let err = (got.statistic - want).abs();
            worst_stat = worst_stat.max(err / want.abs().max(1e-4));
            assert!(
                err <= 1e-10 * want.abs() + 1e-14,
                "{name}: statistic {} vs {want}",
                got.statistic
            );
            let draws = MMD_PERMUTATIONS as f64;
            if let Some(reference) = case.get("pvalue_reference") {
                let p_ref = num(reference);
                let ref_perms = case["reference_permutations"].as_f64().expect("count");
                let tol = p_tolerance(p_ref, draws, ref_perms);
                assert!(
                    (got.pvalue - p_ref).abs() <= tol,
                    "{name}: p {} vs reference {p_ref} (tolerance {tol})",
                    got.pvalue
                );
                // averaged over more seeds, the estimate tightens around the reference
                if x.len() + y.len() <= 300 {
                    let seeds = 10;
                    let mean = (1..=seeds)
                        .map(|s| mmd_pvalue(&x, &y, s).expect("valid").pvalue)
                        .sum::<f64>()
                        / seeds as f64;
                    let tol = p_tolerance(p_ref, draws * seeds as f64, ref_perms);
                    assert!(
                        (mean - p_ref).abs() <= tol,
                        "{name}: mean p {mean} vs reference {p_ref} (tolerance {tol})"
                    );
                }
            } else {
                // only Evidently's own 100-permutation estimate: two independent estimates
                let p_ev = expected(case, "pvalue_evidently");
                let tol = p_tolerance(p_ev, draws / 2.0, 0.0);
                assert!(
                    (got.pvalue - p_ev).abs() <= tol,
                    "{name}: p {} vs Evidently's {p_ev} (tolerance {tol})",
                    got.pvalue
                );
            }
        }
        // observed: at most 7.8e-16 absolute (1.7e-12 relative to a statistic of 2e-4):
        // numpy's AVX-512 exp differs from libm's by an ulp for ~5% of arguments
        assert!(worst_stat < 1e-11, "{worst_stat:e}");
    }

    #[test]
    fn limits_and_determinism() {
        let x: Vec<f64> = (0..10).map(|i| f64::from(i) * 0.3).collect();
        let y: Vec<f64> = (0..8).map(|i| f64::from(i) * 0.35 + 0.1).collect();
        let a = mmd_pvalue(&x, &y, 7).expect("valid");
        let b = mmd_pvalue(&x, &y, 7).expect("valid");
        assert_eq!(a, b);
        let big = vec![0.5; MMD_MAX_ROWS];
        let e = mmd_pvalue(&big, &[1.0; 4], 0).expect_err("too many rows");
        assert!(e.0.contains("another drift method"), "{}", e.0);
        assert!(mmd_pvalue(&x, &[1.0, 2.0, 3.0], 0).is_err());
        assert!(mmd_pvalue(&x, &[1.0, 2.0, 3.0, f64::NAN], 0).is_err());
        // constant data: every relabelling ties with the observed MMD (0): p = 1
        let c = mmd_pvalue(&[2.0; 6], &[2.0; 5], 3).expect("valid");
        assert_eq!(c.statistic, 0.0);
        assert_eq!(c.pvalue, 1.0);
    }

    #[test]
    fn sigma_selection_matches_a_sort() {
        let x = sample(&serde_json::json!({"gen": {"seed": 5, "n": 37, "decimals": 1}}));
        let mut all: Vec<f64> = x
            .iter()
            .flat_map(|&r| x.iter().map(move |&c| (c * c - 2.0 * (r * c)) + r * r))
            .collect();
        all.sort_by(f64::total_cmp);
        let rank = ((all.len() - 1) as f64 * 0.5).round_ties_even() as usize;
        assert_eq!(sigma_median(&x), (0.5 * all[rank]).sqrt());
        // even n: (n² - 1)/2 ends in .5, rounded to the even rank
        let x: Vec<f64> = (0..6).map(|i| f64::from(i * i) / 7.0 - 1.0).collect();
        let mut all: Vec<f64> = x
            .iter()
            .flat_map(|&r| x.iter().map(move |&c| (c * c - 2.0 * (r * c)) + r * r))
            .collect();
        all.sort_by(f64::total_cmp);
        assert_eq!(sigma_median(&x), (0.5 * all[18]).sqrt());
        // median distance 0 -> sqrt(0.5)
        assert_eq!(sigma_median(&[1.0, 1.0, 1.0, 2.0]), 0.5_f64.sqrt());
    }
}
