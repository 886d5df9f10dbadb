//! The sketches' guarantees, measured: exactness while they can be, their size whatever
//! the number of rows, their encoding, their merges, the categorical frequent items; the
//! accuracy of the statistics from sketches is in `accuracy`.

mod accuracy;

use super::*;
use crate::drift::{column_drift, Method};
use crate::stats::rng::Rng;

/// Draws from a few distributions (SplitMix64, Box–Muller).
pub(super) struct Gen(Rng);

impl Gen {
    pub(super) fn new(seed: u64) -> Self {
        Gen(Rng::new(seed))
    }

    /// Uniform on (0, 1).
    pub(super) fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub(super) fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        mean + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
}

fn numeric(values: &[f64]) -> ColumnSketch {
    let mut s = NumericSketch::new();
    s.extend(values.iter().copied());
    ColumnSketch::Numerical(s)
}

/// `sketch_drift` on an exact sketch is `column_drift` on its sample, for every method,
/// the default choice and a few thresholds (errors included).
fn assert_exact(ty: ColumnType, reference: &Sample, current: &Sample, sketch: &ColumnSketch) {
    assert!(sketch.is_exact());
    let methods = Method::ALL.into_iter().map(Some).chain([None]);
    for method in methods {
        let thresholds: &[Option<f64>] = match method {
            None | Some(Method::Ks) => &[None, Some(0.2), Some(-1.0)],
            _ => &[None, Some(-1.0)],
        };
        for &threshold in thresholds {
            let want = column_drift("c", ty, reference, current, method, threshold);
            let got = sketch_drift("c", ty, reference, sketch, method, threshold);
            assert_eq!(got, want, "{method:?} at {threshold:?}");
        }
    }
}

#[test]
fn exact_sketches_give_column_drift_for_every_method() {
    let mut g = Gen::new(1);
    let reference: Vec<f64> = (0..600).map(|_| g.normal(0.0, 1.0)).collect();
    let r = Sample::numerical(reference.iter().copied());
    // few values (the exact counts), up to the raw KLL limit, with missing values and -0.0
    for n in [0, 1, 7, 50, 1500, 4_000] {
        let mut cur: Vec<f64> = (0..n).map(|_| g.normal(0.3, 1.0)).collect();
        cur.extend([f64::NAN, f64::INFINITY, -0.0, 0.0]);
        assert_exact(
            ColumnType::Numerical,
            &r,
            &Sample::numerical(cur.clone()),
            &numeric(&cur),
        );
    }
    // a low-cardinality column: any number of rows stays exact; Evidently's choice is then
    // chisquare / z / jensenshannon
    for (rows, distinct) in [(20_000, 2), (20_000, 4), (3_000, 900)] {
        let cur: Vec<f64> = (0..rows).map(|_| g.below(distinct) as f64).collect();
        let refs: Vec<f64> = (0..1500).map(|_| g.below(distinct.min(3)) as f64).collect();
        let r = Sample::numerical(refs);
        assert_exact(
            ColumnType::Numerical,
            &r,
            &Sample::numerical(cur.clone()),
            &numeric(&cur),
        );
    }
    // an all-missing window and a reference without values
    let cur = [f64::NAN; 3];
    assert_exact(
        ColumnType::Numerical,
        &r,
        &Sample::numerical(cur),
        &numeric(&cur),
    );
    let none = Sample::numerical([f64::NAN]);
    assert_exact(
        ColumnType::Numerical,
        &none,
        &Sample::numerical([1.0]),
        &numeric(&[1.0]),
    );
    // categorical
    let names = ["a", "b", "c", "d", "e"];
    let cur: Vec<Option<&str>> = (0..5000)
        .map(|i| (i % 7 != 0).then(|| names[g.below(5) as usize]))
        .collect();
    let refs: Vec<Option<&str>> = (0..800).map(|_| Some(names[g.below(4) as usize])).collect();
    let mut s = CategorySketch::new();
    s.extend(cur.iter().copied());
    let (r, c) = (Sample::categorical(refs), Sample::categorical(cur));
    assert_exact(
        ColumnType::Categorical,
        &r,
        &c,
        &ColumnSketch::Categorical(s),
    );
}

