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
use crate::traffic::{AnalysisSpec, TrafficSpec, SHADOW};
use crate::window::Measured;

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
        self.rollback_with(name, reason, vec![]).await
    }

    /// [`Manager::rollback`] decided by the analysis' `findings`.
    pub async fn rollback_with(
        &self,
        name: &str,
        reason: &str,
        findings: Vec<ev::AnalysisFinding>,
    ) -> Result<Arc<Loaded>> {
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
                findings,
            },
        );
        if let Err(e) = self.inner.store.publish(&event).await {
            tracing::warn!(model = %name, error = %e, "cannot record the rollback's event");
        }
        tracing::info!(model = %name, version = to.version, %reason, "rolled back");
        Ok(to)
    }

    /// Every deployment with an analysis and variants to measure, with its split.
    pub fn analyzed(&self) -> Vec<(String, AnalysisSpec, Arc<Split>)> {
        let specs = read(&self.inner.specs);
        let splits = read(&self.inner.splits);
        specs
            .iter()
            .filter_map(|(name, spec)| {
                let analysis = spec.traffic.analysis.clone()?;
                let split = splits.get(name)?.clone();
                (!split.variants.is_empty()).then(|| (name.clone(), analysis, split))
            })
            .collect()
    }

    /// The stable target's and each variant's requests since the last call (and starts
    /// again); `None` when `split` is no longer `name`'s or nothing serves.
    pub fn take_windows(
        &self,
        name: &str,
        split: &Arc<Split>,
    ) -> Option<(Measured, Vec<(String, Measured)>)> {
        let current = read(&self.inner.splits).get(name).cloned()?;
        if !Arc::ptr_eq(&current, split) {
            return None;
        }
        let stable = match self.slot(name) {
            Some(Slot::Ready(l)) => l,
            _ => return None,
        };
        let variants = split
            .variants
            .iter()
            .map(|(v, l)| (v.name.clone(), l.window.take()))
            .collect();
        Some((stable.window.take(), variants))
    }

    /// Publishes one analysis measurement of `name`.
    pub async fn analyzed_event(
        &self,
        name: &str,
        outcome: &str,
        findings: &[ev::AnalysisFinding],
        (failures, consecutive_errors, successes): (u32, u32, u32),
    ) {
        let Ok(stable) = self.ready(name, "") else {
            return;
        };
        let event = Self::event(
            &stable.model_id,
            name,
            stable.version,
            &ev::DeploymentAnalyzed {
                model_id: stable.model_id.clone(),
                name: name.to_owned(),
                version: stable.version,
                outcome: outcome.to_owned(),
                findings: findings.to_vec(),
                failures,
                consecutive_errors,
                successes,
                replica: self.inner.replica.clone(),
            },
        );
        if let Err(e) = self.inner.store.publish(&event).await {
            tracing::warn!(model = %name, error = %e, "cannot record the analysis' event");
        }
    }

    /// Promotes `name`'s single variant: its followed alias (`champion` for the default
    /// target) moves to the variant's version through the registry, or a pinned deployment
    /// pins it; then the variant goes and its version serves all traffic. A refusal of the
    /// registry is a `PromotionBlocked` event, and nothing changes.
    pub async fn promote(&self, name: &str, findings: Vec<ev::AnalysisFinding>) -> Result<()> {
        let _one_at_a_time = self.lock(name).await;
        let spec = self.spec(name)?;
        let split = read(&self.inner.splits).get(name).cloned();
        let Some((variant, candidate)) = split
            .as_ref()
            .filter(|s| s.variants.len() == 1)
            .map(|s| s.variants[0].clone())
        else {
            return Err(InferenceError::FailedPrecondition(format!(
                "model {name:?} has not exactly one variant to promote"
            )));
        };
        let stable = self.ready(name, "")?;
        let target = match &spec.target {
            Selector::Version(_) => Selector::Version(candidate.version),
            followed => {
                let alias = match followed {
                    Selector::Alias(a) => a.clone(),
                    _ => "champion".to_owned(),
                };
                if let Err(e) = self
                    .inner
                    .repository
                    .set_alias(name, &alias, candidate.version)
                    .await
                {
                    let blocked = Self::event(
                        &stable.model_id,
                        name,
                        candidate.version,
                        &ev::PromotionBlocked {
                            model_id: stable.model_id.clone(),
                            name: name.to_owned(),
                            version: candidate.version,
                            alias: alias.clone(),
                            reason: e.to_string(),
                            replica: self.inner.replica.clone(),
                        },
                    );
                    if let Err(err) = self.inner.store.publish(&blocked).await {
                        tracing::warn!(model = %name, error = %err, "cannot record the blocked promotion's event");
                    }
                    self.note(
                        name,
                        &format!(
                            "promoting variant {:?} (version {}) was blocked: {e}",
                            variant.name, candidate.version
                        ),
                    );
                    return Err(e);
                }
                followed.clone()
            }
        };
        self.deploy_locked(name, target, spec.settings.clone(), Cause::Promote)
            .await?;
        // The version that served 100% before the canary began is where a rollback goes.
        if let Some(s) = write(&self.inner.specs).get_mut(name) {
            s.previous_version = stable.version;
        }
        let mut traffic = spec.traffic.clone();
        traffic.variants.clear();
        traffic.analysis = None;
        self.set_traffic_locked(name, traffic, Cause::Promote)
            .await?;
        let event = Self::event(
            &stable.model_id,
            name,
            candidate.version,
            &ev::DeploymentPromoted {
                model_id: stable.model_id.clone(),
                name: name.to_owned(),
                version: candidate.version,
                previous_version: stable.version,
                variant: variant.name.clone(),
                findings,
                replica: self.inner.replica.clone(),
            },
        );
        if let Err(e) = self.inner.store.publish(&event).await {
            tracing::warn!(model = %name, error = %e, "cannot record the promotion's event");
        }
        tracing::info!(model = %name, version = candidate.version, "the analysis promoted a variant");
        Ok(())
    }
}
