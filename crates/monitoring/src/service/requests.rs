//! What the API's requests and answers look like: names, methods, options and column
//! types checked, and monitors, references and reports as messages.

use std::collections::BTreeMap;

use mlops_proto::monitoring::v1 as pb;

use crate::drift::{ColumnType, Correction, DriftOptions, Method};
use crate::error::{MonitoringError, Result};
use crate::outcomes::{PerformanceSpec, Task};
use crate::report::ColumnSpec;
use crate::store::{Monitor, MonitorSpec, Reference, Report, WindowSource};
use crate::windows::PredictionLogSpec;

/// The longest monitor name.
const MAX_NAME: usize = 256;

pub(super) fn invalid(msg: impl Into<String>) -> MonitoringError {
    MonitoringError::InvalidArgument(msg.into())
}

pub(super) fn check_name(name: &str) -> Result<()> {
    // the name is a directory of the reference store: no separators, no dot segments
    if name.is_empty()
        || name.len() > MAX_NAME
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(invalid(format!(
            "a monitor name must be 1 to {MAX_NAME} characters, not . or .., without '/', '\\' or control characters; got {name:?}"
        )));
    }
    Ok(())
}

pub(super) fn method(name: &str) -> Result<Option<Method>> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse().map(Some).map_err(|e| invalid(format!("{e}")))
}

pub(super) fn column_type_from(t: i32) -> Result<Option<ColumnType>> {
    match pb::ColumnType::try_from(t) {
        Ok(pb::ColumnType::Unspecified) => Ok(None),
        Ok(pb::ColumnType::Numerical) => Ok(Some(ColumnType::Numerical)),
        Ok(pb::ColumnType::Categorical) => Ok(Some(ColumnType::Categorical)),
        Err(_) => Err(invalid(format!("unknown column type {t}"))),
    }
}

pub(super) fn column_type_to(t: ColumnType) -> pb::ColumnType {
    match t {
        ColumnType::Numerical => pb::ColumnType::Numerical,
        ColumnType::Categorical => pb::ColumnType::Categorical,
    }
}

/// The monitor spec of a request, checked: known methods, thresholds and share in range,
/// a method asked for a column of a known type fits it.
pub(super) fn spec_from(
    columns: &[pb::ColumnSpec],
    options: Option<&pb::DriftOptions>,
) -> Result<MonitorSpec> {
    let o = options.cloned().unwrap_or_default();
    let mut per_column_method = BTreeMap::new();
    for (c, m) in &o.per_column_method {
        if let Some(m) = method(m)? {
            per_column_method.insert(c.clone(), m);
        }
    }
    let correction = match pb::Correction::try_from(o.correction) {
        Ok(pb::Correction::None) => Correction::None,
        Ok(pb::Correction::Bonferroni) => Correction::Bonferroni,
        Ok(pb::Correction::BenjaminiHochberg) => Correction::BenjaminiHochberg,
        Err(_) => return Err(invalid(format!("unknown correction {}", o.correction))),
    };
    let options = DriftOptions {
        method: method(&o.method)?,
        num_method: method(&o.num_method)?,
        cat_method: method(&o.cat_method)?,
        per_column_method,
        threshold: o.threshold,
        num_threshold: o.num_threshold,
        cat_threshold: o.cat_threshold,
        per_column_threshold: o.per_column_threshold.into_iter().collect(),
        drift_share: o.drift_share,
        correction,
    };
    for t in [
        options.threshold,
        options.num_threshold,
        options.cat_threshold,
    ]
    .into_iter()
    .flatten()
    .chain(options.per_column_threshold.values().copied())
    {
        if !(t.is_finite() && t >= 0.0) {
            return Err(invalid(format!(
                "threshold {t} is not a finite number >= 0"
            )));
        }
    }
    options.check().map_err(|e| invalid(e.to_string()))?;
    if let Some(m) = options
        .num_method
        .filter(|m| !m.allows(ColumnType::Numerical))
    {
        return Err(invalid(format!(
            "num_method {m} does not apply to numerical columns"
        )));
    }
    if let Some(m) = options
        .cat_method
        .filter(|m| !m.allows(ColumnType::Categorical))
    {
        return Err(invalid(format!(
            "cat_method {m} does not apply to categorical columns"
        )));
    }
    let mut specs = Vec::with_capacity(columns.len());
    let mut seen = std::collections::BTreeSet::new();
    for c in columns {
        if c.name.is_empty() || !seen.insert(c.name.clone()) {
            return Err(invalid(format!(
                "column names must be non-empty and distinct; {:?} is not",
                c.name
            )));
        }
        let ty = column_type_from(c.r#type)?;
        if let Some(ty) = ty {
            fits(&options, &c.name, ty)?;
        }
        specs.push(ColumnSpec {
            name: c.name.clone(),
            column_type: ty,
        });
    }
    Ok(MonitorSpec {
        columns: specs,
        options,
        prediction_log: None,
        performance: None,
    })
}

/// What a create or update request asks.
pub(super) struct Ask<'a> {
    pub name: &'a str,
    pub model: &'a str,
    pub cooldown_seconds: i64,
    pub columns: &'a [pb::ColumnSpec],
    pub options: Option<&'a pb::DriftOptions>,
    pub prediction_log: Option<&'a pb::PredictionLogSource>,
    pub performance: Option<&'a pb::PerformanceSpec>,
}

