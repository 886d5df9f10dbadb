//! A regressor's realised metrics: MAE, RMSE, MAPE and R², as sklearn computes them
//! ([`regression`]), and as running sums that merge across windows ([`RegressionSums`]).

use serde::{Deserialize, Serialize};

use crate::performance::{check_aligned, check_finite, numeric, PerformanceError};

/// sklearn's MAPE floor on `|y_true|` (`np.finfo(np.float64).eps`).
const MAPE_EPSILON: f64 = f64::EPSILON;

/// A regressor's realised metrics over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub mae: f64,
    pub rmse: f64,
    /// A fraction (0.1 is 10%), as sklearn's; huge when some `y_true` is 0.
    pub mape: f64,
    /// `None` below two rows (where sklearn gives NaN).
    pub r2: Option<f64>,
    pub rows: u64,
    /// Why R² is `None` or took a conventional value; zeros in `y_true`.
    pub notes: Vec<String>,
}

/// The realised metrics of a regressor over row-aligned, finite `y_true` and `y_pred`:
/// sklearn's `mean_absolute_error`, `root_mean_squared_error`,
/// `mean_absolute_percentage_error` and `r2_score`, summed as numpy sums.
pub fn regression(y_true: &[f64], y_pred: &[f64]) -> Result<RegressionMetrics, PerformanceError> {
    check_aligned("y_true", y_true.len(), "y_pred", y_pred.len())?;
    if y_true.is_empty() {
        return Err(PerformanceError::Empty("y_true"));
    }
    check_finite("y_true", y_true)?;
    check_finite("y_pred", y_pred)?;
    let n = y_true.len();
    let mae = numeric::mean_of(n, |i| (y_pred[i] - y_true[i]).abs());
    let squared = |i: usize| {
        let d = y_true[i] - y_pred[i];
        d * d
    };
    let mse = numeric::mean_of(n, squared);
    let mape = numeric::mean_of(n, |i| {
        (y_pred[i] - y_true[i]).abs() / y_true[i].abs().max(MAPE_EPSILON)
    });
    let mut notes = Vec::new();
    note_zeros(y_true.iter().filter(|y| **y == 0.0).count(), &mut notes);
    let r2 = if n < 2 {
        None
    } else {
        let numerator = numeric::sum_of(n, squared);
        let mean = numeric::mean(y_true);
        let denominator = numeric::sum_of(n, |i| {
            let d = y_true[i] - mean;
            d * d
        });
        if denominator != 0.0 && y_true.iter().all(|y| *y == y_true[0]) {
            notes.push(
                "y_true is constant but its mean rounds off it: R² is sklearn's ratio over \
                 a spread of rounding errors"
                    .into(),
            );
        }
        Some(r2(numerator, denominator, &mut notes))
    };
    if r2.is_none() {
        notes.push("R² undefined: it needs at least two rows".into());
    }
    Ok(RegressionMetrics {
        mae,
        rmse: mse.sqrt(),
        mape,
        r2,
        rows: n as u64,
        notes,
    })
}

/// sklearn's `_assemble_fraction_of_explained_deviance` with `force_finite=True`.
fn r2(numerator: f64, denominator: f64, notes: &mut Vec<String>) -> f64 {
    if numerator == 0.0 {
        // perfect predictions, even of a constant y_true
        1.0
    } else if denominator == 0.0 {
        notes.push("R² is 0.0 (sklearn's force_finite): y_true is constant".into());
        0.0
    } else {
        1.0 - numerator / denominator
    }
}

fn note_zeros(zeros: usize, notes: &mut Vec<String>) {
    if zeros > 0 {
        notes.push(format!(
            "MAPE divides by {MAPE_EPSILON:e} where y_true is 0 ({zeros} rows), as sklearn does"
        ));
    }
}

/// A regression window as running sums: built row by row, merged across windows.
/// Errors are compensated sums and `y_true`'s spread a Welford/Chan mean and sum of
/// squares, so the metrics agree with [`regression`] over the same rows to about 1e-12
/// relative, not to the last bit (numpy's sum order needs the rows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegressionSums {
    rows: u64,
    abs_error: Compensated,
    squared_error: Compensated,
    percentage_error: Compensated,
    mean_true: f64,
    /// Σ (y_true - mean_true)²
    m2_true: f64,
    zeros_true: u64,
}

impl RegressionSums {
    /// No rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// The rows added.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Adds one row (both finite).
    pub fn push(&mut self, y_true: f64, y_pred: f64) -> Result<(), PerformanceError> {
        let row = self.rows as usize;
        if !y_true.is_finite() {
            return Err(PerformanceError::NonFinite {
                what: "y_true",
                row,
                value: y_true,
            });
        }
        if !y_pred.is_finite() {
            return Err(PerformanceError::NonFinite {
                what: "y_pred",
                row,
                value: y_pred,
            });
        }
        let error = y_pred - y_true;
        self.abs_error.add(error.abs());
        self.squared_error.add(error * error);
        self.percentage_error
            .add(error.abs() / y_true.abs().max(MAPE_EPSILON));
        if y_true == 0.0 {
            self.zeros_true += 1;
        }
        self.rows += 1;
        let delta = y_true - self.mean_true;
        self.mean_true += delta / self.rows as f64;
        self.m2_true += delta * (y_true - self.mean_true);
        Ok(())
    }

    /// Adds row-aligned columns.
    pub fn extend(&mut self, y_true: &[f64], y_pred: &[f64]) -> Result<(), PerformanceError> {
        check_aligned("y_true", y_true.len(), "y_pred", y_pred.len())?;
        check_finite("y_true", y_true)?;
        check_finite("y_pred", y_pred)?;
        for (t, p) in y_true.iter().zip(y_pred) {
            self.push(*t, *p)?;
        }
        Ok(())
    }

    /// Adds another window's sums (Chan et al.'s parallel update for the spread).
    pub fn merge(&mut self, other: &RegressionSums) {
        if other.rows == 0 {
            return;
        }
        if self.rows == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.rows as f64, other.rows as f64);
        let n = na + nb;
        let delta = other.mean_true - self.mean_true;
        self.mean_true += delta * nb / n;
        self.m2_true += other.m2_true + delta * delta * na * nb / n;
        self.abs_error.merge(&other.abs_error);
        self.squared_error.merge(&other.squared_error);
        self.percentage_error.merge(&other.percentage_error);
        self.zeros_true += other.zeros_true;
        self.rows += other.rows;
    }

    /// The window's metrics (the same conventions as [`regression`]).
    pub fn metrics(&self) -> Result<RegressionMetrics, PerformanceError> {
        if self.rows == 0 {
            return Err(PerformanceError::Empty("the regression window"));
        }
        let n = self.rows as f64;
        let mut notes = Vec::new();
        note_zeros(self.zeros_true as usize, &mut notes);
        let r2 = (self.rows >= 2).then(|| r2(self.squared_error.value(), self.m2_true, &mut notes));
        if r2.is_none() {
            notes.push("R² undefined: it needs at least two rows".into());
        }
        Ok(RegressionMetrics {
            mae: self.abs_error.value() / n,
            rmse: (self.squared_error.value() / n).sqrt(),
            mape: self.percentage_error.value() / n,
            r2,
            rows: self.rows,
            notes,
        })
    }
}

/// A Neumaier-compensated sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Compensated {
    sum: f64,
    compensation: f64,
}

impl Compensated {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn merge(&mut self, other: &Compensated) {
        self.add(other.sum);
        self.compensation += other.compensation;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}
