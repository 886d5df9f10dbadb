//! Parity with Evidently 0.7.23: every case of `fixtures/evidently_drift.json` (written by
//! `scripts/monitoring/evidently_golden.py` from Evidently's own reports) gives the same
//! method, threshold, score and verdict here.

use serde_json::Value;

use super::*;

const GOLDEN: &str = include_str!("../../fixtures/evidently_drift.json");

/// Evidently's randomized methods: its p-values come from numpy's generator, ours from a
/// seeded one. One p-value from k permutations has a standard error of at most
/// sqrt(0.25 / k); the difference of two, sqrt(0.5 / k): 0.022 for TVD's 1,000 and 0.071
/// for MMD's 100. The tolerance is about 3.5 standard errors of the difference.
fn randomized_tolerance(m: Method) -> Option<f64> {
    match m {
        Method::Tvd => Some(0.08),
        Method::EmpiricalMmd => Some(0.25),
        _ => None,
    }
}

fn value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn sample(ty: ColumnType, values: &[Value]) -> Sample {
    match ty {
        ColumnType::Numerical => {
            Sample::numerical(values.iter().map(|v| value(v).unwrap_or(f64::NAN)))
        }
        ColumnType::Categorical => Sample::categorical(values.iter().map(Value::as_str)),
    }
}

fn close(ours: f64, theirs: f64, rel: f64) -> bool {
    ours == theirs || (ours - theirs).abs() <= rel * theirs.abs().max(1e-300)
}

/// The absolute tolerance of a score, where relative is meaningless: `cramer_von_mises`'s
/// asymptotic p-value is `1 - cdf` with the cdf near 1, so a small p-value carries the
/// cdf's rounding (about 1e-15 absolute), amplified by the series' terms.
fn absolute_tolerance(m: Method, theirs: f64) -> f64 {
    match m {
        Method::CramerVonMises if theirs < 1e-6 => 1e-13,
        _ => 0.0,
    }
}

/// Where ours deliberately differs from Evidently, documented in docs/monitoring.md:
/// `es` on a column of 2 distinct values (Evidently's answer is rounding noise).
fn documented_divergence(m: Method, reference: &Sample, current: &Sample) -> bool {
    m == Method::Es && sample::aligned_counts(reference, current).len() <= 2
}

