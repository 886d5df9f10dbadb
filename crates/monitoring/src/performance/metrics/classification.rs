//! Confusion counts and the metrics they give: accuracy, precision, recall and F1
//! (binary or macro, see the parent module), plus ROC AUC and log loss from scores.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ranking, Scores};
use crate::performance::{check_aligned, numeric, PerformanceError};

/// A class label: ordered as numpy orders labels (`np.unique`: numbers by value, strings
/// by code point), with the value sklearn's default `pos_label=1` names.
pub trait Label: Ord + Clone + fmt::Display + fmt::Debug {
    /// The label that stands for "1": `1`, `"1"`, `true`.
    fn one() -> Self;
}

impl Label for i64 {
    fn one() -> Self {
        1
    }
}

impl Label for bool {
    fn one() -> Self {
        true
    }
}

impl Label for String {
    fn one() -> Self {
        "1".to_owned()
    }
}

impl Label for &str {
    fn one() -> Self {
        "1"
    }
}

/// How precision, recall and F1 were averaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Average {
    /// Of the positive label (sklearn's `average="binary"`).
    Binary { positive: String },
    /// Unweighted mean over these classes, sorted (sklearn's `average="macro"`).
    Macro { classes: Vec<String> },
}

/// A classifier's realised metrics over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// `None` without scores, or where it is undefined (see `notes`).
    pub roc_auc: Option<f64>,
    /// `None` without scores, or where the scores do not fit the labels (see `notes`).
    pub log_loss: Option<f64>,
    pub rows: u64,
    pub average: Average,
    /// Why a metric is `None` or took sklearn's zero-division value.
    pub notes: Vec<String>,
}

/// The realised metrics of a classifier over row-aligned `y_true`, `y_pred` and,
/// optionally, its scores, with the `positive` label of a binary problem (see the
/// parent module for the semantics).
pub fn classification<L: Label>(
    y_true: &[L],
    y_pred: &[L],
    scores: Option<Scores<'_, L>>,
    positive: Option<&L>,
) -> Result<ClassificationMetrics, PerformanceError> {
    check_aligned("y_true", y_true.len(), "y_pred", y_pred.len())?;
    let mut counts = ClassificationCounts::new();
    for (t, p) in y_true.iter().zip(y_pred) {
        counts.add(t.clone(), p.clone());
    }
    if let Some(scores) = &scores {
        ranking::check_scores(scores, y_true.len())?;
    }
    let task = counts.task(positive)?;
    let mut metrics = counts.metrics_for(&task)?;
    match scores {
        Some(scores) => {
            let (roc_auc, log_loss) =
                ranking::score_metrics(y_true, &scores, &task, &mut metrics.notes);
            metrics.roc_auc = roc_auc;
            metrics.log_loss = log_loss;
        }
        None => metrics
            .notes
            .push("no scores: ROC AUC and log loss need the predicted probabilities".into()),
    }
    Ok(metrics)
}

/// The problem the labels make, with its classes resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Task<L> {
    Binary { positive: L },
    Macro { classes: Vec<L> },
}

/// A confusion matrix by label: built row by row, merged across windows exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    from = "Vec<(L, L, u64)>",
    into = "Vec<(L, L, u64)>",
    bound(
        serialize = "L: Label + Serialize",
        deserialize = "L: Label + Deserialize<'de>"
    )
)]
pub struct ClassificationCounts<L: Label> {
    /// (true, predicted) → rows
    cells: BTreeMap<(L, L), u64>,
}

impl<L: Label> Default for ClassificationCounts<L> {
    fn default() -> Self {
        ClassificationCounts {
            cells: BTreeMap::new(),
        }
    }
}

impl<L: Label> From<Vec<(L, L, u64)>> for ClassificationCounts<L> {
    fn from(cells: Vec<(L, L, u64)>) -> Self {
        let mut counts = ClassificationCounts::new();
        for (t, p, n) in cells {
            counts.add_n(t, p, n);
        }
        counts
    }
}

impl<L: Label> From<ClassificationCounts<L>> for Vec<(L, L, u64)> {
    fn from(counts: ClassificationCounts<L>) -> Self {
        counts
            .cells
            .into_iter()
            .map(|((t, p), n)| (t, p, n))
            .collect()
    }
}

impl<L: Label> ClassificationCounts<L> {
    /// No rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one row.
    pub fn add(&mut self, y_true: L, y_pred: L) {
        self.add_n(y_true, y_pred, 1);
    }

    /// Counts `n` rows of the same (true, predicted) pair.
    pub fn add_n(&mut self, y_true: L, y_pred: L, n: u64) {
        if n > 0 {
            *self.cells.entry((y_true, y_pred)).or_insert(0) += n;
        }
    }

