//! Malformed input gives an error that says what is wrong; undefined metrics give
//! `None` or sklearn's value, with a note.

use crate::performance::cbpe::{CalibrationMode, Cbpe};
use crate::performance::metrics::{classification, regression, ClassificationWindow, Scores};
use crate::performance::PerformanceError;

fn message<T: std::fmt::Debug>(result: Result<T, PerformanceError>) -> String {
    result.expect_err("an error").to_string()
}

#[test]
fn classification_rejects_malformed_input() {
    let (t, p) = (vec![0i64, 1, 1], vec![0i64, 1, 0]);
    let m = message(classification(&t, &p[..2], None, None));
    assert_eq!(
        m,
        "y_true has 3 rows but y_pred has 2: they must be row-aligned"
    );
    let empty: Vec<i64> = vec![];
    assert!(message(classification(&empty, &empty, None, None)).contains("at least one row"));
    let nan = [0.2, f64::NAN, 0.4];
    let m = message(classification(&t, &p, Some(Scores::Positive(&nan)), None));
    assert_eq!(m, "the scores has a non-finite value (NaN) at row 1");
    let above = [0.2, 1.5, 0.4];
    let m = message(classification(&t, &p, Some(Scores::Positive(&above)), None));
    assert!(
        m.contains("1.5 at row 1") && m.contains("within [0, 1]"),
        "{m}"
    );
    let short = [0.2, 0.4];
    assert!(
        message(classification(&t, &p, Some(Scores::Positive(&short)), None))
            .contains("row-aligned")
    );
    let classes = [0i64, 1];
    let ragged = [0.5, 0.5, 0.1, 0.9, 0.3];
    let m = message(classification(
        &t,
        &p,
        Some(Scores::PerClass {
            classes: &classes,
            probabilities: &ragged,
        }),
        None,
    ));
    assert!(m.contains("do not make rows of 2 classes"), "{m}");
    let m = message(classification(&t, &p, None, Some(&7)));
    assert!(
        m.contains("positive label 7 is not one of the labels present (0, 1)"),
        "{m}"
    );
    let three = vec![0i64, 1, 2];
    assert!(message(classification(&three, &three, None, Some(&1))).contains("multiclass"));
    assert!(message(ClassificationWindow::with_classes(vec![1i64, 1], 10)).contains("distinct"));
    let mut window = ClassificationWindow::<i64>::new(10);
    assert!(message(window.push(0, 1, Some(&[0.1, 0.9]))).contains("takes 1"));
}

#[test]
fn undefined_classification_metrics_say_why() {
    let one_class = ["yes", "yes", "yes"];
    let pred = ["yes", "no", "yes"];
    let scores = [0.9, 0.3, 0.8];
    let m = classification(&one_class, &pred, Some(Scores::Positive(&scores)), None).unwrap();
    assert_eq!(m.roc_auc, None);
    assert!(
        m.notes.iter().any(|n| n.contains("only one class")),
        "{:?}",
        m.notes
    );
    assert!(m.log_loss.is_some());
    // nothing predicted positive: sklearn's zero_division value, noted
    let m = classification(&[0i64, 1, 1], &[0i64, 0, 0], None, None).unwrap();
    assert_eq!((m.precision, m.f1), (0.0, 0.0));
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("precision of label 1 is 0.0")),
        "{:?}",
        m.notes
    );
    // a multiclass problem with one score per row
    let t = [0i64, 1, 2];
    let s = [0.1, 0.5, 0.9];
    let m = classification(&t, &t, Some(Scores::Positive(&s)), None).unwrap();
    assert_eq!((m.roc_auc, m.log_loss), (None, None));
    assert!(m
        .notes
        .iter()
        .any(|n| n.contains("per-class probabilities")));
    // rows that are not probabilities
    let classes = [0i64, 1, 2];
    let probs = [0.5, 0.5, 0.5, 0.2, 0.2, 0.6, 0.1, 0.1, 0.8];
    let scores = Scores::PerClass {
        classes: &classes,
        probabilities: &probs,
    };
    let m = classification(&t, &t, Some(scores), None).unwrap();
    assert_eq!(m.roc_auc, None);
    assert!(
        m.notes.iter().any(|n| n.contains("row 0 do not sum to 1")),
        "{:?}",
        m.notes
    );
}

