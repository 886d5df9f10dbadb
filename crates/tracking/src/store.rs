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
        Migration {
            version: 6,
            name: "run documents for pages of runs".into(),
            sqlite: include_str!("../migrations/sqlite/0006_run_docs.sql").into(),
            postgres: include_str!("../migrations/postgres/0006_run_docs.sql").into(),
        },
        Migration {
            version: 7,
            name: "run ids and keys in byte order".into(),
            sqlite: include_str!("../migrations/sqlite/0007_byte_order_keys.sql").into(),
            postgres: include_str!("../migrations/postgres/0007_byte_order_keys.sql").into(),
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

/// The columns of a run (aliased `r`) and `data_json`, its params, tags and latest
/// metrics as one JSON array of three objects (`[{"key": value, ...}, {...}, {...}]`):
/// one row per run, since decoding rows is what a page costs. A metric's value is
/// `[value, is_nan, timestamp, step]`, the value as text with 17 significant digits, so
/// it round-trips exactly. SQLite aggregates the three tables per run; PostgreSQL reads
/// the run's documents in `run_docs`, kept by triggers: one primary-key probe instead
/// of three aggregates. `as_text` gives it as text (a row's column) rather than as JSON
/// (to nest in [`page_as_json`]).
pub(crate) fn run_with_data_columns(backend: Backend, as_text: bool) -> String {
    let cols: Vec<String> = RUN_COLUMNS.split(", ").map(|c| format!("r.{c}")).collect();
    let data = match backend {
        // A scalar subquery keeps its value's JSON subtype, so the objects nest as JSON.
        Backend::Sqlite => "json_array(\
             (SELECT json_group_object(x.key, x.value) FROM params x WHERE x.run_id = r.run_id), \
             (SELECT json_group_object(x.key, x.value) FROM tags x WHERE x.run_id = r.run_id), \
             (SELECT json_group_object(x.key, json_array(printf('%!.17g', x.value), x.is_nan, \
             x.timestamp, x.step)) FROM latest_metrics x WHERE x.run_id = r.run_id), json('true'))"
            .to_owned(),
        Backend::Postgres => format!(
            "(SELECT jsonb_build_array(d.params, d.tags, d.metrics, d.linked){} FROM run_docs d \
             WHERE d.run_id = r.run_id)",
            if as_text { "::text" } else { "" }
        ),
    };
    format!("{}, {data} AS data_json", cols.join(", "))
}

/// `data_json` of [`run_with_data_columns`]: params, tags and metrics (value,
/// is_nan, timestamp, step) by key, and whether the run may have inputs or outputs
/// (PostgreSQL knows; SQLite says yes).
type RunDoc = (
    Entries<String>,
    Entries<String>,
    Entries<(MetricValue, i64, i64, i64)>,
    bool,
);

/// A JSON object's entries, sorted by key. A page holds thousands of them: a vector
/// sorted once costs less than a map built entry by entry.
struct Entries<V>(Vec<(String, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for Entries<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                entries.sort_unstable_by(|a: &(String, V), b| a.0.cmp(&b.0));
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// A metric's value as the documents hold it: its shortest exact text, or null for
/// NaN. Parsed where it is read, without a string of its own.
struct MetricValue(f64);

impl<'de> serde::Deserialize<'de> for MetricValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = MetricValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number as text, or null")
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<MetricValue, E> {
                Ok(MetricValue(v.trim().parse().unwrap_or(f64::NAN)))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<MetricValue, E> {
                Ok(MetricValue(v))
            }
            fn visit_unit<E>(self) -> std::result::Result<MetricValue, E> {
                Ok(MetricValue(f64::NAN))
            }
            fn visit_none<E>(self) -> std::result::Result<MetricValue, E> {
                Ok(MetricValue(f64::NAN))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// A row of [`run_with_data_columns`] (`as_text`) as a run (without inputs), and
/// whether it may have inputs or outputs to attach.
pub(crate) fn run_from_row(r: &AnyRow) -> (pb::Run, bool) {
    let text: Option<String> = r.get("data_json");
    let doc = text.and_then(|t| {
        serde_json::from_str(&t)
            .map_err(|e| tracing::error!(error = %e, "cannot decode a run's data"))
            .ok()
    });
    run_with_data(run_info(r), doc)
}

/// A run from its info and its data (none: a run nothing was logged to), and
/// whether it may have inputs or outputs to attach.
fn run_with_data(info: pb::RunInfo, doc: Option<RunDoc>) -> (pb::Run, bool) {
    let (params, tags, metrics, linked) = doc.unwrap_or_default();
    let run = pb::Run {
        info: Some(info),
        data: Some(pb::RunData {
            params: params
                .0
                .into_iter()
                .map(|(key, value)| pb::Param { key, value })
                .collect(),
            tags: tags
                .0
                .into_iter()
                .map(|(key, value)| pb::Tag { key, value })
                .collect(),
            metrics: metrics
                .0
                .into_iter()
                .map(|(key, (value, is_nan, timestamp, step))| pb::Metric {
                    key,
                    value: if is_nan != 0 { f64::NAN } else { value.0 },
                    timestamp,
                    step,
                    ..Default::default()
                })
                .collect(),
        }),
        inputs: Some(pb::RunInputs::default()),
        outputs: None,
    };
    (run, linked)
}

/// Wraps a page query over [`run_with_data_columns`] so the whole page comes back
/// as one JSON text in one row: each row crossing the driver has a fixed cost (on
/// SQLite a hop between threads), which dominated a page of runs.
pub(crate) fn page_as_json(backend: Backend, page_sql: &str) -> String {
    let cols =
        "p.run_id, p.run_name, p.experiment_id, p.user_id, p.status, p.start_time, p.end_time, \
         p.artifact_uri, p.lifecycle_stage, p.parent_run_id, p.lease_expires_at";
    // The outer query only aggregates, so the rows arrive in the page's order.
    match backend {
        Backend::Sqlite => {
            format!("SELECT json_group_array(json_array({cols}, json(p.data_json))) FROM ({page_sql}) p")
        }
        Backend::Postgres => {
            format!(
                "SELECT json_agg(json_build_array({cols}, p.data_json))::text FROM ({page_sql}) p"
            )
        }
    }
}

/// The runs of a [`page_as_json`] result, and whether any may have inputs or outputs.
pub(crate) fn runs_from_page_json(text: Option<&str>) -> (Vec<pb::Run>, bool) {
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
        Option<RunDoc>,
    );
    let rows: Vec<Row> = match text {
        None | Some("") => vec![],
        Some(t) => serde_json::from_str(t).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot decode a page of runs");
            vec![]
        }),
    };
    let mut linked = false;
    let runs = rows
        .into_iter()
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
                doc,
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
                let (run, l) = run_with_data(info, doc);
                linked |= l;
                run
            },
        )
        .collect();
    (runs, linked)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_decodes_sorted_by_key_with_special_values() {
        // PostgreSQL's JSONB orders an object's keys by length first: `a`, `b`, `aa`.
        let page = r#"[["r1", "run", 7, "u", "FINISHED", 5, null, "file:///a", "active", null, null,
            [{"a": "1", "b": "2", "aa": "3"}, {"t": "x"},
             {"m": ["0.30000000000000004", 0, 10, 3], "inf": ["Infinity", 0, 1, 1],
              "nan": [null, 1, 11, 4], "bad": ["x", 0, 1, 1]}, false]],
            ["r2", "bare", 7, "u", "RUNNING", 4, null, "file:///b", "active", "r1", 9, null]]"#;
        let (runs, linked) = runs_from_page_json(Some(page));
        assert!(!linked);
        assert_eq!(runs.len(), 2);
        let data = runs[0].data.as_ref().unwrap();
        let keys: Vec<_> = data.params.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["a", "aa", "b"]);
        assert_eq!(data.params[1].value, "3");
        assert_eq!(data.tags[0].value, "x");
        let metrics: Vec<_> = data
            .metrics
            .iter()
            .map(|m| (m.key.as_str(), m.value, m.timestamp, m.step))
            .collect();
        assert_eq!(metrics[0].0, "bad");
        assert!(metrics[0].1.is_nan(), "text that is no number reads as NaN");
        assert_eq!(metrics[1], ("inf", f64::INFINITY, 1, 1));
        assert_eq!(metrics[2], ("m", 0.1 + 0.2, 10, 3));
        assert_eq!(metrics[3].0, "nan");
        assert!(metrics[3].1.is_nan());
        assert_eq!((metrics[3].2, metrics[3].3), (11, 4));
        // A run nothing was logged to has empty data.
        let bare = runs[1].data.as_ref().unwrap();
        assert!(bare.params.is_empty() && bare.metrics.is_empty() && bare.tags.is_empty());
        assert_eq!(runs[1].info.as_ref().unwrap().parent_run_id, "r1");
    }
}