/// A create or update request's name, cooldown and spec, checked.
pub(super) fn checked(ask: Ask<'_>) -> Result<MonitorSpec> {
    check_name(ask.name)?;
    if ask.cooldown_seconds < 0 {
        return Err(invalid("cooldown_seconds must be >= 0"));
    }
    let mut spec = spec_from(ask.columns, ask.options)?;
    if let Some(p) = ask.prediction_log {
        let p = PredictionLogSpec {
            deployment: p.deployment.clone(),
            window_rows: p.window_rows,
            window_seconds: p.window_seconds,
            input_columns: p.input_columns.clone(),
            reference_rows: p.reference_rows,
        };
        p.check(ask.model).map_err(invalid)?;
        spec.prediction_log = Some(p);
    }
    if let Some(p) = ask.performance {
        let task = match pb::performance_spec::Task::try_from(p.task) {
            Ok(pb::performance_spec::Task::Classification) => Task::Classification,
            Ok(pb::performance_spec::Task::Regression) => Task::Regression,
            _ => {
                return Err(invalid(
                    "performance.task must be TASK_CLASSIFICATION or TASK_REGRESSION",
                ))
            }
        };
        let p = PerformanceSpec {
            task,
            prediction_column: p.prediction_column.clone(),
            score_column: p.score_column.clone(),
            target_column: p.target_column.clone(),
            positive_label: p.positive_label.clone(),
            alert_metric: p.alert_metric.clone(),
            alert_threshold: p.alert_threshold,
            labels_topic: p.labels_topic.clone(),
        };
        p.check().map_err(invalid)?;
        if spec.prediction_log.is_none() {
            return Err(invalid(
                "performance is measured on prediction-log windows: set prediction_log too",
            ));
        }
        spec.performance = Some(p);
    }
    Ok(spec)
}

/// Whether the method the options ask for `column` fits its type.
pub(super) fn fits(options: &DriftOptions, column: &str, ty: ColumnType) -> Result<()> {
    match options.method_for(column, ty) {
        Some(m) if !m.allows(ty) => Err(invalid(format!(
            "column {column:?}: method {m} does not apply to a {} column",
            ty.name()
        ))),
        _ => Ok(()),
    }
}

pub(super) fn monitor_to_pb(m: &Monitor) -> pb::Monitor {
    let o = &m.spec.options;
    let name = |m: Option<Method>| m.map(|m| m.name().to_owned()).unwrap_or_default();
    pb::Monitor {
        name: m.name.clone(),
        model: m.model.clone(),
        columns: m
            .spec
            .columns
            .iter()
            .map(|c| pb::ColumnSpec {
                name: c.name.clone(),
                r#type: c
                    .column_type
                    .map_or(pb::ColumnType::Unspecified, column_type_to)
                    as i32,
            })
            .collect(),
        options: Some(pb::DriftOptions {
            method: name(o.method),
            num_method: name(o.num_method),
            cat_method: name(o.cat_method),
            per_column_method: o
                .per_column_method
                .iter()
                .map(|(k, v)| (k.clone(), v.name().to_owned()))
                .collect(),
            threshold: o.threshold,
            num_threshold: o.num_threshold,
            cat_threshold: o.cat_threshold,
            per_column_threshold: o.per_column_threshold.clone().into_iter().collect(),
            drift_share: o.drift_share,
            correction: match o.correction {
                Correction::None => pb::Correction::None,
                Correction::Bonferroni => pb::Correction::Bonferroni,
                Correction::BenjaminiHochberg => pb::Correction::BenjaminiHochberg,
            } as i32,
        }),
        cooldown_seconds: m.cooldown_seconds,
        reference_version: m.reference_version,
        created_at_ms: m.created_at_ms,
        updated_at_ms: m.updated_at_ms,
        prediction_log: m
            .spec
            .prediction_log
            .as_ref()
            .map(|p| pb::PredictionLogSource {
                deployment: p.deployment.clone(),
                window_rows: p.window_rows,
                window_seconds: p.window_seconds,
                input_columns: p.input_columns.clone(),
                reference_rows: p.reference_rows,
            }),
        capture: m.capture.as_ref().map(|c| pb::ReferenceCapture {
            rows_wanted: c.rows_wanted,
            rows: c.rows,
            started_at_ms: c.started_at_ms,
            error: c.error.clone(),
        }),
        performance: m.spec.performance.as_ref().map(|p| pb::PerformanceSpec {
            task: match p.task {
                Task::Classification => pb::performance_spec::Task::Classification,
                Task::Regression => pb::performance_spec::Task::Regression,
            } as i32,
            prediction_column: p.prediction_column.clone(),
            score_column: p.score_column.clone(),
            target_column: p.target_column.clone(),
            positive_label: p.positive_label.clone(),
            alert_metric: p.alert_metric.clone(),
            alert_threshold: p.alert_threshold,
            labels_topic: p.labels_topic.clone(),
        }),
    }
}

