//! Two-sample statistics, ported from scipy (the versions Evidently 0.7.23 calls: scipy
//! 1.17): each function matches scipy's to about 1e-10 relative, checked against values
//! scipy printed (`crates/monitoring/fixtures/scipy_*.json`, written by the scripts in
//! `scripts/monitoring/`).
//!
//! - [`ks`]: the two-sample Kolmogorov–Smirnov test; [`kolmogorov`]: the one-sample
//!   distribution `kstwo` its asymptotic p-value comes from;
//! - [`contingency`]: chi-square and G tests on counts; [`fisher`]: Fisher's exact test
//!   on a 2×2 table, with Boost's hypergeometric distribution;
//! - [`location`]: Student's t-test and the Mann–Whitney U test;
//! - [`anderson`], [`cvm`], [`epps`], [`mmd`]: the Anderson–Darling, Cramér–von Mises,
//!   Epps–Singleton and MMD tests; [`distance`]: Evidently's distances;
//!   [`rng`]: the permutation tests' generator;
//! - `special`: the special functions behind the p-values (cephes' `ndtr`, `erfc`,
//!   `igamc`/`chdtrc`, Boost's `stdtr`, xsf's `smirnov` and double-double arithmetic), each
//!   once; [`normal_cdf`], [`normal_sf`], [`chi2_sf`] and [`student_t_sf`] here wrap them.
//!
//! Inputs are finite `f64` samples (NaN and infinities are removed before, as Evidently
//! removes them); every function here is pure and allocates at most a copy of its inputs.

pub mod anderson;
pub mod contingency;
pub mod cvm;
pub mod distance;
pub mod epps;
pub mod fisher;
#[cfg(test)]
mod golden;
pub mod kolmogorov;
pub mod ks;
pub mod location;
pub mod mmd;
pub mod rng;
pub(crate) mod special;

/// A test's statistic and p-value, as scipy returns them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub pvalue: f64,
}

/// Input a test cannot take (where scipy raises): the message says why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StatsError(pub String);

/// The standard normal distribution's CDF, `Φ(x)`: cephes' `ndtr(x)`, as
/// `scipy.stats.norm.cdf`.
pub fn normal_cdf(x: f64) -> f64 {
    special::ndtr(x)
}

/// The standard normal distribution's survival function, `1 - Φ(x)`, accurate in the tail:
/// `ndtr(-x)`, as `scipy.stats.norm.sf`.
pub fn normal_sf(x: f64) -> f64 {
    special::ndtr(-x)
}

/// The chi-squared distribution's survival function with `df` degrees of freedom:
/// scipy's `chdtrc(df, x)` (cephes' `igamc(df/2, x/2)`) for `x > 0`; 1 for `x <= 0`
/// (where `chdtrc` gives NaN below 0), 0 at infinity, NaN for `df <= 0` or NaN `x`.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    // cephes' igamc, as scipy's chdtrc
    special::igamc(df / 2.0, x / 2.0)
}

/// Student's t distribution's survival function with `df` degrees of freedom.
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    // P(T > t) = stdtr(df, -t), evaluated as scipy's (Boost's) is
    special::stdtr(df, -t)
}

/// Ranks of `values` with ties given their average rank (scipy's
/// `rankdata(method='average')`), 1-based.
pub fn rank_average(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && values[order[j]] == values[order[i]] {
            j += 1;
        }
        // positions i..j (0-based) share ranks i+1..=j: their mean
        let rank = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = rank;
        }
        i = j;
    }
    ranks
}

/// The sizes of the groups of tied values in `sorted` (sorted ascending).
pub fn tie_counts(sorted: &[f64]) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        counts.push(j - i);
        i = j;
    }
    counts
}

/// `values` sorted ascending (total order; the inputs here are finite).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    sort_floats(&mut v);
    v
}

