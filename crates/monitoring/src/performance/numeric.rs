//! numpy's floating-point reductions, operation for operation, so that metrics computed
//! here round exactly as sklearn's and NannyML's do.

/// numpy's block size for pairwise summation (`PW_BLOCKSIZE`).
const BLOCK: usize = 128;

/// `np.sum` of a contiguous float64 array: numpy's pairwise summation (eight running
/// sums over blocks of up to 128 values, blocks combined pairwise), which `np.mean`,
/// `np.average` and sklearn's reductions all go through.
pub(crate) fn sum(values: &[f64]) -> f64 {
    // numpy's reduction starts from the identity 0.0
    0.0 + pairwise(values)
}

fn pairwise(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            res += v;
        }
        res
    } else {
        // halve, keeping the first half a multiple of the unroll factor
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise(&a[..n2]) + pairwise(&a[n2..])
    }
}

/// `np.mean`: the pairwise sum divided by the count (NaN for no values).
pub(crate) fn mean(values: &[f64]) -> f64 {
    sum(values) / values.len() as f64
}

/// `np.sum` of `f` over `0..n`, materialised as numpy would the array first.
pub(crate) fn sum_of(n: usize, f: impl FnMut(usize) -> f64) -> f64 {
    let values: Vec<f64> = (0..n).map(f).collect();
    sum(&values)
}

/// `np.mean` of `f` over `0..n`.
pub(crate) fn mean_of(n: usize, f: impl FnMut(usize) -> f64) -> f64 {
    sum_of(n, f) / n as f64
}

/// scipy's `trapezoid(y, x)`: `sum(diff(x) * (y[1:] + y[:-1]) / 2.0)`, pairwise.
pub(crate) fn trapezoid(y: &[f64], x: &[f64]) -> f64 {
    debug_assert_eq!(x.len(), y.len());
    let terms: Vec<f64> = (1..x.len())
        .map(|i| (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0)
        .collect();
    sum(&terms)
}

/// sklearn's `auc(x, y)`: the trapezoid over a monotonic `x` (negated when decreasing);
/// `None` when `x` is neither increasing nor decreasing or has fewer than two points.
pub(crate) fn auc(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let increasing = x.windows(2).all(|w| w[1] - w[0] >= 0.0);
    let decreasing = x.windows(2).all(|w| w[1] - w[0] <= 0.0);
    if increasing {
        Some(trapezoid(y, x))
    } else if decreasing {
        Some(-trapezoid(y, x))
    } else {
        None
    }
}

/// `np.round(x, decimals)` for float64: `rint(x * 10^d) / 10^d` (ties to even).
pub(crate) fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round_ties_even() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_is_exact_on_integers_and_blocks_like_numpy() {
        for n in [0usize, 1, 7, 8, 9, 127, 128, 129, 1000, 4097] {
            let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(sum(&v), (n * n.saturating_sub(1) / 2) as f64, "n = {n}");
        }
        // 1e16 + 1 + 1 ... loses the ones sequentially; numpy's blocks keep some
        let mut v = vec![1.0; 16];
        v[0] = 1e16;
        let sequential = v.iter().fold(0.0, |a, b| a + b);
        assert_eq!(sequential, 1e16);
        // r[0] = 1e16 + 1 (lost), r[1..8] = 2 each: 1e16 + 14
        assert_eq!(sum(&v), 1e16 + 14.0);
    }

    #[test]
    fn trapezoid_and_auc() {
        assert_eq!(trapezoid(&[0.0, 1.0], &[0.0, 1.0]), 0.5);
        assert_eq!(auc(&[1.0, 0.0], &[1.0, 0.0]), Some(0.5));
        assert_eq!(auc(&[0.0, 1.0, 0.5], &[0.0, 1.0, 1.0]), None);
        assert_eq!(round_to(0.123455, 5), 0.12346);
        assert_eq!(round_to(2.5e-5, 5), 2e-5);
    }
}
