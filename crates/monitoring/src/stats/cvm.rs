//! The two-sample Cramér–von Mises test exactly as Evidently 0.7.23 computes it: a port
//! of `_cvm_2samp(x, y, method="auto")`, `_pval_cvm_2samp_exact` and `_cdf_cvm_inf` from
//! `evidently/legacy/calculations/stattests/cramer_von_mises_stattest.py` (Evidently's own
//! copy of an older SciPy `cramervonmises_2samp`, not SciPy 1.17's).
//!
//! Evidently's exact p-value has two defects this port reproduces on purpose, since the
//! goal is Evidently's numbers:
//!
//! * The frequency table's dtype is `np.min_scalar_type(max(zeta_bound, combinations))`
//!   where `combinations` is a Python *float* (true division of factorials). When the
//!   bound wins, the dtype is an unsigned integer and numpy refuses the in-place
//!   `tmp[0] += np.int64(...)` ("Cannot cast ufunc 'add' output from dtype('int64') to
//!   dtype('uint8') with casting rule 'same_kind'"): Evidently raises for those sample
//!   sizes (167 of the 361 pairs with both sizes in 2..=20, e.g. 2 vs 2, 3 vs 20). We
//!   return a [`StatsError`] with numpy's message.
//! * Otherwise the dtype is `float16` (when `combinations < 65000`) or `float32`: the
//!   statistic values and the path counts are rounded to half or single precision, the
//!   final count is summed (numpy's pairwise sum, float32 accumulators) and divided in
//!   that precision. The p-value is then off from the true exact one by up to ~1e-3
//!   (float16) or ~1e-7 (float32) relative — sometimes 0 where the truth is not. We
//!   emulate those roundings bit for bit (the operations' order is numpy's).
//!
//! The asymptotic branch (`max(nx, ny) > 20`) is a straight port; its series uses the
//! modified Bessel function `K_{1/4}`, computed here by the trapezoidal rule (see
//! `bessel_k_scaled`), which agrees with SciPy's `kv` to its accuracy (AMOS is off by
//! up to ~7e-14 relative for arguments in [0.7, 2]).

use super::{pairwise_sum, StatsError, TestResult};

/// Evidently's two-sample Cramér–von Mises test, `_cvm_2samp(x, y, method="auto")`.
///
/// * The statistic is `T = U / (nx ny N) - (4 nx ny - 1) / (6 N)` (Anderson 1962, eq. 9),
///   with `U` from the midranks of the sorted samples in the pooled sample.
/// * When `max(nx, ny) <= 20` the p-value is Evidently's exact one, including its
///   reduced-precision arithmetic (see the module documentation) and its failure for the
///   size pairs where numpy raises a casting error (returned as an error here).
/// * Otherwise it is asymptotic: the normalized statistic `tn` gives `p = 1.0` when
///   `tn < 0.003` (so also when `tn <= 0`, e.g. identical samples), else
///   `max(0, 1 - cdf(tn))` with the limiting distribution's series summed until a term
///   is below 1e-7 in magnitude (Evidently's rule). For large `tn` (strong drift) that
///   truncation leaves `p` around 1e-7..1e-9 rather than ~0, as in Evidently.
///
/// Errors when a sample has fewer than two observations (Evidently's message), or holds
/// a NaN or an infinity. Cost `O(N log N)` (two sorts), memory `O(N)`.
pub fn cvm_2samp(x: &[f64], y: &[f64]) -> Result<TestResult, StatsError> {
    if x.len() <= 1 || y.len() <= 1 {
        return Err(StatsError(
            "x and y must contain at least two observations.".to_string(),
        ));
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(non_finite_error("cvm_2samp"));
    }
    let mut xa = x.to_vec();
    let mut ya = y.to_vec();
    xa.sort_unstable_by(f64::total_cmp);
    ya.sort_unstable_by(f64::total_cmp);
    let (nx, ny) = (xa.len(), ya.len());

    // (rank - position)^2 for each sample, ranks being the midranks of the pooled sample
    // (scipy's rankdata 'average' on concatenate([xa, ya])).
    let (dx, dy) = squared_rank_shifts(&xa, &ya);
    let u = nx as f64 * pairwise_sum(&dx) + ny as f64 * pairwise_sum(&dy);

    let k = nx as u128 * ny as u128;
    let big_n = (nx + ny) as u128;
    let t = u / (k * big_n) as f64 - int_true_div(4 * k - 1, 6 * big_n);

    let pvalue = if nx.max(ny) <= 20 {
        pval_exact(u, nx, ny)?
    } else {
        let nf = big_n as f64;
        let et = (1.0 + int_true_div(1, big_n)) / 6.0;
        let nx2 = nx as i128 * nx as i128;
        let ny2 = ny as i128 * ny as i128;
        let (ki, ni) = (k as i128, big_n as i128);
        let vt = (nf + 1.0) * (4 * ki * ni - 3 * (nx2 + ny2) - 2 * ki) as f64;
        let vt = vt / (45 * big_n * big_n * 4 * k) as f64;
        let tn = 1.0 / 6.0 + (t - et) / (45.0 * vt).sqrt();
        if tn < 0.003 {
            // Evidently: "if tn < 0.003, the _cdf_cvm_inf(tn) < 1.28*1e-18, return 1.0"
            1.0
        } else {
            let p = 1.0 - cdf_cvm_inf(tn);
            // Python's max(0, p): 0 unless p > 0 (a NaN would also give 0)
            if p > 0.0 {
                p
            } else {
                0.0
            }
        }
    };
    Ok(TestResult {
        statistic: t,
        pvalue,
    })
}