#[test]
fn type_mismatches_are_columns_drift_errors() {
    let r = Sample::numerical([1.0, 2.0]);
    let s = ColumnSketch::new(ColumnType::Categorical);
    let want = column_drift(
        "c",
        ColumnType::Numerical,
        &r,
        &Sample::from_counts([], 0),
        None,
        None,
    );
    assert!(want.is_err());
    assert_eq!(
        sketch_drift("c", ColumnType::Numerical, &r, &s, None, None),
        want
    );
    let mut n = ColumnSketch::new(ColumnType::Numerical);
    assert!(matches!(n.merge(&s), Err(SketchError::TypeMismatch { .. })));
}

/// An exact sketch past `EXPAND_LIMIT` is scored from its counts: the same numbers as
/// `column_drift` on every value, to the rounding of sums.
#[test]
fn long_low_cardinality_windows_are_scored_from_their_counts() {
    let mut g = Gen::new(2);
    let rows = EXPAND_LIMIT as usize + 5;
    let cur: Vec<f64> = (0..rows).map(|_| (g.below(40) as f64) * 0.5).collect();
    let sketch = numeric(&cur);
    assert!(sketch.is_exact());
    let c = Sample::numerical(cur);
    for (refs, distinct) in [(500, 3), (5_000, 3), (5_000, 30)] {
        let r = Sample::numerical((0..refs).map(|_| (g.below(distinct) as f64) * 0.5 + 1.0));
        for method in [
            None,
            Some(Method::Ks),
            Some(Method::Wasserstein),
            Some(Method::Psi),
            Some(Method::KlDiv),
            Some(Method::JensenShannon),
            Some(Method::Hellinger),
            Some(Method::Ed),
            Some(Method::TTest),
        ] {
            let want = column_drift("c", ColumnType::Numerical, &r, &c, method, None).unwrap();
            let got = sketch_drift("c", ColumnType::Numerical, &r, &sketch, method, None).unwrap();
            assert_eq!(
                (got.method, got.note.is_some()),
                (want.method, want.note.is_some())
            );
            let (a, b) = (got.score.unwrap(), want.score.unwrap());
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1e-12),
                "{method:?}: {a} vs {b}"
            );
        }
        let got = sketch_drift(
            "c",
            ColumnType::Numerical,
            &r,
            &sketch,
            Some(Method::MannW),
            None,
        );
        let note = got.unwrap().note.unwrap_or_default();
        assert!(note.contains("mannw needs every value"), "{note}");
    }
}

#[test]
fn counts_and_moments_are_exact() {
    let mut g = Gen::new(3);
    let values: Vec<f64> = (0..100_000).map(|_| g.normal(5.0, 2.0)).collect();
    let mut s = NumericSketch::new();
    s.extend(values.iter().copied().chain([f64::NAN, f64::NEG_INFINITY]));
    let exact = Sample::numerical(values.iter().copied());
    let v = exact.values().unwrap();
    assert!(!s.is_exact() && s.to_sample().is_none());
    assert_eq!((s.count(), s.missing()), (100_000, 2));
    assert_eq!((s.min(), s.max()), (Some(v[0]), Some(v[v.len() - 1])));
    let (mean, std) = (crate::stats::mean(v), crate::stats::std_population(v));
    assert!((s.mean().unwrap() - mean).abs() < 1e-12 * mean.abs());
    assert!((s.std_population().unwrap() - std).abs() < 1e-12 * std);
    let (_, w) = s.weighted();
    assert_eq!(w.iter().sum::<u64>(), 100_000);
    // the distinct-count estimate: 100,000 distinct values within 3 standard errors
    assert!(
        (s.distinct() / 100_000.0 - 1.0).abs() < 0.2,
        "{}",
        s.distinct()
    );
}

