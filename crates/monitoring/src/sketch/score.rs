//! Drift between a reference (a full sample) and a sketched current window.
//!
//! An exact sketch is scored by `drift::column_drift` on its sample, so the result is
//! Evidently's to the bit. An approximate one (a KLL sketch) is scored from its weighted
//! values with the same formulas, Evidently's binning and default choice of method:
//!
//! - `ks`: the statistic from the weighted CDF; the p-value as scipy's `ks_2samp` with the
//!   true sizes: on up to 10,000 current values the sketch is expanded and `ks_2samp`
//!   runs as is (its exact branch); above, `kstwo.sf(D, round(n·m/(n+m)))`, the branch
//!   scipy takes for those sizes. The statistic is within the sketch's rank error of the
//!   exact one; a p-value near the threshold moves with it;
//! - `wasserstein` (normed by the reference's exact standard deviation), `ed`: scipy's
//!   `_cdf_distance` on the weighted CDF;
//! - `psi`, `kl_div`, `jensenshannon`: weighted Sturges histograms over the exact minimum
//!   and maximum and the true counts. With at most 20 distinct reference values Evidently
//!   compares the share of each distinct value: `jensenshannon` then takes the sketch's
//!   values (it is linear in the share of values absent from the reference), `psi` and
//!   `kl_div` are not computed (they weigh each such value on its own);
//! - `hellinger`: Sturges densities in as many bins as the distinct values of both windows,
//!   that number estimated (`distinct`);
//! - `t_test`: scipy's pooled-variance test from the exact count and the Welford mean and
//!   variance (exact up to rounding).
//!
//! `anderson`, `cramer_von_mises`, `mannw`, `es` and `empirical_mmd` need every value: a
//! column gets no score and a note that says so, never an error. An exact sketch of more
//! than `EXPAND_LIMIT` values (a low-cardinality column of a long window) is scored from
//! its counts the same way, without a note: its weights are exact, so are its statistics
//! (to the rounding of sums), and the count-based methods (`chisquare`, `z`, the
//! by-value shares) run through `column_drift` on the counts.
//!
//! A categorical sketch that overflowed is compared on its frequent categories plus one
//! bucket for the rest, the reference's categories merged the same way.

use std::f64::consts::SQRT_2;

use super::distinct;
use super::weighted::{self, Weighted};
use super::{CategorySketch, ColumnSketch, NumericSketch, OTHER};
use crate::drift::sample::aligned_counts;
use crate::drift::{self, ColumnDrift, ColumnType, DriftError, Method, Sample};
use crate::stats::kolmogorov::kstwo_sf;
use crate::stats::{self, distance, pairwise_sum};

/// The largest exact window scored from a sample of its every value (8 MB).
pub const EXPAND_LIMIT: u64 = 1_000_000;

/// scipy's `MAX_AUTO_N`: `ks_2samp` is exact when both sizes are at most this.
const KS_EXACT_N: u64 = 10_000;

/// The drift of the column `name` between `reference` and a sketched `current` window:
/// `drift::column_drift` on the sketch's sample while it is exact, else the same method
/// (Evidently's default choice when `None`) from the sketch (see the module's text).
/// Errors are `column_drift`'s: a type mismatch, a method that does not fit, a bad
/// threshold.
pub fn sketch_drift(
    name: &str,
    ty: ColumnType,
    reference: &Sample,
    current: &ColumnSketch,
    method: Option<Method>,
    threshold: Option<f64>,
) -> Result<ColumnDrift, DriftError> {
    // column_drift's checks and its verdict on empty windows, on an empty window of the
    // sketch's type: the same errors and notes, whatever the sketch holds
    let empty = match current {
        ColumnSketch::Numerical(_) => Sample::numerical([]),
        ColumnSketch::Categorical(_) => Sample::from_counts([], 0),
    };
    let mut checked = drift::column_drift(name, ty, reference, &empty, method, threshold)?;
    checked.current_rows = current.count();
    checked.current_missing = current.missing();
    if reference.is_empty() || current.count() == 0 {
        return Ok(checked);
    }
    match current {
        ColumnSketch::Numerical(s) => numerical(name, reference, s, method, threshold),
        ColumnSketch::Categorical(s) => categorical(name, reference, s, method, threshold),
    }
}