/// The error for NaN or infinite input (Evidently drops those values before its tests).
fn non_finite_error(test: &str) -> StatsError {
    StatsError(format!(
        "{test}: the samples must be finite (drop NaN and infinite values first, as Evidently does)"
    ))
}

/// For sorted `xa` and `ya`: `(r_i - i)^2` for each sample, where `r_i` is the midrank
/// (1-based, ties averaged) of its `i`-th (1-based) element in `concatenate([xa, ya])`.
fn squared_rank_shifts(xa: &[f64], ya: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut dx = Vec::with_capacity(xa.len());
    let mut dy = Vec::with_capacity(ya.len());
    let (mut i, mut j) = (0, 0);
    while i < xa.len() || j < ya.len() {
        let v = match (xa.get(i), ya.get(j)) {
            (Some(&a), Some(&b)) => {
                if a <= b {
                    a
                } else {
                    b
                }
            }
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let (i0, j0) = (i, j);
        while i < xa.len() && xa[i] == v {
            i += 1;
        }
        while j < ya.len() && ya[j] == v {
            j += 1;
        }
        // pooled positions (0-based) i0+j0 .. i+j share the average rank
        let rank = (i0 + j0 + 1 + i + j) as f64 / 2.0;
        for pos in i0..i {
            let d = rank - (pos + 1) as f64;
            dx.push(d * d);
        }
        for pos in j0..j {
            let d = rank - (pos + 1) as f64;
            dy.push(d * d);
        }
    }
    (dx, dy)
}

/// Python's `int / int` for non-negative integers: the correctly rounded quotient. Exact
/// whenever both fit in 53 bits (always for real sample sizes: it needs `nx·ny < 2^51`);
/// beyond that the two conversions may each round (an ulp or so from Python's value).
fn int_true_div(a: u128, b: u128) -> f64 {
    a as f64 / b as f64
}

/// The greatest common divisor.
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// numpy's float floor division (`npy_floor_divide`, Python's semantics: the quotient of
/// `fmod`, adjusted toward negative infinity and snapped to an integer).
fn floor_divide(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return a / b;
    }
    let modulus = a % b;
    let mut div = (a - modulus) / b;
    if modulus != 0.0 && ((b < 0.0) != (modulus < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0_f64.copysign(a / b)
    }
}

/// The dtype numpy picks for Evidently's frequency table, when it can compute at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Precision {
    Half,
    Single,
}

impl Precision {
    /// Rounds an exactly computed value (a sum of two table entries, or an entry plus a
    /// square: always exact in f64 here) to the table's dtype.
    fn round(self, v: f64) -> f64 {
        match self {
            Precision::Half => round_to_f16(v),
            Precision::Single => f64::from(v as f32),
        }
    }
}

