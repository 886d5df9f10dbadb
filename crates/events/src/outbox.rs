//! The transactional outbox: a service writes its state change and the event in
//! one transaction; the [`Relay`] publishes pending events in order and deletes
//! them once the bus has them. A bus outage only delays events; a crash between
//! publish and delete re-sends them, and consumers deduplicate on the event id.
//!
//! [`Outbox::enqueue`] returns an [`Enqueued`] guard that wakes the relay when it
//! is dropped: keep it (`let _enqueued = ...`) until the transaction is committed,
//! and the relay wakes after the commit, at the end of the scope, without a call
//! that could be forgotten.

use std::sync::Arc;
use std::time::Duration;

use mlops_storage::{Backend, Db, Migration, StorageError};
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::Envelope;

/// Events read and published per round.
const BATCH: i64 = 500;

/// The columns an event is written to, in the order [`Outbox::bind_event`] binds them.
const COLUMNS: &str =
    "event_id, topic, key, ce_type, source, subject, time, content_type, payload, trace, created_at";
const EVENT_COLUMNS: usize = 11;

/// A query on either backend, with its arguments.
pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// An event's trace context as stored: `key=value` lines.
fn trace_text(event: &Envelope) -> String {
    event
        .trace
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The migrations creating `<service>_outbox` and `<service>_applied_events`.
pub fn migrations(service: &str) -> Vec<Migration> {
    let s = service.replace('-', "_");
    vec![
        Migration {
        version: 1,
        name: "outbox and applied events".into(),
        sqlite: format!(
            "CREATE TABLE {s}_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, \
             topic TEXT NOT NULL, key TEXT NOT NULL, ce_type TEXT NOT NULL, source TEXT NOT NULL, subject TEXT NOT NULL, \
             time TEXT NOT NULL, content_type TEXT NOT NULL, payload BLOB NOT NULL, trace TEXT NOT NULL, created_at BIGINT NOT NULL);
             CREATE TABLE {s}_applied_events (consumer TEXT NOT NULL, event_id TEXT NOT NULL, applied_at BIGINT NOT NULL, \
             PRIMARY KEY (consumer, event_id));"
        )
        .into(),
        postgres: format!(
            "CREATE TABLE {s}_outbox (seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, \
             topic TEXT NOT NULL, key TEXT NOT NULL, ce_type TEXT NOT NULL, source TEXT NOT NULL, subject TEXT NOT NULL, \
             time TEXT NOT NULL, content_type TEXT NOT NULL, payload BYTEA NOT NULL, trace TEXT NOT NULL, created_at BIGINT NOT NULL);
             CREATE TABLE {s}_applied_events (consumer TEXT NOT NULL, event_id TEXT NOT NULL, applied_at BIGINT NOT NULL, \
             PRIMARY KEY (consumer, event_id));"
        )
        .into(),
        },
        Migration {
            version: 2,
            name: "applied events pruned by age".into(),
            sqlite: format!("CREATE INDEX {s}_applied_events_applied_at ON {s}_applied_events (applied_at);").into(),
            postgres: format!("CREATE INDEX {s}_applied_events_applied_at ON {s}_applied_events (applied_at);").into(),
        },
    ]
}

/// Writes events into a service's outbox, inside the caller's transaction.
#[derive(Clone)]
pub struct Outbox {
    table: String,
    wake: Arc<Notify>,
}

impl Outbox {
    /// The outbox of `service`.
    pub fn new(service: &str) -> Self {
        Outbox {
            table: format!("{}_outbox", service.replace('-', "_")),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Adds `event` to the outbox within the transaction `conn` is in. The returned
    /// guard wakes the relay when dropped: hold it until after the commit (bind it
    /// with `let _enqueued =`, not `let _ =`, which would drop it at once).
    pub async fn enqueue(
        &self,
        conn: &mut AnyConnection,
        event: &Envelope,
    ) -> Result<Enqueued, sqlx::Error> {
        let sql = format!(
            "INSERT INTO {} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            self.table
        );
        self.bind_event(sqlx::query(&sql), event)
            .execute(conn)
            .await?;
        Ok(Enqueued {
            wake: self.wake.clone(),
        })
    }

    /// Runs `write`, one statement with `RETURNING` whose `params` parameters
    /// (`$1` on) `bind` binds, and enqueues `event` if it returned a row, atomically.
    /// Returns whether it wrote. On PostgreSQL both are one statement, committed on
    /// its own: one round trip where a transaction takes four. SQLite has no writes
    /// in `WITH`, so there they are a transaction. The relay is woken after the commit.
    pub async fn write_with(
        &self,
        db: &Db,
        write: &str,
        params: usize,
        bind: impl for<'q> FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
        event: &Envelope,
    ) -> Result<bool, StorageError> {
        let wrote = match db.backend() {
            Backend::Postgres => {
                let sql = format!(
                    "WITH written AS ({write}) {}",
                    self.insert_from("written", params + 1)
                );
                let done = self
                    .bind_event(bind(sqlx::query(&sql)), event)
                    .execute(db.writer())
                    .await
                    .map_err(|e| db.classify(e))?;
                done.rows_affected() > 0
            }
            Backend::Sqlite => {
                let mut tx = db.begin().await?;
                let row = bind(sqlx::query(write))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| db.classify(e))?;
                if row.is_none() {
                    return Ok(false);
                }
                let _enqueued = self
                    .enqueue(&mut tx, event)
                    .await
                    .map_err(|e| db.classify(e))?;
                tx.commit().await.map_err(|e| db.classify(e))?;
                return Ok(true);
            }
        };
        if wrote {
            drop(self.enqueued());
        }
        Ok(wrote)
    }

    /// `INSERT INTO <outbox> (...) SELECT $first, ... FROM <from>`: enqueues an event
    /// for each row of `from`, a `WITH` query of the same statement, so that on
    /// PostgreSQL one statement can write and enqueue. The event's parameters are
    /// numbered from `first`; bind them with [`Outbox::bind_event`], and take
    /// [`Outbox::enqueued`] once the statement has run.
    pub fn insert_from(&self, from: &str, first: usize) -> String {
        let values = (first..first + EVENT_COLUMNS)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} ({COLUMNS}) SELECT {values} FROM {from}",
            self.table
        )
    }

    /// The guard [`Outbox::enqueue`] returns, for an event a statement of the
    /// caller's own wrote (see [`Outbox::insert_from`]).
    pub fn enqueued(&self) -> Enqueued {
        Enqueued {
            wake: self.wake.clone(),
        }
    }

    /// Binds `event`'s columns, in the order [`Outbox::insert_from`] names them,
    /// after what `q` has bound.
    pub fn bind_event<'q>(&self, q: AnyQuery<'q>, event: &Envelope) -> AnyQuery<'q> {
        q.bind(event.id.clone())
            .bind(event.topic.clone())
            .bind(event.key.clone())
            .bind(event.ce_type.clone())
            .bind(event.source.clone())
            .bind(event.subject.clone())
            .bind(event.time.clone())
            .bind(event.content_type.clone())
            .bind(event.payload.clone())
            .bind(trace_text(event))
            .bind(mlops_storage::now_millis())
    }

    /// The relay publishing this outbox to `bus`.
    pub fn relay(&self, service: &str, db: Db, bus: Arc<dyn EventBus>) -> Relay {
        let s = service.replace('-', "_");
        Relay {
            outbox: self.clone(),
            db,
            bus,
            poll: Duration::from_millis(500),
            published: mlops_runtime::metrics::int_counter_vec(
                &format!("mlops_{s}_events_published_total"),
                "events published to the bus, by topic",
                &["topic"],
            ),
            errors: mlops_runtime::metrics::int_counter(
                &format!("mlops_{s}_events_publish_errors_total"),
                "failed attempts to publish outbox events (they are retried)",
            ),
            pending: mlops_runtime::metrics::int_gauge(
                &format!("mlops_{s}_outbox_pending"),
                "events committed to the outbox and not yet published",
            ),
        }
    }
}