fn numerical(
    name: &str,
    reference: &Sample,
    s: &NumericSketch,
    method: Option<Method>,
    threshold: Option<f64>,
) -> Result<ColumnDrift, DriftError> {
    let exact = s.is_exact();
    if exact && s.count() <= EXPAND_LIMIT {
        if let Some(current) = s.present_sample() {
            let mut d = drift::column_drift(
                name,
                ColumnType::Numerical,
                reference,
                &current,
                method,
                threshold,
            )?;
            d.current_missing = s.missing();
            return Ok(d);
        }
    }
    let (values, weights) = s.weighted();
    let w = Weighted {
        values: &values,
        weights: &weights,
        total: s.count(),
    };
    let method = method.unwrap_or_else(|| {
        // the choice depends on the reference's size and whether both windows hold more
        // than 5 distinct values: exact counts list them; a KLL sketch has seen > 1,024
        let proxy = if exact {
            Sample::numerical(values.iter().copied())
        } else {
            Sample::numerical((0..6).map(f64::from))
        };
        drift::default_method(reference, &proxy, ColumnType::Numerical)
    });
    let threshold = threshold.unwrap_or(method.default_threshold());
    let approximate = (!exact).then(|| {
        format!(
            "approximate: from a quantile sketch of the window's {} values (KLL, rank error \
             about 0.001)",
            s.count()
        )
    });
    let outcome = numerical_score(method, reference, s, &w, exact);
    Ok(verdict(
        ColumnType::Numerical,
        method,
        threshold,
        outcome,
        approximate,
        reference,
        s.count(),
        s.missing(),
    ))
}

/// The score, or the note that says why there is none.
fn numerical_score(
    method: Method,
    reference: &Sample,
    s: &NumericSketch,
    w: &Weighted<'_>,
    exact: bool,
) -> Result<f64, String> {
    let rv = reference.values().unwrap_or(&[]);
    let (n, m) = (rv.len() as f64, w.total as f64);
    Ok(match method {
        Method::Ks if w.total <= KS_EXACT_N => stats::ks::ks_2samp(rv, &w.expand()).pvalue,
        Method::Ks => {
            let d = weighted::ks_statistic(rv, w);
            let en = n * m / (n + m);
            let p = kstwo_sf(d, en.round_ties_even());
            if p.is_nan() {
                p
            } else {
                p.clamp(0.0, 1.0)
            }
        }
        Method::Wasserstein => {
            weighted::cdf_distance(1, rv, w) / stats::std_population(rv).max(0.001)
        }
        Method::Ed => SQRT_2 * weighted::cdf_distance(2, rv, w),
        Method::TTest => t_test(rv, s),
        Method::Hellinger => hellinger(rv, s, w),
        Method::Psi | Method::KlDiv | Method::JensenShannon if reference.distinct() > 20 => {
            let min = rv[0].min(values_min(s, w));
            let max = rv[rv.len() - 1].max(values_max(s, w));
            let edges = distance::sturges_edges(min, max, rv.len() + w.total as usize);
            let a: Vec<f64> = distance::histogram_sorted(rv, &edges)
                .into_iter()
                .map(|k| k as f64 / n)
                .collect();
            let b: Vec<f64> = weighted::histogram(w, &edges)
                .into_iter()
                .map(|k| k as f64 / m)
                .collect();
            binned(method, a, b)
        }
        Method::Psi | Method::KlDiv if !exact => {
            return Err(format!(
                "not computed: with at most 20 distinct reference values Evidently's {} \
                 weighs the share of every distinct value, and this window of {} values \
                 kept a sketch of them; pick jensenshannon, wasserstein or ks for windows of \
                 the prediction log",
                method.name(),
                w.total
            ))
        }
        Method::Psi | Method::KlDiv | Method::JensenShannon | Method::ChiSquare | Method::Z => {
            by_value(method, rv, w)?
        }
        _ => {
            return Err(format!(
                "not computed: {} needs every value, and this window of {} values kept a \
                 sketch; pick ks, wasserstein, psi, jensenshannon, kl_div, hellinger, ed or \
                 t_test for windows of the prediction log",
                method.name(),
                w.total
            ))
        }
    })
}

