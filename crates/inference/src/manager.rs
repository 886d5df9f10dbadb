//! Which versions are served here. A deployment is a registered model served under its name:
//! it follows an alias, pins a version, or follows `champion` else the newest READY version
//! (what a bare RepositoryModelLoad asks for). It is keyed by the registered model's id, so
//! the registry's events (by id) find it after a rename.
//!
//! A name has one slot: loading, ready (one version), failed (with the reason) or unloaded.
//! A change (a deploy, an alias that moved) loads the new version, warms it up and swaps it
//! in atomically; requests already holding the old version finish on it, and a load or
//! warm-up failure keeps the old version serving, reported as the deployment's reason, an
//! event and a metric. Every swap and failure is an event on
//! `mlops.inference.deployments`, written through the outbox with the row that records it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mlops_events::Envelope;
use mlops_model::Model;
use mlops_proto::events::{topics, v1 as ev};

use crate::error::{invalid, InferenceError, Result};
use crate::metrics::Metrics;
use crate::models::Loaded;
use crate::prediction_log::PredictionLog;
use crate::repository::{Repository, Resolved, Selector};
use crate::settings::Settings;
use crate::store::{Store, Stored};
use crate::traffic::{Fault, ShadowSpec, TrafficSpec, VariantSpec, STABLE};

mod restore;
mod rollout;
mod view;

/// `ce_source` of the service's events.
const SOURCE: &str = "/mlops/inference";
/// Requests a new version answers before it is swapped in.
const WARM_UP_ROUNDS: usize = 3;
/// Errors kept per deployment.
const RECENT_ERRORS: usize = 20;

/// The state of a model name here.
#[derive(Clone)]
pub enum Slot {
    /// Being loaded; the version if known.
    Loading,
    /// Serving.
    Ready(Arc<Loaded>),
    /// The last load failed; why.
    Failed(String),
    /// Unloaded by a request.
    Unloaded,
}

impl Slot {
    /// Triton's state name and reason.
    pub fn state(&self) -> (&'static str, String) {
        match self {
            Slot::Loading => ("LOADING", String::new()),
            Slot::Ready(_) => ("READY", String::new()),
            Slot::Failed(reason) => ("UNAVAILABLE", reason.clone()),
            Slot::Unloaded => ("UNAVAILABLE", "unloaded".into()),
        }
    }
}

/// What a deployment is asked to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The registered model's id ("" until its first load, for rows stored before ids were).
    pub model_id: String,
    /// Which version.
    pub target: Selector,
    /// How.
    pub settings: Settings,
    /// The traffic split.
    pub traffic: TrafficSpec,
    /// The version that served 100% before the current stable one (0: none).
    pub previous_version: i64,
}

/// Why a deployment changes, as its events and logs say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A deploy or load call.
    Deploy,
    /// The followed alias moved.
    AliasSet,
    /// The followed alias was deleted (the default target falls back to the newest version).
    AliasDeleted,
    /// The served version was deleted in the registry.
    VersionDeleted,
    /// Loaded again after a restart.
    Restore,
    /// Undeployed by a call.
    Undeploy,
    /// The registered model was deleted in the registry.
    ModelDeleted,
    /// Its traffic split was set.
    Traffic,
    /// Rolled back.
    Rollback,
    /// The analysis promoted a variant.
    Promote,
}

impl Cause {
    /// Its name in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Deploy => "deploy",
            Cause::AliasSet => "alias_set",
            Cause::AliasDeleted => "alias_deleted",
            Cause::VersionDeleted => "version_deleted",
            Cause::Restore => "restore",
            Cause::Undeploy => "undeploy",
            Cause::ModelDeleted => "model_deleted",
            Cause::Traffic => "traffic",
            Cause::Rollback => "rollback",
            Cause::Promote => "promote",
        }
    }
}

/// One error a deployment met.
#[derive(Debug, Clone)]
pub struct Noted {
    /// Milliseconds since the epoch.
    pub time: i64,
    /// The version it concerned (0: not known).
    pub version: i64,
    /// What happened.
    pub message: String,
}