/// `v` rounded to the nearest IEEE half-precision value (ties to even), overflowing to
/// infinity as numpy's `npy_double_to_half` does.
fn round_to_f16(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let a = v.abs();
    if a >= 65520.0 {
        return f64::INFINITY.copysign(v);
    }
    // exponent of a's binade, clamped at half's smallest normal exponent (-14) so the
    // subnormal spacing 2^-24 applies below it
    let exponent = (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(-14);
    let quantum = 2f64.powi(exponent - 10);
    ((a / quantum).round_ties_even() * quantum).copysign(v)
}

/// numpy's pairwise summation (`FLOAT_pairwise_sum`: float accumulators, 8-way unrolled
/// blocks of up to 128 elements), for a table of float32 counts.
fn pairwise_sum_f32(values: &[f32]) -> f32 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        return values.iter().fold(-0.0_f32, |s, v| s + v);
    }
    if n <= BLOCK {
        let mut r = [0.0_f32; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i + 8 <= n {
            for (acc, v) in r.iter_mut().zip(&values[i..i + 8]) {
                *acc += v;
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
    pairwise_sum_f32(&values[..half]) + pairwise_sum_f32(&values[half..])
}

/// One column of Evidently's `gs` tables: a statistic value and how many lattice paths
/// reach it (both stored in the table's reduced precision).
#[derive(Clone, Copy, Debug)]
struct Entry {
    value: f64,
    freq: f64,
}

/// One of Evidently's `gs` tables: its columns in numpy's order, and a permutation of
/// them sorted by value (non-decreasing), which makes the intersections linear.
#[derive(Clone, Debug, Default)]
struct Table {
    entries: Vec<Entry>,
    order: Vec<u32>,
}

impl Table {
    /// For each distinct value, in ascending order: the value and the index of its first
    /// occurrence (the smallest index among equal values, as `np.unique` reports).
    fn distinct_first(&self) -> impl Iterator<Item = (f64, usize)> + '_ {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let first = *self.order.get(pos)? as usize;
            let value = self.entries[first].value;
            let mut min_idx = first;
            pos += 1;
            while let Some(&idx) = self.order.get(pos) {
                if self.entries[idx as usize].value != value {
                    break;
                }
                min_idx = min_idx.min(idx as usize);
                pos += 1;
            }
            Some((value, min_idx))
        })
    }
}

/// One step of Evidently's recursion (Xiao, Gordon & Yakovlev 2006, eq. 11): merges the
/// tables `tmp` and `g` like
/// `vi, i0, i1 = np.intersect1d(tmp[0], g[0], return_indices=True)` followed by
/// `np.concatenate([np.stack([vi, tmp[1, i0] + g[1, i1]]), np.delete(tmp, i0, 1),
/// np.delete(g, i1, 1)], 1)` — common values first (ascending, counts added), then the
/// rest of `tmp`, then the rest of `g`, in order — then adds `shift` to every value
/// (`tmp[0] += ...`). `intersect1d` matches the *first* occurrence of a value on each
/// side; rounding can leave duplicate values in a half-precision table, which stay, as in
/// numpy.
fn merge_step(tmp: &Table, g: &Table, shift: f64, prec: Precision) -> Table {
    // common values, ascending, with their first occurrences on each side
    let mut common: Vec<(f64, usize, usize)> = Vec::new();
    let mut ti = tmp.distinct_first().peekable();
    let mut gi = g.distinct_first().peekable();
    while let (Some(&(tv, tidx)), Some(&(gv, gidx))) = (ti.peek(), gi.peek()) {
        if tv < gv {
            ti.next();
        } else if gv < tv {
            gi.next();
        } else {
            common.push((tv, tidx, gidx));
            ti.next();
            gi.next();
        }
    }
    // where each surviving column of tmp and g lands in the output
    const GONE: u32 = u32::MAX;
    let mut new_t = vec![0_u32; tmp.entries.len()];
    let mut new_g = vec![0_u32; g.entries.len()];
    for &(_, t, gg) in &common {
        new_t[t] = GONE;
        new_g[gg] = GONE;
    }
    let mut entries = Vec::with_capacity(tmp.entries.len() + g.entries.len() - common.len());
    for &(value, t, gg) in &common {
        entries.push(Entry {
            value,
            freq: prec.round(tmp.entries[t].freq + g.entries[gg].freq),
        });
    }
    for (side, new_idx) in [(tmp, &mut new_t), (g, &mut new_g)] {
        for (e, slot) in side.entries.iter().zip(new_idx.iter_mut()) {
            if *slot != GONE {
                *slot = entries.len() as u32;
                entries.push(*e);
            }
        }
    }
    for e in &mut entries {
        // `tmp[0] += np.int64(...)`: computed in float64, cast back to the table's dtype
        // (monotone, so the sorted orders below stay sorted)
        e.value = prec.round(e.value + shift);
    }
    // the output's value order: merge the three value-sorted streams
    let streams: [Vec<u32>; 3] = [
        (0..common.len() as u32).collect(),
        tmp.order
            .iter()
            .map(|&i| new_t[i as usize])
            .filter(|&i| i != GONE)
            .collect(),
        g.order
            .iter()
            .map(|&i| new_g[i as usize])
            .filter(|&i| i != GONE)
            .collect(),
    ];
    let order = merge_sorted(&streams, &entries);
    Table { entries, order }
}