/// The encoded size for any number of rows: measured for growing windows (up to 10^7
/// rows, what a debug build does in a few seconds), and bounded by construction
/// (`numeric::MAX_ENCODED_LEN`, a compile-time check): at rest the KLL sketch holds at
/// most the capacity of 64 levels (a u64 count allows no more), 6,812 values, and the
/// exact body at most 1,024 values with their counts; nothing else grows with the rows.
/// The categorical sketch holds at most `KEY_BUDGET` bytes of names and counts.
#[test]
fn encoded_size_stays_under_64_kb() {
    let mut g = Gen::new(4);
    let mut worst = 0;
    let mut sketches = [
        NumericSketch::new(),
        NumericSketch::new(),
        NumericSketch::new(),
    ];
    let mut rows = 0u64;
    for checkpoint in [10_000u64, 100_000, 1_000_000, 10_000_000] {
        // past 10^6 rows, only the first sketch goes on
        let all = checkpoint <= 1_000_000;
        while rows < checkpoint {
            let x = g.normal(0.0, 1.0);
            sketches[0].update(x);
            if all {
                sketches[1].update(rows as f64); // ascending, all distinct
                sketches[2].update((x * 300.0).round()); // ~3,000 distinct values, ties
            }
            rows += 1;
        }
        let sizes = sketches.each_ref().map(|s| s.encoded_len());
        worst = worst.max(sizes.into_iter().max().unwrap_or(0));
        eprintln!("{rows} rows: encoded {sizes:?} bytes");
    }
    assert_eq!(sketches[0].count(), rows);
    eprintln!(
        "largest: {worst} bytes (bound {})",
        numeric::MAX_ENCODED_LEN
    );
    assert!(worst <= numeric::MAX_ENCODED_LEN && numeric::MAX_ENCODED_LEN <= 64_000);
    // merging many partial sketches keeps the bound
    let mut merged = NumericSketch::new();
    for _ in 0..20 {
        merged.merge(&sketches[1]);
        merged.merge(&sketches[2]);
    }
    assert!(merged.encoded_len() <= numeric::MAX_ENCODED_LEN);
    // categories: many distinct ones, names up to 900 bytes
    let mut c = CategorySketch::new();
    let mut worst = 0;
    for i in 0..100_000u64 {
        let name = format!(
            "category-{:0>width$}",
            g.below(20_000),
            width = (i % 7 * 150) as usize
        );
        c.update(Some(&name));
        if i % 97 == 0 {
            worst = worst.max(c.encoded_len());
        }
    }
    eprintln!(
        "categories: largest {worst} bytes (bound {})",
        KEY_BUDGET + 28
    );
    assert!(worst <= KEY_BUDGET + 28 && KEY_BUDGET + 28 <= 64_000);
}

#[test]
fn encodings_round_trip() {
    let mut g = Gen::new(5);
    let mut cases: Vec<ColumnSketch> = vec![
        ColumnSketch::new(ColumnType::Numerical),
        ColumnSketch::new(ColumnType::Categorical),
    ];
    for n in [10, 3_000, 50_000] {
        cases.push(numeric(
            &(0..n).map(|_| g.normal(0.0, 1.0)).collect::<Vec<_>>(),
        ));
    }
    cases.push(numeric(&[f64::NAN, -0.0, 1.0, 1.0]));
    let mut c = CategorySketch::new();
    c.extend([Some("a"), None, Some("b"), Some("a"), Some("é")]);
    cases.push(ColumnSketch::Categorical(c.clone()));
    for i in 0..5_000u64 {
        c.update(Some(&format!("k{}", g.below(i + 1))));
    }
    cases.push(ColumnSketch::Categorical(c));
    for s in &cases {
        let bytes = s.encode();
        assert_eq!(bytes.len(), s.encoded_len());
        let back = ColumnSketch::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!((back.count(), back.missing()), (s.count(), s.missing()));
        assert_eq!(back.to_sample(), s.to_sample());
    }
}

