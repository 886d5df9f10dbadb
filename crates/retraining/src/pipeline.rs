//! The pipeline: drives every retrain this replica holds, one step at a time, each step
//! idempotent (it looks before it acts: a run already created, a version already
//! registered, an alias already moved), so a retrain resumes after a restart where it was.
//!
//! TRIGGERED → TRAINING (the tracking run, the training set joined in the feature store,
//! the trainer started) → TRAINED (the trainer succeeded; the run is FINISHED) → REGISTERED
//! (a version from the run's `model/`) → EVALUATED (candidate and champion on the same
//! evaluation set, logged in the registry) → GATED (the registry's gate against the
//! champion) or GATE_FAILED → CANARY (`challenger` alias; the deployment's traffic split
//! with its automatic analysis) → PROMOTED (the analysis moved `champion`) or ROLLED_BACK.
//! Without a deployment of the model, a gated candidate becomes the champion at once.

use std::path::PathBuf;
use std::time::Duration;

use mlops_proto::events::v1 as ev;
use mlops_proto::inference::v1 as inf;
use mlops_proto::registry::v1 as reg;
use mlops_proto::tracking::v1 as tr;
use mlops_runtime::client::Client;
use mlops_runtime::shutdown::CancellationToken;
use mlops_storage::now_millis;
use tonic::Code;

use crate::data;
use crate::policy::{self, *};
use crate::runner::{self, Launch, Status, Trainers};
use crate::store::{Change, Facts, Retrain, Store};

mod evaluation;
mod rollout;
mod training;

/// The alias a gated candidate gets before its canary.
pub const CHALLENGER: &str = "challenger";
/// The alias of the version in production.
pub const CHAMPION: &str = "champion";
/// Where a Job's trainer finds its training set among its run's artifacts.
pub const TRAINING_ARTIFACT: &str = "training/training.parquet";
/// The canary's variant name in the deployment.
pub const CANARY_VARIANT: &str = "retrain";

/// Why a step did not finish.
#[derive(Debug)]
pub enum StepError {
    /// Try again at the next tick (a service unreachable, a version still registering).
    Retry(String),
    /// The retrain fails with this reason.
    Fail(String),
}

impl From<tonic::Status> for StepError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unknown
            | Code::Cancelled => StepError::Retry(s.message().to_owned()),
            _ => StepError::Fail(s.message().to_owned()),
        }
    }
}

impl From<crate::error::RetrainingError> for StepError {
    fn from(e: crate::error::RetrainingError) -> Self {
        StepError::Retry(e.to_string())
    }
}

impl From<data::DataError> for StepError {
    fn from(e: data::DataError) -> Self {
        StepError::Fail(e.0)
    }
}

type Step<T = ()> = Result<T, StepError>;

fn fail<T>(msg: impl Into<String>) -> Step<T> {
    Err(StepError::Fail(msg.into()))
}

/// The clients of the services a retrain calls.
#[derive(Clone)]
pub struct Clients {
    pub tracking: Client,
    pub registry: Client,
    pub features: Client,
    /// None: no canary (a gated candidate becomes the champion).
    pub inference: Option<Client>,
}

/// What the trainer is told besides its policy.
#[derive(Clone)]
pub struct Environment {
    pub tracking_addr: String,
    pub feature_store_addr: String,
    pub mlflow_url: String,
}

/// Drives the retrains one replica holds.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub clients: Clients,
    pub env: Environment,
    pub runner: Trainers,
    pub work_dir: PathBuf,
    pub replica: String,
    pub lease_ms: i64,
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    pub metrics: crate::metrics::Metrics,
}

impl Pipeline {
    /// Steps every held retrain every `poll` (or when woken) until `stop`.
    pub async fn run(self, poll: Duration, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            match self.store.claim(&self.replica, self.lease_ms).await {
                Ok(retrains) => {
                    self.metrics.observe(&retrains, now_millis());
                    for r in retrains {
                        self.drive(r).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the retrains under way"),
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    // trainers stop with the service; another replica (or the next start)
                    // resumes their retrains at once
                    if let Err(e) = self.store.release(&self.replica).await {
                        tracing::warn!(error = %e, "cannot give up the retrains' leases");
                    }
                    return Ok(());
                }
                _ = tokio::time::sleep(poll) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Steps `r` for as long as each step moves it on (a step that waits, for a trainer or
    /// a canary, ends the turn), so a retrain does not wait a poll between steps.
    async fn drive(&self, mut r: Retrain) {
        loop {
            let before = r.state.clone();
            self.step(r.clone()).await;
            match self.store.retrain(&r.id).await {
                Ok(Some(next)) if next.state != before && !policy::is_terminal(&next.state) => {
                    r = next
                }
                _ => return,
            }
        }
    }

    /// One step of `r`; a step that fails for good fails the retrain.
    async fn step(&self, r: Retrain) {
        let result = match r.state.as_str() {
            TRIGGERED => self.train(&r).await,
            TRAINING => self.watch_trainer(&r).await,
            TRAINED => self.register(&r).await,
            REGISTERED => self.evaluate(&r).await,
            EVALUATED => self.gate(&r).await,
            GATED => self.roll_out(&r).await,
            CANARY => self.watch_canary(&r).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(StepError::Retry(why)) => {
                tracing::debug!(retrain = %r.id, state = %r.state, %why, "step postponed")
            }
            Err(StepError::Fail(why)) => {
                tracing::warn!(retrain = %r.id, state = %r.state, %why, "retrain failed");
                if r.state == TRAINING {
                    self.runner.stop(&r.id, r.attempts).await;
                }
                let why = format!("{}: {why}", step_name(&r.state));
                let event = ev::RetrainFailed {
                    retrain_id: r.id.clone(),
                    model: r.model.clone(),
                    state: FAILED.into(),
                    reason: why.clone(),
                    version: r.version,
                    failed_metrics: vec![],
                };
                if let Err(e) = self.advance(&r, FAILED, Change::because(why), &event).await {
                    tracing::warn!(retrain = %r.id, error = %e, "cannot record a failed retrain");
                }
            }
        }
    }

    /// [`Store::advance`], counting the retrains that end.
    async fn advance<M: prost::Name + prost::Message>(
        &self,
        r: &Retrain,
        to: &str,
        change: Change,
        event: &M,
    ) -> crate::error::Result<bool> {
        let moved = self.store.advance(r, to, change, event).await?;
        if moved && policy::is_terminal(to) {
            self.metrics.ended(&r.model, to);
        }
        Ok(moved)
    }

    fn advanced(
        r: &Retrain,
        state: &str,
        reason: &str,
        run_id: &str,
        version: i64,
    ) -> ev::RetrainAdvanced {
        ev::RetrainAdvanced {
            retrain_id: r.id.clone(),
            model: r.model.clone(),
            state: state.into(),
            reason: reason.into(),
            run_id: run_id.into(),
            version,
        }
    }

    fn dir(&self, r: &Retrain) -> PathBuf {
        self.work_dir.join(&r.id)
    }
}

/// What a state's step does, for a failure's reason.
fn step_name(state: &str) -> &'static str {
    match state {
        TRIGGERED => "preparing the training",
        TRAINING => "training",
        TRAINED => "registering",
        REGISTERED => "evaluating",
        EVALUATED => "gating",
        GATED => "rolling out",
        CANARY => "in canary",
        _ => "a step",
    }
}
