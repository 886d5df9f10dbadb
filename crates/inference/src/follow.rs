//! Deployments follow the registry: its events on `mlops.registry.models` reach every
//! replica through a broadcast subscription, and each replica compares what it serves with
//! what the event says (never trusting how often an event arrives):
//!
//! - `AliasSet`: a deployment following that alias (or `champion`, for the default target)
//!   that serves another version loads the alias's version afresh from the registry, warms
//!   it up and swaps; one that already serves it does nothing; a traffic variant or shadow
//!   following the alias loads its new version the same way;
//! - `AliasDeleted`: the default target falls back to the newest READY version; a deployment
//!   following that alias keeps its version and says why;
//! - `ModelVersionDeleted` of the served version: re-resolved (a pinned version keeps
//!   serving from the local cache and says so);
//! - `RegisteredModelDeleted`: undeployed.
//!
//! An event whose name differs from the deployment's is a rename in the registry: the
//! deployment (keyed by the model's id) moves to the new name.

use std::sync::Arc;

use mlops_events::{Envelope, EventBus, Subscription};
use mlops_proto::events::{topics, v1 as ev};
use mlops_runtime::shutdown::CancellationToken;

use crate::manager::{Cause, Manager};
use crate::repository::Selector;

/// The broadcast subscription's name: replicas share it.
pub const SUBSCRIBER: &str = "inference-deployments";

/// Subscribes to the registry's model events before the service serves.
pub async fn subscribe(bus: &Arc<dyn EventBus>) -> Option<Box<dyn Subscription>> {
    mlops_kit::follow::subscribe(bus, SUBSCRIBER, &[topics::MODELS]).await
}

struct Deployments(Manager);

impl mlops_kit::follow::Follower for Deployments {
    async fn apply(&mut self, e: &Envelope) {
        apply(&self.0, e).await;
    }
}

/// Applies the registry's events to the deployments until `stop`; subscribes first when
/// `sub` is `None`.
pub async fn follow(
    manager: Manager,
    bus: Arc<dyn EventBus>,
    sub: Option<Box<dyn Subscription>>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    mlops_kit::follow::follow(
        Deployments(manager),
        bus,
        SUBSCRIBER,
        &[topics::MODELS],
        sub,
        stop,
    )
    .await
}

/// Applies one event (others are ignored). Failures are the deployment's to report (its
/// reason, an event, a metric); nothing here stops following.
pub async fn apply(manager: &Manager, e: &Envelope) {
    if let Ok(m) = e.decode::<ev::AliasSet>() {
        for (name, spec) in manager.deployments_of(&m.model_id, &m.name) {
            let follows = match &spec.target {
                Selector::Alias(a) => *a == m.alias,
                Selector::Default => m.alias == "champion",
                Selector::Version(_) => false,
            };
            let renamed = name != m.name;
            // A variant or the shadow following the alias loads the new version too.
            let alias = Selector::Alias(m.alias.clone()).encode();
            let split_follows = spec.traffic.variants.iter().any(|v| v.target == alias)
                || spec
                    .traffic
                    .shadow
                    .as_ref()
                    .is_some_and(|s| s.target == alias);
            manager.rename(&name, &m.name);
            if follows && (manager.serving(&m.name) != m.version || renamed) {
                let _ = manager
                    .deploy(&m.name, spec.target, spec.settings, Cause::AliasSet)
                    .await;
            }
            if split_follows {
                if let Err(e) = manager
                    .set_traffic(&m.name, spec.traffic, Cause::AliasSet)
                    .await
                {
                    tracing::warn!(model = %m.name, error = %e, "a traffic variant cannot follow its alias; the split is unchanged");
                }
            }
        }
    } else if let Ok(m) = e.decode::<ev::AliasDeleted>() {
        for (name, spec) in manager.deployments_of(&m.model_id, &m.name) {
            manager.rename(&name, &m.name);
            match &spec.target {
                Selector::Default if m.alias == "champion" => {
                    let _ = manager
                        .deploy(&m.name, spec.target, spec.settings, Cause::AliasDeleted)
                        .await;
                }
                Selector::Alias(a) if *a == m.alias => manager.note(
                    &m.name,
                    &format!("alias {a:?} was deleted in the registry; set it again to move this deployment"),
                ),
                _ => {}
            }
        }
    } else if let Ok(m) = e.decode::<ev::ModelVersionDeleted>() {
        for (name, spec) in manager.deployments_of(&m.model_id, &m.name) {
            if manager.serving(&name) != m.version {
                continue;
            }
            manager.rename(&name, &m.name);
            match &spec.target {
                Selector::Version(_) => manager.note(
                    &m.name,
                    &format!(
                        "version {} was deleted in the registry; this replica serves it from its cache until it is undeployed",
                        m.version
                    ),
                ),
                _ => {
                    let _ = manager
                        .deploy(&m.name, spec.target, spec.settings, Cause::VersionDeleted)
                        .await;
                }
            }
        }
    } else if let Ok(m) = e.decode::<ev::RegisteredModelDeleted>() {
        for (name, _) in manager.deployments_of(&m.model_id, &m.name) {
            if let Err(err) = manager.undeploy(&name, Cause::ModelDeleted).await {
                tracing::warn!(model = %name, error = %err, "cannot undeploy a deleted model");
            }
        }
    }
}