#[test]
fn corrupt_encodings_are_errors() {
    let mut g = Gen::new(6);
    let big = numeric(&(0..20_000).map(|_| g.normal(0.0, 1.0)).collect::<Vec<_>>());
    let small = numeric(&[1.0, 2.0, 2.0]);
    let mut c = CategorySketch::new();
    c.extend([Some("x"), Some("y"), None]);
    let cat = ColumnSketch::Categorical(c);
    for s in [&big, &small, &cat] {
        let bytes = s.encode();
        // every truncation fails (a sample of them for the large sketch)
        let step = (bytes.len() / 300).max(1);
        for n in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
            assert!(ColumnSketch::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        // trailing bytes fail
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ColumnSketch::decode(&longer).is_err());
        // any flipped byte decodes to an error or to a sketch that checks out, never panics
        for i in (0..bytes.len()).step_by(step) {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                if let Ok(d) = ColumnSketch::decode(&b) {
                    let (_, w) = match &d {
                        ColumnSketch::Numerical(n) => n.weighted(),
                        ColumnSketch::Categorical(_) => (vec![], vec![d.count()]),
                    };
                    assert_eq!(w.iter().sum::<u64>(), d.count());
                }
            }
        }
    }
    let bytes = small.encode();
    let mut b = bytes.clone();
    b[4] = 9;
    assert!(matches!(
        ColumnSketch::decode(&b),
        Err(SketchError::Version { found: 9, .. })
    ));
    let e = ColumnSketch::decode(b"nope, not a sketch").unwrap_err();
    assert!(e.to_string().starts_with("not a column sketch"), "{e}");
    // the count must match the values
    let mut b = bytes.clone();
    b[6] = 4; // the count varint: 3 -> 4
    let e = ColumnSketch::decode(&b).unwrap_err().to_string();
    assert!(e.contains("count"), "{e}");
}

#[test]
fn merges_are_exact_while_the_parts_are_and_commute() {
    let mut g = Gen::new(7);
    let parts: Vec<Vec<f64>> = (0..4)
        .map(|i| {
            (0..1_500)
                .map(|_| (g.normal(i as f64, 1.0) * 10.0).round())
                .collect()
        })
        .collect();
    let all: Vec<f64> = parts.concat();
    let sketches: Vec<NumericSketch> = parts
        .iter()
        .map(|p| {
            let mut s = NumericSketch::new();
            s.extend(p.iter().copied());
            s
        })
        .collect();
    let mut merged = NumericSketch::new();
    sketches.iter().for_each(|s| merged.merge(s));
    assert!(merged.is_exact());
    assert_eq!(
        merged.to_sample(),
        Some(Sample::numerical(all.iter().copied()))
    );
    // past the exact limits, merging A into B or B into A gives the same sketch
    let big: Vec<NumericSketch> = (0..2)
        .map(|i| {
            let mut s = NumericSketch::new();
            s.extend((0..30_000).map(|_| g.normal(i as f64, 1.0)));
            s
        })
        .collect();
    let (mut ab, mut ba) = (big[0].clone(), big[1].clone());
    ab.merge(&big[1]);
    ba.merge(&big[0]);
    assert!(ab.encode() == ba.encode());
    let (mut e, mut k) = (sketches[0].clone(), big[0].clone());
    e.merge(&big[0]);
    k.merge(&sketches[0]);
    assert!(e.encode() == k.encode());
}