pub(super) fn reference_to_pb(r: &Reference) -> pb::Reference {
    pb::Reference {
        monitor: r.monitor.clone(),
        version: r.version,
        rows: r.rows,
        columns: r
            .profile
            .iter()
            .map(|c| pb::ColumnProfile {
                name: c.name.clone(),
                r#type: column_type_to(c.column_type) as i32,
                count: c.count as i64,
                missing: c.missing as i64,
                distinct: c.distinct as i64,
            })
            .collect(),
        created_at_ms: r.created_at_ms,
    }
}

/// A report as the API returns it (`with_columns`: its columns too).
pub fn report_to_pb(r: &Report, with_columns: bool) -> pb::DriftReport {
    let d = &r.drift;
    pb::DriftReport {
        id: r.id.clone(),
        monitor: r.monitor.clone(),
        reference_version: r.reference_version,
        model_version: r.model_version.clone(),
        rows: r.rows,
        dataset_drift: d.dataset_drift,
        drifted_columns: d.drifted_columns as i64,
        share: d.share,
        drift_share: d.drift_share,
        columns: if with_columns {
            d.columns
                .iter()
                .map(|(name, c)| pb::ColumnDrift {
                    column: name.clone(),
                    r#type: column_type_to(c.column_type) as i32,
                    method: c.method.name().to_owned(),
                    threshold: c.threshold,
                    score: c.score,
                    adjusted_score: c.adjusted_score,
                    drifted: c.drifted,
                    note: c.note.clone().unwrap_or_default(),
                    reference_count: c.reference_rows as i64,
                    current_count: c.current_rows as i64,
                    reference_missing: c.reference_missing as i64,
                    current_missing: c.current_missing as i64,
                    histogram: d.histograms.get(name).map(|h| pb::Histogram {
                        edges: h.edges.clone(),
                        categories: h.categories.clone(),
                        reference: h.reference.clone(),
                        current: h.current.clone(),
                    }),
                })
                .collect()
        } else {
            Vec::new()
        },
        created_at_ms: r.created_at_ms,
        event_published: r.event_published,
        source: match r.source {
            WindowSource::Push => "push",
            WindowSource::PredictionLog { .. } => "prediction_log",
        }
        .to_owned(),
        window_start_ms: match r.source {
            WindowSource::PredictionLog { start_ms, .. } => start_ms,
            WindowSource::Push => 0,
        },
        window_end_ms: match r.source {
            WindowSource::PredictionLog { end_ms, .. } => end_ms,
            WindowSource::Push => 0,
        },
    }
}

/// A window's performance as the API returns it.
pub(super) fn performance_to_pb(p: &crate::store::WindowPerformance) -> pb::WindowPerformance {
    let mut notes = p.realised.notes.clone();
    notes.extend(p.estimated.notes.iter().cloned());
    pb::WindowPerformance {
        window_id: p.window_id.clone(),
        model_version: p.model_version.clone(),
        rows: p.rows,
        labelled_rows: p.labelled_rows,
        window_start_ms: p.window_start_ms,
        window_end_ms: p.window_end_ms,
        realised: p.realised.values.clone().into_iter().collect(),
        estimated: p.estimated.values.clone().into_iter().collect(),
        notes,
        degraded: p.degraded,
        updated_at_ms: p.updated_at_ms,
    }
}
