//! Monitors, their reference versions and their reports; the `DriftDetected` events a
//! report publishes go through the outbox in the report's transaction.

use mlops_events::outbox::Outbox;
use mlops_events::Envelope;
use mlops_storage::{is_unique_violation, now_millis, Db, Migration};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::drift::{ColumnType, DatasetDrift, DriftOptions};
use crate::error::{MonitoringError, Result};
use crate::outcomes::PerformanceSpec;
use crate::report::ColumnSpec;
use crate::windows::PredictionLogSpec;

mod captures;
mod outcomes;
mod windows;

pub use captures::Taken;
pub use outcomes::{LoggedPrediction, WindowPerformance};
pub use windows::{StoredWindow, CONFLICT};

/// The schema.
pub fn migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "monitors, references and reports".into(),
            sqlite: include_str!("../migrations/sqlite/0001_init.sql").into(),
            postgres: include_str!("../migrations/postgres/0001_init.sql").into(),
        },
        Migration {
            version: 2,
            name: "windows of the prediction log and its offsets".into(),
            sqlite: include_str!("../migrations/sqlite/0002_prediction_log.sql").into(),
            postgres: include_str!("../migrations/postgres/0002_prediction_log.sql").into(),
        },
        Migration {
            version: 3,
            name: "predictions, labels and performance per window".into(),
            sqlite: include_str!("../migrations/sqlite/0003_performance.sql").into(),
            postgres: include_str!("../migrations/postgres/0003_performance.sql").into(),
        },
        Migration {
            version: 4,
            name: "references taken from the prediction log".into(),
            sqlite: include_str!("../migrations/sqlite/0004_reference_capture.sql").into(),
            postgres: include_str!("../migrations/postgres/0004_reference_capture.sql").into(),
        },
    ]
}

/// What a monitor tests and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorSpec {
    /// Empty: every column of the reference.
    pub columns: Vec<ColumnSpec>,
    pub options: DriftOptions,
    /// Windows from the prediction log too, when set.
    #[serde(default)]
    pub prediction_log: Option<PredictionLogSpec>,
    /// The model's performance on those windows, when set.
    #[serde(default)]
    pub performance: Option<PerformanceSpec>,
}

/// A stored monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub name: String,
    pub model: String,
    pub spec: MonitorSpec,
    pub cooldown_seconds: i64,
    pub reference_version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// A reference being taken from the prediction log.
    pub capture: Option<Capture>,
}

/// A reference being taken from the prediction log (see `captures`).
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub id: String,
    pub rows_wanted: i64,
    pub rows: i64,
    pub started_at_ms: i64,
    /// Why it stopped; empty while it runs.
    pub error: String,
}

impl Capture {
    /// Whether it still takes rows.
    pub fn running(&self) -> bool {
        self.error.is_empty() && self.rows < self.rows_wanted
    }
}

/// What a reference holds of one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    pub column_type: ColumnType,
    pub count: u64,
    pub missing: u64,
    pub distinct: u64,
}

/// A stored reference version.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub monitor: String,
    pub version: i64,
    /// Its table on the reference store.
    pub blob_key: String,
    pub rows: i64,
    pub profile: Vec<ColumnProfile>,
    pub created_at_ms: i64,
    /// CBPE fitted on it, when its monitor estimates performance.
    pub cbpe: Option<crate::performance::Cbpe>,
}

/// A stored report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub id: String,
    pub monitor: String,
    pub reference_version: i64,
    pub model_version: String,
    pub rows: i64,
    pub drift: DatasetDrift,
    pub event_published: bool,
    pub created_at_ms: i64,
    /// Where the window came from.
    pub source: WindowSource,
}

/// Where a report's window came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSource {
    /// Pushed over gRPC.
    Push,
    /// Cut from the prediction log, spanning these prediction times (ms since the epoch).
    PredictionLog { start_ms: i64, end_ms: i64 },
}

impl WindowSource {
    fn name(self) -> &'static str {
        match self {
            WindowSource::Push => "push",
            WindowSource::PredictionLog { .. } => "prediction_log",
        }
    }
}

/// Reads and writes monitors, references and reports.
#[derive(Clone)]
pub struct Store {
    db: Db,
    outbox: Outbox,
}

const MONITOR_COLUMNS: &str =
    "name, model, spec, cooldown_seconds, reference_version, created_at, updated_at, \
     capture_id, capture_wanted, capture_rows, capture_started, capture_error";