#[test]
fn categories_are_exact_up_to_the_cap_then_frequent() {
    let mut g = Gen::new(8);
    let mut s = CategorySketch::new();
    for i in 0..MAX_CATEGORIES as u64 {
        s.add(Some(&format!("c{i}")), i + 1);
    }
    s.update(None);
    assert!(s.is_exact());
    assert_eq!(s.counts().len(), MAX_CATEGORIES);
    assert_eq!((s.other(), s.missing()), (0, 1));
    // a skewed stream over 20,000 categories: category i has weight 1/(i+1)
    let mut counts = std::collections::HashMap::<u64, u64>::new();
    let mut s = CategorySketch::new();
    let n = 300_000u64;
    for _ in 0..n {
        let u = g.uniform();
        let i = ((20_001f64).powf(u) - 1.0) as u64;
        *counts.entry(i).or_default() += 1;
        s.update(Some(&format!("c{i}")));
    }
    assert!(!s.is_exact());
    assert_eq!(s.count(), n);
    assert_eq!(s.other(), n - s.counts().iter().map(|c| c.1).sum::<u64>());
    let bound = n / (MAX_CATEGORIES as u64 / 2 + 1);
    let mut worst = 0;
    for (i, &true_count) in &counts {
        let kept = s
            .counts()
            .iter()
            .find(|c| c.0 == format!("c{i}"))
            .map_or(0, |c| c.1);
        assert!(
            kept <= true_count && true_count - kept <= bound,
            "c{i}: {kept} of {true_count}"
        );
        worst = worst.max(true_count - kept);
    }
    eprintln!(
        "frequent items: {} kept, largest undercount {worst} (bound {bound})",
        s.counts().len()
    );
    let sample = s.to_sample();
    assert_eq!(sample.len(), n);
    // names past the longest counted by name go to "other"
    let mut long = CategorySketch::new();
    long.update(Some(&"x".repeat(MAX_CATEGORY_BYTES + 1)));
    assert!(!long.is_exact() && long.other() == 1);
}

#[test]
fn category_merges_commute_and_keep_the_totals() {
    let mut g = Gen::new(9);
    let parts: Vec<CategorySketch> = (0..4)
        .map(|_| {
            let mut s = CategorySketch::new();
            for _ in 0..20_000 {
                let i = (g.uniform() * g.uniform() * 3000.0) as u64;
                let name = format!("v{i}");
                s.update((i != 0).then_some(name.as_str()));
            }
            s
        })
        .collect();
    let (mut fwd, mut back) = (CategorySketch::new(), CategorySketch::new());
    parts.iter().for_each(|p| fwd.merge(p));
    parts.iter().rev().for_each(|p| back.merge(p));
    let total: u64 = parts.iter().map(|p| p.count()).sum();
    assert_eq!((fwd.count(), back.count()), (total, total));
    assert_eq!(
        fwd.missing(),
        parts.iter().map(|p| p.missing()).sum::<u64>()
    );
    let (mut ab, mut ba) = (parts[0].clone(), parts[1].clone());
    ab.merge(&parts[1]);
    ba.merge(&parts[0]);
    assert!(ab.encode() == ba.encode());
}

/// Past the cap, both windows are compared on the sketch's frequent categories and one
/// bucket for the rest: close to the exact distance when the rest is a small share.
#[test]
fn overflowing_categories_are_compared_on_the_frequent_ones() {
    let mut g = Gen::new(10);
    // category i with weight about 1/(i+1)^1.5 over 5,000 categories
    let draw = |g: &mut Gen, shift: f64| -> String {
        let u = g.uniform();
        let i = (u.powf(-2.0) * (1.0 + shift)) as u64 % 5_000;
        format!("c{i}")
    };
    let reference: Vec<String> = (0..50_000).map(|_| draw(&mut g, 0.0)).collect();
    let current: Vec<String> = (0..200_000).map(|_| draw(&mut g, 0.3)).collect();
    let r = Sample::categorical(reference.iter().map(|s| Some(s.as_str())));
    let c = Sample::categorical(current.iter().map(|s| Some(s.as_str())));
    let mut s = CategorySketch::new();
    s.extend(current.iter().map(|s| Some(s.as_str())));
    assert!(!s.is_exact());
    let other = s.other() as f64 / s.count() as f64;
    let sketch = ColumnSketch::Categorical(s);
    for method in [Method::JensenShannon, Method::Psi, Method::ChiSquare] {
        let want = column_drift("c", ColumnType::Categorical, &r, &c, Some(method), None).unwrap();
        let got = sketch_drift(
            "c",
            ColumnType::Categorical,
            &r,
            &sketch,
            Some(method),
            None,
        )
        .unwrap();
        let (a, b) = (got.score.unwrap(), want.score.unwrap());
        eprintln!("{method}: sketch {a:.5}, exact {b:.5} (share of other: {other:.3})");
        assert!(got.note.unwrap().starts_with("approximate"));
        assert_eq!(
            (got.current_rows, got.reference_rows),
            (want.current_rows, want.reference_rows)
        );
    }
}
