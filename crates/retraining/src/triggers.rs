//! Triggers from the bus: `DriftDetected` and `PerformanceDegraded` (monitoring),
//! `Materialized` (feature store). One replica of the group applies each event, once
//! (its id is recorded in the transaction that starts the retrain), and the policy's
//! cooldown and limit of concurrent retrains hold across events: the same drift delivered
//! three times, or three drifts in a row, start one retrain.

use std::sync::Arc;

use mlops_events::consumer::{Effect, IdempotentConsumer};
use mlops_events::envelope::DecodeError;
use mlops_events::{Envelope, EventBus};
use mlops_proto::events::topics;
use mlops_proto::events::v1 as ev;
use mlops_runtime::shutdown::CancellationToken;
use sqlx::{Any, Transaction};

use crate::error::RetrainingError;
use crate::policy::{self, Trigger};
use crate::store::{Refused, Store};

/// The topics triggers come from.
pub const TOPICS: &[&str] = &[topics::MONITORING, topics::FEATURES];

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Not the payload its type says (counted and skipped).
    #[error("malformed event: {0}")]
    Malformed(#[source] DecodeError),
    /// The database failed (retried).
    #[error("{0}")]
    Store(#[from] RetrainingError),
}

/// Whether a policy acts on an event, and as what trigger.
type Matcher = Box<dyn Fn(&mlops_proto::retraining::v1::Policy) -> Option<Trigger> + Send + Sync>;

/// The triggers an event carries, one per policy it triggers.
async fn triggers_of(store: &Store, e: &Envelope) -> Result<Vec<(String, Trigger)>, TriggerError> {
    let decoded: Matcher = if e.is::<ev::DriftDetected>() {
        let d: ev::DriftDetected = e.decode().map_err(TriggerError::Malformed)?;
        Box::new(move |p| policy::on_drift(p, &d))
    } else if e.is::<ev::PerformanceDegraded>() {
        let d: ev::PerformanceDegraded = e.decode().map_err(TriggerError::Malformed)?;
        Box::new(move |p| policy::on_performance(p, &d))
    } else if e.is::<ev::Materialized>() {
        let d: ev::Materialized = e.decode().map_err(TriggerError::Malformed)?;
        Box::new(move |p| policy::on_materialized(p, &d))
    } else {
        return Ok(vec![]);
    };
    Ok(store
        .policies()
        .await?
        .into_iter()
        .filter_map(|p| decoded(&p).map(|t| (p.model.clone(), t)))
        .collect())
}

/// Starts the retrains `e` triggers, inside the transaction that records it.
async fn apply(
    store: Store,
    e: Envelope,
    tx: &mut Transaction<'static, Any>,
) -> Result<(), TriggerError> {
    for (model, trigger) in triggers_of(&store, &e).await? {
        match store.start_in(tx, &model, &trigger, false).await? {
            Ok((r, _enqueued)) => {
                tracing::info!(retrain = %r.id, %model, trigger = %trigger.kind, detail = %trigger.detail, "retrain triggered")
            }
            Err(Refused::NoPolicy) => {}
            Err(refused) => {
                tracing::info!(%model, trigger = %trigger.kind, %refused, "trigger not acted on")
            }
        }
    }
    Ok(())
}

/// Consumes the trigger topics in consumer group `group` until `stop`; `wake` tells the
/// pipeline a retrain may have started.
pub async fn run(
    store: Store,
    bus: Arc<dyn EventBus>,
    group: String,
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let subscription = bus.subscribe(&group, TOPICS).await?;
    let consumer = IdempotentConsumer::new(store.db().clone(), "retraining", &group);
    consumer
        .run(
            subscription,
            stop,
            move |e, tx| -> Effect<'_, TriggerError> {
                let (store, wake) = (store.clone(), wake.clone());
                Box::pin(async move {
                    apply(store, e, tx).await?;
                    wake.notify_one();
                    Ok(())
                })
            },
        )
        .await;
    Ok(())
}
