//! The tracking store: every read and write of experiments and runs, on either
//! backend, each write in one transaction together with its events.

mod experiments;
mod logged_models;
mod logging;
mod runs;
mod search;

use mlops_events::outbox::Outbox;
use mlops_proto::tracking::v1 as pb;
use mlops_storage::{Backend, Db, Migration};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::{Result, TrackingError};
use crate::metrics::Metrics;

pub use logged_models::check_model_id;
pub use logging::{decode_chunk, encode_chunk};
pub use search::PageToken;

/// The schema of the tracking service, per backend.
pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "experiments, runs, params, tags, metrics, datasets".into(),
            sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
            postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
        },
        Migration {
            version: 2,
            name: "key/value statistics".into(),
            sqlite: include_str!("../migrations/sqlite/0002_key_value_statistics.sql").into(),
            postgres: include_str!("../migrations/postgres/0002_key_value_statistics.sql").into(),
        },
        Migration {
            version: 3,
            name: "logged models".into(),
            // The same SQL on both backends.
            sqlite: include_str!("../migrations/0003_logged_models.sql").into(),
            postgres: include_str!("../migrations/0003_logged_models.sql").into(),
        },
        Migration {
            version: 4,
            name: "logged models as run inputs".into(),
            sqlite: include_str!("../migrations/0004_run_model_inputs.sql").into(),
            postgres: include_str!("../migrations/0004_run_model_inputs.sql").into(),
        },
        Migration {
            version: 5,
            name: "values at MLflow's length limits".into(),
            sqlite: include_str!("../migrations/sqlite/0005_long_values.sql").into(),
            postgres: include_str!("../migrations/postgres/0005_long_values.sql").into(),
        },
    ]
}

/// Lifecycle stage stored for live entities.
pub(crate) const ACTIVE: &str = "active";
/// Lifecycle stage stored for soft-deleted entities.
pub(crate) const DELETED: &str = "deleted";

/// Reads and writes tracking data.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    pub(crate) outbox: Outbox,
    /// The artifact root's URI (`file:///...` or `s3://...`), without a trailing slash.
    pub(crate) artifact_root: String,
    pub(crate) metrics: Metrics,
}

impl Store {
    /// A store over `db`, publishing through `outbox`.
    pub fn new(db: Db, outbox: Outbox, artifact_root: String, metrics: Metrics) -> Self {
        Store {
            db,
            outbox,
            artifact_root: artifact_root.trim_end_matches('/').to_owned(),
            metrics,
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// `FOR UPDATE` where the backend has row locks; SQLite serializes writers anyway.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }
}

/// Lifecycle stage text to enum.
pub(crate) fn stage(s: &str) -> i32 {
    if s == DELETED {
        pb::LifecycleStage::Deleted as i32
    } else {
        pb::LifecycleStage::Active as i32
    }
}

/// The stages a view type selects.
pub(crate) fn stages(view: i32) -> &'static [&'static str] {
    match pb::ViewType::try_from(view).unwrap_or(pb::ViewType::ActiveOnly) {
        pb::ViewType::DeletedOnly => &[DELETED],
        pb::ViewType::All => &[ACTIVE, DELETED],
        _ => &[ACTIVE],
    }
}

/// Run status text (as stored) to enum.
pub(crate) fn status_from_str(s: &str) -> pb::RunStatus {
    match s {
        "RUNNING" => pb::RunStatus::Running,
        "SCHEDULED" => pb::RunStatus::Scheduled,
        "FINISHED" => pb::RunStatus::Finished,
        "FAILED" => pb::RunStatus::Failed,
        "KILLED" => pb::RunStatus::Killed,
        _ => pb::RunStatus::Unspecified,
    }
}

/// Run status enum to the stored text.
pub(crate) fn status_str(s: pb::RunStatus) -> &'static str {
    match s {
        pb::RunStatus::Running | pb::RunStatus::Unspecified => "RUNNING",
        pb::RunStatus::Scheduled => "SCHEDULED",
        pb::RunStatus::Finished => "FINISHED",
        pb::RunStatus::Failed => "FAILED",
        pb::RunStatus::Killed => "KILLED",
    }
}

