//! How `mlops monitor` shows monitors and reports: JSON for scripts, tables for people.

use mlops_proto::monitoring::v1 as pb;
use serde_json::{json, Value};

use crate::table;

pub(crate) fn type_name(t: i32) -> &'static str {
    match pb::ColumnType::try_from(t) {
        Ok(pb::ColumnType::Numerical) => "numerical",
        Ok(pb::ColumnType::Categorical) => "categorical",
        _ => "inferred",
    }
}

pub(crate) fn monitor_json(m: &pb::Monitor) -> Value {
    let o = m.options.clone().unwrap_or_default();
    json!({
        "name": m.name,
        "model": m.model,
        "columns": m.columns.iter().map(|c| json!({"name": c.name, "type": type_name(c.r#type)})).collect::<Vec<_>>(),
        "options": {
            "method": o.method, "num_method": o.num_method, "cat_method": o.cat_method,
            "per_column_method": o.per_column_method, "threshold": o.threshold,
            "num_threshold": o.num_threshold, "cat_threshold": o.cat_threshold,
            "per_column_threshold": o.per_column_threshold, "drift_share": o.drift_share,
            "correction": o.correction,
        },
        "cooldown_seconds": m.cooldown_seconds,
        "reference_version": m.reference_version,
        "created_at_ms": m.created_at_ms,
        "updated_at_ms": m.updated_at_ms,
        "prediction_log": m.prediction_log.as_ref().map(|p| json!({
            "deployment": p.deployment, "window_rows": p.window_rows,
            "window_seconds": p.window_seconds, "input_columns": p.input_columns,
            "reference_rows": p.reference_rows,
        })),
        "capture": m.capture.as_ref().map(|c| json!({
            "rows_wanted": c.rows_wanted, "rows": c.rows,
            "started_at_ms": c.started_at_ms, "error": c.error,
        })),
    })
}

fn score(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.6}"))
}

/// A report as JSON for scripts.
pub fn report_json(r: &pb::DriftReport) -> Value {
    json!({
        "id": r.id,
        "monitor": r.monitor,
        "reference_version": r.reference_version,
        "model_version": r.model_version,
        "rows": r.rows,
        "dataset_drift": r.dataset_drift,
        "drifted_columns": r.drifted_columns,
        "share": r.share,
        "drift_share": r.drift_share,
        "event_published": r.event_published,
        "created_at_ms": r.created_at_ms,
        "source": r.source,
        "window_start_ms": r.window_start_ms,
        "window_end_ms": r.window_end_ms,
        "columns": r.columns.iter().map(|c| json!({
            "column": c.column, "type": type_name(c.r#type), "method": c.method,
            "threshold": c.threshold, "score": c.score, "adjusted_score": c.adjusted_score,
            "drifted": c.drifted, "note": c.note,
            "reference_count": c.reference_count, "current_count": c.current_count,
            "reference_missing": c.reference_missing, "current_missing": c.current_missing,
            "histogram": c.histogram.as_ref().map(|h| json!({
                "edges": h.edges, "categories": h.categories,
                "reference": h.reference, "current": h.current,
            })),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn print_report(r: &pb::DriftReport) {
    println!(
        "monitor {} report {} (reference v{}{}): {} rows, {} of {} columns drifted (share {:.3}, dataset drift at {:.3}): {}",
        r.monitor,
        r.id,
        r.reference_version,
        if r.model_version.is_empty() {
            String::new()
        } else {
            format!(", model version {}", r.model_version)
        },
        r.rows,
        r.drifted_columns,
        r.columns.len(),
        r.share,
        r.drift_share,
        if r.dataset_drift {
            "DATASET DRIFT"
        } else {
            "no dataset drift"
        }
    );
    let rows: Vec<Vec<String>> = r
        .columns
        .iter()
        .map(|c| {
            vec![
                c.column.clone(),
                type_name(c.r#type).into(),
                c.method.clone(),
                score(c.score),
                format!("{}", c.threshold),
                if c.drifted { "DRIFT" } else { "-" }.into(),
                c.note.clone(),
            ]
        })
        .collect();
    table::print(
        &[
            "column",
            "type",
            "method",
            "score",
            "threshold",
            "drift",
            "note",
        ],
        &rows,
    );
}

/// A monitor's reference version, and the capture of the next one from the log.
pub(crate) fn reference_cell(m: &pb::Monitor) -> String {
    let v = format!("v{}", m.reference_version);
    match &m.capture {
        None => v,
        Some(c) if !c.error.is_empty() => format!("{v} (capture failed: {})", c.error),
        Some(c) => format!("{v} (taking {}/{} logged rows)", c.rows, c.rows_wanted),
    }
}

pub(crate) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}