/// A deployment's recent trouble.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// Why the last change did not happen while an older version keeps serving ("" when
    /// the last change succeeded).
    pub reason: String,
    /// The newest errors last.
    pub errors: VecDeque<Noted>,
    /// Milliseconds since the epoch of the last change or error.
    pub updated_at: i64,
}

/// A deployment as listed: its name, what it serves, its slot and its trouble.
#[derive(Clone)]
pub struct Deployment {
    /// The registered model's name.
    pub name: String,
    /// What it is asked to serve.
    pub spec: Spec,
    /// Its state here.
    pub slot: Slot,
    /// Its recent trouble.
    pub notes: Notes,
    /// The version each traffic variant serves, "stable" first.
    pub variant_versions: Vec<(String, i64)>,
}

/// The versions loaded for a deployment's traffic variants and shadow.
pub struct Split {
    /// Each variant with its version.
    pub variants: Vec<(VariantSpec, Arc<Loaded>)>,
    /// The shadow with its version.
    pub shadow: Option<(ShadowSpec, Arc<Loaded>)>,
    /// The route header, lower case.
    pub header: String,
}

/// Where one request goes.
pub struct Route {
    /// The version that answers it.
    pub loaded: Arc<Loaded>,
    /// Faults to inject into its answer.
    pub fault: Fault,
    /// A shadow that gets a copy, with its faults.
    pub shadow: Option<(Arc<Loaded>, Fault)>,
}

/// Every model here.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    repository: Repository,
    store: Store,
    defaults: Settings,
    metrics: Metrics,
    max_tensor_bytes: u64,
    /// Who this replica is, in events.
    replica: String,
    log: PredictionLog,
    slots: RwLock<HashMap<String, Slot>>,
    specs: RwLock<HashMap<String, Spec>>,
    splits: RwLock<HashMap<String, Arc<Split>>>,
    notes: Mutex<HashMap<String, Notes>>,
    /// One change at a time per name.
    changing: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What preparing a change gave.
enum Prepared {
    /// The version asked for already serves, with the same settings.
    Same(Arc<Loaded>),
    /// A new version, loaded and warmed up.
    New(Arc<Loaded>),
}

