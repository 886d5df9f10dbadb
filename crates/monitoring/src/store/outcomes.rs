//! The predictions kept for the join with labels, the labels, and each window's
//! performance. Labels are stored whether or not their prediction is logged yet; a
//! window's realised metrics are computed from the join, so the order in which the two
//! arrive does not matter.

use mlops_events::Envelope;
use mlops_storage::now_millis;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{not_found, Store};
use crate::error::{MonitoringError, Result};
use crate::outcomes::{Metrics, Outcome};

type Tx = Transaction<'static, Any>;

/// One logged prediction row of a monitor that measures performance.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedPrediction {
    pub request_id: String,
    pub row: i64,
    pub model_version: String,
    pub window_id: String,
    pub prediction: String,
    pub score: Option<f64>,
}

/// A window's performance, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPerformance {
    pub window_id: String,
    pub monitor: String,
    pub model_version: String,
    pub rows: i64,
    pub labelled_rows: i64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub realised: Metrics,
    pub estimated: Metrics,
    pub degraded: bool,
    pub updated_at_ms: i64,
}

/// Rows per INSERT statement.
const CHUNK: usize = 100;

const PERFORMANCE_COLUMNS: &str = "window_id, monitor, model_version, rows_count, labelled_rows, window_start, window_end, realised, estimated, degraded, updated_at";

fn performance_of(r: &AnyRow) -> Result<WindowPerformance> {
    let json = |i: usize| -> Result<Metrics> {
        let s: String = r.try_get(i)?;
        serde_json::from_str(&s)
            .map_err(|e| MonitoringError::Internal(format!("stored metrics: {e}")))
    };
    let degraded: i64 = r.try_get(9)?;
    Ok(WindowPerformance {
        window_id: r.try_get(0)?,
        monitor: r.try_get(1)?,
        model_version: r.try_get(2)?,
        rows: r.try_get(3)?,
        labelled_rows: r.try_get(4)?,
        window_start_ms: r.try_get(5)?,
        window_end_ms: r.try_get(6)?,
        realised: json(7)?,
        estimated: json(8)?,
        degraded: degraded != 0,
        updated_at_ms: r.try_get(10)?,
    })
}

impl Store {
    /// Keeps `rows` of `monitor` for the join with labels, in `tx` (a row logged twice
    /// is kept once).
    pub async fn insert_predictions(
        &self,
        tx: &mut Tx,
        monitor: &str,
        rows: &[LoggedPrediction],
    ) -> Result<()> {
        let now = now_millis();
        for chunk in rows.chunks(CHUNK) {
            let mut sql = String::from(
                "INSERT INTO monitoring_predictions (monitor, request_id, row_index, model_version, window_id, prediction, score, created_at) VALUES ",
            );
            // The score is always bound as a float and made NULL in SQL when absent:
            // sqlx 0.8's Any driver sends a NULL f64 typed as `real`, and a statement
            // cached on a PostgreSQL connection with that type refuses the next score.
            for i in 0..chunk.len() {
                let b = i * 9;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, CASE WHEN ${} = 1 THEN ${} END, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9
                ));
            }
            sql.push_str(" ON CONFLICT (monitor, request_id, row_index, model_version) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for p in chunk {
                q = q
                    .bind(monitor)
                    .bind(&p.request_id)
                    .bind(p.row)
                    .bind(&p.model_version)
                    .bind(&p.window_id)
                    .bind(&p.prediction)
                    .bind(p.score.is_some() as i64)
                    .bind(p.score.unwrap_or(0.0))
                    .bind(now);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Stores labels of `monitor` (a second label of a row replaces the first); how many
    /// match a logged prediction, and the windows they fall in.
    pub(crate) async fn put_labels(
        &self,
        monitor: &str,
        labels: &[(String, i64, String)],
    ) -> Result<(i64, Vec<String>)> {
        let now = now_millis();
        let mut tx = self.db.begin().await?;
        sqlx::query("SELECT name FROM monitoring_monitors WHERE name = $1")
            .bind(monitor)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found(monitor))?;
        let mut matched = 0;
        let mut windows = std::collections::BTreeSet::new();
        for (request_id, row, label) in labels {
            sqlx::query(
                "INSERT INTO monitoring_labels (monitor, request_id, row_index, label, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (monitor, request_id, row_index) DO UPDATE SET label = excluded.label, created_at = excluded.created_at",
            )
            .bind(monitor)
            .bind(request_id)
            .bind(row)
            .bind(label)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let found = sqlx::query(
                "SELECT window_id FROM monitoring_predictions WHERE monitor = $1 AND request_id = $2 AND row_index = $3",
            )
            .bind(monitor)
            .bind(request_id)
            .bind(row)
            .fetch_all(&mut *tx)
            .await?;
            if !found.is_empty() {
                matched += 1;
            }
            for r in found {
                windows.insert(r.try_get::<String, _>(0)?);
            }
        }
        tx.commit().await?;
        Ok((matched, windows.into_iter().collect()))
    }

