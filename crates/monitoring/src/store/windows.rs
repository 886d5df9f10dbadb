//! The prediction log's windows and offsets. A batch of the log is applied in one
//! transaction: the partitions' offsets are read (and locked), events below them skipped
//! as already applied, the open windows updated, and the offsets advanced, so a
//! redelivery after a crash or a rebalance applies nothing twice and loses nothing. A
//! window is written with a revision check, so the sweeper that closes expired windows
//! and a batch never overwrite each other (the loser retries).

use std::collections::BTreeMap;

use mlops_storage::now_millis;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Report, Store};
use crate::error::{MonitoringError, Result};
use crate::windows::WindowState;

/// A window as stored.
#[derive(Debug, Clone)]
pub struct StoredWindow {
    pub id: String,
    pub monitor: String,
    pub model_version: String,
    pub reference_version: i64,
    /// Its time span for time windows (aligned to the epoch); for count windows the first
    /// prediction's time and `i64::MAX`.
    pub window_start: i64,
    pub window_end: i64,
    /// When the sweeper closes it if no later prediction has (`i64::MAX`: never).
    pub expires_at: i64,
    pub closed: bool,
    pub state: WindowState,
    /// 0 for a window not stored yet.
    pub revision: i64,
}

/// Another writer changed the window first: retry the batch.
pub const CONFLICT: &str = "a window changed under this batch";

const WINDOW_COLUMNS: &str = "id, monitor, model_version, reference_version, window_start, window_end, expires_at, closed, state, revision";

fn window_of(r: &AnyRow) -> Result<StoredWindow> {
    let state: Vec<u8> = r.try_get(8)?;
    let closed: i64 = r.try_get(7)?;
    Ok(StoredWindow {
        id: r.try_get(0)?,
        monitor: r.try_get(1)?,
        model_version: r.try_get(2)?,
        reference_version: r.try_get(3)?,
        window_start: r.try_get(4)?,
        window_end: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        closed: closed != 0,
        state: WindowState::decode(&state).map_err(MonitoringError::Internal)?,
        revision: r.try_get(9)?,
    })
}

type Tx = Transaction<'static, Any>;

