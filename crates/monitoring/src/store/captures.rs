//! References taken from the prediction log. A capture lives on its monitor's row (its
//! id, the rows wanted and taken so far, its start, and why it stopped if it failed); its
//! rows are stored as chunks, one per applied batch, in the batch's transaction, at the
//! capture's row offset. The update of the row count locks the monitor's row until the
//! batch commits, so replicas that apply batches at once take rows in turn and never more
//! than wanted. When the count is reached, one replica turns the chunks into a reference
//! version; the capture's id makes that happen once.

use mlops_storage::now_millis;
use sqlx::{Any, Row, Transaction};

use super::{not_found, ColumnProfile, Monitor, Reference, Store};
use crate::error::Result;

type Tx = Transaction<'static, Any>;

/// The rows a batch gave a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// How many of the offered rows were kept (the first ones).
    pub kept: usize,
    /// Whether the capture now has every row it wants.
    pub complete: bool,
}

impl Store {
    /// Starts taking `monitor`'s next reference from the next `rows` logged rows,
    /// replacing a capture in progress and dropping its rows.
    pub async fn start_capture(&self, monitor: &str, rows: i64) -> Result<Monitor> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE monitoring_monitors SET capture_id = $2, capture_wanted = $3, capture_rows = 0, \
             capture_started = $4, capture_error = '', updated_at = $4 WHERE name = $1",
        )
        .bind(monitor)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(rows)
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found(monitor));
        }
        sqlx::query("DELETE FROM monitoring_capture_chunks WHERE monitor = $1")
            .bind(monitor)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.monitor(monitor).await
    }

    /// Stops `monitor`'s capture, if any, and drops its rows.
    pub async fn stop_capture(&self, monitor: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE monitoring_monitors SET capture_id = '', capture_wanted = 0, capture_rows = 0, \
             capture_started = 0, capture_error = '' WHERE name = $1",
        )
        .bind(monitor)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM monitoring_capture_chunks WHERE monitor = $1")
            .bind(monitor)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Offers `offered` rows to capture `id` of `monitor` in the batch's transaction;
    /// `chunk(kept)` encodes the first `kept` of them. `None` when the capture is no
    /// longer taking rows (complete, failed or replaced).
    pub(crate) async fn take_capture_rows(
        &self,
        tx: &mut Tx,
        monitor: &str,
        id: &str,
        offered: usize,
        chunk: impl FnOnce(usize) -> std::result::Result<Vec<u8>, String>,
    ) -> Result<Option<Taken>> {
        let n = offered as i64;
        let Some(row) = sqlx::query(
            "UPDATE monitoring_monitors SET capture_rows = capture_rows + $3 \
             WHERE name = $1 AND capture_id = $2 AND capture_error = '' AND capture_rows < capture_wanted \
             RETURNING capture_rows, capture_wanted",
        )
        .bind(monitor)
        .bind(id)
        .bind(n)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(None);
        };
        let (now, wanted): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let kept = n - (now - wanted).max(0);
        if now > wanted {
            sqlx::query("UPDATE monitoring_monitors SET capture_rows = $2 WHERE name = $1")
                .bind(monitor)
                .bind(wanted)
                .execute(&mut **tx)
                .await?;
        }
        let data = chunk(kept as usize).map_err(crate::error::MonitoringError::Internal)?;
        sqlx::query(
            "INSERT INTO monitoring_capture_chunks (capture_id, monitor, seq, rows_count, data) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(monitor)
        .bind(now - n)
        .bind(kept)
        .bind(data)
        .execute(&mut **tx)
        .await?;
        Ok(Some(Taken {
            kept: kept as usize,
            complete: now >= wanted,
        }))
    }

    /// The monitors whose capture has every row it wants, to be made a reference.
    pub async fn complete_captures(&self) -> Result<Vec<Monitor>> {
        Ok(self
            .monitors()
            .await?
            .into_iter()
            .filter(|m| {
                m.capture
                    .as_ref()
                    .is_some_and(|c| c.error.is_empty() && c.rows >= c.rows_wanted)
            })
            .collect())
    }

    /// The chunks of capture `id`, in row order.
    pub async fn capture_chunks(&self, id: &str) -> Result<Vec<Vec<u8>>> {
        let rows = sqlx::query(
            "SELECT data FROM monitoring_capture_chunks WHERE capture_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(Into::into))
            .collect()
    }

    /// Ends capture `id` of `monitor` as a new reference version (its table already on
    /// the store); `None` when another replica ended it first (or it was replaced).
    pub(crate) async fn finish_capture(
        &self,
        monitor: &str,
        id: &str,
        blob_key: &str,
        rows: i64,
        profile: &[ColumnProfile],
        cbpe: Option<&crate::performance::Cbpe>,
    ) -> Result<Option<Reference>> {
        let mut tx = self.db.begin().await?;
        let ended = sqlx::query(
            "UPDATE monitoring_monitors SET capture_id = '', capture_wanted = 0, capture_rows = 0, \
             capture_started = 0, capture_error = '' WHERE name = $1 AND capture_id = $2",
        )
        .bind(monitor)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM monitoring_capture_chunks WHERE capture_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let r = self
            .add_reference_in(&mut tx, monitor, blob_key, rows, profile, cbpe)
            .await?;
        tx.commit().await?;
        Ok(Some(r))
    }

    /// Stops capture `id` of `monitor` with the reason its rows cannot be a reference,
    /// and drops them.
    pub async fn fail_capture(&self, monitor: &str, id: &str, error: &str) -> Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE monitoring_monitors SET capture_error = $3 WHERE name = $1 AND capture_id = $2",
        )
        .bind(monitor)
        .bind(id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM monitoring_capture_chunks WHERE capture_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
