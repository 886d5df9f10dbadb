//! `mlops monitor labels|performance` and the performance flags of `monitor create`:
//! labels for logged predictions from a CSV file, and the model's performance per
//! prediction-log window, realised and estimated.

use std::path::Path;

use anyhow::Context;
use mlops_proto::monitoring::v1 as pb;
use serde_json::{json, Value};

/// Labels sent per call.
const BATCH: usize = 50_000;

/// How a monitor measures the model's performance (with --window-rows/--window-seconds).
#[derive(Debug, clap::Args)]
pub struct PerformanceArgs {
    /// Measure the model's performance on the prediction-log windows: classification or
    /// regression.
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// The logged column with the model's prediction (e.g. label).
    #[arg(long, default_value = "")]
    pub prediction_column: String,
    /// Binary classifiers: the logged column with the positive class's probability (e.g.
    /// probabilities_1): ROC AUC, log loss, and CBPE's estimate before labels come.
    #[arg(long, default_value = "")]
    pub score_column: String,
    /// The reference's column of true labels (CBPE is calibrated on it).
    #[arg(long, default_value = "")]
    pub target_column: String,
    /// The positive class (default 1).
    #[arg(long, default_value = "")]
    pub positive_label: String,
    /// PerformanceDegraded when this metric of a window is worse than --alert-threshold
    /// (accuracy, precision, recall, f1, roc_auc, log_loss; mae, rmse, mape, r2).
    #[arg(long, default_value = "")]
    pub alert_metric: String,
    /// The alert metric's threshold.
    #[arg(long, default_value_t = 0.0)]
    pub alert_threshold: f64,
    /// Also read labels from this Kafka topic (JSON messages {"request_id", "row",
    /// "label"}), written by your own systems.
    #[arg(long, default_value = "")]
    pub labels_topic: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TaskArg {
    Classification,
    Regression,
}

impl PerformanceArgs {
    /// The spec the flags ask for, if any.
    pub fn spec(self) -> Option<pb::PerformanceSpec> {
        let task = self.task?;
        Some(pb::PerformanceSpec {
            task: match task {
                TaskArg::Classification => pb::performance_spec::Task::Classification,
                TaskArg::Regression => pb::performance_spec::Task::Regression,
            } as i32,
            prediction_column: self.prediction_column,
            score_column: self.score_column,
            target_column: self.target_column,
            positive_label: self.positive_label,
            alert_metric: self.alert_metric,
            alert_threshold: self.alert_threshold,
            labels_topic: self.labels_topic,
        })
    }
}

/// Labels from a CSV file with a header naming `request_id`, `label` and optionally
/// `row` (0 when absent); values without quotes or commas.
pub fn read_labels(file: &Path) -> anyhow::Result<Vec<pb::Label>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().with_context(|| {
        format!(
            "{} is empty: it needs a header request_id,row,label",
            file.display()
        )
    })?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let at = |n: &str| names.iter().position(|c| *c == n);
    let (Some(id), Some(label)) = (at("request_id"), at("label")) else {
        anyhow::bail!(
            "{}: the header must name request_id and label (and row); found {header:?}",
            file.display()
        );
    };
    let row = at("row");
    let mut out = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != names.len() {
            anyhow::bail!(
                "{} line {}: {} cells, the header has {}",
                file.display(),
                i + 1,
                cells.len(),
                names.len()
            );
        }
        let row = match row {
            Some(r) => cells[r].parse().with_context(|| {
                format!(
                    "{} line {}: row {:?} is not a number",
                    file.display(),
                    i + 1,
                    cells[r]
                )
            })?,
            None => 0,
        };
        out.push(pb::Label {
            request_id: cells[id].to_owned(),
            row,
            value: cells[label].to_owned(),
        });
    }
    Ok(out)
}

/// Sends labels in batches; the totals.
pub async fn push_labels(
    c: &mut crate::client::MonitoringClient,
    monitor: &str,
    labels: Vec<pb::Label>,
) -> anyhow::Result<pb::PushLabelsResponse> {
    let mut total = pb::PushLabelsResponse::default();
    for batch in labels.chunks(BATCH) {
        let r = c
            .push_labels(pb::PushLabelsRequest {
                monitor: monitor.to_owned(),
                labels: batch.to_vec(),
            })
            .await?
            .into_inner();
        total.stored += r.stored;
        total.matched += r.matched;
        total.windows_updated += r.windows_updated;
    }
    Ok(total)
}

/// A window's performance as JSON for scripts.
pub fn window_json(w: &pb::WindowPerformance) -> Value {
    json!({
        "window_id": w.window_id,
        "model_version": w.model_version,
        "rows": w.rows,
        "labelled_rows": w.labelled_rows,
        "window_start_ms": w.window_start_ms,
        "window_end_ms": w.window_end_ms,
        "realised": w.realised,
        "estimated": w.estimated,
        "notes": w.notes,
        "degraded": w.degraded,
        "updated_at_ms": w.updated_at_ms,
    })
}

/// A table row of a window's performance.
pub fn window_row(w: &pb::WindowPerformance) -> Vec<String> {
    let metric = |m: &std::collections::HashMap<String, f64>, k: &str| {
        m.get(k).map_or("-".into(), |v| format!("{v:.4}"))
    };
    let (first, second) = if w.realised.contains_key("rmse") || w.estimated.contains_key("rmse") {
        ("rmse", "mae")
    } else {
        ("accuracy", "roc_auc")
    };
    vec![
        w.window_id.chars().take(8).collect(),
        w.model_version.clone(),
        w.rows.to_string(),
        w.labelled_rows.to_string(),
        format!("{first} {}", metric(&w.realised, first)),
        format!("{second} {}", metric(&w.realised, second)),
        format!("{first} {}", metric(&w.estimated, first)),
        format!("{second} {}", metric(&w.estimated, second)),
        if w.degraded { "DEGRADED" } else { "-" }.into(),
    ]
}

/// The header of [`window_row`]'s table.
pub const WINDOW_HEADER: &[&str] = &[
    "window",
    "version",
    "rows",
    "labelled",
    "realised",
    "",
    "estimated",
    "",
    "alert",
];