/// Whether a stored status is terminal.
pub(crate) fn is_terminal(s: &str) -> bool {
    matches!(s, "FINISHED" | "FAILED" | "KILLED")
}

/// A run row (without its data) as the API's `RunInfo`.
pub(crate) fn run_info(r: &AnyRow) -> pb::RunInfo {
    pb::RunInfo {
        run_id: r.get("run_id"),
        run_name: r.get("run_name"),
        experiment_id: r.get::<i64, _>("experiment_id").to_string(),
        user_id: r.get("user_id"),
        status: status_from_str(&r.get::<String, _>("status")) as i32,
        start_time: r.get("start_time"),
        end_time: r.get("end_time"),
        artifact_uri: r.get("artifact_uri"),
        lifecycle_stage: stage(&r.get::<String, _>("lifecycle_stage")),
        parent_run_id: r
            .get::<Option<String>, _>("parent_run_id")
            .unwrap_or_default(),
        lease_expires_at: r.get("lease_expires_at"),
    }
}

/// The columns of a run (aliased `r`) with its params, tags and latest metrics
/// aggregated as JSON: one row per run, since decoding rows is what a page costs.
/// Metric values travel as text with 17 significant digits, so they round-trip exactly.
pub(crate) fn run_with_data_columns(backend: Backend) -> String {
    let cols: Vec<String> = RUN_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect();
    let (kv, metric) = match backend {
        Backend::Sqlite => (
            "json_group_array(json_array(x.key, x.value))",
            "json_group_array(json_array(x.key, printf('%!.17g', x.value), x.is_nan, x.timestamp, x.step))",
        ),
        Backend::Postgres => (
            "json_agg(json_build_array(x.key, x.value))::text",
            "json_agg(json_build_array(x.key, x.value::text, x.is_nan, x.timestamp, x.step))::text",
        ),
    };
    format!(
        "{}, (SELECT {kv} FROM params x WHERE x.run_id = r.run_id) AS params_json, \
         (SELECT {kv} FROM tags x WHERE x.run_id = r.run_id) AS tags_json, \
         (SELECT {metric} FROM latest_metrics x WHERE x.run_id = r.run_id) AS metrics_json",
        cols.join(", ")
    )
}

/// A row of [`run_with_data_columns`] as a run (without inputs).
pub(crate) fn run_from_row(r: &AnyRow) -> pb::Run {
    let p: Option<String> = r.get("params_json");
    let t: Option<String> = r.get("tags_json");
    let m: Option<String> = r.get("metrics_json");
    run_with_data(run_info(r), p.as_deref(), t.as_deref(), m.as_deref())
}

/// A run from its info and the aggregated JSON of its params, tags and metrics.
fn run_with_data(
    info: pb::RunInfo,
    params: Option<&str>,
    tags: Option<&str>,
    metrics: Option<&str>,
) -> pb::Run {
    fn parse<T: serde::de::DeserializeOwned>(text: Option<&str>, what: &str) -> Vec<T> {
        match text {
            None | Some("") => vec![],
            Some(t) => serde_json::from_str(t).unwrap_or_else(|e| {
                tracing::error!(what, error = %e, "cannot decode aggregated run data");
                vec![]
            }),
        }
    }
    let mut params: Vec<(String, String)> = parse(params, "params");
    params.sort();
    let mut tags: Vec<(String, String)> = parse(tags, "tags");
    tags.sort();
    let mut metrics: Vec<(String, Option<String>, i64, i64, i64)> = parse(metrics, "metrics");
    metrics.sort_by(|a, b| a.0.cmp(&b.0));
    pb::Run {
        info: Some(info),
        data: Some(pb::RunData {
            params: params
                .into_iter()
                .map(|(key, value)| pb::Param { key, value })
                .collect(),
            tags: tags
                .into_iter()
                .map(|(key, value)| pb::Tag { key, value })
                .collect(),
            metrics: metrics
                .into_iter()
                .map(|(key, value, is_nan, timestamp, step)| pb::Metric {
                    key,
                    value: if is_nan != 0 {
                        f64::NAN
                    } else {
                        value
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(f64::NAN)
                    },
                    timestamp,
                    step,
                    ..Default::default()
                })
                .collect(),
        }),
        inputs: Some(pb::RunInputs::default()),
        outputs: None,
    }
}

