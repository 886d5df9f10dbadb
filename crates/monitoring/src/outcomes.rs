//! The model's performance on prediction-log windows: what a monitor measures (its
//! [`PerformanceSpec`]), the CBPE calibration fitted on its reference, and the realised
//! and estimated metrics of a window as named values (`accuracy`, `roc_auc`, `rmse`, …),
//! with the alert rule. The computations are `performance`'s (scikit-learn's and
//! NannyML's semantics); this module picks the columns and names the results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::performance::{self, Cbpe, Scores};
use crate::table::{self, Columns};

/// What kind of model a monitor measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    Classification,
    Regression,
}

/// How a monitor measures the model's performance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceSpec {
    pub task: Task,
    pub prediction_column: String,
    /// Binary classifiers: the positive class's probability.
    #[serde(default)]
    pub score_column: String,
    /// The reference's true labels.
    #[serde(default)]
    pub target_column: String,
    /// The positive class, as text.
    #[serde(default)]
    pub positive_label: String,
    /// The alert: a metric and its threshold (none when the metric is empty).
    #[serde(default)]
    pub alert_metric: String,
    #[serde(default)]
    pub alert_threshold: f64,
    /// A Kafka topic the user's systems write labels to (none when empty).
    #[serde(default)]
    pub labels_topic: String,
}

/// Metrics where a higher value is better.
const HIGHER_IS_BETTER: &[&str] = &["accuracy", "precision", "recall", "f1", "roc_auc", "r2"];
/// Metrics where a lower value is better.
const LOWER_IS_BETTER: &[&str] = &["mae", "rmse", "mape", "log_loss"];

impl PerformanceSpec {
    /// Why the spec cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.prediction_column.is_empty() {
            return Err("performance.prediction_column names the logged column with the model's prediction (e.g. \"label\")".into());
        }
        if self.task == Task::Regression && !self.score_column.is_empty() {
            return Err(
                "performance.score_column is for binary classifiers, not regression".into(),
            );
        }
        if !self.alert_metric.is_empty() {
            let fits = match self.task {
                Task::Classification => [
                    "accuracy",
                    "precision",
                    "recall",
                    "f1",
                    "roc_auc",
                    "log_loss",
                ]
                .contains(&self.alert_metric.as_str()),
                Task::Regression => {
                    ["mae", "rmse", "mape", "r2"].contains(&self.alert_metric.as_str())
                }
            };
            if !fits {
                return Err(format!(
                    "performance.alert_metric {:?} is not a {} metric: {}",
                    self.alert_metric,
                    match self.task {
                        Task::Classification => "classification",
                        Task::Regression => "regression",
                    },
                    match self.task {
                        Task::Classification =>
                            "accuracy, precision, recall, f1, roc_auc, log_loss",
                        Task::Regression => "mae, rmse, mape, r2",
                    }
                ));
            }
            if !self.alert_threshold.is_finite() {
                return Err("performance.alert_threshold must be a finite number".into());
            }
        }
        Ok(())
    }

    /// The positive class.
    pub fn positive(&self) -> &str {
        if self.positive_label.is_empty() {
            "1"
        } else {
            &self.positive_label
        }
    }

    /// Whether `metrics` are past the alert threshold: the metric's value, if so.
    pub fn alert(&self, metrics: &BTreeMap<String, f64>) -> Option<f64> {
        let v = *metrics.get(&self.alert_metric)?;
        let worse = if HIGHER_IS_BETTER.contains(&self.alert_metric.as_str()) {
            v < self.alert_threshold
        } else {
            LOWER_IS_BETTER.contains(&self.alert_metric.as_str()) && v > self.alert_threshold
        };
        worse.then_some(v)
    }
}

/// Named metrics and the notes that explain the missing ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub values: BTreeMap<String, f64>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One logged prediction row joined with its label.
pub struct Outcome {
    pub prediction: String,
    pub score: Option<f64>,
    pub label: String,
}

