//! The statistics from sketches against the exact ones: windows of 10,000, 50,000 and
//! 200,000 rows of several distributions, against references of 100,000 values; the
//! largest differences are printed (`cargo test sketch -- --nocapture`).

use std::collections::BTreeMap;

use super::Gen;
use crate::drift::{column_drift, ColumnType, Method, Sample};
use crate::sketch::weighted::{self, Weighted};
use crate::sketch::{sketch_drift, ColumnSketch, NumericSketch};

const SIZES: [usize; 3] = [10_000, 50_000, 200_000];
const REFERENCE_ROWS: usize = 100_000;
/// The bound.
const BOUND: f64 = 0.01;
/// The methods held to the bound.
const BOUNDED: [Method; 3] = [Method::Wasserstein, Method::Psi, Method::JensenShannon];
/// The methods measured and printed too.
const MEASURED: [Method; 4] = [Method::KlDiv, Method::Hellinger, Method::Ed, Method::TTest];

type Draw = fn(&mut Gen) -> f64;

/// (name, reference distribution, current distribution)
fn cases() -> Vec<(&'static str, Draw, Draw)> {
    fn lognormal(g: &mut Gen, mu: f64) -> f64 {
        g.normal(mu, 1.0).exp()
    }
    vec![
        ("normal", |g| g.normal(0.0, 1.0), |g| g.normal(0.0, 1.0)),
        ("shifted", |g| g.normal(0.0, 1.0), |g| g.normal(0.25, 1.1)),
        ("lognormal", |g| lognormal(g, 0.0), |g| lognormal(g, 0.1)),
        (
            "mixture",
            |g| g.normal(0.0, 1.0),
            |g| {
                if g.uniform() < 0.3 {
                    g.normal(3.0, 0.5)
                } else {
                    g.normal(0.0, 1.0)
                }
            },
        ),
        // 0.01 steps: ~3,000 distinct values, most repeated many times
        (
            "ties",
            |g| (g.normal(0.0, 3.0) * 100.0).round() / 100.0,
            |g| (g.normal(0.05, 3.0) * 100.0).round() / 100.0,
        ),
    ]
}

fn sketch_of(values: &[f64]) -> NumericSketch {
    let mut s = NumericSketch::new();
    s.extend(values.iter().copied());
    s
}

/// The KS statistic of the reference against a sketch, and exactly.
fn ks_statistics(r: &Sample, values: &[f64], s: &NumericSketch) -> (f64, f64) {
    let rv = r.values().unwrap();
    let (v, w) = s.weighted();
    let weighted = Weighted {
        values: &v,
        weights: &w,
        total: s.count(),
    };
    let exact = crate::stats::ks::ks_2samp(rv, values).statistic;
    (weighted::ks_statistic(rv, &weighted), exact)
}

fn score(r: &Sample, c: &Sample, method: Method) -> f64 {
    let d = column_drift("x", ColumnType::Numerical, r, c, Some(method), None).unwrap();
    d.score.unwrap_or(f64::NAN)
}

fn sketch_score(r: &Sample, s: &NumericSketch, method: Method) -> f64 {
    let s = ColumnSketch::Numerical(s.clone());
    let d = sketch_drift("x", ColumnType::Numerical, r, &s, Some(method), None).unwrap();
    d.score.unwrap_or(f64::NAN)
}