/// Merges index lists, each sorted by `entries[i].value`, into one sorted list.
fn merge_sorted(streams: &[Vec<u32>; 3], entries: &[Entry]) -> Vec<u32> {
    let mut out = Vec::with_capacity(streams.iter().map(Vec::len).sum());
    let mut pos = [0_usize; 3];
    loop {
        let mut best: Option<(usize, f64)> = None;
        for (s, stream) in streams.iter().enumerate() {
            if let Some(&i) = stream.get(pos[s]) {
                let v = entries[i as usize].value;
                if best.is_none_or(|(_, bv)| v < bv) {
                    best = Some((s, v));
                }
            }
        }
        let Some((s, _)) = best else { break };
        out.push(streams[s][pos[s]]);
        pos[s] += 1;
    }
    out
}

/// Evidently's `_pval_cvm_2samp_exact(s, m, n)`: the share of the `C(m+n, m)` orderings
/// whose statistic `U` is at least `s`, counted on the lattice of Xiao et al. (2006) —
/// with numpy's reduced-precision table (see the module documentation).
fn pval_exact(s: f64, m: usize, n: usize) -> Result<f64, StatsError> {
    let lcm = m / gcd(m, n) * n;
    let a = (lcm / m) as i64;
    let b = (lcm / n) as i64;
    let mn = (m * n) as i64;
    let lcm2 = (lcm * lcm) as i64;
    // zeta is a float64 in Evidently: np.int64 * np.float64, then float floor division
    let zeta = floor_divide(
        (lcm2 * (m + n) as i64) as f64 * (6.0 * s - (mn * (4 * mn - 1)) as f64),
        (6 * mn * mn) as f64,
    );
    let zeta_bound = lcm2 * (m + n) as i64;
    // math.factorial(m + n) / (math.factorial(m) * math.factorial(n)): exact below 2^53
    let combinations = binomial(m + n, m) as f64;
    let prec = if combinations > zeta_bound as f64 {
        // np.min_scalar_type of a Python float
        if combinations < 65000.0 {
            Precision::Half
        } else {
            // (< 3.4e38 always: C(40, 20) is about 1.4e11)
            Precision::Single
        }
    } else {
        let dtype = match zeta_bound {
            0..=0xff => "uint8",
            0x100..=0xffff => "uint16",
            0x1_0000..=0xffff_ffff => "uint32",
            _ => "uint64",
        };
        return Err(StatsError(format!(
            "Cannot cast ufunc 'add' output from dtype('int64') to dtype('{dtype}') with \
             casting rule 'same_kind' (Evidently 0.7.23's exact Cramér-von Mises p-value \
             fails for sample sizes {m} and {n})"
        )));
    };

    let mut gs: Vec<Table> = vec![Table::default(); m + 1];
    gs[0] = Table {
        entries: vec![Entry {
            value: 0.0,
            freq: 1.0,
        }],
        order: vec![0],
    };
    for u in 0..=n as i64 {
        let mut next: Vec<Table> = Vec::with_capacity(m + 1);
        for (v, g) in gs.iter().enumerate() {
            let d = a * v as i64 - b * u;
            let shift = (d * d) as f64;
            let empty = Table::default();
            let merged = merge_step(next.last().unwrap_or(&empty), g, shift, prec);
            next.push(merged);
        }
        gs = next;
    }
    let selected = gs[m]
        .entries
        .iter()
        .filter(|e| e.value >= zeta)
        .map(|e| e.freq);
    let pvalue = match prec {
        Precision::Half => {
            // HALF_add reduce: float accumulators (exact here: integers below 2^24), one
            // rounding to half; then half / half is computed in float and rounded to half
            let counts: Vec<f32> = selected.map(|f| f as f32).collect();
            let total = round_to_f16(f64::from(0.0_f32 + pairwise_sum_f32(&counts)));
            let denom = round_to_f16(combinations);
            round_to_f16(f64::from(total as f32 / denom as f32))
        }
        Precision::Single => {
            let counts: Vec<f32> = selected.map(|f| f as f32).collect();
            let total = 0.0_f32 + pairwise_sum_f32(&counts);
            f64::from(total / combinations as f32)
        }
    };
    Ok(pvalue)
}

