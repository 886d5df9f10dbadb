//! Data drift exactly as Evidently 0.7 computes it: per column, the method its default
//! rule picks (or the one asked for), Evidently's binning, thresholds and comparisons; per
//! dataset, the share of drifted columns against `drift_share`.
//!
//! Where Evidently raises or answers nonsense, a column here gets no score, is not
//! drifted, and its `note` says why (never an error that stops the report); the cases
//! are listed in `docs/monitoring.md`.

pub mod method;
pub mod sample;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use method::{ColumnType, Method, Score};
pub use sample::Sample;

use crate::stats::{self, distance, TestResult};
use sample::aligned_counts;

/// Evidently's default share of drifted columns for dataset drift.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;

/// The permutations of the `TVD` test (Evidently's `iterations=1000`).
const TVD_PERMUTATIONS: usize = 1000;

/// The seed of the permutation tests (`TVD`, `empirical_mmd`): reproducible p-values.
const PERMUTATION_SEED: u64 = 0;

/// The method Evidently picks for a column when none is asked for (its
/// `_get_default_stattest`): up to 1,000 reference values, `ks` for a numerical column
/// with more than 5 distinct values (reference and current together), else `chisquare`
/// (more than 2 distinct values) or `z`; above 1,000, `wasserstein` for a numerical column
/// with more than 5 distinct values, else `jensenshannon`.
pub fn default_method(reference: &Sample, current: &Sample, ty: ColumnType) -> Method {
    let distinct = sample::distinct_up_to(reference, current, 5);
    let small = reference.len() <= 1000;
    match (ty, small) {
        (ColumnType::Numerical, true) if distinct > 5 => Method::Ks,
        (_, true) if distinct > 2 => Method::ChiSquare,
        (_, true) => Method::Z,
        (ColumnType::Numerical, false) if distinct > 5 => Method::Wasserstein,
        (_, false) => Method::JensenShannon,
    }
}

/// The drift of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub column_type: ColumnType,
    pub method: Method,
    pub threshold: f64,
    /// The method's score (a p-value or a distance); `None` when it could not be
    /// computed or is undefined for this input (see `note`).
    pub score: Option<f64>,
    /// The p-value after the multiple-testing correction, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusted_score: Option<f64>,
    pub drifted: bool,
    /// Why there is no score, or what to know about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub reference_rows: u64,
    pub current_rows: u64,
    pub reference_missing: u64,
    pub current_missing: u64,
}

/// A column drift that cannot be asked for: the message says which and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    #[error("column {column:?}: method {method} does not apply to a {ty} column (it takes {takes} columns)", ty = ty.name())]
    MethodDoesNotFit {
        column: String,
        method: Method,
        ty: ColumnType,
        takes: &'static str,
    },
    #[error("column {column:?} is {expected} in the reference but {found} in the current window", expected = expected.name(), found = found.name())]
    TypeMismatch {
        column: String,
        expected: ColumnType,
        found: ColumnType,
    },
    #[error("threshold {threshold} for column {column:?} is not a finite number >= 0")]
    BadThreshold { column: String, threshold: f64 },
    #[error("drift_share {0} is not in (0, 1]")]
    BadShare(f64),
}

/// The drift of the column `name` of type `ty` between `reference` and `current`, with
/// `method` (Evidently's default choice when `None`) and `threshold` (the method's default
/// when `None`).
pub fn column_drift(
    name: &str,
    ty: ColumnType,
    reference: &Sample,
    current: &Sample,
    method: Option<Method>,
    threshold: Option<f64>,
) -> Result<ColumnDrift, DriftError> {
    for s in [reference, current] {
        if s.column_type() != ty {
            return Err(DriftError::TypeMismatch {
                column: name.to_owned(),
                expected: ty,
                found: s.column_type(),
            });
        }
    }
    if let Some(m) = method.filter(|m| !m.allows(ty)) {
        return Err(DriftError::MethodDoesNotFit {
            column: name.to_owned(),
            method: m,
            ty,
            takes: if m.allows(ColumnType::Numerical) {
                "numerical"
            } else {
                "categorical"
            },
        });
    }
    if let Some(t) = threshold.filter(|t| !(t.is_finite() && *t >= 0.0)) {
        return Err(DriftError::BadThreshold {
            column: name.to_owned(),
            threshold: t,
        });
    }
    let empty = match (reference.is_empty(), current.is_empty()) {
        (true, _) => Some("the reference has no values (all missing)"),
        (_, true) => Some("the current window has no values (all missing)"),
        _ => None,
    };
    let method = match (method, empty) {
        (Some(m), _) => m,
        (None, None) => default_method(reference, current, ty),
        (None, Some(_)) => match ty {
            ColumnType::Numerical => Method::Wasserstein,
            ColumnType::Categorical => Method::JensenShannon,
        },
    };
    let threshold = threshold.unwrap_or(method.default_threshold());
    let (score, note) = match empty {
        Some(why) => (None, Some(format!("not computed: {why}"))),
        None => match score(method, ty, reference, current) {
            Ok(s) if s.is_nan() => (
                None,
                Some(format!(
                    "undefined: {} is not defined for these values (Evidently reports NaN)",
                    method.name()
                )),
            ),
            Ok(s) => (Some(s), None),
            Err(why) => (None, Some(format!("not computed: {why}"))),
        },
    };
    Ok(ColumnDrift {
        column_type: ty,
        method,
        threshold,
        score,
        adjusted_score: None,
        drifted: score.is_some_and(|s| method.drifted(s, threshold)),
        note,
        reference_rows: reference.len(),
        current_rows: current.len(),
        reference_missing: reference.missing(),
        current_missing: current.missing(),
    })
}