/// The realised metrics of joined rows.
pub fn realised(spec: &PerformanceSpec, rows: &[Outcome]) -> Result<Metrics, String> {
    if rows.is_empty() {
        return Ok(Metrics::default());
    }
    let mut m = Metrics::default();
    match spec.task {
        Task::Classification => {
            let y_true: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
            let y_pred: Vec<&str> = rows.iter().map(|r| r.prediction.as_str()).collect();
            let scores: Option<Vec<f64>> = rows.iter().map(|r| r.score).collect();
            let positive = spec.positive();
            let c = performance::classification(
                &y_true,
                &y_pred,
                scores.as_deref().map(Scores::Positive),
                Some(&positive),
            )
            .map_err(|e| e.to_string())?;
            m.values.insert("accuracy".into(), c.accuracy);
            m.values.insert("precision".into(), c.precision);
            m.values.insert("recall".into(), c.recall);
            m.values.insert("f1".into(), c.f1);
            if let Some(v) = c.roc_auc {
                m.values.insert("roc_auc".into(), v);
            }
            if let Some(v) = c.log_loss {
                m.values.insert("log_loss".into(), v);
            }
            m.notes = c.notes;
        }
        Task::Regression => {
            let number = |s: &str, what: &str| {
                s.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("a {what} {s:?} is not a finite number"))
            };
            let y_true = rows
                .iter()
                .map(|r| number(&r.label, "label"))
                .collect::<Result<Vec<_>, _>>()?;
            let y_pred = rows
                .iter()
                .map(|r| number(&r.prediction, "prediction"))
                .collect::<Result<Vec<_>, _>>()?;
            let r = performance::regression(&y_true, &y_pred).map_err(|e| e.to_string())?;
            m.values.insert("mae".into(), r.mae);
            m.values.insert("rmse".into(), r.rmse);
            m.values.insert("mape".into(), r.mape);
            if let Some(v) = r.r2 {
                m.values.insert("r2".into(), v);
            }
            m.notes = r.notes;
        }
    }
    Ok(m)
}

/// CBPE's estimate for a window's scores and predictions.
pub fn estimated(
    spec: &PerformanceSpec,
    cbpe: &Cbpe,
    rows: &[(String, f64)],
) -> Result<Metrics, String> {
    if rows.is_empty() {
        return Ok(Metrics::default());
    }
    let scores: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let predictions: Vec<bool> = rows.iter().map(|r| r.0 == spec.positive()).collect();
    let e = cbpe
        .estimate(&scores, Some(&predictions))
        .map_err(|e| e.to_string())?;
    let mut m = Metrics::default();
    m.values.insert("accuracy".into(), e.accuracy);
    m.values.insert("precision".into(), e.precision);
    m.values.insert("recall".into(), e.recall);
    m.values.insert("f1".into(), e.f1);
    if let Some(v) = e.roc_auc {
        m.values.insert("roc_auc".into(), v);
    }
    m.notes = e.notes;
    Ok(m)
}