fn monitor_of(r: &AnyRow) -> Result<Monitor> {
    let spec: String = r.try_get(2)?;
    Ok(Monitor {
        name: r.try_get(0)?,
        model: r.try_get(1)?,
        spec: serde_json::from_str(&spec)
            .map_err(|e| MonitoringError::Internal(format!("a stored monitor's spec: {e}")))?,
        cooldown_seconds: r.try_get(3)?,
        reference_version: r.try_get(4)?,
        created_at_ms: r.try_get(5)?,
        updated_at_ms: r.try_get(6)?,
        capture: match r.try_get::<String, _>(7)? {
            id if id.is_empty() => None,
            id => Some(Capture {
                id,
                rows_wanted: r.try_get(8)?,
                rows: r.try_get(9)?,
                started_at_ms: r.try_get(10)?,
                error: r.try_get(11)?,
            }),
        },
    })
}

const REPORT_COLUMNS: &str = "id, monitor, reference_version, model_version, rows_count, report, event_published, created_at, source, window_start, window_end";

fn report_of(r: &AnyRow) -> Result<Report> {
    let json: String = r.try_get(5)?;
    let published: i64 = r.try_get(6)?;
    Ok(Report {
        id: r.try_get(0)?,
        monitor: r.try_get(1)?,
        reference_version: r.try_get(2)?,
        model_version: r.try_get(3)?,
        rows: r.try_get(4)?,
        drift: serde_json::from_str(&json)
            .map_err(|e| MonitoringError::Internal(format!("a stored report: {e}")))?,
        event_published: published != 0,
        created_at_ms: r.try_get(7)?,
        source: match r.try_get::<String, _>(8)?.as_str() {
            "prediction_log" => WindowSource::PredictionLog {
                start_ms: r.try_get(9)?,
                end_ms: r.try_get(10)?,
            },
            _ => WindowSource::Push,
        },
    })
}

fn not_found(name: &str) -> MonitoringError {
    MonitoringError::NotFound(format!("no monitor named {name:?}"))
}

impl Store {
    /// A store on `db` (migrated by the caller, with the outbox's tables).
    pub fn new(db: Db) -> Self {
        Store {
            db,
            outbox: Outbox::new("monitoring"),
        }
    }