#[test]
fn regression_rejects_malformed_input() {
    assert!(message(regression(&[1.0, 2.0], &[1.0])).contains("row-aligned"));
    assert!(message(regression(&[], &[])).contains("y_true is empty"));
    let m = message(regression(&[1.0, f64::INFINITY], &[1.0, 2.0]));
    assert_eq!(m, "y_true has a non-finite value (inf) at row 1");
    let one = regression(&[1.0], &[2.0]).unwrap();
    assert_eq!(one.r2, None);
    assert!(one.notes.iter().any(|n| n.contains("at least two rows")));
    let zeros = regression(&[0.0, 1.0], &[0.5, 1.0]).unwrap();
    assert!(zeros.mape > 1e14);
    assert!(zeros.notes.iter().any(|n| n.contains("MAPE divides")));
}

#[test]
fn cbpe_rejects_malformed_input() {
    let scores: Vec<f64> = (0..200).map(|i| (i as f64 + 0.5) / 200.0).collect();
    let labels: Vec<bool> = (0..200).map(|i| (i * 7919) % 200 < i).collect();
    let fit = |s: &[f64], l: &[bool]| Cbpe::fit(s, l, None, 0.5).map(|_| ());
    assert!(message(fit(&scores, &labels[..199])).contains("row-aligned"));
    assert!(message(fit(&[], &[])).contains("the reference scores is empty"));
    let mut nan = scores.clone();
    nan[3] = f64::NAN;
    assert_eq!(
        message(fit(&nan, &labels)),
        "the reference scores has a non-finite value (NaN) at row 3"
    );
    let mut outside = scores.clone();
    outside[5] = -0.25;
    assert!(message(fit(&outside, &labels)).contains("-0.25 at row 5"));
    let m = message(fit(&scores, &[true; 200]));
    assert!(m.contains("all true") && m.contains("both classes"), "{m}");
    let m = message(Cbpe::fit(&scores, &labels, None, 1.5).map(|_| ()));
    assert!(m.contains("threshold is 1.5"), "{m}");
    let m = message(Cbpe::fit(&scores, &labels, Some(&[true; 3][..]), 0.5).map(|_| ()));
    assert!(m.contains("the predictions has 3"), "{m}");
    let tiny = message(fit(&[0.2, 0.8, 0.4, 0.6], &[false, true, true, false]));
    assert!(
        tiny.contains("too small for the calibration check"),
        "{tiny}"
    );
    // a forced mode needs no splits
    Cbpe::fit_with(
        &[0.2, 0.8],
        &[false, true],
        None,
        0.5,
        CalibrationMode::Always,
    )
    .unwrap();

    let cbpe = Cbpe::fit(&scores, &labels, None, 0.5).unwrap();
    assert!(message(cbpe.estimate(&[], None)).contains("the current scores is empty"));
    assert!(message(cbpe.estimate(&[0.5, f64::NAN], None)).contains("non-finite"));
    assert!(message(cbpe.estimate(&[0.5, 2.0], None)).contains("within [0, 1]"));
    assert!(message(cbpe.estimate(&[0.5, 0.2], Some(&[true][..]))).contains("row-aligned"));
    // one row is fine; all of it predicted negative with probability 0 has no ROC AUC
    let never = Cbpe::fit_with(&scores, &labels, None, 0.5, CalibrationMode::Never).unwrap();
    let est = never.estimate(&[0.0, 0.0], None).unwrap();
    assert_eq!(est.roc_auc, None);
    assert!(
        est.notes.iter().any(|n| n.contains("precision")),
        "{:?}",
        est.notes
    );
}