/// Sorts `values` ascending in `f64::total_cmp`'s order: a least-significant-digit radix
/// sort on the bits (11-bit digits, passes where every value has the same digit
/// skipped), several times a comparison sort on the columns drift reports sort; short
/// slices use the comparison sort.
pub fn sort_floats(values: &mut [f64]) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    if values.len() < 1024 {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    // total_cmp's order as unsigned integers: negative numbers have every bit flipped,
    // positive ones the sign bit set
    let key = |x: f64| {
        let b = x.to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | (1 << 63)
        }
    };
    let unkey = |k: u64| {
        if k >> 63 == 1 {
            f64::from_bits(k & !(1 << 63))
        } else {
            f64::from_bits(!k)
        }
    };
    let mut keys: Vec<u64> = values.iter().map(|&x| key(x)).collect();
    let mut scratch = vec![0u64; keys.len()];
    // every pass's histogram in one read of the keys
    const PASSES: usize = 64usize.div_ceil(BITS as usize);
    let mut counts = vec![[0usize; BUCKETS]; PASSES];
    for &k in &keys {
        for (p, c) in counts.iter_mut().enumerate() {
            c[((k >> (p as u32 * BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    for (p, c) in counts.iter_mut().enumerate() {
        if c.contains(&keys.len()) {
            continue; // every key has the same digit here
        }
        let shift = p as u32 * BITS;
        let mut offset = 0;
        for n in c.iter_mut() {
            let here = *n;
            *n = offset;
            offset += here;
        }
        for &k in &keys {
            let d = ((k >> shift) as usize) & (BUCKETS - 1);
            scratch[c[d]] = k;
            c[d] += 1;
        }
        std::mem::swap(&mut keys, &mut scratch);
    }
    for (v, k) in values.iter_mut().zip(keys) {
        *v = unkey(k);
    }
}

/// The mean of `values` (NaN when empty), summed pairwise like numpy for accuracy.
pub fn mean(values: &[f64]) -> f64 {
    pairwise_sum(values) / values.len() as f64
}

/// numpy's pairwise summation (blocks of 8 unrolled, 128-element leaves), so sums of
/// long columns round as numpy's do.
pub fn pairwise_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        return values.iter().fold(-0.0, |s, v| s + v);
    }
    if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i + 8 <= n {
            for k in 0..8 {
                r[k] += values[i + k];
            }
            i += 8;
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &values[i..] {
            s += v;
        }
        return s;
    }
    let mut half = n / 2;
    half -= half % 8;
    pairwise_sum(&values[..half]) + pairwise_sum(&values[half..])
}

/// The population standard deviation (`np.std`, ddof 0).
pub fn std_population(values: &[f64]) -> f64 {
    let m = mean(values);
    let sq: Vec<f64> = values.iter().map(|v| (v - m) * (v - m)).collect();
    (pairwise_sum(&sq) / values.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_radix_sort_orders_as_total_cmp() {
        let mut rng = rng::Rng::new(3);
        let mut v: Vec<f64> = (0..5000)
            .map(|i| {
                let u = rng.next_u64();
                match i % 5 {
                    0 => f64::from_bits(u),
                    1 => (u % 7) as f64 - 3.0,
                    2 => -0.0,
                    3 => f64::from_bits(u >> 12) * if u & 1 == 0 { 1.0 } else { -1.0 },
                    _ => (u as f64 / u64::MAX as f64) * 1e6 - 5e5,
                }
            })
            .filter(|x| !x.is_nan())
            .collect();
        let mut expected = v.clone();
        expected.sort_by(f64::total_cmp);
        sort_floats(&mut v);
        assert_eq!(
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            rank_average(&[3.0, 1.0, 3.0, 2.0, 3.0]),
            vec![4.0, 1.0, 4.0, 2.0, 4.0]
        );
        assert_eq!(tie_counts(&[1.0, 1.0, 2.0, 3.0, 3.0, 3.0]), vec![2, 1, 3]);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-10 * b.abs()
    }

    #[test]
    fn distributions_match_scipy_at_known_points() {
        // scipy.stats: norm.ppf(0.975), norm.sf(10), chi2.sf(3.84, 1), t.sf(±2, 10)
        assert!(close(normal_cdf(1.959963984540054), 0.975));
        assert!(close(normal_sf(10.0), 7.61985302416047e-24));
        assert!(close(chi2_sf(3.84, 1.0), 0.05004352124870519));
        assert!(close(student_t_sf(2.0, 10.0), 0.03669401738537018));
        assert!(close(student_t_sf(-2.0, 10.0), 0.9633059826146299));
    }

    #[test]
    fn pairwise_sum_matches_a_plain_sum_on_exact_values() {
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(pairwise_sum(&v), 499_500.0);
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
        assert!((std_population(&[1.0, 2.0, 3.0, 4.0]) - 1.118033988749895).abs() < 1e-15);
    }
}