/// This replica's name in events: its host name (the pod's, in a cluster) and a random
/// suffix, so that two replicas in one process or host differ.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "inference".into());
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}", &id[..8])
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Manager {
    /// A manager loading from `repository`, remembering in `store`, logging predictions
    /// to `log`; `replica` names it in events ([`replica_name`]).
    pub fn new(
        repository: Repository,
        store: Store,
        defaults: Settings,
        metrics: Metrics,
        max_tensor_bytes: u64,
        replica: String,
        log: PredictionLog,
    ) -> Self {
        Manager {
            inner: Arc::new(Inner {
                repository,
                store,
                defaults,
                metrics,
                max_tensor_bytes,
                replica,
                log,
                slots: Default::default(),
                specs: Default::default(),
                splits: Default::default(),
                notes: Default::default(),
                changing: Default::default(),
            }),
        }
    }

    /// The service's default settings.
    pub fn defaults(&self) -> &Settings {
        &self.inner.defaults
    }

    /// The repository.
    pub fn repository(&self) -> &Repository {
        &self.inner.repository
    }

    /// The slot of `name`, if it was ever loaded here.
    pub fn slot(&self, name: &str) -> Option<Slot> {
        read(&self.inner.slots).get(name).cloned()
    }

    /// Every slot, by name.
    pub fn slots(&self) -> BTreeMap<String, Slot> {
        read(&self.inner.slots)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn set(&self, name: &str, slot: Slot) -> Option<Slot> {
        write(&self.inner.slots).insert(name.to_owned(), slot)
    }

    /// The ready model `name`, at `version` when given (0 or empty: the one served).
    pub fn ready(&self, name: &str, version: &str) -> Result<Arc<Loaded>> {
        let slot = self.slot(name);
        let loaded = match slot {
            Some(Slot::Ready(l)) => l,
            Some(other) => {
                let (state, reason) = other.state();
                return Err(InferenceError::Unavailable(format!(
                    "model {name:?} is not ready here: {state}{}",
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({reason})")
                    }
                )));
            }
            None => {
                return Err(InferenceError::NotFound(format!(
                    "model {name:?} is not loaded here; load it first (RepositoryModelLoad, or `mlops serve load {name}`)"
                )))
            }
        };
        if !version.is_empty() && version != loaded.version.to_string() {
            let _: i64 = version.parse().map_err(|_| {
                invalid(format!("model version {version:?} is not a version number"))
            })?;
            return Err(InferenceError::Unavailable(format!(
                "version {version} of model {name:?} is not loaded here; version {} is",
                loaded.version
            )));
        }
        Ok(loaded)
    }

    fn event<M: prost::Name + prost::Message>(
        model_id: &str,
        name: &str,
        version: i64,
        msg: &M,
    ) -> Envelope {
        Envelope::of(
            topics::DEPLOYMENTS,
            SOURCE,
            model_id,
            format!("{name}/{version}"),
            msg,
        )
    }

    /// Deploys `name` (or changes its deployment) to serve what `target` names, with
    /// `settings`, and records it so a restart serves it again. The old version, if any,
    /// serves until the new one is loaded and warmed up, and keeps serving if either fails.
    pub async fn deploy(
        &self,
        name: &str,
        target: Selector,
        settings: Settings,
        cause: Cause,
    ) -> Result<Arc<Loaded>> {
        let _one_at_a_time = self.lock(name).await;
        self.deploy_locked(name, target, settings, cause).await
    }

    /// One change at a time per name: held while a change of `name` runs.
    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut changing = self.inner.changing.lock().await;
            changing.entry(name.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    async fn deploy_locked(
        &self,
        name: &str,
        target: Selector,
        settings: Settings,
        cause: Cause,
    ) -> Result<Arc<Loaded>> {
        let previous = self.slot(name);
        let old = match &previous {
            Some(Slot::Ready(l)) => Some(l.clone()),
            _ => None,
        };
        if old.is_none() {
            self.set(name, Slot::Loading);
        }
        let known = read(&self.inner.specs).get(name).cloned();
        let known_id = known
            .as_ref()
            .map(|s| s.model_id.clone())
            .unwrap_or_default();
        let traffic = known
            .as_ref()
            .map(|s| s.traffic.clone())
            .unwrap_or_default();
        let known_previous = known.as_ref().map_or(0, |k| k.previous_version);
        let mut previous_version = known_previous;
        let mut tried = (known_id, 0);
        let outcome = self
            .prepare(name, &target, &settings, old.as_ref(), STABLE, &mut tried)
            .await;
        let outcome = match outcome {
            Ok(Prepared::Same(loaded)) => {
                self.note_done(name);
                return Ok(loaded);
            }
            Ok(Prepared::New(loaded)) => {
                // Where a rollback goes: the version this one replaces, if it served
                // everything (a change of settings alone keeps the earlier answer).
                previous_version = match &old {
                    Some(o) if o.version != loaded.version && traffic.variants.is_empty() => {
                        o.version
                    }
                    _ => known_previous,
                };
                let swapped = Self::event(
                    &loaded.model_id,
                    name,
                    loaded.version,
                    &ev::DeploymentSwapped {
                        model_id: loaded.model_id.clone(),
                        name: name.to_owned(),
                        version: loaded.version,
                        previous_version: old.as_ref().map(|o| o.version).unwrap_or(0),
                        target: target.encode(),
                        cause: cause.as_str().into(),
                        replica: self.inner.replica.clone(),
                    },
                );
                let stored = Stored {
                    name: name.to_owned(),
                    model_id: loaded.model_id.clone(),
                    selector: target.clone(),
                    settings: settings.clone(),
                    version: loaded.version,
                    traffic: traffic.clone(),
                    previous_version,
                };
                self.inner
                    .store
                    .put(&stored, Some(swapped))
                    .await
                    .map(|_| loaded)
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(loaded) => {
                write(&self.inner.specs).insert(
                    name.to_owned(),
                    Spec {
                        model_id: loaded.model_id.clone(),
                        target,
                        settings,
                        traffic,
                        previous_version,
                    },
                );
                let old = self.set(name, Slot::Ready(loaded.clone()));
                if !matches!(old, Some(Slot::Ready(_))) {
                    self.inner.metrics.loaded.inc();
                }
                self.note_done(name);
                self.inner.metrics.swapped(name, true);
                tracing::info!(model = %name, version = loaded.version, cause = cause.as_str(), "serving a new version");
                Ok(loaded)
            }
            Err(e) => {
                let (model_id, version) = tried;
                self.failed(name, &target, cause, &model_id, version, previous, &e)
                    .await;
                Err(e)
            }
        }
    }

    /// Reports a failed change of `name` and leaves its slot as it should be: the old
    /// version serving, else failed with the reason (a model the registry does not know
    /// leaves no trace).
    #[allow(clippy::too_many_arguments)]
    async fn failed(
        &self,
        name: &str,
        target: &Selector,
        cause: Cause,
        model_id: &str,
        version: i64,
        previous: Option<Slot>,
        e: &InferenceError,
    ) {
        self.inner.metrics.load_failed(name);
        self.inner.metrics.swapped(name, false);
        tracing::warn!(model = %name, version, cause = cause.as_str(), error = %e, "a deployment change failed");
        let serving = match &previous {
            Some(Slot::Ready(old)) => Some(old.version),
            _ => None,
        };
        match previous {
            Some(Slot::Ready(old)) => {
                self.set(name, Slot::Ready(old));
            }
            _ if matches!(e, InferenceError::NotFound(_)) => {
                let mut slots = write(&self.inner.slots);
                match previous {
                    Some(p) => slots.insert(name.to_owned(), p),
                    None => slots.remove(name),
                };
                return;
            }
            _ => {
                self.set(name, Slot::Failed(e.to_string()));
            }
        }
        self.note_error(name, version, &e.to_string(), serving);
        if !model_id.is_empty() {
            let event = Self::event(
                model_id,
                name,
                version,
                &ev::DeploymentSwapFailed {
                    model_id: model_id.to_owned(),
                    name: name.to_owned(),
                    version,
                    serving_version: serving.unwrap_or(0),
                    target: target.encode(),
                    cause: cause.as_str().into(),
                    reason: e.to_string(),
                    replica: self.inner.replica.clone(),
                },
            );
            if let Err(err) = self.inner.store.publish(&event).await {
                tracing::warn!(model = %name, error = %err, "cannot record the failed change's event");
            }
        }
    }

    /// Resolves `target` and, unless `old` already serves that version with `settings`,
    /// loads and warms up the version. `tried` gets the model's id and the version as soon
    /// as they are known, for the failure's report.
    async fn prepare(
        &self,
        name: &str,
        target: &Selector,
        settings: &Settings,
        old: Option<&Arc<Loaded>>,
        variant: &str,
        tried: &mut (String, i64),
    ) -> Result<Prepared> {
        let resolved: Resolved = self.inner.repository.resolve(name, target).await?;
        *tried = (resolved.model_id.clone(), resolved.version);
        if let Some(old) = old {
            if old.version == resolved.version
                && old.name == name
                && old.model_id == resolved.model_id
                && &old.settings == settings
                && &old.target == target
                && old.variant == variant
            {
                return Ok(Prepared::Same(old.clone()));
            }
        }
        let bytes = tokio::fs::read(&resolved.path).await.map_err(|e| {
            InferenceError::Internal(format!("reading {}: {e}", resolved.path.display()))
        })?;
        let version = resolved.version;
        let (model, one_row) = crate::priority::off_peak(move || -> Result<(Model, Duration)> {
            let model = Model::load(&bytes).map_err(|e| {
                InferenceError::FailedPrecondition(format!(
                    "version {version} cannot be served: {e}"
                ))
            })?;
            let one_row = Loaded::warm_up(&model, WARM_UP_ROUNDS).map_err(|e| {
                InferenceError::FailedPrecondition(format!("version {version}: {e}"))
            })?;
            Ok((model, one_row))
        })
        .await?
        .map_err(|e| match e {
            InferenceError::FailedPrecondition(m) => {
                InferenceError::FailedPrecondition(format!("model {name:?}: {m}"))
            }
            other => other,
        })?;
        Ok(Prepared::New(Arc::new(Loaded::new(
            name,
            resolved.model_id,
            resolved.version,
            Arc::new(model),
            settings.clone(),
            target.clone(),
            variant,
            &self.inner.metrics,
            self.inner.max_tensor_bytes,
            self.inner.log.clone(),
            one_row,
        ))))
    }

    /// Stops serving `name` and forgets it, so a restart does not load it again. Requests
    /// already running finish.
    pub async fn undeploy(&self, name: &str, cause: Cause) -> Result<()> {
        let spec = read(&self.inner.specs).get(name).cloned();
        let serving = match self.slot(name) {
            Some(Slot::Ready(l)) => l.version,
            _ => 0,
        };
        let event = spec.as_ref().filter(|s| !s.model_id.is_empty()).map(|s| {
            Self::event(
                &s.model_id,
                name,
                serving,
                &ev::DeploymentRemoved {
                    model_id: s.model_id.clone(),
                    name: name.to_owned(),
                    version: serving,
                    cause: cause.as_str().into(),
                    replica: self.inner.replica.clone(),
                },
            )
        });
        let forgotten = self.inner.store.remove(name, event).await?;
        write(&self.inner.specs).remove(name);
        write(&self.inner.splits).remove(name);
        let old = {
            let mut slots = write(&self.inner.slots);
            match slots.get(name) {
                Some(_) => slots.insert(name.to_owned(), Slot::Unloaded),
                None => None,
            }
        };
        if matches!(old, Some(Slot::Ready(_))) {
            self.inner.metrics.loaded.dec();
        }
        if old.is_none() && !forgotten {
            return Err(InferenceError::NotFound(format!(
                "model {name:?} is not loaded here"
            )));
        }
        tracing::info!(model = %name, cause = cause.as_str(), "model undeployed");
        Ok(())
    }

    /// The settings of deployment `name`, or the defaults.
    pub fn settings_of(&self, name: &str) -> Settings {
        read(&self.inner.specs)
            .get(name)
            .map(|s| s.settings.clone())
            .unwrap_or_else(|| self.inner.defaults.clone())
    }

    /// The deployments of registered model `model_id` (`name` matches a deployment whose id
    /// is not known yet), by their names here.
    pub(crate) fn deployments_of(&self, model_id: &str, name: &str) -> Vec<(String, Spec)> {
        read(&self.inner.specs)
            .iter()
            .filter(|(n, s)| s.model_id == model_id || (s.model_id.is_empty() && *n == name))
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect()
    }

    /// The version `name` serves now, 0 if none.
    pub(crate) fn serving(&self, name: &str) -> i64 {
        match self.slot(name) {
            Some(Slot::Ready(l)) => l.version,
            _ => 0,
        }
    }

    /// Records why `name` did not change while its version keeps serving.
    pub(crate) fn note(&self, name: &str, message: &str) {
        let serving = self.serving(name);
        self.note_error(name, serving, message, (serving > 0).then_some(serving));
    }

    /// A deployment known here under `old` is now called `new` in the registry: its slot and
    /// spec move (its row moves at its next change).
    pub(crate) fn rename(&self, old: &str, new: &str) {
        if old == new {
            return;
        }
        let spec = write(&self.inner.specs).remove(old);
        if let Some(spec) = spec {
            write(&self.inner.specs).insert(new.to_owned(), spec);
        }
        let slot = write(&self.inner.slots).remove(old);
        if let Some(slot) = slot {
            write(&self.inner.slots).insert(new.to_owned(), slot);
        }
        let split = write(&self.inner.splits).remove(old);
        if let Some(split) = split {
            write(&self.inner.splits).insert(new.to_owned(), split);
        }
        tracing::info!(from = %old, to = %new, "a deployed model was renamed in the registry");
    }
}
