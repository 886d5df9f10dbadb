//! Idempotent consumers: the ids of applied events are recorded in the same
//! transaction as the effect, so a redelivered event changes nothing.

use std::future::Future;
use std::pin::Pin;

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
    /// then its offset is committed. A failing handler is retried with backoff.
    pub async fn run<E, F>(
        &self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
        handler: F,
    ) where
        E: std::error::Error,
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
