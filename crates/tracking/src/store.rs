//! The tracking store: every read and write of experiments and runs, on either
//! backend, each write in one transaction together with its events.

mod experiments;
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

pub use logging::{decode_chunk, encode_chunk};
pub use search::PageToken;

/// The schema of the tracking service, per backend.
pub fn migrations() -> Vec<Migration> {
    vec![Migration {
        version: 1,
        name: "experiments, runs, params, tags, metrics, datasets".into(),
        sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
        postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
    }]
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
    TrackingError::NotFound(format!("run {run_id} not found"))
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
            "run {run_id} is deleted; restore it before writing to it"
        )));
    }
    Ok(row.get(1))
}
