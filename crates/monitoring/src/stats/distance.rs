//! Distances between two samples or two distributions, as scipy and numpy compute them:
//! `scipy.stats.wasserstein_distance` and `energy_distance` (both `_cdf_distance`),
//! `scipy.spatial.distance.jensenshannon`, `scipy.stats.entropy` (Kullback-Leibler), and
//! numpy's Sturges histogram (`np.histogram_bin_edges(x, 'sturges')`, `np.histogram`).

use super::pairwise_sum;

/// scipy's `_cdf_distance(p, u, v)` on samples already sorted ascending: the L^p
/// distance between the two empirical CDFs (p is 1 or 2; for 2 the square root of the
/// integral, as scipy returns it).
fn cdf_distance(p: u8, u: &[f64], v: &[f64]) -> f64 {
    // Walks the merge of the two sorted samples (scipy sorts their concatenation). Between
    // consecutive merged values, the CDFs are the shares of each sample consumed so far:
    // where a run of equal values is not yet consumed whole, the gap is 0, and so is the
    // term, as in scipy's `searchsorted(..., 'right')`.
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let take = |i: &mut usize, j: &mut usize| -> f64 {
        if *j == v.len() || (*i < u.len() && u[*i] <= v[*j]) {
            *i += 1;
            u[*i - 1]
        } else {
            *j += 1;
            v[*j - 1]
        }
    };
    let total = u.len() + v.len();
    let mut terms = Vec::with_capacity(total.saturating_sub(1));
    if total > 0 {
        let mut prev = take(&mut i, &mut j);
        while i < u.len() || j < v.len() {
            let diff = i as f64 / nu - j as f64 / nv;
            let cur = take(&mut i, &mut j);
            let delta = cur - prev;
            terms.push(if p == 1 {
                diff.abs() * delta
            } else {
                diff * diff * delta
            });
            prev = cur;
        }
    }
    let sum = pairwise_sum(&terms);
    if p == 1 {
        sum
    } else {
        sum.sqrt()
    }
}

/// `scipy.stats.wasserstein_distance(u, v)` (unweighted) of two samples sorted ascending.
pub fn wasserstein_sorted(u: &[f64], v: &[f64]) -> f64 {
    cdf_distance(1, u, v)
}

/// `scipy.stats.energy_distance(u, v)` (unweighted) of two samples sorted ascending:
/// `sqrt(2) * _cdf_distance(2, u, v)`.
pub fn energy_sorted(u: &[f64], v: &[f64]) -> f64 {
    std::f64::consts::SQRT_2 * cdf_distance(2, u, v)
}

/// scipy's `rel_entr(x, y)`: `x ln(x/y)`, 0 when x is 0, +inf when only y is 0.
fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// `scipy.spatial.distance.jensenshannon(p, q)` in natural-log units: both vectors are
/// normalised to sum to 1 first.
pub fn jensenshannon(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    let mut total = Vec::with_capacity(p.len());
    for (a, b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        total.push(rel_entr(a, m) + rel_entr(b, m));
    }
    (pairwise_sum(&total) / 2.0).sqrt()
}

/// `scipy.stats.entropy(pk, qk)`: the Kullback-Leibler divergence of the normalised
/// distributions, natural log.
pub fn kl_divergence(pk: &[f64], qk: &[f64]) -> f64 {
    let (sp, sq) = (pairwise_sum(pk), pairwise_sum(qk));
    let terms: Vec<f64> = pk
        .iter()
        .zip(qk)
        .map(|(a, b)| rel_entr(a / sp, b / sq))
        .collect();
    pairwise_sum(&terms)
}

/// `np.histogram_bin_edges(values, bins='sturges')` for finite values (at least one):
/// equal-width bins over [min, max], their number `ceil(ptp / (ptp / (log2(n) + 1)))`, one
/// bin of width 1 around a constant sample.
pub fn sturges_edges(min: f64, max: f64, n: usize) -> Vec<f64> {
    let (mut first, mut last) = (min, max);
    let ptp = max - min;
    let width = ptp / ((n as f64).log2() + 1.0);
    let bins = if width > 0.0 {
        ((last - first) / width).ceil() as usize
    } else {
        1
    };
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    linspace(first, last, bins + 1)
}

/// `np.linspace(start, stop, num)` (endpoint included), computed as numpy does:
/// `i * step + start`, the last value exactly `stop`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let step = (stop - start) / div;
    let mut out: Vec<f64> = (0..num)
        .map(|i| {
            if step == 0.0 {
                (i as f64 / div) * (stop - start) + start
            } else {
                i as f64 * step + start
            }
        })
        .collect();
    if num > 1 {
        out[num - 1] = stop;
    }
    out
}

/// `np.histogram(sorted, bins=edges)[0]` for values sorted ascending: bin i holds
/// `edges[i] <= x < edges[i+1]`, the last bin also its right edge; values outside are
/// not counted.
pub fn histogram_sorted(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    let bins = edges.len() - 1;
    // numpy: searchsorted(a, edges[:-1], 'left') and searchsorted(a, edges[-1], 'right')
    let mut bounds = Vec::with_capacity(edges.len());
    for (i, e) in edges.iter().enumerate() {
        let idx = if i == bins {
            sorted.partition_point(|x| x <= e)
        } else {
            sorted.partition_point(|x| x < e)
        };
        bounds.push(idx);
    }
    bounds.windows(2).map(|w| (w[1] - w[0]) as u64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
    }

    #[test]
    fn match_scipy_on_small_samples() {
        // scipy 1.17: wasserstein_distance([0, 1, 3], [5, 6, 8]) = 5.0,
        // energy_distance([0, 8], [0, 8, 3]) = 0.6666666666666666,
        // jensenshannon([1, 0], [0.5, 0.5]) = 0.464501404022459,
        // entropy([0.5, 0.5], [0.9, 0.1]) = 0.5108256237659906
        assert!(close(wasserstein_sorted(&[0., 1., 3.], &[5., 6., 8.]), 5.0));
        assert!(close(
            energy_sorted(&[0., 8.], &[0., 3., 8.]),
            0.6666666666666666
        ));
        assert!(close(
            jensenshannon(&[1., 0.], &[0.5, 0.5]),
            0.464501404022459
        ));
        assert!(close(
            kl_divergence(&[0.5, 0.5], &[0.9, 0.1]),
            0.5108256237659906
        ));
    }

    #[test]
    fn sturges_bins_like_numpy() {
        // np.histogram_bin_edges(np.arange(10.), 'sturges') has 5 bins over [0, 9]
        let edges = sturges_edges(0.0, 9.0, 10);
        assert_eq!(edges, vec![0.0, 1.8, 3.6, 5.4, 7.2, 9.0]);
        let values: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(histogram_sorted(&values, &edges), vec![2, 2, 2, 2, 2]);
        // a constant sample: one bin [x - 0.5, x + 0.5]
        assert_eq!(sturges_edges(3.0, 3.0, 4), vec![2.5, 3.5]);
    }
}
