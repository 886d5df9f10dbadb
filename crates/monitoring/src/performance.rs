//! Model performance: realised once labels arrive (joined with the predictions on the
//! request id, possibly days later), estimated before they do.
//!
//! - [`metrics`]: realised metrics with scikit-learn's semantics (the numbers users
//!   compare with sklearn and Evidently): accuracy, precision, recall, F1, ROC AUC and
//!   log loss for classifiers; MAE, RMSE, MAPE and R² for regressors; and accumulators
//!   that build a window's metrics row by row and merge windows;
//! - [`cbpe`]: NannyML's Confidence-Based Performance Estimation for binary classifiers:
//!   scores calibrated on the reference (isotonic regression, when NannyML's rule says
//!   they need it), then the expected confusion matrix of a window without labels.
//!
//! Everything here is pure computation over slices: the service joins, windows and
//! stores. Undefined metrics (ROC AUC with one class, precision with no predicted
//! positive, R² of one row) are `None` or sklearn's documented value, with a note that
//! says why; malformed input (mismatched lengths, no rows, NaN or out-of-range scores)
//! is a [`PerformanceError`].
//!
//! The sums follow numpy's (pairwise summation, see `numeric`), so the metrics match
//! sklearn's to the last bits (checked against `fixtures/sklearn_metrics.json`, written
//! by `scripts/monitoring/sklearn_golden.py`).

pub mod cbpe;
pub mod metrics;
mod numeric;
#[cfg(test)]
mod tests;

pub use cbpe::{CalibrationMode, Cbpe, EstimatedMetrics, ExpectedConfusion};
pub use metrics::{
    classification, regression, Average, ClassificationCounts, ClassificationMetrics,
    ClassificationWindow, Label, RegressionMetrics, RegressionSums, Scores,
};

/// Input the performance computations cannot take: the message says what was wrong and
/// what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PerformanceError {
    /// Two columns that must be row-aligned have different lengths.
    #[error("{left} has {left_len} rows but {right} has {right_len}: they must be row-aligned")]
    LengthMismatch {
        left: &'static str,
        left_len: usize,
        right: &'static str,
        right_len: usize,
    },
    /// No rows at all.
    #[error("{0} is empty: at least one row is needed")]
    Empty(&'static str),
    /// A NaN or an infinity where a finite number is needed.
    #[error("{what} has a non-finite value ({value}) at row {row}")]
    NonFinite {
        what: &'static str,
        row: usize,
        value: f64,
    },
    /// A probability outside `[0, 1]`.
    #[error("{what} has {value} at row {row}: probabilities must be within [0, 1]")]
    NotAProbability {
        what: &'static str,
        row: usize,
        value: f64,
    },
    /// Anything else, said in words.
    #[error("{0}")]
    Invalid(String),
}

/// Checks that `left` and `right` are row-aligned.
pub(crate) fn check_aligned(
    left: &'static str,
    left_len: usize,
    right: &'static str,
    right_len: usize,
) -> Result<(), PerformanceError> {
    if left_len != right_len {
        return Err(PerformanceError::LengthMismatch {
            left,
            left_len,
            right,
            right_len,
        });
    }
    Ok(())
}

/// Checks that every value is finite.
pub(crate) fn check_finite(what: &'static str, values: &[f64]) -> Result<(), PerformanceError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(PerformanceError::NonFinite {
            what,
            row,
            value: values[row],
        }),
        None => Ok(()),
    }
}

/// Checks that every value is a probability (finite, within `[0, 1]`).
pub(crate) fn check_probabilities(
    what: &'static str,
    values: &[f64],
) -> Result<(), PerformanceError> {
    check_finite(what, values)?;
    match values.iter().position(|v| !(0.0..=1.0).contains(v)) {
        Some(row) => Err(PerformanceError::NotAProbability {
            what,
            row,
            value: values[row],
        }),
        None => Ok(()),
    }
}
