//! Idempotent consumers: the ids of applied events are recorded in the same
//! transaction as the effect, so a redelivered event changes nothing.
//!
//! The ids are kept in `<service>_applied_events` for a retention
//! ([`AppliedEventsArgs`], 7 days by default), then pruned by
//! [`AppliedEventsPruner`]. The retention must be longer than an event can take to
//! be redelivered (an outbox backlog during a bus outage, a consumer's lag, a
//! restore of offsets): an event redelivered after its id was pruned is applied
//! again.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mlops_storage::{Db, StorageError};
use sqlx::{Any, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{BusError, Subscription};
use crate::Envelope;

/// Applies events at most once for one named consumer of one service.
#[derive(Clone)]
pub struct IdempotentConsumer {
    db: Db,
    table: String,
    consumer: String,
}

/// A handler's effect, run inside the transaction that records the event id.
pub type Effect<'t, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 't>>;

/// Why applying an event failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError<E: std::error::Error> {
    /// Recording the event failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The handler failed; nothing was recorded.
    #[error("handler failed: {0}")]
    Handler(E),
}

impl IdempotentConsumer {
    /// The consumer `consumer` of `service` (whose migrations created `<service>_applied_events`).
    pub fn new(db: Db, service: &str, consumer: &str) -> Self {
        IdempotentConsumer {
            db,
            table: format!("{}_applied_events", service.replace('-', "_")),
            consumer: consumer.to_owned(),
        }
    }

    /// Runs `effect` for `event` unless it was applied before; `Ok(true)` when it ran.
    pub async fn apply<E, F>(&self, event: &Envelope, effect: F) -> Result<bool, ApplyError<E>>
    where
        E: std::error::Error,
        F: for<'t> FnOnce(&'t mut Transaction<'static, Any>) -> Effect<'t, E>,
    {
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO {} (consumer, event_id, applied_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            self.table
        ))
        .bind(&self.consumer)
        .bind(&event.id)
        .bind(mlops_storage::now_millis())
        .execute(&mut *tx)
        .await
        .map_err(StorageError::from)?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        effect(&mut tx).await.map_err(ApplyError::Handler)?;
        tx.commit().await.map_err(StorageError::from)?;
        Ok(true)
    }

    /// Consumes `subscription` until `shutdown`: each event is applied at most once,
    /// then its offset is committed. A failing handler is retried with backoff,
    /// except when it fails because the event cannot be decoded (its error is, or
    /// has as a source, an [`envelope::DecodeError`](crate::envelope::DecodeError)):
    /// then the event is counted in `mlops_events_malformed_total{topic, consumer}`,
    /// skipped and committed, since retrying would block the partition forever. A
    /// handler's own error type must keep the `DecodeError` visible: as itself or
    /// as a `source()` (thiserror's `#[from]`/`#[source]`), not behind
    /// `#[error(transparent)]`, which forwards `source()` past it.
    pub async fn run<E, F>(
        &self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
        handler: F,
    ) where
        E: std::error::Error + 'static,
        F: for<'t> Fn(Envelope, &'t mut Transaction<'static, Any>) -> Effect<'t, E>,
    {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = subscription.next() => d,
            };
            let delivery = match delivery {
                Ok(d) => d,
                Err(BusError::Closed) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "receiving an event failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut backoff = std::time::Duration::from_millis(100);
            let envelope = &delivery.envelope;
            // The handling continues the trace of the request that produced the event.
            let span = tracing::info_span!("event", consumer = %self.consumer, ce_type = %envelope.ce_type, event_id = %envelope.id);
            mlops_runtime::telemetry::set_parent_from(&span, &envelope.trace);
            loop {
                match self
                    .apply(envelope, |tx| handler(envelope.clone(), tx))
                    .instrument(span.clone())
                    .await
                {
                    Ok(_) => break,
                    Err(ApplyError::Handler(err)) if is_malformed(&err) => {
                        crate::metrics::count_malformed(
                            &envelope.topic,
                            &self.consumer,
                            delivery.offset,
                            &err,
                        );
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(consumer = %self.consumer, event_id = %envelope.id, error = %err, "applying event failed");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                    }
                }
            }
            if let Err(err) = subscription.commit(&delivery).await {
                tracing::warn!(error = %err, "committing offset failed; the event may be redelivered and skipped");
            }
        }
    }
}

/// Whether a handler failed because the event could not be decoded.
fn is_malformed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<crate::envelope::DecodeError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The default retention of applied event ids: 7 days.
pub const DEFAULT_APPLIED_EVENTS_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Settings of the pruning of `<service>_applied_events`.
#[derive(Debug, Clone, clap::Args)]
pub struct AppliedEventsArgs {
    /// How long the ids of applied events are kept to skip redeliveries, in hours;
    /// must exceed how long an event can take to be redelivered.
    #[arg(long, default_value_t = 7 * 24)]
    pub applied_events_retention_hours: u64,
    /// How often older ids are deleted, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub applied_events_prune_interval_secs: u64,
}

impl Default for AppliedEventsArgs {
    fn default() -> Self {
        AppliedEventsArgs {
            applied_events_retention_hours: DEFAULT_APPLIED_EVENTS_RETENTION.as_secs() / 3600,
            applied_events_prune_interval_secs: 3600,
        }
    }
}

/// Deletes the ids of events applied longer ago than the retention, for every
/// consumer of one service.
#[derive(Clone)]
pub struct AppliedEventsPruner {
    db: Db,
    table: String,
    retention: Duration,
    interval: Duration,
}

impl AppliedEventsPruner {
    /// The pruner of `<service>_applied_events`.
    pub fn new(db: Db, service: &str, args: &AppliedEventsArgs) -> Self {
        AppliedEventsPruner {
            db,
            table: format!("{}_applied_events", service.replace('-', "_")),
            retention: Duration::from_secs(args.applied_events_retention_hours * 3600),
            interval: Duration::from_secs(args.applied_events_prune_interval_secs.max(1)),
        }
    }

    /// The same pruner keeping ids for `retention`.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Deletes the ids applied more than the retention ago; returns how many.
    pub async fn prune(&self) -> Result<u64, StorageError> {
        let cutoff = mlops_storage::now_millis() - self.retention.as_millis() as i64;
        let deleted = sqlx::query(&format!("DELETE FROM {} WHERE applied_at < $1", self.table))
            .bind(cutoff)
            .execute(self.db.writer())
            .await
            .map_err(|e| self.db.classify(e))?
            .rows_affected();
        if deleted > 0 {
            tracing::info!(table = %self.table, deleted, "pruned applied event ids");
        }
        Ok(deleted)
    }

    /// Prunes now and then every interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(err) = self.prune().await {
                tracing::warn!(table = %self.table, error = %err, "pruning applied event ids failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