fn values_min(s: &NumericSketch, w: &Weighted<'_>) -> f64 {
    s.min().unwrap_or(w.values[0])
}

fn values_max(s: &NumericSketch, w: &Weighted<'_>) -> f64 {
    s.max().unwrap_or(w.values[w.values.len() - 1])
}

/// `psi`, `kl_div` or `jensenshannon` on the shares of each bin (`drift`'s formulas,
/// zero shares filled for the first two).
fn binned(method: Method, mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    if method == Method::JensenShannon {
        return distance::jensenshannon(&a, &b);
    }
    drift::fill(&mut a);
    drift::fill(&mut b);
    if method == Method::KlDiv {
        return distance::kl_divergence(&a, &b);
    }
    let terms: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x / y).ln())
        .collect();
    pairwise_sum(&terms)
}

/// A count-based method (`chisquare`, `z`, shares of each distinct value) through
/// `column_drift` on categorical samples keyed by the values, the keys ordered as the
/// values (so `z`'s "smallest value" is the same one).
fn by_value(method: Method, rv: &[f64], w: &Weighted<'_>) -> Result<f64, String> {
    fn key(x: f64) -> String {
        let b = x.to_bits();
        let k = if b >> 63 == 1 { !b } else { b | (1 << 63) };
        format!("{k:016x}")
    }
    let mut r: Vec<(String, u64)> = Vec::new();
    let mut i = 0;
    while i < rv.len() {
        let j = i + rv[i..].partition_point(|&v| v == rv[i]);
        r.push((key(rv[i]), (j - i) as u64));
        i = j;
    }
    let c = w.values.iter().zip(w.weights).map(|(&v, &n)| (key(v), n));
    let (r, c) = (Sample::from_counts(r, 0), Sample::from_counts(c, 0));
    let d = drift::column_drift("", ColumnType::Categorical, &r, &c, Some(method), None)
        .map_err(|e| format!("not computed: {e}"))?;
    match (d.score, d.note) {
        (Some(score), _) => Ok(score),
        (None, note) => Err(note.unwrap_or_else(|| "not computed".to_owned())),
    }
}

/// Evidently's Hellinger distance on a numerical column: Sturges densities with as many
/// bins as the two windows have distinct values (estimated once the sketch is a KLL one).
fn hellinger(rv: &[f64], s: &NumericSketch, w: &Weighted<'_>) -> f64 {
    let distinct = match s.distinct_sketch() {
        Some(d) => distinct::union_estimate(rv, d).round() as usize,
        None => exact_union(rv, w.values),
    };
    let min = rv[0].min(values_min(s, w));
    let max = rv[rv.len() - 1].max(values_max(s, w));
    let edges = distance::sturges_edges(min, max, distinct);
    let density = |counts: Vec<u64>| -> Vec<f64> {
        let sum: u64 = counts.iter().sum();
        counts
            .iter()
            .zip(edges.windows(2))
            .map(|(&k, e)| k as f64 / (e[1] - e[0]) / sum as f64)
            .collect()
    };
    let h1 = density(distance::histogram_sorted(rv, &edges));
    let h2 = density(weighted::histogram(w, &edges));
    let width = (edges[edges.len() - 1] - edges[0]) / (edges.len() - 1) as f64;
    let mut total = 0.0;
    for (a, b) in h1.iter().zip(&h2) {
        total += (a * b).sqrt() * width;
    }
    (1.0 - total.clamp(0.0, 1.0)).sqrt()
}