    /// Adds another window's counts.
    pub fn merge(&mut self, other: &ClassificationCounts<L>) {
        for ((t, p), n) in &other.cells {
            self.add_n(t.clone(), p.clone(), *n);
        }
    }

    /// The rows counted.
    pub fn rows(&self) -> u64 {
        self.cells.values().sum()
    }

    /// The (true, predicted, rows) cells, sorted.
    pub fn cells(&self) -> impl Iterator<Item = (&L, &L, u64)> {
        self.cells.iter().map(|((t, p), n)| (t, p, *n))
    }

    /// The labels seen in `y_true` or `y_pred`, sorted.
    pub fn classes(&self) -> Vec<L> {
        let set: BTreeSet<&L> = self.cells.keys().flat_map(|(t, p)| [t, p]).collect();
        set.into_iter().cloned().collect()
    }

    /// Accuracy, precision, recall and F1 (no scores: ROC AUC and log loss are `None`).
    pub fn metrics(&self, positive: Option<&L>) -> Result<ClassificationMetrics, PerformanceError> {
        let task = self.task(positive)?;
        self.metrics_for(&task)
    }

    /// Binary (with the positive label given or the default one) or macro.
    pub(crate) fn task(&self, positive: Option<&L>) -> Result<Task<L>, PerformanceError> {
        let classes = self.classes();
        if classes.len() > 2 {
            if let Some(p) = positive {
                return Err(PerformanceError::Invalid(format!(
                    "positive label {p} given but the labels make a multiclass problem \
                     ({} classes: {}); binary metrics need at most 2",
                    classes.len(),
                    list(&classes)
                )));
            }
            return Ok(Task::Macro { classes });
        }
        let positive = match positive {
            Some(p) => {
                if classes.len() == 2 && !classes.contains(p) {
                    return Err(PerformanceError::Invalid(format!(
                        "positive label {p} is not one of the labels present ({})",
                        list(&classes)
                    )));
                }
                p.clone()
            }
            None if classes.len() == 2 && !classes.contains(&L::one()) => classes[1].clone(),
            None => L::one(),
        };
        Ok(Task::Binary { positive })
    }

    pub(crate) fn metrics_for(
        &self,
        task: &Task<L>,
    ) -> Result<ClassificationMetrics, PerformanceError> {
        let rows = self.rows();
        if rows == 0 {
            return Err(PerformanceError::Empty("the labelled rows"));
        }
        let correct: u64 = self
            .cells
            .iter()
            .filter(|((t, p), _)| t == p)
            .map(|(_, n)| n)
            .sum();
        let mut notes = Vec::new();
        let (precision, recall, f1, average) = match task {
            Task::Binary { positive } => {
                let (p, r, f) = self.per_label(positive, &mut notes);
                let average = Average::Binary {
                    positive: positive.to_string(),
                };
                (p, r, f, average)
            }
            Task::Macro { classes } => {
                let per: Vec<(f64, f64, f64)> = classes
                    .iter()
                    .map(|c| self.per_label(c, &mut notes))
                    .collect();
                let average = Average::Macro {
                    classes: classes.iter().map(ToString::to_string).collect(),
                };
                (
                    numeric::mean_of(per.len(), |i| per[i].0),
                    numeric::mean_of(per.len(), |i| per[i].1),
                    numeric::mean_of(per.len(), |i| per[i].2),
                    average,
                )
            }
        };
        Ok(ClassificationMetrics {
            accuracy: correct as f64 / rows as f64,
            precision,
            recall,
            f1,
            roc_auc: None,
            log_loss: None,
            rows,
            average,
            notes,
        })
    }

    /// Precision, recall and F1 of one label, as sklearn's `_prf_divide` computes them
    /// (F1 as `2·tp / (true + predicted)`), zero divisions noted and set to 0.0.
    fn per_label(&self, label: &L, notes: &mut Vec<String>) -> (f64, f64, f64) {
        let (mut tp, mut predicted, mut actual) = (0u64, 0u64, 0u64);
        for ((t, p), n) in &self.cells {
            if t == label && p == label {
                tp += n;
            }
            if p == label {
                predicted += n;
            }
            if t == label {
                actual += n;
            }
        }
        let mut divide = |num: f64, den: u64, what: &str, why: &str| {
            if den == 0 {
                notes.push(format!(
                    "{what} of label {label} is 0.0 (sklearn's zero_division): {why}"
                ));
                0.0
            } else {
                num / den as f64
            }
        };
        let precision = divide(tp as f64, predicted, "precision", "no row predicted it");
        let recall = divide(tp as f64, actual, "recall", "no row has it as true label");
        let f1 = divide(
            2.0 * tp as f64,
            actual + predicted,
            "F1",
            "it is neither true nor predicted",
        );
        (precision, recall, f1)
    }
}

/// `a, b, c` for a message.
pub(crate) fn list<L: fmt::Display>(labels: &[L]) -> String {
    labels
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
