//! Every replica stays consistent: definition changes (`FeatureViewUpdated`),
//! materializations (`Materialized`) and pushes (`FeaturesPushed`) of any replica reach each one through a broadcast
//! subscription, and each drops what it cached (the definitions, the view's online rows);
//! the next request reads them afresh. Its own events arrive too, harmlessly.

use std::sync::Arc;

use mlops_events::{Envelope, EventBus, Subscription};
use mlops_proto::events::{topics, v1 as ev};
use mlops_runtime::shutdown::CancellationToken;

use crate::service::FeatureStoreApi;

/// The broadcast subscription's name: replicas share it.
const SUBSCRIBER: &str = "feature-store-caches";

/// Subscribes to the feature store's events before the service serves.
pub async fn subscribe(bus: &Arc<dyn EventBus>) -> Option<Box<dyn Subscription>> {
    mlops_kit::follow::subscribe(bus, SUBSCRIBER, &[topics::FEATURES]).await
}

struct Caches(FeatureStoreApi);

impl mlops_kit::follow::Follower for Caches {
    async fn apply(&mut self, e: &Envelope) {
        if let Ok(m) = e.decode::<ev::Materialized>() {
            self.0.invalidate(Some(&m.name));
        } else if let Ok(p) = e.decode::<ev::FeaturesPushed>() {
            self.0.invalidate(Some(&p.name));
        } else if let Ok(u) = e.decode::<ev::FeatureViewUpdated>() {
            self.0.invalidate(Some(&u.name));
        }
    }

    fn gap(&mut self) {
        self.0.invalidate(None);
    }
}

/// Drops cached state on every change event until `stop`.
pub async fn follow(
    api: FeatureStoreApi,
    bus: Arc<dyn EventBus>,
    sub: Option<Box<dyn Subscription>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    mlops_kit::follow::follow(Caches(api), bus, SUBSCRIBER, &[topics::FEATURES], sub, stop).await
}
