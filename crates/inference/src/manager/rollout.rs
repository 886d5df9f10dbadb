//! Traffic splits and rollbacks of a deployment: the versions of its variants and shadow are
//! loaded and warmed up before a split takes effect (or nothing changes), and a rollback
//! returns all traffic to the last version that served 100%.

use std::sync::Arc;

use mlops_proto::events::v1 as ev;

use super::{read, write, Cause, Manager, Prepared, Slot, Spec, Split};
use crate::error::{InferenceError, Result};
use crate::models::Loaded;
use crate::repository::Selector;
use crate::store::Stored;
use crate::traffic::{TrafficSpec, SHADOW};

impl Manager {
    /// Splits `name`'s requests as `traffic` says. Every version it names is loaded and
    /// warmed up first (a variant already serving the same version is kept); on any failure
    /// nothing changes. Recorded, so a restart splits the same way.
    pub async fn set_traffic(&self, name: &str, traffic: TrafficSpec, cause: Cause) -> Result<()> {
        let _one_at_a_time = self.lock(name).await;
        self.set_traffic_locked(name, traffic, cause).await
    }

    async fn set_traffic_locked(
        &self,
        name: &str,
        traffic: TrafficSpec,
        cause: Cause,
    ) -> Result<()> {
        let spec = self.spec(name)?;
        let stable = match self.slot(name) {
            Some(Slot::Ready(l)) => l,
            _ => {
                return Err(InferenceError::FailedPrecondition(format!(
                    "model {name:?} has no version serving here; its traffic can be split once its deployment is READY"
                )))
            }
        };
        let current = read(&self.inner.splits).get(name).cloned();
        let mut variants = Vec::with_capacity(traffic.variants.len());
        for v in &traffic.variants {
            let old = current.as_ref().and_then(|c| {
                c.variants
                    .iter()
                    .find(|(o, _)| o.name == v.name)
                    .map(|(_, l)| l.clone())
            });
            let loaded = self
                .variant(name, &v.target, &spec, old.as_ref(), &v.name)
                .await?;
            variants.push((v.clone(), loaded));
        }
        let shadow = match &traffic.shadow {
            None => None,
            Some(s) => {
                let old = current
                    .as_ref()
                    .and_then(|c| c.shadow.as_ref().map(|(_, l)| l.clone()));
                let loaded = self
                    .variant(name, &s.target, &spec, old.as_ref(), SHADOW)
                    .await?;
                Some((s.clone(), loaded))
            }
        };
        let split: Vec<String> = variants
            .iter()
            .map(|(v, l)| format!("{}={}:{}%", v.name, l.version, v.weight))
            .chain(
                shadow
                    .iter()
                    .map(|(s, l)| format!("{SHADOW}={}:{}", l.version, s.share)),
            )
            .collect();
        let event = Self::event(
            &stable.model_id,
            name,
            stable.version,
            &ev::DeploymentTrafficChanged {
                model_id: stable.model_id.clone(),
                name: name.to_owned(),
                version: stable.version,
                split: split.clone(),
                cause: cause.as_str().into(),
                replica: self.inner.replica.clone(),
            },
        );
        self.inner
            .store
            .put(
                &Stored {
                    name: name.to_owned(),
                    model_id: stable.model_id.clone(),
                    selector: spec.target.clone(),
                    settings: spec.settings.clone(),
                    version: stable.version,
                    traffic: traffic.clone(),
                    previous_version: spec.previous_version,
                },
                Some(event),
            )
            .await?;
        {
            let mut splits = write(&self.inner.splits);
            if traffic.is_empty() {
                splits.remove(name);
            } else {
                splits.insert(
                    name.to_owned(),
                    Arc::new(Split {
                        variants,
                        shadow,
                        header: traffic.header(),
                    }),
                );
            }
        }
        if let Some(s) = write(&self.inner.specs).get_mut(name) {
            s.traffic = traffic;
        }
        tracing::info!(model = %name, ?split, cause = cause.as_str(), "traffic split set");
        Ok(())
    }

