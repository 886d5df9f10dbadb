//! Parity with scikit-learn 1.9.1 and NannyML 0.13.1 on the fixtures' cases.

use serde_json::Value;

use super::{close, gen_binary, gen_multiclass, gen_regression, gen_table, num};
use crate::performance::cbpe::{CalibrationMode, Cbpe, Isotonic};
use crate::performance::metrics::{classification, regression, Label, Scores};

/// sklearn and NannyML agree with us to this relative error (observed: see the tests'
/// printed maxima).
const RTOL: f64 = 1e-12;

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("the fixture parses")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| num(x).expect("a float"))
        .collect()
}

fn labels<L>(v: &Value, parse: impl Fn(&Value) -> L) -> Vec<L> {
    v.as_array().expect("a list").iter().map(parse).collect()
}

#[test]
fn sklearn_metrics_match() {
    let golden = fixture(include_str!("../../../fixtures/sklearn_metrics.json"));
    assert_eq!(golden["sklearn"], "1.9.1");
    let mut worst = 0.0f64;
    let mut checked = 0;
    for case in golden["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let err = match case["kind"].as_str() {
            Some("classification") => classification_case(case, name),
            Some("regression") => regression_case(case, name),
            Some("isotonic") => isotonic_case(case, name),
            other => panic!("unknown kind {other:?}"),
        };
        worst = worst.max(err);
        checked += 1;
    }
    eprintln!("{checked} sklearn cases, largest relative error {worst:e}");
    assert!(checked >= 30);
}

fn classification_case(case: &Value, name: &str) -> f64 {
    let string_labels = case.get("y_true").is_some_and(|v| v[0].is_string());
    if string_labels {
        let s = |v: &Value| v.as_str().expect("a label").to_owned();
        let y_true = labels(&case["y_true"], s);
        let y_pred = labels(&case["y_pred"], s);
        let positive = case.get("positive").map(s);
        let classes = case.get("classes").map(|c| labels(c, s));
        check_classification(case, name, &y_true, &y_pred, positive, classes)
    } else {
        let i = |v: &Value| v.as_i64().expect("a label");
        let (y_true, y_pred) = match case.get("gen") {
            Some(spec) if spec["kind"] == "binary" => {
                let (t, p, _) = gen_binary(spec);
                (t, p)
            }
            Some(spec) => {
                let (t, p, _, _) = gen_multiclass(spec);
                (t, p)
            }
            None => (labels(&case["y_true"], i), labels(&case["y_pred"], i)),
        };
        let positive = case.get("positive").map(i);
        let classes = case.get("classes").map(|c| labels(c, i));
        check_classification(case, name, &y_true, &y_pred, positive, classes)
    }
}

fn check_classification<L: Label>(
    case: &Value,
    name: &str,
    y_true: &[L],
    y_pred: &[L],
    positive: Option<L>,
    classes: Option<Vec<L>>,
) -> f64 {
    let scores: Option<Vec<f64>> = match case.get("gen") {
        Some(spec) if spec["kind"] == "binary" => Some(gen_binary(spec).2),
        Some(spec) => Some(gen_multiclass(spec).2),
        None => case.get("scores").map(|s| {
            s.as_array()
                .expect("scores")
                .iter()
                .flat_map(|row| match row.as_array() {
                    Some(row) => row.iter().map(|x| num(x).expect("a float")).collect(),
                    None => vec![num(row).expect("a float")],
                })
                .collect()
        }),
    };
    let scores = scores.as_deref().map(|s| match &classes {
        Some(classes) => Scores::PerClass {
            classes,
            probabilities: s,
        },
        None => Scores::Positive(s),
    });
    let given = case["positive_given"].as_bool().unwrap_or(false);
    let m = classification(y_true, y_pred, scores, positive.as_ref().filter(|_| given))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let at = |k: &str| format!("{name}: {k}");
    let mut err = 0.0f64;
    err = err.max(close(
        Some(m.accuracy),
        num(&case["accuracy"]),
        RTOL,
        &at("accuracy"),
    ));
    err = err.max(close(
        Some(m.precision),
        num(&case["precision"]),
        RTOL,
        &at("precision"),
    ));
    err = err.max(close(
        Some(m.recall),
        num(&case["recall"]),
        RTOL,
        &at("recall"),
    ));
    err = err.max(close(Some(m.f1), num(&case["f1"]), RTOL, &at("f1")));
    err = err.max(close(
        m.roc_auc,
        num(&case["roc_auc"]),
        RTOL,
        &at("roc_auc"),
    ));
    err = err.max(close(
        m.log_loss,
        num(&case["log_loss"]),
        RTOL,
        &at("log_loss"),
    ));
    if let Some(positive) = positive {
        assert_eq!(
            m.average,
            crate::performance::Average::Binary {
                positive: positive.to_string()
            },
            "{name}"
        );
    }
    if m.roc_auc.is_none() {
        assert!(
            m.notes.iter().any(|n| n.contains("ROC AUC")),
            "{name}: {:?}",
            m.notes
        );
    }
    err
}