/// An event written to the outbox in a transaction not yet committed. Dropping it
/// wakes the relay, so it must live until after the commit: declared after the
/// transaction in the same scope, it is dropped at the end of the scope, after
/// `tx.commit()`. Dropped early, the relay would look before the commit and find
/// nothing, and the event would wait for its next poll. On an error path it is
/// dropped with the rolled-back transaction, and the relay wakes for nothing.
#[must_use = "the relay is woken when this is dropped: keep it until the transaction is committed"]
#[derive(Debug)]
pub struct Enqueued {
    wake: Arc<Notify>,
}

impl Drop for Enqueued {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

/// Publishes a service's outbox to the bus.
pub struct Relay {
    outbox: Outbox,
    db: Db,
    bus: Arc<dyn EventBus>,
    poll: Duration,
    published: IntCounterVec,
    errors: IntCounter,
    pending: IntGauge,
}

/// How long the relay waits after a wake-up before it reads the outbox.
const LINGER: Duration = Duration::from_millis(2);

impl Relay {
    /// Publishes until `shutdown`, then makes one last attempt to empty the outbox.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = self.publish_pending().await;
            let wait = match &result {
                Ok(n) if *n as i64 == BATCH => Duration::ZERO,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    self.poll
                }
                Err(err) => {
                    self.errors.inc();
                    tracing::warn!(error = %err, retry_in = ?backoff, "publishing outbox events failed");
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    w
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.outbox.wake.notified(), if result.is_ok() => {
                    // Linger a moment, as Kafka producers do: the events of a burst
                    // (a registration writes two within a millisecond) go out in one
                    // round instead of one round, and its queries, each.
                    tokio::time::sleep(LINGER).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Final flush: bounded, since the bus may be the reason we are stopping.
        match tokio::time::timeout(Duration::from_secs(5), self.drain()).await {
            Ok(Ok(())) => tracing::info!(table = %self.outbox.table, "outbox flushed"),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "outbox not flushed; events stay queued for the next start")
            }
            Err(_) => {
                tracing::warn!("outbox flush timed out; events stay queued for the next start")
            }
        }
    }