/// The largest |sketch - exact| per (statistic, window size).
#[derive(Default)]
struct Worst(BTreeMap<(String, usize), (f64, &'static str)>);

impl Worst {
    fn record(&mut self, stat: &str, size: usize, case: &'static str, sketched: f64, exact: f64) {
        let diff = (sketched - exact).abs();
        let e = self.0.entry((stat.to_owned(), size)).or_insert((0.0, case));
        if diff > e.0 || diff.is_nan() {
            *e = (diff, case);
        }
    }

    fn print(&self, title: &str) {
        eprintln!("{title}: largest |sketch - exact| (case)");
        for ((stat, size), (diff, case)) in &self.0 {
            eprintln!("  {stat:>14} {size:>7} rows: {diff:.2e} ({case})");
        }
    }

    fn check(&self, stats: &[&str]) {
        for ((stat, size), (diff, case)) in &self.0 {
            if stats.contains(&stat.as_str()) {
                assert!(*diff <= BOUND, "{stat} on {size} rows of {case}: {diff}");
            }
        }
    }
}

/// Every bounded statistic of `s` against the exact ones of `values`.
fn measure(worst: &mut Worst, case: &'static str, r: &Sample, values: &[f64], s: &NumericSketch) {
    let size = values.len();
    let c = Sample::numerical(values.iter().copied());
    let (sketched, exact) = ks_statistics(r, values, s);
    worst.record("ks statistic", size, case, sketched, exact);
    let (a, b) = (sketch_score(r, s, Method::Ks), score(r, &c, Method::Ks));
    worst.record("ks p-value", size, case, a, b);
    for m in BOUNDED.into_iter().chain(MEASURED) {
        let (a, b) = (sketch_score(r, s, m), score(r, &c, m));
        worst.record(m.name(), size, case, a, b);
    }
}

const CHECKED: [&str; 4] = ["ks statistic", "wasserstein", "psi", "jensenshannon"];

#[test]
fn sketched_statistics_are_within_0_01_of_the_exact_ones() {
    let mut worst = Worst::default();
    for (i, (case, reference, current)) in cases().into_iter().enumerate() {
        let mut g = Gen::new(100 + i as u64);
        let r = Sample::numerical((0..REFERENCE_ROWS).map(|_| reference(&mut g)));
        for size in SIZES {
            let values: Vec<f64> = (0..size).map(|_| current(&mut g)).collect();
            let s = sketch_of(&values);
            assert!(!s.is_exact());
            measure(&mut worst, case, &r, &values, &s);
        }
    }
    worst.print("one sketch per window");
    worst.check(&CHECKED);
}

/// Sketches of 4 partitions merged (as replicas' profiles are), in two orders: each
/// within the bound of the exact statistics, and of each other.
#[test]
fn merged_partitions_stay_within_the_bound() {
    let mut worst = Worst::default();
    let mut between = Worst::default();
    for (i, (case, reference, current)) in cases().into_iter().enumerate() {
        let mut g = Gen::new(200 + i as u64);
        let r = Sample::numerical((0..REFERENCE_ROWS).map(|_| reference(&mut g)));
        for size in SIZES {
            let values: Vec<f64> = (0..size).map(|_| current(&mut g)).collect();
            let parts: Vec<NumericSketch> = values.chunks(size / 4).map(sketch_of).collect();
            let mut forward = NumericSketch::new();
            parts.iter().for_each(|p| forward.merge(p));
            // ((3 + 2) + (1 + 0)): another order and another tree
            let (mut left, mut right) = (parts[3].clone(), parts[1].clone());
            left.merge(&parts[2]);
            right.merge(&parts[0]);
            left.merge(&right);
            for s in [&forward, &left] {
                assert_eq!(
                    (s.count(), s.min(), s.max()),
                    (forward.count(), forward.min(), forward.max())
                );
                measure(&mut worst, case, &r, &values, s);
            }
            for m in [Method::Wasserstein, Method::Psi, Method::JensenShannon] {
                let (a, b) = (sketch_score(&r, &forward, m), sketch_score(&r, &left, m));
                between.record(m.name(), size, case, a, b);
            }
        }
    }
    worst.print("4 partitions merged");
    between.print("between merge orders");
    worst.check(&CHECKED);
    between.check(&["wasserstein", "psi", "jensenshannon"]);
}

/// A column that starts with few distinct values (kept exactly, with large counts) and
/// goes on with many: the counts enter the KLL sketch by their binary digits, directly or
/// through a merge; and one window of 10^6 rows.
#[test]
fn late_conversions_and_long_windows_stay_within_the_bound() {
    let mut worst = Worst::default();
    let mut g = Gen::new(300);
    let draw = |g: &mut Gen, i: usize| {
        if i.is_multiple_of(2) {
            g.below(1000) as f64 / 10.0
        } else {
            g.normal(50.0, 20.0)
        }
    };
    let r = Sample::numerical((0..REFERENCE_ROWS).map(|i| draw(&mut g, i)));
    let few: Vec<f64> = (0..60_000).map(|i| draw(&mut g, 2 * i)).collect();
    let many: Vec<f64> = (0..60_000).map(|i| draw(&mut g, 2 * i + 1)).collect();
    let values = [few.clone(), many.clone()].concat();
    let streamed = sketch_of(&values);
    let (mut merged, other) = (sketch_of(&few), sketch_of(&many));
    merged.merge(&other);
    for s in [&streamed, &merged] {
        measure(&mut worst, "late", &r, &values, s);
    }
    let values: Vec<f64> = (0..1_000_000).map(|_| g.normal(0.1, 1.0).exp()).collect();
    let mut g = Gen::new(301);
    let r = Sample::numerical((0..REFERENCE_ROWS).map(|_| g.normal(0.0, 1.0).exp()));
    measure(&mut worst, "lognormal", &r, &values, &sketch_of(&values));
    worst.print("late conversion, 10^6 rows");
    worst.check(&CHECKED);
}