/// The score of `method` (Evidently's implementation of it), or why there is none.
fn score(method: Method, ty: ColumnType, r: &Sample, c: &Sample) -> Result<f64, String> {
    let (rv, cv) = (r.values().unwrap_or(&[]), c.values().unwrap_or(&[]));
    let p = |t: Result<TestResult, stats::StatsError>| t.map(|t| t.pvalue).map_err(|e| e.0);
    Ok(match method {
        Method::Ks => stats::ks::ks_2samp(rv, cv).pvalue,
        Method::ChiSquare => {
            let counts = aligned_counts(r, c);
            let k_norm = c.len() as f64 / r.len() as f64;
            let f_exp: Vec<f64> = counts.iter().map(|(a, _)| *a as f64 * k_norm).collect();
            let f_obs: Vec<f64> = counts.iter().map(|(_, b)| *b as f64).collect();
            p(stats::contingency::chisquare(&f_obs, &f_exp))?
        }
        Method::Z => z_test(r, c),
        Method::Wasserstein => {
            let norm = stats::std_population(rv).max(0.001);
            distance::wasserstein_sorted(rv, cv) / norm
        }
        Method::JensenShannon => {
            let (a, b) = binned(r, c, ty, false);
            distance::jensenshannon(&a, &b)
        }
        Method::Psi => {
            let (a, b) = binned(r, c, ty, true);
            let terms: Vec<f64> = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y) * (x / y).ln())
                .collect();
            stats::pairwise_sum(&terms)
        }
        Method::KlDiv => {
            let (a, b) = binned(r, c, ty, true);
            distance::kl_divergence(&a, &b)
        }
        Method::Anderson => p(stats::anderson::anderson_ksamp(&[rv, cv]))?,
        Method::CramerVonMises => p(stats::cvm::cvm_2samp(rv, cv))?,
        Method::MannW => stats::location::mannwhitneyu_less(rv, cv).pvalue,
        Method::TTest => stats::location::ttest_ind(rv, cv).pvalue,
        Method::Ed => distance::energy_sorted(rv, cv),
        Method::Es => {
            // With 2 distinct values the characteristic-function covariance has rank 1
            // and the pseudo-inverse keeps rounding noise: Evidently's p-value then
            // depends on the order of floating-point sums, so there is none here.
            if aligned_counts(r, c).len() <= 2 {
                return Err(
                    "es needs more than 2 distinct values: with 2, its covariance \
                            matrix is singular and Evidently's p-value is rounding noise"
                        .into(),
                );
            }
            p(stats::epps::epps_singleton_2samp(rv, cv))?
        }
        Method::Hellinger => hellinger(r, c, ty),
        Method::Tvd => tvd_test(r, c),
        Method::FisherExact => fisher(r, c)?,
        Method::GTest => {
            let counts = aligned_counts(r, c);
            let f_exp: Vec<f64> = counts.iter().map(|(a, _)| *a as f64).collect();
            let f_obs: Vec<f64> = counts.iter().map(|(_, b)| *b as f64).collect();
            stats::contingency::g_test(&f_obs, &f_exp)
                .map_err(|e| {
                    format!(
                        "Evidently's g_test compares the raw counts of both windows, so it needs \
                     windows of the same size ({} reference and {} current values): {}",
                        r.len(),
                        c.len(),
                        e.0
                    )
                })?
                .pvalue
        }
        Method::EmpiricalMmd => p(stats::mmd::mmd_pvalue(rv, cv, PERMUTATION_SEED))?,
    })
}