    async fn drain(&self) -> Result<(), RelayError> {
        while self.publish_pending().await? as i64 == BATCH {}
        Ok(())
    }

    /// Publishes one batch of pending events in commit order; returns how many.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        // PostgreSQL: a transaction holding an advisory lock, so one relay per outbox
        // runs at a time across replicas and events stay in order. SQLite: one
        // process only, and the single writer connection must not be held while the
        // bus is slow, so read from the reader pool and delete afterwards.
        // Deleting what the bus took need not wait for a WAL flush: a delete lost in
        // a crash only republishes events, which consumers skip by id. This keeps the
        // relay's commits from queueing behind the services' own.
        let mut tx = match self.db.backend() {
            Backend::Postgres => Some(self.db.begin_unsynced().await?),
            Backend::Sqlite => None,
        };
        if let Some(tx) = tx.as_mut() {
            let row = sqlx::query("SELECT pg_try_advisory_xact_lock(hashtext($1))")
                .bind(&self.outbox.table)
                .fetch_one(&mut **tx)
                .await
                .map_err(StorageError::from)?;
            if !row.get::<bool, _>(0) {
                return Ok(0);
            }
        }
        let select = format!(
            "SELECT seq, event_id, topic, key, ce_type, source, subject, time, content_type, payload, trace \
             FROM {} ORDER BY seq LIMIT {BATCH}",
            self.outbox.table
        );
        let rows = match tx.as_mut() {
            Some(tx) => sqlx::query(&select).fetch_all(&mut **tx).await,
            None => sqlx::query(&select).fetch_all(self.db.reader()).await,
        }
        .map_err(StorageError::from)?;
        if rows.is_empty() {
            self.pending.set(0);
            return Ok(0);
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for r in &rows {
            seqs.push(r.get::<i64, _>("seq"));
            let trace = r
                .get::<String, _>("trace")
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            events.push(Envelope {
                id: r.get("event_id"),
                topic: r.get("topic"),
                key: r.get("key"),
                ce_type: r.get("ce_type"),
                source: r.get("source"),
                subject: r.get("subject"),
                time: r.get("time"),
                content_type: r.get("content_type"),
                payload: r.get("payload"),
                trace,
            });
        }
        let (delivered, result) = self.bus.publish(&events).await;
        if delivered > 0 {
            let last = seqs[delivered - 1];
            let delete = format!("DELETE FROM {} WHERE seq <= $1", self.outbox.table);
            match tx.as_mut() {
                Some(tx) => sqlx::query(&delete).bind(last).execute(&mut **tx).await,
                None => {
                    sqlx::query(&delete)
                        .bind(last)
                        .execute(self.db.writer())
                        .await
                }
            }
            .map_err(StorageError::from)?;
            for e in &events[..delivered] {
                self.published.with_label_values(&[&e.topic]).inc();
            }
        }
        if let Some(tx) = tx {
            tx.commit().await.map_err(StorageError::from)?;
        }
        // A short batch was the whole outbox: what is left is what the bus refused.
        // Only after a full batch does counting take a query.
        let left: i64 = if (rows.len() as i64) < BATCH {
            (rows.len() - delivered) as i64
        } else {
            sqlx::query(&format!("SELECT COUNT(*) FROM {}", self.outbox.table))
                .fetch_one(self.db.reader())
                .await
                .map_err(StorageError::from)?
                .get(0)
        };
        self.pending.set(left);
        result?;
        Ok(delivered)
    }
}

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The bus did not take the events.
    #[error(transparent)]
    Bus(#[from] crate::BusError),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mlops_storage::DbOptions;

    use super::*;
    use crate::testing::Note;

    /// A SQLite database with the outbox of `svc`.
    async fn svc_db(dir: &std::path::Path) -> Db {
        let db = Db::connect(&DbOptions {
            url: format!("sqlite://{}/o.db", dir.display()),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
        db.migrate("outbox", &migrations("svc")).await.unwrap();
        db
    }

    /// Whether the relay of `outbox` is woken within 20 ms.
    async fn woken(outbox: &Outbox) -> bool {
        tokio::time::timeout(Duration::from_millis(20), outbox.wake.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_relay_is_woken_when_the_guard_goes_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = svc_db(dir.path()).await;
        let outbox = Outbox::new("svc");
        {
            let mut tx = db.begin().await.unwrap();
            let _enqueued = outbox
                .enqueue(
                    &mut tx,
                    &Envelope::of("t", "/svc", "k", "s", &Note::default()),
                )
                .await
                .unwrap();
            assert!(!woken(&outbox).await, "not before the commit");
            tx.commit().await.unwrap();
            assert!(!woken(&outbox).await, "not before the end of the scope");
        }
        assert!(woken(&outbox).await, "once the guard is dropped");
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM svc_outbox")
            .fetch_one(db.reader())
            .await
            .unwrap();
        assert_eq!(pending, 1);
    }

    #[tokio::test]
    async fn a_write_with_its_event_wakes_the_relay_only_when_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let db = svc_db(dir.path()).await;
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .execute(db.writer())
            .await
            .unwrap();
        let outbox = Outbox::new("svc");
        let event = || Envelope::of("t", "/svc", "k", "s", &Note::default());
        let delete = "DELETE FROM t WHERE k = $1 RETURNING k";
        let wrote = outbox
            .write_with(&db, delete, 1, |q| q.bind("absent"), &event())
            .await
            .unwrap();
        assert!(!wrote);
        assert!(!woken(&outbox).await, "nothing written, nothing to publish");
        let insert = "INSERT INTO t (k) VALUES ($1) RETURNING k";
        let wrote = outbox
            .write_with(&db, insert, 1, |q| q.bind("a"), &event())
            .await
            .unwrap();
        assert!(wrote);
        assert!(woken(&outbox).await);
    }
}