/// CBPE fitted on a reference table, when the spec and the table allow it: a binary
/// classifier whose reference has the target and score columns (and the prediction
/// column, else the scores at 0.5 decide). `Ok(None)` when CBPE does not apply.
pub fn fit(spec: &PerformanceSpec, table: &dyn Columns) -> Result<Option<Cbpe>, String> {
    if spec.task != Task::Classification
        || spec.score_column.is_empty()
        || spec.target_column.is_empty()
    {
        return Ok(None);
    }
    let names = table.names();
    let has = |c: &str| names.iter().any(|n| n == c);
    for c in [&spec.target_column, &spec.score_column] {
        if !has(c) {
            return Err(format!(
                "the reference has no column {c:?}: CBPE is calibrated on the reference's targets and scores"
            ));
        }
    }
    let texts = |name: &str| -> Result<Vec<Option<String>>, String> {
        let a = table.column(name, "reference").map_err(|e| e.to_string())?;
        table::texts(name, a.as_ref()).map_err(|e| e.to_string())
    };
    let targets = texts(&spec.target_column)?;
    let scores_col = table
        .column(&spec.score_column, "reference")
        .map_err(|e| e.to_string())?;
    let scores =
        table::numbers(&spec.score_column, scores_col.as_ref()).map_err(|e| e.to_string())?;
    let predictions = if has(&spec.prediction_column) {
        Some(texts(&spec.prediction_column)?)
    } else {
        None
    };
    let positive = spec.positive();
    let mut s = Vec::with_capacity(scores.len());
    let mut y = Vec::with_capacity(scores.len());
    let mut p = Vec::with_capacity(scores.len());
    for i in 0..scores.len() {
        let (Some(t), score) = (&targets[i], scores[i]) else {
            continue;
        };
        if !score.is_finite() {
            continue;
        }
        s.push(score);
        y.push(t == positive);
        if let Some(preds) = &predictions {
            p.push(preds[i].as_deref() == Some(positive));
        }
    }
    let preds = predictions.as_ref().map(|_| p.as_slice());
    Cbpe::fit(&s, &y, preds, 0.5)
        .map(Some)
        .map_err(|e| format!("CBPE cannot be fitted on the reference: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(task: Task) -> PerformanceSpec {
        PerformanceSpec {
            task,
            prediction_column: "label".into(),
            score_column: String::new(),
            target_column: String::new(),
            positive_label: String::new(),
            alert_metric: String::new(),
            alert_threshold: 0.0,
            labels_topic: String::new(),
        }
    }

    #[test]
    fn realised_metrics_are_named() {
        let rows: Vec<Outcome> = [
            ("1", "1", 0.9),
            ("0", "1", 0.6),
            ("0", "0", 0.1),
            ("1", "0", 0.4),
        ]
        .iter()
        .map(|(p, l, s)| Outcome {
            prediction: (*p).into(),
            score: Some(*s),
            label: (*l).into(),
        })
        .collect();
        let m = realised(&spec(Task::Classification), &rows).unwrap();
        assert_eq!(m.values["accuracy"], 0.5);
        assert_eq!(m.values["roc_auc"], 1.0);
        assert!(m.values.contains_key("log_loss"));
        let reg: Vec<Outcome> = [("1.0", "2.0"), ("3", "3")]
            .iter()
            .map(|(p, l)| Outcome {
                prediction: (*p).into(),
                score: None,
                label: (*l).into(),
            })
            .collect();
        let m = realised(&spec(Task::Regression), &reg).unwrap();
        assert_eq!(m.values["mae"], 0.5);
        let bad = [Outcome {
            prediction: "x".into(),
            score: None,
            label: "1".into(),
        }];
        assert!(realised(&spec(Task::Regression), &bad)
            .unwrap_err()
            .contains("not a finite number"));
    }

    #[test]
    fn alerts_know_which_way_is_worse() {
        let mut s = spec(Task::Classification);
        s.alert_metric = "accuracy".into();
        s.alert_threshold = 0.8;
        let m = |v: f64| BTreeMap::from([("accuracy".to_owned(), v), ("rmse".to_owned(), v)]);
        assert_eq!(s.alert(&m(0.7)), Some(0.7));
        assert_eq!(s.alert(&m(0.9)), None);
        s.alert_metric = "rmse".into();
        assert_eq!(s.alert(&m(0.9)), Some(0.9));
        assert_eq!(s.alert(&BTreeMap::new()), None);
    }

    #[test]
    fn specs_are_checked() {
        let mut s = spec(Task::Classification);
        s.check().unwrap();
        s.alert_metric = "rmse".into();
        assert!(s
            .check()
            .unwrap_err()
            .contains("not a classification metric"));
        let mut r = spec(Task::Regression);
        r.score_column = "p".into();
        assert!(r.check().is_err());
        r.score_column.clear();
        r.prediction_column.clear();
        assert!(r.check().unwrap_err().contains("prediction_column"));
    }
}