/// Wraps a page query over [`run_with_data_columns`] so the whole page comes back
/// as one JSON text in one row: each row crossing the driver has a fixed cost (on
/// SQLite a hop between threads), which dominated a page of runs.
pub(crate) fn page_as_json(backend: Backend, page_sql: &str) -> String {
    let cols = "p.run_id, p.run_name, p.experiment_id, p.user_id, p.status, p.start_time, p.end_time, \
         p.artifact_uri, p.lifecycle_stage, p.parent_run_id, p.lease_expires_at, p.params_json, p.tags_json, p.metrics_json";
    // The outer query only aggregates, so the rows arrive in the page's order.
    match backend {
        Backend::Sqlite => {
            format!("SELECT json_group_array(json_array({cols})) FROM ({page_sql}) p")
        }
        Backend::Postgres => {
            format!("SELECT json_agg(json_build_array({cols}))::text FROM ({page_sql}) p")
        }
    }
}

/// The runs of a [`page_as_json`] result.
pub(crate) fn runs_from_page_json(text: Option<&str>) -> Vec<pb::Run> {
    type Row = (
        String,
        String,
        i64,
        String,
        String,
        i64,
        Option<i64>,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = match text {
        None | Some("") => vec![],
        Some(t) => serde_json::from_str(t).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot decode a page of runs");
            vec![]
        }),
    };
    rows.into_iter()
        .map(
            |(
                run_id,
                run_name,
                exp,
                user_id,
                status,
                start_time,
                end_time,
                artifact_uri,
                stage_,
                parent,
                lease,
                p,
                t,
                m,
            )| {
                let info = pb::RunInfo {
                    run_id,
                    run_name,
                    experiment_id: exp.to_string(),
                    user_id,
                    status: status_from_str(&status) as i32,
                    start_time,
                    end_time,
                    artifact_uri,
                    lifecycle_stage: stage(&stage_),
                    parent_run_id: parent.unwrap_or_default(),
                    lease_expires_at: lease,
                };
                run_with_data(info, p.as_deref(), t.as_deref(), m.as_deref())
            },
        )
        .collect()
}

/// The columns [`run_info`] reads.
pub(crate) const RUN_COLUMNS: &str =
    "run_id, run_name, experiment_id, user_id, status, start_time, end_time, \
     artifact_uri, lifecycle_stage, parent_run_id, lease_expires_at";

/// `$a, $b, ...` for `n` parameters starting at `first`.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A not-found error for a run.
pub(crate) fn run_not_found(run_id: &str) -> TrackingError {
    // MLflow's words: clients match them.
    TrackingError::NotFound(format!("Run with id={run_id} not found"))
}

/// Fails unless the run exists and is not deleted; returns its status.
pub(crate) async fn require_active_run(
    conn: &mut sqlx::AnyConnection,
    run_id: &str,
    lock: &str,
) -> Result<String> {
    let row = sqlx::query(&format!(
        "SELECT lifecycle_stage, status FROM runs WHERE run_id = $1{lock}"
    ))
    .bind(run_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| run_not_found(run_id))?;
    if row.get::<String, _>(0) != ACTIVE {
        return Err(TrackingError::FailedPrecondition(format!(
            "The run {run_id} must be in the 'active' state. Current state is deleted. \
             Restore it before writing to it."
        )));
    }
    Ok(row.get(1))
}