    /// A window's logged rows, its model version, and its rows joined with their labels.
    pub(crate) async fn window_outcomes(
        &self,
        window_id: &str,
    ) -> Result<(i64, String, Vec<Outcome>)> {
        let head = sqlx::query(
            "SELECT COUNT(*), MIN(model_version) FROM monitoring_predictions WHERE window_id = $1",
        )
        .bind(window_id)
        .fetch_one(self.db.reader())
        .await?;
        let rows: i64 = head.try_get(0)?;
        let version: Option<String> = head.try_get(1)?;
        let joined = sqlx::query(
            "SELECT p.prediction, p.score, l.label FROM monitoring_predictions p \
             JOIN monitoring_labels l ON l.monitor = p.monitor AND l.request_id = p.request_id AND l.row_index = p.row_index \
             WHERE p.window_id = $1 ORDER BY p.request_id, p.row_index",
        )
        .bind(window_id)
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(Outcome {
                prediction: r.try_get(0)?,
                score: r.try_get(1)?,
                label: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok((rows, version.unwrap_or_default(), joined))
    }

    /// A window's predictions with their scores (rows without a score left out).
    pub(crate) async fn window_scores(&self, window_id: &str) -> Result<Vec<(String, f64)>> {
        sqlx::query(
            "SELECT prediction, score FROM monitoring_predictions WHERE window_id = $1 AND score IS NOT NULL \
             ORDER BY request_id, row_index",
        )
        .bind(window_id)
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }

    /// A window's stored performance, if any.
    pub(crate) async fn window_performance(
        &self,
        window_id: &str,
    ) -> Result<Option<WindowPerformance>> {
        sqlx::query(&format!(
            "SELECT {PERFORMANCE_COLUMNS} FROM monitoring_performance WHERE window_id = $1"
        ))
        .bind(window_id)
        .fetch_optional(self.db.reader())
        .await?
        .as_ref()
        .map(performance_of)
        .transpose()
    }

    /// Stores a window's performance; when it is degraded and the monitor's cooldown has
    /// passed, `event` is published through the outbox in the same transaction. Whether
    /// it was.
    pub(crate) async fn save_performance(
        &self,
        p: &WindowPerformance,
        event: Option<Envelope>,
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "UPDATE monitoring_monitors SET last_performance_event_at = last_performance_event_at WHERE name = $1 \
             RETURNING last_performance_event_at, cooldown_seconds",
        )
        .bind(&p.monitor)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(&p.monitor))?;
        let (last, cooldown): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let now = p.updated_at_ms;
        let publish = event.filter(|_| now.saturating_sub(last) >= cooldown.saturating_mul(1000));
        let published = publish.is_some();
        // kept until the commit: dropping it wakes the relay
        let mut _enqueued = None;
        if let Some(e) = publish {
            sqlx::query(
                "UPDATE monitoring_monitors SET last_performance_event_at = $2 WHERE name = $1",
            )
            .bind(&p.monitor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            _enqueued = Some(self.outbox.enqueue(&mut tx, &e).await?);
        }
        let json = |m: &Metrics| serde_json::to_string(m).expect("metrics serialize");
        sqlx::query(
            "INSERT INTO monitoring_performance (window_id, monitor, model_version, rows_count, labelled_rows, window_start, window_end, realised, estimated, degraded, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (window_id) DO UPDATE SET rows_count = excluded.rows_count, labelled_rows = excluded.labelled_rows, \
             window_start = excluded.window_start, window_end = excluded.window_end, realised = excluded.realised, \
             estimated = excluded.estimated, degraded = excluded.degraded, updated_at = excluded.updated_at",
        )
        .bind(&p.window_id)
        .bind(&p.monitor)
        .bind(&p.model_version)
        .bind(p.rows)
        .bind(p.labelled_rows)
        .bind(p.window_start_ms)
        .bind(p.window_end_ms)
        .bind(json(&p.realised))
        .bind(json(&p.estimated))
        .bind(i64::from(p.degraded))
        .bind(p.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(published)
    }

    /// A monitor's windows' performance, newest first.
    pub async fn performance(&self, monitor: &str, limit: i64) -> Result<Vec<WindowPerformance>> {
        self.monitor(monitor).await?;
        sqlx::query(&format!(
            "SELECT {PERFORMANCE_COLUMNS} FROM monitoring_performance WHERE monitor = $1 \
             ORDER BY window_start DESC, updated_at DESC LIMIT $2"
        ))
        .bind(monitor)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(performance_of)
        .collect()
    }

    /// Forgets predictions and labels stored before `before_ms`; how many rows.
    pub(crate) async fn prune_outcomes(&self, before_ms: i64) -> Result<u64> {
        let mut n = 0;
        for table in ["monitoring_predictions", "monitoring_labels"] {
            n += sqlx::query(&format!("DELETE FROM {table} WHERE created_at < $1"))
                .bind(before_ms)
                .execute(self.db.writer())
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}