    /// The outbox the events go through.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates a monitor; `AlreadyExists` when one has its name.
    pub async fn create_monitor(
        &self,
        name: &str,
        model: &str,
        spec: &MonitorSpec,
        cooldown_seconds: i64,
    ) -> Result<Monitor> {
        let now = now_millis();
        let json = serde_json::to_string(spec).expect("a spec serializes");
        let capture = spec
            .prediction_log
            .as_ref()
            .filter(|p| p.reference_rows > 0)
            .map(|p| Capture {
                id: uuid::Uuid::new_v4().to_string(),
                rows_wanted: p.reference_rows,
                rows: 0,
                started_at_ms: now,
                error: String::new(),
            });
        let inserted = sqlx::query(
            "INSERT INTO monitoring_monitors (name, model, spec, cooldown_seconds, reference_version, last_event_at, created_at, updated_at, \
             capture_id, capture_wanted, capture_rows, capture_started, capture_error) \
             VALUES ($1, $2, $3, $4, 0, 0, $5, $5, $6, $7, 0, $5, '')",
        )
        .bind(name)
        .bind(model)
        .bind(&json)
        .bind(cooldown_seconds)
        .bind(now)
        .bind(capture.as_ref().map_or("", |c| c.id.as_str()))
        .bind(capture.as_ref().map_or(0, |c| c.rows_wanted))
        .execute(self.db.writer())
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(MonitoringError::AlreadyExists(format!(
                "a monitor named {name:?} exists: update it, or delete it first"
            ))),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(Monitor {
                name: name.to_owned(),
                model: model.to_owned(),
                spec: spec.clone(),
                cooldown_seconds,
                reference_version: 0,
                created_at_ms: now,
                updated_at_ms: now,
                capture,
            }),
        }
    }

    /// Replaces a monitor's model, spec and cooldown.
    pub async fn update_monitor(
        &self,
        name: &str,
        model: &str,
        spec: &MonitorSpec,
        cooldown_seconds: i64,
    ) -> Result<Monitor> {
        let json = serde_json::to_string(spec).expect("a spec serializes");
        let done = sqlx::query(
            "UPDATE monitoring_monitors SET model = $2, spec = $3, cooldown_seconds = $4, updated_at = $5 WHERE name = $1",
        )
        .bind(name)
        .bind(model)
        .bind(&json)
        .bind(cooldown_seconds)
        .bind(now_millis())
        .execute(self.db.writer())
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(name));
        }
        self.monitor(name).await
    }

    /// The monitor `name`; `NotFound` when there is none.
    pub async fn monitor(&self, name: &str) -> Result<Monitor> {
        let row = sqlx::query(&format!(
            "SELECT {MONITOR_COLUMNS} FROM monitoring_monitors WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.db.reader())
        .await?;
        row.as_ref()
            .map(monitor_of)
            .unwrap_or_else(|| Err(not_found(name)))
    }

    /// Every monitor, by name.
    pub async fn monitors(&self) -> Result<Vec<Monitor>> {
        sqlx::query(&format!(
            "SELECT {MONITOR_COLUMNS} FROM monitoring_monitors ORDER BY name"
        ))
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(monitor_of)
        .collect()
    }

    /// Deletes a monitor with its references and reports; the keys of its reference
    /// tables, for the caller to remove. `None` when there was no such monitor.
    pub async fn delete_monitor(&self, name: &str) -> Result<Option<Vec<String>>> {
        let mut tx = self.db.begin().await?;
        let keys: Vec<String> =
            sqlx::query("SELECT blob_key FROM monitoring_references WHERE monitor = $1")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()?;
        let gone = sqlx::query("DELETE FROM monitoring_monitors WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(None);
        }
        for table in [
            "monitoring_references",
            "monitoring_reports",
            "monitoring_windows",
            "monitoring_predictions",
            "monitoring_labels",
            "monitoring_performance",
            "monitoring_capture_chunks",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE monitor = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(keys))
    }

    /// Records a new reference version of `monitor` (its table already on the store).
    pub async fn add_reference(
        &self,
        monitor: &str,
        blob_key: &str,
        rows: i64,
        profile: &[ColumnProfile],
        cbpe: Option<&crate::performance::Cbpe>,
    ) -> Result<Reference> {
        let mut tx = self.db.begin().await?;
        let r = self
            .add_reference_in(&mut tx, monitor, blob_key, rows, profile, cbpe)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Store::add_reference`] in a transaction of the caller's.
    pub(crate) async fn add_reference_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        monitor: &str,
        blob_key: &str,
        rows: i64,
        profile: &[ColumnProfile],
        cbpe: Option<&crate::performance::Cbpe>,
    ) -> Result<Reference> {
        let now = now_millis();
        let version: i64 = sqlx::query(
            "UPDATE monitoring_monitors SET reference_version = reference_version + 1, updated_at = $2 \
             WHERE name = $1 RETURNING reference_version",
        )
        .bind(monitor)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| not_found(monitor))?
        .try_get(0)?;
        sqlx::query(
            "INSERT INTO monitoring_references (monitor, version, blob_key, rows_count, profile, created_at, cbpe) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(monitor)
        .bind(version)
        .bind(blob_key)
        .bind(rows)
        .bind(serde_json::to_string(profile).expect("a profile serializes"))
        .bind(now)
        .bind(cbpe.map(|c| serde_json::to_string(c).expect("a fitted CBPE serializes")))
        .execute(&mut **tx)
        .await?;
        Ok(Reference {
            monitor: monitor.to_owned(),
            version,
            blob_key: blob_key.to_owned(),
            rows,
            profile: profile.to_vec(),
            created_at_ms: now,
            cbpe: cbpe.cloned(),
        })
    }

    /// The reference `version` of `monitor`.
    pub async fn reference(&self, monitor: &str, version: i64) -> Result<Reference> {
        let r = sqlx::query(
            "SELECT blob_key, rows_count, profile, created_at, cbpe FROM monitoring_references \
             WHERE monitor = $1 AND version = $2",
        )
        .bind(monitor)
        .bind(version)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| {
            MonitoringError::NotFound(format!("monitor {monitor:?} has no reference {version}"))
        })?;
        let profile: String = r.try_get(2)?;
        Ok(Reference {
            monitor: monitor.to_owned(),
            version,
            blob_key: r.try_get(0)?,
            rows: r.try_get(1)?,
            profile: serde_json::from_str(&profile)
                .map_err(|e| MonitoringError::Internal(format!("a stored profile: {e}")))?,
            created_at_ms: r.try_get(3)?,
            cbpe: match r.try_get::<Option<String>, _>(4)? {
                None => None,
                Some(json) => {
                    Some(serde_json::from_str(&json).map_err(|e| {
                        MonitoringError::Internal(format!("a stored CBPE fit: {e}"))
                    })?)
                }
            },
        })
    }

    /// Stores a report; when it drifts and the monitor's cooldown has passed since its
    /// last event, `event(report)` is published through the outbox in the same
    /// transaction. Returns the report as stored.
    pub async fn save_report(
        &self,
        report: Report,
        event: impl FnOnce(&Report) -> Envelope,
    ) -> Result<Report> {
        let mut tx = self.db.begin().await?;
        let report = self.save_report_in(&mut tx, report, event).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// [`Store::save_report`] in the caller's transaction.
    pub(crate) async fn save_report_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        mut report: Report,
        event: impl FnOnce(&Report) -> Envelope,
    ) -> Result<Report> {
        // the row lock serialises the cooldown decision on PostgreSQL
        let row = sqlx::query(
            "UPDATE monitoring_monitors SET last_event_at = last_event_at WHERE name = $1 \
             RETURNING last_event_at, cooldown_seconds",
        )
        .bind(&report.monitor)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| not_found(&report.monitor))?;
        let (last, cooldown): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        report.event_published = report.drift.dataset_drift
            && report.created_at_ms.saturating_sub(last) >= cooldown.saturating_mul(1000);
        let _enqueued = if report.event_published {
            sqlx::query("UPDATE monitoring_monitors SET last_event_at = $2 WHERE name = $1")
                .bind(&report.monitor)
                .bind(report.created_at_ms)
                .execute(&mut **tx)
                .await?;
            Some(self.outbox.enqueue(tx, &event(&report)).await?)
        } else {
            None
        };
        let (start, end) = match report.source {
            WindowSource::Push => (0, 0),
            WindowSource::PredictionLog { start_ms, end_ms } => (start_ms, end_ms),
        };
        sqlx::query(
            "INSERT INTO monitoring_reports (id, monitor, reference_version, model_version, rows_count, dataset_drift, share, report, event_published, created_at, source, window_start, window_end) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&report.id)
        .bind(&report.monitor)
        .bind(report.reference_version)
        .bind(&report.model_version)
        .bind(report.rows)
        .bind(i64::from(report.drift.dataset_drift))
        .bind(report.drift.share)
        .bind(serde_json::to_string(&report.drift).expect("a report serializes"))
        .bind(i64::from(report.event_published))
        .bind(report.created_at_ms)
        .bind(report.source.name())
        .bind(start)
        .bind(end)
        .execute(&mut **tx)
        .await?;
        Ok(report)
    }

    /// The report `id` of `monitor`, or its newest when `id` is empty.
    pub async fn report(&self, monitor: &str, id: &str) -> Result<Report> {
        let row = if id.is_empty() {
            sqlx::query(&format!(
                "SELECT {REPORT_COLUMNS} FROM monitoring_reports WHERE monitor = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            ))
            .bind(monitor)
            .fetch_optional(self.db.reader())
            .await?
        } else {
            sqlx::query(&format!(
                "SELECT {REPORT_COLUMNS} FROM monitoring_reports WHERE monitor = $1 AND id = $2"
            ))
            .bind(monitor)
            .bind(id)
            .fetch_optional(self.db.reader())
            .await?
        };
        match row {
            Some(r) => report_of(&r),
            None => {
                self.monitor(monitor).await?;
                Err(MonitoringError::NotFound(if id.is_empty() {
                    format!("monitor {monitor:?} has no report yet: push a window first")
                } else {
                    format!("monitor {monitor:?} has no report {id:?}")
                }))
            }
        }
    }

    /// The reports of `monitor` created at or after `since_ms`, newest first, at most
    /// `limit`.
    pub async fn reports(&self, monitor: &str, since_ms: i64, limit: i64) -> Result<Vec<Report>> {
        self.monitor(monitor).await?;
        sqlx::query(&format!(
            "SELECT {REPORT_COLUMNS} FROM monitoring_reports WHERE monitor = $1 AND created_at >= $2 \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(monitor)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(report_of)
        .collect()
    }
}