fn regression_case(case: &Value, name: &str) -> f64 {
    let (y_true, y_pred) = match case.get("gen") {
        Some(spec) => gen_regression(spec),
        None => (floats(&case["y_true"]), floats(&case["y_pred"])),
    };
    let m = regression(&y_true, &y_pred).unwrap_or_else(|e| panic!("{name}: {e}"));
    let at = |k: &str| format!("{name}: {k}");
    [
        close(Some(m.mae), num(&case["mae"]), RTOL, &at("mae")),
        close(Some(m.rmse), num(&case["rmse"]), RTOL, &at("rmse")),
        close(Some(m.mape), num(&case["mape"]), RTOL, &at("mape")),
        close(m.r2, num(&case["r2"]), RTOL, &at("r2")),
    ]
    .into_iter()
    .fold(0.0, f64::max)
}

fn isotonic_case(case: &Value, name: &str) -> f64 {
    let (x, y) = match case.get("gen") {
        Some(spec) => {
            let (t, _, s) = gen_binary(spec);
            (s, t.iter().map(|&t| t as f64).collect())
        }
        None => (floats(&case["x"]), floats(&case["y"])),
    };
    let iso = Isotonic::fit(&x, &y).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (tx, ty) = iso.thresholds();
    assert_eq!(
        tx,
        floats(&case["x_thresholds"]).as_slice(),
        "{name}: X_thresholds_"
    );
    assert_eq!(
        ty,
        floats(&case["y_thresholds"]).as_slice(),
        "{name}: y_thresholds_"
    );
    let mut err = 0.0f64;
    for (t, want) in floats(&case["grid"])
        .iter()
        .zip(floats(&case["predictions"]))
    {
        let what = format!("{name}: predict({t})");
        err = err.max(close(Some(iso.predict(*t)), Some(want), RTOL, &what));
    }
    err
}

#[test]
fn nannyml_cbpe_matches() {
    let golden = fixture(include_str!("../../../fixtures/nannyml_cbpe.json"));
    assert_eq!(golden["nannyml"], "0.13.1");
    let mut worst = 0.0f64;
    for case in golden["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (ref_scores, ref_pred, ref_labels) = gen_table(&case["reference"]);
        let (scores, pred, labels) = gen_table(&case["analysis"]);
        let needed = case["needs_calibration"].as_bool().expect("a decision");
        // NannyML's splits are numpy's: take its decision to compare the estimates
        let mode = if needed {
            CalibrationMode::Always
        } else {
            CalibrationMode::Never
        };
        let cbpe = Cbpe::fit_with(&ref_scores, &ref_labels, Some(&ref_pred), 0.5, mode)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, want) in floats(&case["calibrated"]).iter().enumerate() {
            let what = format!("{name}: calibrated row {i}");
            worst = worst.max(close(
                Some(cbpe.calibrate(scores[i])),
                Some(*want),
                RTOL,
                &what,
            ));
        }
        let est = cbpe.estimate(&scores, Some(&pred)).expect("estimates");
        let e = &case["estimated"];
        for (metric, got) in [
            ("accuracy", Some(est.accuracy)),
            ("precision", Some(est.precision)),
            ("recall", Some(est.recall)),
            ("f1", Some(est.f1)),
            ("roc_auc", est.roc_auc),
        ] {
            let what = format!("{name}: estimated {metric}");
            worst = worst.max(close(got, num(&e[metric]), RTOL, &what));
        }
        // NannyML's realised metrics are sklearn's
        let realized = classification(&labels, &pred, Some(Scores::Positive(&scores)), Some(&true))
            .expect("realised");
        let r = &case["realized"];
        for (metric, got) in [
            ("accuracy", Some(realized.accuracy)),
            ("precision", Some(realized.precision)),
            ("recall", Some(realized.recall)),
            ("f1", Some(realized.f1)),
            ("roc_auc", realized.roc_auc),
        ] {
            worst = worst.max(close(
                got,
                num(&r[metric]),
                RTOL,
                &format!("{name}: {metric}"),
            ));
        }
        // our own decision, from other random splits
        let auto = Cbpe::fit(&ref_scores, &ref_labels, Some(&ref_pred), 0.5).expect("fits");
        let check = auto.calibration_check().expect("the check ran");
        eprintln!(
            "{name}: NannyML calibrates {needed}, we {} (ECE {:?} before, {:?} after)",
            check.needed, check.ece_before, check.ece_after
        );
        if name.contains("overconfident") {
            assert!(
                check.needed,
                "{name}: overconfident scores need calibrating"
            );
        }
    }
    eprintln!("NannyML CBPE: largest relative error {worst:e}");
}
