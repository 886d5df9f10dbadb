//! Realised performance with scikit-learn's semantics (scikit-learn 1.9.1, the version
//! Evidently 0.7.23 resolves): the numbers a user gets from `sklearn.metrics` on the same
//! rows, to the last bits.
//!
//! Classification ([`classification`], [`ClassificationCounts`], [`ClassificationWindow`]):
//!
//! - **binary or multiclass**: the classes are the labels seen in `y_true` and `y_pred`
//!   together. Up to two classes is binary: precision, recall and F1 of the positive
//!   label (sklearn's `average="binary"`); the positive label is the one given, else the
//!   label that is "1" (`1`, `"1"`, `true`, sklearn's default `pos_label=1`), else the
//!   larger of the two (where sklearn would raise); a window whose one class is not
//!   "1" has no positive row, so precision, recall and F1 are 0.0 as in sklearn. More
//!   classes is multiclass: unweighted means over the sorted classes
//!   (`average="macro"`, Evidently's default).
//! - **zero division**: a precision with no predicted positive, a recall with no actual
//!   positive, an F1 with neither is 0.0, sklearn's `zero_division="warn"` value (and
//!   macro averages include those zeros, as sklearn's do); a note says so.
//! - **ROC AUC** (`roc_auc_score`): binary from the positive class's probability, over
//!   the distinct thresholds (tied scores form one step, traced as the trapezoid's
//!   diagonal); multiclass one-vs-rest, macro-averaged, from per-class probabilities
//!   whose columns are exactly the classes of `y_true`. `None` when `y_true` has one
//!   class, or the scores do not fit (the note says which); sklearn returns NaN or raises.
//! - **log loss** (`log_loss`): probabilities clipped to `[eps, 1 - eps]` with
//!   `eps = f64::EPSILON` (sklearn 1.9 clips at the dtype's machine epsilon; the old
//!   `eps=1e-15` argument is gone); binary from the positive class's probability, as
//!   `log_loss(y_true == positive, p, labels=[False, True])` (so defined for a window
//!   with one class, where sklearn without `labels` raises).
//!
//! Regression ([`regression`], [`RegressionSums`]): `mean_absolute_error`,
//! `root_mean_squared_error`, `mean_absolute_percentage_error` (dividing by
//! `max(|y_true|, f64::EPSILON)`, so a zero `y_true` gives a huge percentage, as in
//! sklearn) and `r2_score` (`force_finite=True`: 1.0 for a perfect fit, 0.0 for an
//! imperfect fit of a constant `y_true`, `None` below two rows, where sklearn gives NaN;
//! like sklearn, a constant `y_true` whose numpy mean rounds off it gives the ratio over
//! the rounding errors, noted).

mod classification;
pub(crate) mod ranking;
mod regression;
mod window;

pub use classification::{
    classification, Average, ClassificationCounts, ClassificationMetrics, Label,
};
pub use regression::{regression, RegressionMetrics, RegressionSums};
pub use window::ClassificationWindow;

/// A classifier's scores for the rows of a window.
#[derive(Debug, Clone, Copy)]
pub enum Scores<'a, L> {
    /// Binary: the probability of the positive class, one per row.
    Positive(&'a [f64]),
    /// Per-class probabilities, row-major: row `i` is
    /// `probabilities[i * classes.len()..(i + 1) * classes.len()]`, column `j` the
    /// probability of `classes[j]` (any order; the classes must be distinct).
    PerClass {
        classes: &'a [L],
        probabilities: &'a [f64],
    },
}
