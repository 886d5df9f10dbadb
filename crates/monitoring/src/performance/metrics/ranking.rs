//! The score-based metrics: ROC AUC as sklearn's `roc_auc_score` and log loss as its
//! `log_loss`, operation for operation.

use std::collections::BTreeSet;

use super::classification::{list, Label, Task};
use super::Scores;
use crate::performance::{check_aligned, check_probabilities, numeric, PerformanceError};

/// Checks the scores' shape against `rows` and that they are probabilities.
pub(crate) fn check_scores<L: Label>(
    scores: &Scores<'_, L>,
    rows: usize,
) -> Result<(), PerformanceError> {
    match scores {
        Scores::Positive(p) => {
            check_aligned("y_true", rows, "the scores", p.len())?;
            check_probabilities("the scores", p)
        }
        Scores::PerClass {
            classes,
            probabilities,
        } => {
            let distinct: BTreeSet<&L> = classes.iter().collect();
            if classes.len() < 2 || distinct.len() != classes.len() {
                return Err(PerformanceError::Invalid(format!(
                    "per-class probabilities need at least 2 distinct classes, got [{}]",
                    list(classes)
                )));
            }
            if probabilities.len() % classes.len() != 0 {
                return Err(PerformanceError::Invalid(format!(
                    "{} per-class probabilities do not make rows of {} classes",
                    probabilities.len(),
                    classes.len()
                )));
            }
            check_aligned(
                "y_true",
                rows,
                "the per-class probability rows",
                probabilities.len() / classes.len(),
            )?;
            check_probabilities("the per-class probabilities", probabilities)
        }
    }
}

/// ROC AUC and log loss of checked scores for the resolved task; `None`s come with a
/// note.
pub(crate) fn score_metrics<L: Label>(
    y_true: &[L],
    scores: &Scores<'_, L>,
    task: &Task<L>,
    notes: &mut Vec<String>,
) -> (Option<f64>, Option<f64>) {
    match (task, scores) {
        (Task::Binary { positive }, Scores::Positive(p)) => {
            let is_positive: Vec<bool> = y_true.iter().map(|t| t == positive).collect();
            let roc_auc = binary_roc_auc(&is_positive, p).map_err(|why| notes.push(why));
            (roc_auc.ok(), Some(binary_log_loss(&is_positive, p)))
        }
        (Task::Binary { positive }, Scores::PerClass { classes, .. }) => {
            let roc_auc = match classes.iter().position(|c| c == positive) {
                Some(j) => {
                    let is_positive: Vec<bool> = y_true.iter().map(|t| t == positive).collect();
                    let p = column(scores, j);
                    binary_roc_auc(&is_positive, &p)
                        .map_err(|why| notes.push(why))
                        .ok()
                }
                None => {
                    notes.push(format!(
                        "ROC AUC undefined: the positive label {positive} has no probability column"
                    ));
                    None
                }
            };
            (roc_auc, multiclass_log_loss(y_true, scores, notes))
        }
        (Task::Macro { .. }, Scores::Positive(_)) => {
            notes.push(
                "ROC AUC and log loss undefined: a multiclass problem needs per-class \
                 probabilities, not one score per row"
                    .into(),
            );
            (None, None)
        }
        (Task::Macro { .. }, Scores::PerClass { .. }) => (
            multiclass_roc_auc(y_true, scores, notes),
            multiclass_log_loss(y_true, scores, notes),
        ),
    }
}

/// Column `j` of per-class probabilities.
fn column<L>(scores: &Scores<'_, L>, j: usize) -> Vec<f64> {
    match scores {
        Scores::Positive(p) => p.to_vec(),
        Scores::PerClass {
            classes,
            probabilities,
        } => probabilities
            .chunks_exact(classes.len())
            .map(|row| row[j])
            .collect(),
    }
}

