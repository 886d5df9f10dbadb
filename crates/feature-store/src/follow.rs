//! Every replica stays consistent: definition changes (`FeatureViewUpdated`) and
//! materializations (`Materialized`) of any replica reach each one through a broadcast
//! subscription, and each drops what it cached (the definitions, the view's online rows);
//! the next request reads them afresh. Its own events arrive too, harmlessly.

use std::sync::Arc;
use std::time::Duration;

use mlops_events::{EventBus, Subscription};
use mlops_proto::events::{topics, v1 as ev};
use mlops_runtime::shutdown::CancellationToken;

use crate::service::FeatureStoreApi;

/// The broadcast subscription's name: replicas share it.
const SUBSCRIBER: &str = "feature-store-caches";

/// Subscribes to the feature store's events; `None` (logged) when the bus cannot be
/// reached now ([`follow`] then keeps trying).
pub async fn subscribe(bus: &Arc<dyn EventBus>) -> Option<Box<dyn Subscription>> {
    match bus
        .subscribe_broadcast(SUBSCRIBER, &[topics::FEATURES])
        .await
    {
        Ok(s) => Some(s),
        Err(err) => {
            tracing::warn!(error = %err, "cannot follow the feature store's events yet; retrying");
            None
        }
    }
}

/// Drops cached state on every change event until `stop`; subscribes first when `sub`
/// is `None` (and then drops everything: events may have been missed).
pub async fn follow(
    api: FeatureStoreApi,
    bus: Arc<dyn EventBus>,
    mut sub: Option<Box<dyn Subscription>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut wait = Duration::from_millis(200);
    loop {
        let Some(s) = sub.as_mut() else {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
            sub = subscribe(&bus).await;
            if sub.is_some() {
                api.invalidate(None);
            }
            continue;
        };
        let next = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            next = s.next() => next,
        };
        match next {
            Ok(delivery) => {
                wait = Duration::from_millis(200);
                let e = &delivery.envelope;
                if let Ok(m) = e.decode::<ev::Materialized>() {
                    api.invalidate(Some(&m.name));
                } else if let Ok(u) = e.decode::<ev::FeatureViewUpdated>() {
                    api.invalidate(Some(&u.name));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading the feature store's events failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(10));
                // Events may have been missed meanwhile.
                api.invalidate(None);
            }
        }
    }
}
