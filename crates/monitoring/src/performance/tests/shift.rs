//! CBPE under a synthetic covariate shift, and the accumulators against the batch
//! functions.

use super::{gen_binary, gen_multiclass, gen_regression, Uniforms};
use crate::performance::cbpe::{CalibrationMode, Cbpe};
use crate::performance::metrics::{
    classification, regression, ClassificationCounts, ClassificationWindow, RegressionSums, Scores,
};

/// The ground truth: `P(y = 1 | x) = sigmoid(A·x + B)`.
const A: f64 = 2.0;
const B: f64 = -0.5;

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The classifier: a monotone but miscalibrated transform of the true probability
/// (overconfident and biased up), so calibration matters.
fn model_score(x: f64) -> f64 {
    sigmoid(1.6 * (A * x + B) + 0.4)
}

/// `n` rows with `x ~ N(mean, sd)`: (scores, labels drawn from the true probability).
fn draw(u: &mut Uniforms, n: usize, mean: f64, sd: f64) -> (Vec<f64>, Vec<bool>) {
    (0..n)
        .map(|_| {
            let x = mean + sd * u.normal();
            let label = u.next() < sigmoid(A * x + B);
            (model_score(x), label)
        })
        .unzip()
}

#[test]
fn cbpe_tracks_realised_performance_under_covariate_shift() {
    let mut u = Uniforms::new(2024);
    let (ref_scores, ref_labels) = draw(&mut u, 20_000, 0.0, 1.0);
    let cbpe = Cbpe::fit(&ref_scores, &ref_labels, None, 0.5).expect("fits");
    let check = cbpe.calibration_check().expect("the check ran");
    assert!(
        check.needed,
        "miscalibrated scores need calibrating: {check:?}"
    );
    let uncalibrated =
        Cbpe::fit_with(&ref_scores, &ref_labels, None, 0.5, CalibrationMode::Never).expect("fits");
    // the fitted estimator survives a round trip through JSON, as the service stores it
    let json = serde_json::to_string(&cbpe).expect("serializes");
    let stored: Cbpe = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(stored, cbpe);

    for (mean, sd) in [(0.5, 1.0), (1.0, 1.5), (-1.0, 0.7)] {
        let (scores, labels) = draw(&mut u, 20_000, mean, sd);
        let predictions: Vec<bool> = scores.iter().map(|&s| s >= 0.5).collect();
        let realised = classification(
            &labels,
            &predictions,
            Some(Scores::Positive(&scores)),
            Some(&true),
        )
        .expect("realised");
        let estimated = stored.estimate(&scores, None).expect("estimates");
        let naive = uncalibrated.estimate(&scores, None).expect("estimates");
        let roc_auc = realised.roc_auc.expect("both classes present");
        let est_roc_auc = estimated.roc_auc.expect("defined");
        let d_accuracy = estimated.accuracy - realised.accuracy;
        let d_roc_auc = est_roc_auc - roc_auc;
        eprintln!(
            "x ~ N({mean}, {sd}): accuracy realised {:.4} estimated {:.4} (diff {d_accuracy:+.4}, \
             uncalibrated {:+.4}); ROC AUC realised {roc_auc:.4} estimated {est_roc_auc:.4} \
             (diff {d_roc_auc:+.4}); F1 realised {:.4} estimated {:.4}",
            realised.accuracy,
            estimated.accuracy,
            naive.accuracy - realised.accuracy,
            realised.f1,
            estimated.f1,
        );
        assert!(
            d_accuracy.abs() < 0.02,
            "accuracy off by {d_accuracy} under N({mean}, {sd})"
        );
        assert!(
            d_roc_auc.abs() < 0.02,
            "ROC AUC off by {d_roc_auc} under N({mean}, {sd})"
        );
        assert_eq!(estimated.rows, 20_000);
        let c = estimated.confusion;
        let total = c.true_positive + c.false_positive + c.false_negative + c.true_negative;
        assert!((total - 20_000.0).abs() < 1e-6);
    }
}