/// `C(n, k)` exactly (here `n <= 40`).
fn binomial(n: usize, k: usize) -> u128 {
    let k = k.min(n - k);
    (0..k).fold(1_u128, |acc, i| acc * (n - i) as u128 / (i + 1) as u128)
}

/// Evidently's `_cdf_cvm_inf(x)`: the limiting CDF of the Cramér–von Mises statistic
/// (Csörgő & Faraway 1996, eq. 1.2),
/// `sum_k Γ(k+1/2) / (Γ(k+1) π^{3/2} √x) · √(4k+1) · e^{-q} K_{1/4}(q)`, `q = (4k+1)² / (16x)`,
/// adding terms up to and including the first whose magnitude is below 1e-7.
fn cdf_cvm_inf(x: f64) -> f64 {
    let pi_15 = std::f64::consts::PI.powf(1.5);
    // Γ(k + 1/2) / Γ(k + 1), by its recurrence from Γ(1/2) = √π (Evidently takes
    // exp(gammaln(k + 0.5) - gammaln(k + 1)); the two agree to rounding)
    let mut ratio = std::f64::consts::PI.sqrt();
    let mut tot = 0.0;
    let mut k: u64 = 0;
    loop {
        let u = ratio / (pi_15 * x.sqrt());
        let y = (4 * k + 1) as f64;
        let q = (y * y) / (16.0 * x);
        let bessel = bessel_k_scaled(0.25, q) * (-q).exp();
        let z = u * y.sqrt() * (-q).exp() * bessel;
        tot += z;
        // stop on a small term (and on NaN, as `np.abs(z) >= 1e-7` is then False)
        if z.is_nan() || z.abs() < 1e-7 {
            break;
        }
        k += 1;
        ratio *= (k as f64 - 0.5) / k as f64;
    }
    tot
}

