//! A window's classification metrics built row by row as labels arrive, and merged
//! across windows: the confusion counts are exact and unbounded; ROC AUC and log loss
//! need every row's scores, so those are kept up to a bound, past which the two
//! metrics are `None` (never an approximation).

use serde::{Deserialize, Serialize};

use super::classification::{list, ClassificationCounts, ClassificationMetrics, Label};
use super::{ranking, Scores};
use crate::performance::{check_probabilities, PerformanceError};

/// A classification window under construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "L: Label + Serialize",
    deserialize = "L: Label + Deserialize<'de>"
))]
pub struct ClassificationWindow<L: Label> {
    counts: ClassificationCounts<L>,
    /// The classes of per-class probability rows; `None`: one positive-class probability
    /// per row.
    columns: Option<Vec<L>>,
    /// The most scored rows kept (the window's size, usually).
    max_scored_rows: usize,
    /// The true labels of the scored rows, in arrival order.
    labels: Vec<L>,
    /// Their scores: one per row, or `columns.len()` per row.
    scores: Vec<f64>,
    /// Why the kept scores cannot give ROC AUC and log loss any more.
    scores_dropped: Option<String>,
}

impl<L: Label> ClassificationWindow<L> {
    /// A window of rows scored with the positive class's probability, keeping at most
    /// `max_scored_rows` of them.
    pub fn new(max_scored_rows: usize) -> Self {
        ClassificationWindow {
            counts: ClassificationCounts::new(),
            columns: None,
            max_scored_rows,
            labels: Vec::new(),
            scores: Vec::new(),
            scores_dropped: None,
        }
    }

    /// A window of rows scored with per-class probabilities in `classes`' order (at
    /// least two distinct classes).
    pub fn with_classes(classes: Vec<L>, max_scored_rows: usize) -> Result<Self, PerformanceError> {
        ranking::check_scores(
            &Scores::PerClass {
                classes: &classes,
                probabilities: &[],
            },
            0,
        )?;
        Ok(ClassificationWindow {
            columns: Some(classes),
            ..Self::new(max_scored_rows)
        })
    }

    /// The rows counted.
    pub fn rows(&self) -> u64 {
        self.counts.rows()
    }

    /// The confusion counts so far.
    pub fn counts(&self) -> &ClassificationCounts<L> {
        &self.counts
    }

    /// Adds a labelled row: its true and predicted labels and its scores (one
    /// probability, or one per class), or `None` when the prediction had none.
    pub fn push(
        &mut self,
        y_true: L,
        y_pred: L,
        score: Option<&[f64]>,
    ) -> Result<(), PerformanceError> {
        if let Some(score) = score {
            let width = self.columns.as_ref().map_or(1, Vec::len);
            if score.len() != width {
                return Err(PerformanceError::Invalid(format!(
                    "a row has {} scores where this window takes {width}",
                    score.len()
                )));
            }
            check_probabilities("the row's scores", score)?;
        }
        let row = self.counts.rows();
        self.counts.add(y_true.clone(), y_pred);
        if self.scores_dropped.is_some() {
            return Ok(());
        }
        match score {
            None => self.drop_scores(format!("row {row} has no score")),
            Some(_) if self.labels.len() >= self.max_scored_rows => self.drop_scores(format!(
                "the window has more than {} scored rows, the most kept",
                self.max_scored_rows
            )),
            Some(score) => {
                self.labels.push(y_true);
                self.scores.extend_from_slice(score);
            }
        }
        Ok(())
    }

    /// Appends another window's rows (after this window's).
    pub fn merge(&mut self, other: &ClassificationWindow<L>) {
        self.counts.merge(&other.counts);
        if self.scores_dropped.is_some() {
            return;
        }
        if let Some(why) = &other.scores_dropped {
            self.drop_scores(why.clone());
        } else if other.columns != self.columns {
            let show = |c: &Option<Vec<L>>| {
                c.as_ref()
                    .map_or("the positive class".to_owned(), |c| list(c))
            };
            self.drop_scores(format!(
                "merged windows score different classes ({} and {})",
                show(&self.columns),
                show(&other.columns)
            ));
        } else if self.labels.len() + other.labels.len() > self.max_scored_rows {
            self.drop_scores(format!(
                "the merged windows have more than {} scored rows, the most kept",
                self.max_scored_rows
            ));
        } else {
            self.labels.extend_from_slice(&other.labels);
            self.scores.extend_from_slice(&other.scores);
        }
    }

    /// The window's metrics: equal to [`super::classification`] over the same rows.
    pub fn metrics(&self, positive: Option<&L>) -> Result<ClassificationMetrics, PerformanceError> {
        let task = self.counts.task(positive)?;
        let mut metrics = self.counts.metrics_for(&task)?;
        if let Some(why) = &self.scores_dropped {
            metrics
                .notes
                .push(format!("ROC AUC and log loss unavailable: {why}"));
            return Ok(metrics);
        }
        let scores = match &self.columns {
            None => Scores::Positive(&self.scores),
            Some(classes) => Scores::PerClass {
                classes,
                probabilities: &self.scores,
            },
        };
        ranking::check_scores(&scores, self.labels.len())?;
        let (roc_auc, log_loss) =
            ranking::score_metrics(&self.labels, &scores, &task, &mut metrics.notes);
        metrics.roc_auc = roc_auc;
        metrics.log_loss = log_loss;
        Ok(metrics)
    }

    fn drop_scores(&mut self, why: String) {
        self.scores_dropped = Some(why);
        self.labels = Vec::new();
        self.scores = Vec::new();
    }
}