/// sklearn's `_binary_roc_auc_score`: the ROC curve over the distinct thresholds
/// (`confusion_matrix_at_thresholds`), collinear points dropped (`drop_intermediate`),
/// then `auc`. `Err` says why it is undefined.
pub(crate) fn binary_roc_auc(is_positive: &[bool], scores: &[f64]) -> Result<f64, String> {
    let positives = is_positive.iter().filter(|&&b| b).count();
    if positives == 0 || positives == is_positive.len() {
        return Err("ROC AUC undefined: only one class is present in y_true".into());
    }
    // scores descending (ties in any order: only the counts at their ends are used)
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut fps, mut tps) = (Vec::new(), Vec::new());
    let mut tp = 0.0;
    for (k, &i) in order.iter().enumerate() {
        if is_positive[i] {
            tp += 1.0;
        }
        let last = k + 1 == order.len();
        if last || scores[order[k + 1]] != scores[i] {
            tps.push(tp);
            fps.push(1.0 + k as f64 - tp);
        }
    }
    // drop_intermediate: keep the ends and the corners (a nonzero second difference)
    let (mut fpr, mut tpr) = (vec![0.0], vec![0.0]);
    let (fp_total, tp_total) = (fps[fps.len() - 1], tps[tps.len() - 1]);
    for k in 0..fps.len() {
        let keep = fps.len() <= 2
            || k == 0
            || k + 1 == fps.len()
            || second_difference(&fps, k) != 0.0
            || second_difference(&tps, k) != 0.0;
        if keep {
            fpr.push(fps[k] / fp_total);
            tpr.push(tps[k] / tp_total);
        }
    }
    numeric::auc(&fpr, &tpr).ok_or_else(|| "ROC AUC undefined: the curve is not monotonic".into())
}

/// `np.diff(v, 2)[k - 1]`, the second difference centred on `k`.
fn second_difference(v: &[f64], k: usize) -> f64 {
    (v[k + 1] - v[k]) - (v[k] - v[k - 1])
}

/// sklearn's one-vs-rest macro ROC AUC (`multi_class="ovr"`): each class against the
/// rest from its column, averaged over the classes sorted.
fn multiclass_roc_auc<L: Label>(
    y_true: &[L],
    scores: &Scores<'_, L>,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let Scores::PerClass {
        classes,
        probabilities,
    } = scores
    else {
        return None;
    };
    // sklearn: `np.allclose(1, y_score.sum(axis=1))`
    let k = classes.len();
    if let Some(row) = probabilities.chunks_exact(k).position(|row| {
        let s = numeric::sum(row);
        (1.0 - s).abs() > 1e-8 + 1e-5 * s.abs()
    }) {
        notes.push(format!(
            "ROC AUC undefined: the probabilities of row {row} do not sum to 1 \
             (multiclass ROC AUC needs probabilities)"
        ));
        return None;
    }
    let present: BTreeSet<&L> = y_true.iter().collect();
    let columns: BTreeSet<&L> = classes.iter().collect();
    if present != columns {
        notes.push(format!(
            "ROC AUC undefined: the classes in y_true ({}) are not those of the probability \
             columns ({})",
            list(&present.into_iter().collect::<Vec<_>>()),
            list(classes)
        ));
        return None;
    }
    let mut sorted: Vec<usize> = (0..k).collect();
    sorted.sort_by(|&a, &b| classes[a].cmp(&classes[b]));
    let mut per_class = Vec::with_capacity(k);
    for j in sorted {
        let is_class: Vec<bool> = y_true.iter().map(|t| *t == classes[j]).collect();
        match binary_roc_auc(&is_class, &column(scores, j)) {
            Ok(auc) => per_class.push(auc),
            Err(why) => {
                notes.push(format!("{why} (class {} against the rest)", classes[j]));
                return None;
            }
        }
    }
    Some(numeric::mean(&per_class))
}

/// sklearn's `log_loss(y_true == positive, p, labels=[False, True])`: the mean of
/// `-ln(clip(p))` over positives and `-ln(clip(1 - p))` over negatives.
pub(crate) fn binary_log_loss(is_positive: &[bool], p: &[f64]) -> f64 {
    numeric::mean_of(p.len(), |i| {
        let q = if is_positive[i] { p[i] } else { 1.0 - p[i] };
        -clip(q).ln()
    })
}

/// sklearn's `log_loss(y_true, probabilities, labels=classes)`: the mean of
/// `-ln(clip(p))` of each row's true class; `None` when a true label has no column.
fn multiclass_log_loss<L: Label>(
    y_true: &[L],
    scores: &Scores<'_, L>,
    notes: &mut Vec<String>,
) -> Option<f64> {
    let Scores::PerClass {
        classes,
        probabilities,
    } = scores
    else {
        return None;
    };
    let k = classes.len();
    let mut columns = Vec::with_capacity(y_true.len());
    for t in y_true {
        match classes.iter().position(|c| c == t) {
            Some(j) => columns.push(j),
            None => {
                notes.push(format!(
                    "log loss undefined: the true label {t} has no probability column"
                ));
                return None;
            }
        }
    }
    Some(numeric::mean_of(y_true.len(), |i| {
        -clip(probabilities[i * k + columns[i]]).ln()
    }))
}

/// sklearn's clipping of probabilities to `[eps, 1 - eps]`, `eps` the float64 machine
/// epsilon.
fn clip(p: f64) -> f64 {
    p.clamp(f64::EPSILON, 1.0 - f64::EPSILON)
}
