//! NannyML's Confidence-Based Performance Estimation (CBPE) for binary classifiers: the
//! performance of a window before its labels arrive.
//!
//! If the model's scores are calibrated probabilities, a row scored `p` is positive with
//! probability `p`, so the confusion matrix of a window has an expected value: a row
//! predicted positive adds `p` true positives and `1 - p` false positives, one predicted
//! negative `p` false negatives and `1 - p` true negatives. Accuracy, precision, recall
//! and F1 follow from the expected counts, and ROC AUC from the expected true and false
//! positive rates over the score thresholds (NannyML's `estimate_roc_auc`). Under a
//! covariate shift (the inputs move, `P(y | x)` does not) calibration carries over, so
//! the estimates track the realised metrics.
//!
//! [`Cbpe::fit`] learns the calibration on the reference, where the labels are known:
//! an isotonic regression of labels on scores (NannyML's default calibrator), used when
//! NannyML's rule ([`calibration`]) finds that it lowers the calibration error.
//! [`Cbpe::estimate`] applies it to a window's scores. A fitted `Cbpe` serializes (serde)
//! so it is stored with its reference. The formulas are NannyML's (`nannyml` 0.13,
//! `performance_estimation/confidence_based/metrics.py`), with its sums.

pub mod calibration;
mod isotonic;

use serde::{Deserialize, Serialize};

pub use calibration::CalibrationCheck;
pub use isotonic::Isotonic;

use super::metrics::{classification, ClassificationMetrics, Scores};
use super::{check_aligned, check_probabilities, numeric, PerformanceError};

/// Whether [`Cbpe::fit_with`] calibrates the scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMode {
    /// As NannyML decides (`needs_calibration`).
    #[default]
    Auto,
    /// Always calibrate.
    Always,
    /// Take the scores as calibrated probabilities.
    Never,
}

/// A CBPE estimator fitted on a reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cbpe {
    /// A row is predicted positive when its score is at least this (when the
    /// predictions are not given).
    threshold: f64,
    /// The isotonic calibrator, when the scores are calibrated.
    calibrator: Option<Isotonic>,
    /// The calibration check's outcome (`None` when the mode was forced).
    check: Option<CalibrationCheck>,
    /// The realised metrics on the reference (positive label `true`).
    reference: ClassificationMetrics,
}

/// A window's estimated performance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatedMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// `None` when the expected positives or negatives round to zero (see `notes`).
    pub roc_auc: Option<f64>,
    pub rows: u64,
    /// The expected confusion matrix (counts of rows).
    pub confusion: ExpectedConfusion,
    /// Where an estimate took NannyML's 0 for an empty denominator, or is `None`.
    pub notes: Vec<String>,
}

/// The expected confusion matrix of a window: sums of calibrated probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExpectedConfusion {
    pub true_positive: f64,
    pub false_positive: f64,
    pub false_negative: f64,
    pub true_negative: f64,
}

impl Cbpe {
    /// Fits on the reference: its scores (probabilities of the positive class), labels
    /// and the model's predictions (`score >= threshold` when not given), calibrating as
    /// NannyML decides.
    pub fn fit(
        reference_scores: &[f64],
        reference_labels: &[bool],
        reference_predictions: Option<&[bool]>,
        threshold: f64,
    ) -> Result<Cbpe, PerformanceError> {
        Cbpe::fit_with(
            reference_scores,
            reference_labels,
            reference_predictions,
            threshold,
            CalibrationMode::Auto,
        )
    }

    /// [`Cbpe::fit`] with the calibration decided by `mode`.
    pub fn fit_with(
        reference_scores: &[f64],
        reference_labels: &[bool],
        reference_predictions: Option<&[bool]>,
        threshold: f64,
        mode: CalibrationMode,
    ) -> Result<Cbpe, PerformanceError> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(PerformanceError::Invalid(format!(
                "the decision threshold is {threshold}: it must be a probability within [0, 1]"
            )));
        }
        let predictions = validate(
            "the reference scores",
            reference_scores,
            reference_predictions,
            threshold,
        )?;
        check_aligned(
            "the reference scores",
            reference_scores.len(),
            "the reference labels",
            reference_labels.len(),
        )?;
        let positives = reference_labels.iter().filter(|&&l| l).count();
        if positives == 0 || positives == reference_labels.len() {
            return Err(PerformanceError::Invalid(format!(
                "the reference labels are all {}: CBPE calibrates on a reference with both \
                 classes",
                positives > 0
            )));
        }
        let reference = classification(
            reference_labels,
            &predictions,
            Some(Scores::Positive(reference_scores)),
            Some(&true),
        )?;
        let (check, calibrate) = match mode {
            CalibrationMode::Auto => {
                let check = calibration::needs_calibration(reference_scores, reference_labels)?;
                let needed = check.needed;
                (Some(check), needed)
            }
            CalibrationMode::Always => (None, true),
            CalibrationMode::Never => (None, false),
        };
        let calibrator = if calibrate {
            let labels: Vec<f64> = reference_labels
                .iter()
                .map(|&l| if l { 1.0 } else { 0.0 })
                .collect();
            Some(Isotonic::fit(reference_scores, &labels)?)
        } else {
            None
        };
        Ok(Cbpe {
            threshold,
            calibrator,
            check,
            reference,
        })
    }

    /// The decision threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The calibrator, when the scores are calibrated.
    pub fn calibrator(&self) -> Option<&Isotonic> {
        self.calibrator.as_ref()
    }

    /// The calibration check's outcome, when it ran.
    pub fn calibration_check(&self) -> Option<&CalibrationCheck> {
        self.check.as_ref()
    }

    /// The realised metrics on the reference.
    pub fn reference(&self) -> &ClassificationMetrics {
        &self.reference
    }

    /// The calibrated probability of a score.
    pub fn calibrate(&self, score: f64) -> f64 {
        self.calibrator.as_ref().map_or(score, |c| c.predict(score))
    }

    /// Estimates a window's performance from its scores (probabilities of the positive
    /// class) and the model's predictions (`score >= threshold` when not given).
    pub fn estimate(
        &self,
        current_scores: &[f64],
        current_predictions: Option<&[bool]>,
    ) -> Result<EstimatedMetrics, PerformanceError> {
        let predictions = validate(
            "the current scores",
            current_scores,
            current_predictions,
            self.threshold,
        )?;
        let calibrated: Vec<f64> = current_scores.iter().map(|&s| self.calibrate(s)).collect();
        Ok(estimate(&calibrated, current_scores, &predictions))
    }
}