/// Evidently's `get_binned_data`: the shares of each window in equal-width Sturges bins
/// over both windows for a numerical column with more than 20 distinct reference values,
/// else in each distinct value; with `fill_zeroes`, an empty share becomes 1e-4, or a
/// millionth of the smallest share when that is at most 1e-4.
fn binned(r: &Sample, c: &Sample, ty: ColumnType, fill_zeroes: bool) -> (Vec<f64>, Vec<f64>) {
    let (nr, nc) = (r.len() as f64, c.len() as f64);
    let (mut a, mut b): (Vec<f64>, Vec<f64>) = match (r.values(), c.values()) {
        (Some(rv), Some(cv)) if ty == ColumnType::Numerical && r.distinct() > 20 => {
            let min = rv[0].min(cv[0]);
            let max = rv[rv.len() - 1].max(cv[cv.len() - 1]);
            let edges = distance::sturges_edges(min, max, rv.len() + cv.len());
            let share = |v: &[f64], n: f64| -> Vec<f64> {
                distance::histogram_sorted(v, &edges)
                    .into_iter()
                    .map(|k| k as f64 / n)
                    .collect()
            };
            (share(rv, nr), share(cv, nc))
        }
        _ => aligned_counts(r, c)
            .into_iter()
            .map(|(x, y)| (x as f64 / nr, y as f64 / nc))
            .unzip(),
    };
    if fill_zeroes {
        fill(&mut a);
        fill(&mut b);
    }
    (a, b)
}

pub(crate) fn fill(shares: &mut [f64]) {
    let min = shares
        .iter()
        .copied()
        .filter(|&s| s != 0.0)
        .fold(f64::INFINITY, f64::min);
    let value = if min <= 0.0001 { min / 1e6 } else { 0.0001 };
    for s in shares.iter_mut().filter(|s| **s == 0.0) {
        *s = value;
    }
}

/// Evidently's `z` test: the two-sided test of the difference of the proportions of
/// values other than the smallest one; 1.0 when both windows hold the same single value.
fn z_test(r: &Sample, c: &Sample) -> f64 {
    let counts = aligned_counts(r, c);
    if counts.len() == 1 {
        return 1.0;
    }
    let (n1, n2) = (r.len() as f64, c.len() as f64);
    let (first_r, first_c) = counts[0];
    let p1 = (r.len() - first_r) as f64 / n1;
    let p2 = (c.len() - first_c) as f64 / n2;
    let pooled = (p1 * n1 + p2 * n2) / (n1 + n2);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    2.0 * (1.0 - stats::normal_cdf(z.abs()))
}

/// Evidently's Hellinger distance: over the shares of each category, or over Sturges
/// histogram densities whose bins span the distinct values of both windows.
fn hellinger(r: &Sample, c: &Sample, ty: ColumnType) -> f64 {
    let mut total = 0.0;
    match (ty, r.values(), c.values()) {
        (ColumnType::Numerical, Some(rv), Some(cv)) => {
            let distinct = aligned_counts(r, c).len();
            let min = rv[0].min(cv[0]);
            let max = rv[rv.len() - 1].max(cv[cv.len() - 1]);
            let edges = distance::sturges_edges(min, max, distinct);
            let density = |v: &[f64]| -> Vec<f64> {
                let counts = distance::histogram_sorted(v, &edges);
                let sum: u64 = counts.iter().sum();
                counts
                    .iter()
                    .zip(edges.windows(2))
                    .map(|(&k, w)| k as f64 / (w[1] - w[0]) / sum as f64)
                    .collect()
            };
            let (h1, h2) = (density(rv), density(cv));
            let width = (edges[edges.len() - 1] - edges[0]) / (edges.len() - 1) as f64;
            for (a, b) in h1.iter().zip(&h2) {
                total += (a * b).sqrt() * width;
            }
        }
        _ => {
            let (nr, nc) = (r.len() as f64, c.len() as f64);
            for (a, b) in aligned_counts(r, c) {
                total += (a as f64 / nr * (b as f64 / nc)).sqrt();
            }
        }
    }
    (1.0 - total.clamp(0.0, 1.0)).sqrt()
}