/// `e^x K_ν(x)`, the exponentially scaled modified Bessel function of the second kind,
/// for `x > 0` (NaN otherwise), from `K_ν(x) = ∫_0^∞ exp(-x cosh t) cosh(νt) dt`:
/// `e^x K_ν(x) = ∫_0^∞ exp(-2x sinh²(t/2)) cosh(νt) dt`, by the trapezoidal rule, which
/// converges geometrically for this analytic, doubly-exponentially decaying integrand.
/// The step `min(0.1, 0.3/√x)` resolves the integrand's width (~1/√x for large `x`);
/// halving it changes the result by less than 4e-16 relative for x in [1e-8, 2000], and it
/// agrees with SciPy's `kve` to ~1e-15 except where AMOS itself errs (up to ~7e-14 for
/// x in [0.7, 2]). Sums with Neumaier compensation; at most a few hundred nodes.
fn bessel_k_scaled(nu: f64, x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 || x.is_infinite() {
        return if x == f64::INFINITY { 0.0 } else { f64::NAN };
    }
    let h = 0.1_f64.min(0.3 / x.sqrt());
    let mut sum = 0.5; // the t = 0 node, weight 1/2
    let mut comp = 0.0;
    for i in 1..200_000_u32 {
        let t = h * f64::from(i);
        let sh = (0.5 * t).sinh();
        let v = (-2.0 * x * sh * sh).exp() * (nu * t).cosh();
        let s = sum + v;
        comp += if sum.abs() >= v.abs() {
            (sum - s) + v
        } else {
            (v - s) + sum
        };
        sum = s;
        if v.is_nan() || v < 1e-20 * sum {
            break;
        }
    }
    (sum + comp) * h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::golden::scipy_b::{expected, fixture, num, rel_err, sample};

    const FIXTURE: &str = include_str!("../../fixtures/scipy_b.json");

    #[test]
    fn matches_evidently_golden_values() {
        let data = fixture(FIXTURE);
        let cases = data["cvm"].as_array().expect("cvm cases");
        assert!(cases.len() > 380);
        let (mut worst_stat, mut worst_asym, mut worst_abs) = (0.0_f64, 0.0_f64, 0.0_f64);
        let mut errors = 0;
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let (x, y) = (sample(&case["x"]), sample(&case["y"]));
            let got = cvm_2samp(&x, &y);
            if let Some(err) = case.get("error") {
                let got = got.expect_err(name);
                let want = err.as_str().expect("error text");
                let want = want.split_once(": ").map_or(want, |(_, m)| m);
                assert!(got.0.starts_with(want), "{name}: {} vs {want}", got.0);
                errors += 1;
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            let (want_t, want_p) = (expected(case, "statistic"), expected(case, "pvalue"));
            let es = rel_err(got.statistic, want_t);
            worst_stat = worst_stat.max(es);
            assert!(
                es <= 1e-10,
                "{name}: statistic {} vs {want_t}",
                got.statistic
            );
            if x.len().max(y.len()) <= 20 {
                // the emulated half/single-precision arithmetic must be bit-exact
                assert_eq!(got.pvalue, want_p, "{name}: exact p-value");
            } else {
                // p = 1 - cdf: the cdf's terms carry the Bessel functions' rounding
                // (SciPy's AMOS kv is itself off by up to 7e-14 relative), so a small
                // p-value is compared absolutely (1e-13), a larger one relatively.
                let diff = (got.pvalue - want_p).abs();
                worst_abs = worst_abs.max(diff);
                if want_p >= 1e-3 {
                    worst_asym = worst_asym.max(rel_err(got.pvalue, want_p));
                }
                assert!(
                    diff <= 1e-10 * want_p.abs() + 1e-13,
                    "{name}: pvalue {} vs {want_p}",
                    got.pvalue
                );
            }
        }
        assert_eq!(errors, 3 + 167, "Evidently's error cases");
        // observed: statistic bit-exact; asymptotic p-value within 2.3e-15 absolute
        // (ours is consistently ~2e-15 lower: SciPy's kv errors), 5.3e-13 relative for
        // p >= 1e-3 (1e-6 relative at p = 1.4e-9)
        assert!(worst_stat < 1e-13, "statistic {worst_stat:e}");
        assert!(worst_abs < 1e-14, "asymptotic p {worst_abs:e} absolute");
        assert!(worst_asym < 1e-11, "asymptotic p {worst_asym:e} relative");
    }

    #[test]
    fn bessel_k_matches_scipy_kv() {
        let data = fixture(FIXTURE);
        for case in data["kv"].as_array().expect("kv cases") {
            let q = num(&case["q"]);
            let want = num(&case["kv"]);
            let got = bessel_k_scaled(0.25, q) * (-q).exp();
            // AMOS (SciPy) is accurate to ~7e-14 relative here; below ~1e-300 it
            // underflows to 0 earlier than we do
            if want == 0.0 {
                assert!(got < 1e-290, "q={q}: {got}");
            } else {
                assert!(rel_err(got, want) < 1e-13, "q={q}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn half_precision_rounding() {
        assert_eq!(round_to_f16(2049.0), 2048.0); // tie to even
        assert_eq!(round_to_f16(2051.0), 2052.0);
        assert_eq!(round_to_f16(53130.0), 53120.0);
        assert_eq!(round_to_f16(65519.0), 65504.0);
        assert_eq!(round_to_f16(65520.0), f64::INFINITY);
        assert_eq!(round_to_f16(1.0 / 3.0), 0.333251953125);
        assert_eq!(round_to_f16(3e-6), 50.0 * 2f64.powi(-24)); // subnormal
    }

    #[test]
    fn floor_division_follows_python() {
        assert_eq!(floor_divide(7.0, 2.0), 3.0);
        assert_eq!(floor_divide(-7.0, 2.0), -4.0);
        assert_eq!(floor_divide(7.5, -2.0), -4.0);
        assert_eq!(floor_divide(0.0, 5.0), 0.0);
    }

    #[test]
    fn tn_rule_and_size_errors() {
        // identical samples: tn < 0 -> exactly 1 (the series would give NaN)
        let x: Vec<f64> = (0..30).map(|i| f64::from(i) * 0.37 % 5.0).collect();
        let r = cvm_2samp(&x, &x).expect("valid");
        assert_eq!(r.pvalue, 1.0);
        assert!(cvm_2samp(&[1.0], &x).is_err());
        assert!(cvm_2samp(&x, &[]).is_err());
        // a uint-table size pair fails as in Evidently
        let e = cvm_2samp(&[1.0, 2.0], &[0.5, 3.0]).expect_err("uint8 table");
        assert!(e.0.contains("uint8"), "{}", e.0);
    }
}