/// Checks a window's scores and predictions; the predictions, made from the threshold
/// when not given.
fn validate(
    what: &'static str,
    scores: &[f64],
    predictions: Option<&[bool]>,
    threshold: f64,
) -> Result<Vec<bool>, PerformanceError> {
    if scores.is_empty() {
        return Err(PerformanceError::Empty(what));
    }
    check_probabilities(what, scores)?;
    match predictions {
        Some(p) => {
            check_aligned(what, scores.len(), "the predictions", p.len())?;
            Ok(p.to_vec())
        }
        None => Ok(scores.iter().map(|&s| s >= threshold).collect()),
    }
}

/// NannyML's `estimate_accuracy`, `estimate_precision`, `estimate_recall`,
/// `estimate_f1` and `estimate_roc_auc` over calibrated probabilities (the model's
/// scores order the rows for ROC AUC).
pub(crate) fn estimate(
    calibrated: &[f64],
    scores: &[f64],
    predictions: &[bool],
) -> EstimatedMetrics {
    let n = calibrated.len();
    let positive = |i: usize| predictions[i];
    let tp = numeric::sum_of(n, |i| if positive(i) { calibrated[i] } else { 0.0 });
    let fp = numeric::sum_of(n, |i| {
        if positive(i) {
            1.0 - calibrated[i]
        } else {
            0.0
        }
    });
    let fn_ = numeric::sum_of(n, |i| if positive(i) { 0.0 } else { calibrated[i] });
    let tn = numeric::sum_of(n, |i| {
        if positive(i) {
            0.0
        } else {
            1.0 - calibrated[i]
        }
    });
    let mut notes = Vec::new();
    let mut ratio = |num: f64, den: f64, what: &str| {
        if den == 0.0 {
            notes.push(format!(
                "estimated {what} is 0 (NannyML's value): its denominator is 0"
            ));
            0.0
        } else {
            num / den
        }
    };
    let precision = ratio(tp, tp + fp, "precision");
    let recall = ratio(tp, tp + fn_, "recall");
    let f1 = ratio(tp, tp + 0.5 * (fp + fn_), "F1");
    let roc_auc = estimate_roc_auc(calibrated, scores);
    if roc_auc.is_none() {
        notes.push(
            "estimated ROC AUC undefined: the expected positives or negatives round to 0".into(),
        );
    }
    EstimatedMetrics {
        accuracy: (tp + tn) / n as f64,
        precision,
        recall,
        f1,
        roc_auc,
        rows: n as u64,
        confusion: ExpectedConfusion {
            true_positive: tp,
            false_positive: fp,
            false_negative: fn_,
            true_negative: tn,
        },
        notes,
    }
}

/// NannyML's `estimate_roc_auc`: rows by descending model score, expected true and false
/// positives accumulated from the calibrated probabilities (rounded to 5 decimals, as
/// NannyML rounds them), normalised to rates, and the area under them. Tied scores
/// have equal probabilities, so their order does not change the sums.
fn estimate_roc_auc(calibrated: &[f64], scores: &[f64]) -> Option<f64> {
    let n = calibrated.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tps, mut fps) = (Vec::with_capacity(n + 1), Vec::with_capacity(n + 1));
    tps.push(0.0);
    fps.push(0.0);
    let mut cumulative = 0.0;
    for (k, &i) in order.iter().enumerate() {
        cumulative += calibrated[i];
        tps.push(numeric::round_to(cumulative, 5));
        fps.push(numeric::round_to((k + 1) as f64 - cumulative, 5));
    }
    let (tp_total, fp_total) = (tps[n], fps[n]);
    if tp_total == 0.0 || fp_total == 0.0 {
        return None;
    }
    let tpr: Vec<f64> = tps.iter().map(|t| t / tp_total).collect();
    let fpr: Vec<f64> = fps.iter().map(|f| f / fp_total).collect();
    numeric::auc(&fpr, &tpr)
}