/// The total variation distance of two count vectors (Evidently's formula).
fn tvd(a: &[u64], b: &[u64]) -> f64 {
    let (sa, sb) = (a.iter().sum::<u64>() as f64, b.iter().sum::<u64>() as f64);
    let terms: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 / sa - y as f64 / sb).abs())
        .collect();
    0.5 * stats::pairwise_sum(&terms)
}

/// Evidently's `TVD` test: the share of 1,000 random splits of the pooled values whose
/// total variation distance reaches the observed one. The splits come from a seeded
/// generator, not numpy's, so the p-value matches Evidently's within the sampling error
/// of 1,000 permutations, not to the digit.
fn tvd_test(r: &Sample, c: &Sample) -> f64 {
    let counts = aligned_counts(r, c);
    let (a, b): (Vec<u64>, Vec<u64>) = counts.iter().copied().unzip();
    let observed = tvd(&a, &b);
    // the pooled values as category indices; each permutation draws the smaller side
    let mut pooled: Vec<u32> = Vec::with_capacity((r.len() + c.len()) as usize);
    for (i, (x, y)) in counts.iter().enumerate() {
        pooled.extend(std::iter::repeat_n(i as u32, (x + y) as usize));
    }
    let total: Vec<u64> = counts.iter().map(|(x, y)| x + y).collect();
    let small = r.len().min(c.len()) as usize;
    let reference_is_small = r.len() <= c.len();
    let mut rng = stats::rng::Rng::new(PERMUTATION_SEED);
    let mut hits = 0usize;
    let mut drawn = vec![0u64; counts.len()];
    for _ in 0..TVD_PERMUTATIONS {
        drawn.iter_mut().for_each(|d| *d = 0);
        for i in 0..small {
            let j = i + rng.below((pooled.len() - i) as u64) as usize;
            pooled.swap(i, j);
            drawn[pooled[i] as usize] += 1;
        }
        let rest: Vec<u64> = total.iter().zip(&drawn).map(|(t, d)| t - d).collect();
        let stat = if reference_is_small {
            tvd(&drawn, &rest)
        } else {
            tvd(&rest, &drawn)
        };
        hits += usize::from(observed <= stat.abs());
    }
    hits as f64 / TVD_PERMUTATIONS as f64
}

/// Evidently's `fisher_exact`: windows of the same size with at most 2 categories.
fn fisher(r: &Sample, c: &Sample) -> Result<f64, String> {
    if r.len() != c.len() {
        return Err(format!(
            "Evidently's fisher_exact needs windows of the same size ({} reference and {} \
             current values)",
            r.len(),
            c.len()
        ));
    }
    let counts = aligned_counts(r, c);
    if r.distinct() > 2 || c.distinct() > 2 || counts.len() > 2 {
        return Err(format!(
            "fisher_exact takes binary data: {} distinct values across both windows",
            counts.len()
        ));
    }
    // category 0 is the first value, 1 the second (or absent): the two-sided p-value
    // does not depend on which is which
    let (ref0, cur0) = counts[0];
    let (ref1, cur1) = counts.get(1).copied().unwrap_or((0, 0));
    Ok(stats::fisher::fisher_exact([[cur1, cur0], [ref1, ref0]]).pvalue)
}

/// A multiple-testing correction over the p-value columns of a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// None (Evidently's behaviour).
    #[default]
    None,
    /// Bonferroni: each p-value times the number of p-value columns, capped at 1.
    Bonferroni,
    /// Benjamini-Hochberg: the step-up adjusted p-values (false discovery rate).
    BenjaminiHochberg,
}

/// How to test a dataset: Evidently's `DataDriftPreset` options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftOptions {
    /// The method for every column (`method`).
    pub method: Option<Method>,
    /// The method for numerical columns (`num_method`), over `method`.
    pub num_method: Option<Method>,
    /// The method for categorical columns (`cat_method`), over `method`.
    pub cat_method: Option<Method>,
    /// The method of a column (`per_column_method`), over the others.
    pub per_column_method: BTreeMap<String, Method>,
    pub threshold: Option<f64>,
    pub num_threshold: Option<f64>,
    pub cat_threshold: Option<f64>,
    pub per_column_threshold: BTreeMap<String, f64>,
    /// The share of drifted columns at which the dataset drifts (0.5 when unset).
    pub drift_share: Option<f64>,
    pub correction: Correction,
}

impl DriftOptions {
    /// The method asked for the column (Evidently's precedence: per column, then per type,
    /// then for all), `None` for the default choice.
    pub fn method_for(&self, column: &str, ty: ColumnType) -> Option<Method> {
        let by_type = match ty {
            ColumnType::Numerical => self.num_method,
            ColumnType::Categorical => self.cat_method,
        };
        self.per_column_method
            .get(column)
            .copied()
            .or(by_type)
            .or(self.method)
    }