impl Store {
    /// The next offset to apply of each of `partitions` of `topic` for `consumer`, the
    /// rows locked until the transaction ends (PostgreSQL; SQLite has one writer).
    pub(crate) async fn log_offsets(
        &self,
        tx: &mut Tx,
        consumer: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>> {
        let mut out = BTreeMap::new();
        for &p in partitions {
            sqlx::query(
                "INSERT INTO monitoring_log_offsets (consumer, topic, part, next_offset) VALUES ($1, $2, $3, 0) \
                 ON CONFLICT (consumer, topic, part) DO NOTHING",
            )
            .bind(consumer)
            .bind(topic)
            .bind(i64::from(p))
            .execute(&mut **tx)
            .await?;
            let next: i64 = sqlx::query(
                "UPDATE monitoring_log_offsets SET next_offset = next_offset \
                 WHERE consumer = $1 AND topic = $2 AND part = $3 RETURNING next_offset",
            )
            .bind(consumer)
            .bind(topic)
            .bind(i64::from(p))
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
            out.insert(p, next);
        }
        Ok(out)
    }

    /// Records that everything below `next` of partition `p` is applied.
    pub(crate) async fn set_log_offset(
        &self,
        tx: &mut Tx,
        consumer: &str,
        topic: &str,
        p: i32,
        next: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE monitoring_log_offsets SET next_offset = $4 WHERE consumer = $1 AND topic = $2 AND part = $3",
        )
        .bind(consumer)
        .bind(topic)
        .bind(i64::from(p))
        .bind(next)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The open window of `monitor` for `model_version`, if there is one.
    pub(crate) async fn open_window(
        &self,
        tx: &mut Tx,
        monitor: &str,
        model_version: &str,
    ) -> Result<Option<StoredWindow>> {
        sqlx::query(&format!(
            "SELECT {WINDOW_COLUMNS} FROM monitoring_windows WHERE monitor = $1 AND model_version = $2 AND closed = 0"
        ))
        .bind(monitor)
        .bind(model_version)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(window_of)
        .transpose()
    }

    /// Writes `w` (inserts it when its revision is 0); [`CONFLICT`] when another writer
    /// changed it since it was read.
    pub(crate) async fn put_window(&self, tx: &mut Tx, w: &StoredWindow) -> Result<()> {
        let state = w.state.encode();
        let done = if w.revision == 0 {
            sqlx::query(
                "INSERT INTO monitoring_windows (id, monitor, model_version, reference_version, window_start, window_end, expires_at, rows_count, closed, state, revision, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11)",
            )
            .bind(&w.id)
            .bind(&w.monitor)
            .bind(&w.model_version)
            .bind(w.reference_version)
            .bind(w.window_start)
            .bind(w.window_end)
            .bind(w.expires_at)
            .bind(w.state.rows as i64)
            .bind(i64::from(w.closed))
            .bind(state)
            .bind(now_millis())
            .execute(&mut **tx)
            .await
        } else {
            sqlx::query(
                "UPDATE monitoring_windows SET rows_count = $3, closed = $4, state = $5, revision = revision + 1, updated_at = $6 \
                 WHERE id = $1 AND revision = $2",
            )
            .bind(&w.id)
            .bind(w.revision)
            .bind(w.state.rows as i64)
            .bind(i64::from(w.closed))
            .bind(state)
            .bind(now_millis())
            .execute(&mut **tx)
            .await
        };
        match done {
            Ok(d) if d.rows_affected() == 1 => Ok(()),
            Ok(_) => Err(MonitoringError::Unavailable(CONFLICT.into())),
            Err(e) if mlops_storage::is_unique_violation(&e) => {
                Err(MonitoringError::Unavailable(CONFLICT.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Closes the open windows whose time is up (`expires_at` before `now_ms`); how many.
    pub(crate) async fn close_expired_windows(&self, now_ms: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE monitoring_windows SET closed = 1, revision = revision + 1, updated_at = $1 \
             WHERE closed = 0 AND expires_at < $1",
        )
        .bind(now_ms)
        .execute(self.db.writer())
        .await?;
        Ok(done.rows_affected())
    }

    /// The closed windows waiting for their report, oldest first.
    pub(crate) async fn closed_windows(&self, limit: i64) -> Result<Vec<StoredWindow>> {
        sqlx::query(&format!(
            "SELECT {WINDOW_COLUMNS} FROM monitoring_windows WHERE closed = 1 ORDER BY updated_at, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?
        .iter()
        .map(window_of)
        .collect()
    }

    /// Stores the report of the closed window `id` and removes the window, in one
    /// transaction; `None` when another replica reported it first.
    pub(crate) async fn finish_window(
        &self,
        id: &str,
        report: Report,
        event: impl FnOnce(&Report) -> mlops_events::Envelope,
    ) -> Result<Option<Report>> {
        let mut tx = self.db.begin().await?;
        let gone = sqlx::query("DELETE FROM monitoring_windows WHERE id = $1 AND closed = 1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Ok(None);
        }
        let report = self.save_report_in(&mut tx, report, event).await?;
        tx.commit().await?;
        Ok(Some(report))
    }

    /// Drops a closed window whose report cannot be made (its monitor or reference is
    /// gone).
    pub(crate) async fn drop_window(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM monitoring_windows WHERE id = $1")
            .bind(id)
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    /// Drops the open windows of `monitor` (it stopped following the log).
    pub(crate) async fn drop_open_windows(&self, monitor: &str) -> Result<()> {
        sqlx::query("DELETE FROM monitoring_windows WHERE monitor = $1 AND closed = 0")
            .bind(monitor)
            .execute(self.db.writer())
            .await?;
        Ok(())
    }
}