#[test]
fn classification_window_equals_the_batch_metrics() {
    let spec = serde_json::json!({"seed": 77, "n": 3000, "quantize": 25});
    let (y_true, y_pred, scores) = gen_binary(&spec);
    let batch = classification(&y_true, &y_pred, Some(Scores::Positive(&scores)), None).unwrap();
    // two windows built row by row, then merged
    let (mut first, mut second) = (
        ClassificationWindow::new(3000),
        ClassificationWindow::new(3000),
    );
    for i in 0..3000 {
        let window = if i < 1200 { &mut first } else { &mut second };
        window
            .push(y_true[i], y_pred[i], Some(&scores[i..=i]))
            .unwrap();
    }
    first.merge(&second);
    assert_eq!(first.metrics(None).unwrap(), batch);
    // counts alone are exact too, and serialize
    let mut counts = ClassificationCounts::new();
    for (t, p) in y_true.iter().zip(&y_pred) {
        counts.add(*t, *p);
    }
    let json = serde_json::to_string(&counts).unwrap();
    let counts: ClassificationCounts<i64> = serde_json::from_str(&json).unwrap();
    let m = counts.metrics(None).unwrap();
    assert_eq!(
        (m.accuracy, m.precision, m.recall, m.f1),
        (batch.accuracy, batch.precision, batch.recall, batch.f1)
    );
    // past the bound, the score metrics are gone, with the reason
    let mut small = ClassificationWindow::new(100);
    for i in 0..101 {
        small
            .push(y_true[i], y_pred[i], Some(&scores[i..=i]))
            .unwrap();
    }
    let m = small.metrics(None).unwrap();
    assert_eq!((m.roc_auc, m.log_loss), (None, None));
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("more than 100 scored rows")),
        "{:?}",
        m.notes
    );
}

#[test]
fn multiclass_window_equals_the_batch_metrics() {
    let spec = serde_json::json!({"seed": 78, "n": 900, "k": 4});
    let (y_true, y_pred, probs, k) = gen_multiclass(&spec);
    let classes: Vec<i64> = (0..k as i64).collect();
    let scores = Scores::PerClass {
        classes: &classes,
        probabilities: &probs,
    };
    let batch = classification(&y_true, &y_pred, Some(scores), None).unwrap();
    let mut window = ClassificationWindow::with_classes(classes.clone(), 1000).unwrap();
    for i in 0..900 {
        window
            .push(y_true[i], y_pred[i], Some(&probs[i * k..(i + 1) * k]))
            .unwrap();
    }
    assert_eq!(window.metrics(None).unwrap(), batch);
    assert!(batch.roc_auc.is_some() && batch.log_loss.is_some());
}

#[test]
fn regression_sums_agree_with_the_batch_metrics() {
    let spec = serde_json::json!({"seed": 79, "n": 5000, "loc": 50.0, "scale": 10.0, "noise": 4.0});
    let (y_true, y_pred) = gen_regression(&spec);
    let batch = regression(&y_true, &y_pred).unwrap();
    let (mut a, mut b) = (RegressionSums::new(), RegressionSums::new());
    a.extend(&y_true[..1700], &y_pred[..1700]).unwrap();
    for i in 1700..5000 {
        b.push(y_true[i], y_pred[i]).unwrap();
    }
    a.merge(&b);
    let json = serde_json::to_string(&a).unwrap();
    let sums: RegressionSums = serde_json::from_str(&json).unwrap();
    let m = sums.metrics().unwrap();
    assert_eq!(m.rows, 5000);
    for (got, want, what) in [
        (m.mae, batch.mae, "mae"),
        (m.rmse, batch.rmse, "rmse"),
        (m.mape, batch.mape, "mape"),
        (m.r2.unwrap(), batch.r2.unwrap(), "r2"),
    ] {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs(),
            "{what}: {got} vs {want}"
        );
    }
    // a constant y_true: the conventions hold
    let mut constant = RegressionSums::new();
    constant.extend(&[3.0, 3.0, 3.0], &[3.0, 2.0, 3.5]).unwrap();
    assert_eq!(constant.metrics().unwrap().r2, Some(0.0));
}