    fn spec(&self, name: &str) -> Result<Spec> {
        read(&self.inner.specs).get(name).cloned().ok_or_else(|| {
            InferenceError::NotFound(format!(
                "model {name:?} is not deployed here; deploy it first (`mlops serve deploy {name}`)"
            ))
        })
    }

    /// The version `target` names, loaded and warmed up for variant `variant` of `name`
    /// (`old` if it already serves that version).
    async fn variant(
        &self,
        name: &str,
        target: &str,
        spec: &Spec,
        old: Option<&Arc<Loaded>>,
        variant: &str,
    ) -> Result<Arc<Loaded>> {
        let selector = Selector::decode(target)
            .ok_or_else(|| InferenceError::Internal(format!("a stored target {target:?}")))?;
        let mut tried = (spec.model_id.clone(), 0);
        match self
            .prepare(name, &selector, &spec.settings, old, variant, &mut tried)
            .await
        {
            Ok(Prepared::Same(l) | Prepared::New(l)) => Ok(l),
            Err(e) => {
                let message = format!("variant {variant:?} ({target}): {e}");
                self.note_error(name, tried.1, &message, Some(self.serving(name)));
                Err(match e {
                    InferenceError::FailedPrecondition(_) => {
                        InferenceError::FailedPrecondition(message)
                    }
                    InferenceError::NotFound(_) => InferenceError::NotFound(message),
                    other => other,
                })
            }
        }
    }

    /// Returns all of `name`'s traffic to the last version that served 100%: with variants
    /// or a shadow, they go and the stable version keeps serving; without, the deployment
    /// moves back to the version before the current one, its followed alias too (through
    /// the registry, so every replica and a restart agree). `reason` goes into the event.
    pub async fn rollback(&self, name: &str, reason: &str) -> Result<Arc<Loaded>> {
        let _one_at_a_time = self.lock(name).await;
        let spec = self.spec(name)?;
        let current = read(&self.inner.splits).get(name).cloned();
        let serving = self.serving(name);
        let (from, to) = if let Some(split) = current {
            self.set_traffic_locked(name, TrafficSpec::default(), Cause::Rollback)
                .await?;
            let from = split.variants.iter().map(|(_, l)| l.version).collect();
            (from, self.ready(name, "")?)
        } else {
            let back = spec.previous_version;
            if back == 0 {
                return Err(InferenceError::FailedPrecondition(format!(
                    "model {name:?} has no earlier version that served all its traffic here: nothing to roll back to"
                )));
            }
            let target = match &spec.target {
                Selector::Version(_) => Selector::Version(back),
                followed => {
                    let alias = match followed {
                        Selector::Alias(a) => a.clone(),
                        _ => "champion".to_owned(),
                    };
                    self.inner
                        .repository
                        .set_alias(name, &alias, back)
                        .await
                        .map_err(|e| match e {
                            InferenceError::FailedPrecondition(m) => {
                                InferenceError::FailedPrecondition(format!(
                                    "the registry refused to move alias {alias:?} of {name:?} back to version {back}: {m}"
                                ))
                            }
                            other => other,
                        })?;
                    followed.clone()
                }
            };
            let loaded = self
                .deploy_locked(name, target, spec.settings.clone(), Cause::Rollback)
                .await?;
            (vec![serving], loaded)
        };
        let event = Self::event(
            &to.model_id,
            name,
            to.version,
            &ev::DeploymentRolledBack {
                model_id: to.model_id.clone(),
                name: name.to_owned(),
                from_versions: from,
                to_version: to.version,
                reason: reason.to_owned(),
                replica: self.inner.replica.clone(),
            },
        );
        if let Err(e) = self.inner.store.publish(&event).await {
            tracing::warn!(model = %name, error = %e, "cannot record the rollback's event");
        }
        tracing::info!(model = %name, version = to.version, %reason, "rolled back");
        Ok(to)
    }
}