/// The number of distinct values of two sorted lists together.
fn exact_union(a: &[f64], b: &[f64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    let mut last: Option<f64> = None;
    while i < a.len() || j < b.len() {
        let x = if j == b.len() || (i < a.len() && a[i] <= b[j]) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        if last != Some(x) {
            n += 1;
            last = Some(x);
        }
    }
    n
}

/// scipy's `ttest_ind(a, b)` (pooled variance, two-sided, as `stats::location`), the
/// current window's mean and variance from the sketch.
fn t_test(rv: &[f64], s: &NumericSketch) -> f64 {
    let (n1, n2) = (rv.len() as f64, s.count() as f64);
    let m1 = stats::mean(rv);
    let sq: Vec<f64> = rv.iter().map(|&v| (v - m1) * (v - m1)).collect();
    let v1 = if rv.len() == 1 {
        0.0
    } else {
        pairwise_sum(&sq) / n1 * (n1 / (n1 - 1.0))
    };
    let v2 = if s.count() == 1 { 0.0 } else { s.var_ddof1() };
    let m2 = s.mean().unwrap_or(f64::NAN);
    let df = n1 + n2 - 2.0;
    let svar = ((n1 - 1.0) * v1 + (n2 - 1.0) * v2) / df;
    let t = (m1 - m2) / (svar * (1.0 / n1 + 1.0 / n2)).sqrt();
    2.0 * stats::student_t_sf(t.abs(), df)
}

/// A categorical sketch: exact, `column_drift` on its sample; else both windows on the
/// sketch's frequent categories plus one bucket (`OTHER`) for the rest.
fn categorical(
    name: &str,
    reference: &Sample,
    s: &CategorySketch,
    method: Option<Method>,
    threshold: Option<f64>,
) -> Result<ColumnDrift, DriftError> {
    let ty = ColumnType::Categorical;
    if s.is_exact() {
        return drift::column_drift(name, ty, reference, &s.to_sample(), method, threshold);
    }
    let kept = s.counts();
    // the reference's count of each kept category, and of the others, without listing
    // the reference's names: align it with the kept names
    let probe = Sample::from_counts(kept.iter().map(|(k, _)| ((*k).to_owned(), 1)), 0);
    let (mut ref_kept, mut ref_other) = (Vec::with_capacity(kept.len()), 0u64);
    for (r, p) in aligned_counts(reference, &probe) {
        if p == 1 {
            ref_kept.push(r);
        } else {
            ref_other += r;
        }
    }
    let names = || kept.iter().map(|(k, _)| (*k).to_owned());
    let r = Sample::from_counts(
        names().zip(ref_kept).chain([(OTHER.to_owned(), ref_other)]),
        reference.missing(),
    );
    let c = Sample::from_counts(
        names()
            .zip(kept.iter().map(|k| k.1))
            .chain([(OTHER.to_owned(), s.other())]),
        s.missing(),
    );
    let mut d = drift::column_drift(name, ty, &r, &c, method, threshold)?;
    let ours = format!(
        "approximate: the window's {} values were counted in a sketch; beyond its {} most \
         frequent categories ({} values) the categories of both windows are compared as one",
        s.count(),
        kept.len(),
        s.other()
    );
    d.note = Some(match d.note {
        Some(n) => format!("{n}; {ours}"),
        None => ours,
    });
    Ok(d)
}

#[allow(clippy::too_many_arguments)]
fn verdict(
    ty: ColumnType,
    method: Method,
    threshold: f64,
    outcome: Result<f64, String>,
    note_if_scored: Option<String>,
    reference: &Sample,
    current_rows: u64,
    current_missing: u64,
) -> ColumnDrift {
    let (score, note) = match outcome {
        Ok(s) if s.is_nan() => (
            None,
            Some(format!(
                "undefined: {} is not defined for these values (Evidently reports NaN)",
                method.name()
            )),
        ),
        Ok(s) => (Some(s), note_if_scored),
        Err(why) => (None, Some(why)),
    };
    ColumnDrift {
        column_type: ty,
        method,
        threshold,
        score,
        adjusted_score: None,
        drifted: score.is_some_and(|s| method.drifted(s, threshold)),
        note,
        reference_rows: reference.len(),
        current_rows,
        reference_missing: reference.missing(),
        current_missing,
    }
}