#[test]
fn every_golden_case_matches_evidently() {
    let golden: Value = serde_json::from_str(GOLDEN).expect("the golden file is JSON");
    let data = golden["data"].as_object().expect("data");
    let cases = golden["cases"].as_array().expect("cases");
    assert!(cases.len() > 600, "{} cases", cases.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases {
        let name = case["data"].as_str().expect("data name");
        let d = &data[name];
        let ty = match d["type"].as_str() {
            Some("numerical") => ColumnType::Numerical,
            _ => ColumnType::Categorical,
        };
        let r = sample(ty, d["reference"].as_array().expect("reference"));
        let c = sample(ty, d["current"].as_array().expect("current"));
        let asked = case["asked"]
            .as_str()
            .map(|m| m.parse::<Method>().expect("a method"));
        let ours = column_drift("x", ty, &r, &c, asked, None).expect("a valid request");
        let label = format!("{name} / {}", asked.map_or("default", Method::name));
        if let Some(err) = case["error"].as_str() {
            if ours.score.is_some() || ours.drifted || ours.note.is_none() {
                failures.push(format!("{label}: Evidently raised {err:?}, ours {ours:?}"));
            }
            checked += 1;
            continue;
        }
        // Evidently reports the name asked for, or the display name of its default choice
        let method = case["method"].as_str().unwrap_or_default();
        let ours_name = match asked {
            Some(_) => ours.method.name(),
            None => ours.method.display_name(),
        };
        if ours_name != method {
            failures.push(format!("{label}: method {method} vs ours {}", ours.method));
            continue;
        }
        let threshold = case["threshold"].as_f64().expect("threshold");
        if ours.threshold != threshold {
            failures.push(format!(
                "{label}: threshold {threshold} vs {}",
                ours.threshold
            ));
        }
        if documented_divergence(ours.method, &r, &c) {
            if ours.score.is_some() || ours.note.is_none() {
                failures.push(format!(
                    "{label}: expected no score and a note, got {ours:?}"
                ));
            }
            checked += 1;
            continue;
        }
        let theirs = value(&case["score"]).expect("score");
        let drifted = case["drifted"].as_bool().expect("drifted");
        match (ours.score, theirs.is_nan()) {
            (None, true) => {}
            (Some(s), false) => match randomized_tolerance(ours.method) {
                Some(tol) => {
                    if (s - theirs).abs() > tol {
                        failures.push(format!("{label}: p {theirs} vs ours {s} (±{tol})"));
                    }
                    // the verdicts agree wherever the p-values are clear of the threshold
                    if (theirs - threshold).abs() > tol && ours.drifted != drifted {
                        failures.push(format!("{label}: drifted {drifted} vs {}", ours.drifted));
                    }
                }
                None => {
                    if !close(s, theirs, 1e-9)
                        && (s - theirs).abs() > absolute_tolerance(ours.method, theirs)
                    {
                        failures.push(format!("{label}: score {theirs:e} vs ours {s:e}"));
                    }
                    if ours.drifted != drifted {
                        failures.push(format!("{label}: drifted {drifted} vs {}", ours.drifted));
                    }
                }
            },
            (ours_score, _) => failures.push(format!(
                "{label}: score {theirs} vs ours {ours_score:?} ({:?})",
                ours.note
            )),
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ from Evidently:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_default_method_follows_evidentlys_boundaries() {
    let many = |n: usize| Sample::numerical((0..n).map(|i| i as f64));
    let few = |n: usize, k: usize| Sample::numerical((0..n).map(|i| (i % k) as f64));
    let num = ColumnType::Numerical;
    assert_eq!(default_method(&many(1000), &many(10), num), Method::Ks);
    assert_eq!(
        default_method(&many(1001), &many(10), num),
        Method::Wasserstein
    );
    assert_eq!(
        default_method(&few(1000, 5), &few(10, 5), num),
        Method::ChiSquare
    );
    assert_eq!(default_method(&few(1000, 2), &few(10, 2), num), Method::Z);
    assert_eq!(default_method(&few(1000, 6), &few(10, 6), num), Method::Ks);
    assert_eq!(
        default_method(&few(2000, 5), &few(10, 5), num),
        Method::JensenShannon
    );
    let cat = |n: usize, k: usize| Sample::categorical((0..n).map(|i| Some(format!("c{}", i % k))));
    let ty = ColumnType::Categorical;
    assert_eq!(default_method(&cat(1000, 2), &cat(5, 2), ty), Method::Z);
    assert_eq!(
        default_method(&cat(1000, 3), &cat(5, 3), ty),
        Method::ChiSquare
    );
    assert_eq!(
        default_method(&cat(1001, 2), &cat(5, 2), ty),
        Method::JensenShannon
    );
}

#[test]
fn requests_that_cannot_be_answered_are_clear_errors() {
    let n = Sample::numerical([1.0, 2.0, 3.0]);
    let c = Sample::categorical([Some("a")]);
    let e = column_drift("x", ColumnType::Numerical, &n, &c, None, None).unwrap_err();
    assert!(e
        .to_string()
        .contains("numerical in the reference but categorical"));
    let e = column_drift("x", ColumnType::Categorical, &c, &c, Some(Method::Ks), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column \"x\": method ks does not apply to a categorical column (it takes numerical columns)"
    );
    let e = column_drift("x", ColumnType::Numerical, &n, &n, None, Some(-1.0)).unwrap_err();
    assert!(e.to_string().contains("threshold -1"));
}

#[test]
fn an_empty_window_gets_no_score_and_says_why() {
    let r = Sample::numerical([1.0, 2.0, 3.0]);
    let empty = Sample::numerical([f64::NAN, f64::NAN]);
    let d = column_drift("x", ColumnType::Numerical, &r, &empty, None, None).expect("answered");
    assert_eq!((d.score, d.drifted, d.current_missing), (None, false, 2));
    assert!(d
        .note
        .expect("a note")
        .contains("current window has no values"));
}

#[test]
fn dataset_drift_counts_the_share_and_corrections_adjust_p_values() {
    let r = Sample::numerical((0..200).map(|i| (i as f64 * 0.37).sin()));
    let same = Sample::numerical((0..150).map(|i| (i as f64 * 0.41).sin()));
    let shifted = Sample::numerical((0..150).map(|i| (i as f64 * 0.41).sin() + 0.5));
    let cols = [
        ColumnInput {
            name: "a",
            ty: ColumnType::Numerical,
            reference: &r,
            current: &shifted,
        },
        ColumnInput {
            name: "b",
            ty: ColumnType::Numerical,
            reference: &r,
            current: &same,
        },
    ];
    let plain = dataset_drift(&cols, &DriftOptions::default()).expect("answered");
    assert_eq!((plain.drifted_columns, plain.share), (1, 0.5));
    assert!(
        plain.dataset_drift,
        "a share of 0.5 reaches the default 0.5"
    );
    let options = DriftOptions {
        drift_share: Some(0.6),
        correction: Correction::Bonferroni,
        ..Default::default()
    };
    let corrected = dataset_drift(&cols, &options).expect("answered");
    assert!(!corrected.dataset_drift);
    let a = &corrected.columns["a"];
    assert_eq!(a.adjusted_score, a.score.map(|p| (2.0 * p).min(1.0)));
    let bad = DriftOptions {
        drift_share: Some(0.0),
        ..Default::default()
    };
    assert!(dataset_drift(&cols, &bad).is_err());
}

#[test]
fn per_column_options_take_precedence_as_in_evidently() {
    let o = DriftOptions {
        method: Some(Method::Psi),
        num_method: Some(Method::Ks),
        per_column_method: [("x".to_owned(), Method::Ed)].into(),
        threshold: Some(0.2),
        cat_threshold: Some(0.3),
        ..Default::default()
    };
    assert_eq!(o.method_for("x", ColumnType::Numerical), Some(Method::Ed));
    assert_eq!(o.method_for("y", ColumnType::Numerical), Some(Method::Ks));
    assert_eq!(
        o.method_for("y", ColumnType::Categorical),
        Some(Method::Psi)
    );
    assert_eq!(o.threshold_for("y", ColumnType::Categorical), Some(0.3));
    assert_eq!(o.threshold_for("y", ColumnType::Numerical), Some(0.2));
}