    /// The threshold asked for the column, in the same precedence.
    pub fn threshold_for(&self, column: &str, ty: ColumnType) -> Option<f64> {
        let by_type = match ty {
            ColumnType::Numerical => self.num_threshold,
            ColumnType::Categorical => self.cat_threshold,
        };
        self.per_column_threshold
            .get(column)
            .copied()
            .or(by_type)
            .or(self.threshold)
    }

    /// The share of drifted columns at which the dataset drifts.
    pub fn drift_share(&self) -> f64 {
        self.drift_share.unwrap_or(DEFAULT_DRIFT_SHARE)
    }

    /// Whether the options can be used: `drift_share` in (0, 1].
    pub fn check(&self) -> Result<(), DriftError> {
        let share = self.drift_share();
        if share > 0.0 && share <= 1.0 {
            Ok(())
        } else {
            Err(DriftError::BadShare(share))
        }
    }
}

/// The drift of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetDrift {
    pub columns: BTreeMap<String, ColumnDrift>,
    pub drifted_columns: usize,
    pub share: f64,
    pub drift_share: f64,
    pub dataset_drift: bool,
    /// Each column's chart data (reference vs current), when both sides have values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub histograms: BTreeMap<String, crate::histogram::Histogram>,
}

/// One column to test: its name, type, reference and current values.
pub struct ColumnInput<'a> {
    pub name: &'a str,
    pub ty: ColumnType,
    pub reference: &'a Sample,
    pub current: &'a Sample,
}

/// The drift of every column and of the dataset: drift when the share of drifted columns
/// reaches `drift_share` (Evidently's `DriftedColumnsCount` test).
pub fn dataset_drift(
    columns: &[ColumnInput<'_>],
    options: &DriftOptions,
) -> Result<DatasetDrift, DriftError> {
    options.check()?;
    let mut out = BTreeMap::new();
    for c in columns {
        let d = column_drift(
            c.name,
            c.ty,
            c.reference,
            c.current,
            options.method_for(c.name, c.ty),
            options.threshold_for(c.name, c.ty),
        )?;
        out.insert(c.name.to_owned(), d);
    }
    Ok(summarize(out, options))
}

/// The dataset verdict over tested columns: the correction applied, then the share of
/// drifted columns against `drift_share` (validated by the caller).
pub fn summarize(
    mut columns: BTreeMap<String, ColumnDrift>,
    options: &DriftOptions,
) -> DatasetDrift {
    correct(&mut columns, options.correction);
    let drifted_columns = columns.values().filter(|d| d.drifted).count();
    let share = if columns.is_empty() {
        0.0
    } else {
        drifted_columns as f64 / columns.len() as f64
    };
    let drift_share = options.drift_share();
    DatasetDrift {
        dataset_drift: !columns.is_empty() && share >= drift_share,
        columns,
        drifted_columns,
        share,
        drift_share,
        histograms: BTreeMap::new(),
    }
}

/// Adjusts the p-values of the p-value columns and their verdicts.
fn correct(columns: &mut BTreeMap<String, ColumnDrift>, correction: Correction) {
    if correction == Correction::None {
        return;
    }
    let mut tested: Vec<(&String, f64)> = columns
        .iter()
        .filter(|(_, d)| d.method.score() == Score::PValue)
        .filter_map(|(n, d)| d.score.map(|s| (n, s)))
        .collect();
    let m = tested.len() as f64;
    let mut adjusted: BTreeMap<String, f64> = BTreeMap::new();
    match correction {
        Correction::None => {}
        Correction::Bonferroni => {
            for (n, p) in &tested {
                adjusted.insert((*n).clone(), (p * m).min(1.0));
            }
        }
        Correction::BenjaminiHochberg => {
            tested.sort_by(|a, b| a.1.total_cmp(&b.1));
            let mut running = 1.0f64;
            for (rank, (n, p)) in tested.iter().enumerate().rev() {
                running = running.min(p * m / (rank + 1) as f64).min(1.0);
                adjusted.insert((*n).clone(), running);
            }
        }
    }
    for (n, p) in adjusted {
        if let Some(d) = columns.get_mut(&n) {
            d.adjusted_score = Some(p);
            d.drifted = d.method.drifted(p, d.threshold);
        }
    }
}

#[cfg(test)]
mod tests;
