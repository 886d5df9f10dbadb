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

    /// TRIGGERED: the run, the training set, the trainer.
    async fn train(&self, r: &Retrain) -> Step {
        let run_id = self.run_of(r).await?;
        let path = self.training_set(r).await?;
        let mut facts = r.facts.clone();
        let attempts = r.attempts + 1;
        self.start_trainer(r, &run_id, &path, attempts, &mut facts)
            .await?;
        let reason = format!("trainer started (attempt {attempts}), run {run_id}");
        let change = Change {
            reason: reason.clone(),
            run_id: Some(run_id.clone()),
            attempts: Some(attempts),
            facts: Some(facts),
            ..Default::default()
        };
        let event = Self::advanced(r, TRAINING, &reason, &run_id, 0);
        self.advance(r, TRAINING, change, &event).await?;
        Ok(())
    }

    /// The retrain's tracking run: found by its tag, else created.
    async fn run_of(&self, r: &Retrain) -> Step<String> {
        use tr::tracking_service_client::TrackingServiceClient;
        if !r.run_id.is_empty() {
            return Ok(r.run_id.clone());
        }
        let mut t = mlops_runtime::grpc_client!(TrackingServiceClient, self.clients.tracking);
        let trainer = r.policy.trainer.clone().unwrap_or_default();
        let name = if trainer.experiment.is_empty() {
            format!("retrain-{}", r.model)
        } else {
            trainer.experiment
        };
        let experiment_id = match t
            .get_experiment_by_name(tr::GetExperimentByNameRequest { name: name.clone() })
            .await
        {
            Ok(e) => e.into_inner().experiment.unwrap_or_default().experiment_id,
            Err(s) if s.code() == Code::NotFound => {
                match t
                    .create_experiment(tr::CreateExperimentRequest {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(c) => c.into_inner().experiment_id,
                    Err(s) if s.code() == Code::AlreadyExists => {
                        return Err(StepError::Retry(s.message().to_owned()))
                    }
                    Err(s) => return Err(s.into()),
                }
            }
            Err(s) => return Err(s.into()),
        };
        let found = t
            .search_runs(tr::SearchRunsRequest {
                experiment_ids: vec![experiment_id.clone()],
                filter: format!("tags.`mlops.retrain_id` = '{}'", r.id),
                max_results: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        if let Some(run) = found.runs.first() {
            return Ok(run
                .info
                .as_ref()
                .map(|i| i.run_id.clone())
                .unwrap_or_default());
        }
        let tag = |k: &str, v: &str| tr::Tag {
            key: k.into(),
            value: v.into(),
        };
        let run = t
            .create_run(tr::CreateRunRequest {
                experiment_id,
                run_name: format!("retrain-{}", &r.id[..8]),
                tags: vec![
                    tag("mlops.retrain_id", &r.id),
                    tag("mlops.trigger", &r.trigger),
                    tag("mlops.trigger_detail", &r.trigger_detail),
                    tag("mlops.registered_model", &r.model),
                ],
                ..Default::default()
            })
            .await?
            .into_inner();
        let run_id = run
            .run
            .and_then(|r| r.info)
            .map(|i| i.run_id)
            .unwrap_or_default();
        // the policy's parameters are the run's params (the trainer gets them as
        // MLOPS_PARAM_<KEY>; logging the same value again is accepted)
        let params: Vec<tr::Param> = trainer_params(r)
            .into_iter()
            .map(|(key, value)| tr::Param { key, value })
            .collect();
        if !params.is_empty() {
            t.log_batch(tr::LogBatchRequest {
                run_id: run_id.clone(),
                params,
                ..Default::default()
            })
            .await?;
        }
        Ok(run_id)
    }

    /// The training set, joined and cut to the window, as Parquet in the retrain's directory.
    async fn training_set(&self, r: &Retrain) -> Step<PathBuf> {
        let path = self.dir(r).join("training.parquet");
        if path.exists() {
            return Ok(path);
        }
        let d = r.policy.data.clone().unwrap_or_default();
        let training = d.training.unwrap_or_default();
        let mut table =
            data::join(&self.clients.features, &d.features, &training.entity_table).await?;
        if r.facts.window_start_ms > 0 {
            table = data::since(&table, r.facts.window_start_ms.saturating_mul(1_000_000))?;
        }
        if table.num_rows() == 0 {
            return fail("the training set is empty (no entity row in the window)");
        }
        std::fs::create_dir_all(self.dir(r))
            .map_err(|e| StepError::Fail(format!("cannot create the retrain's directory: {e}")))?;
        let partial = path.with_extension("partial");
        data::write_parquet(&table, &partial)?;
        std::fs::rename(&partial, &path)
            .map_err(|e| StepError::Fail(format!("cannot write the training set: {e}")))?;
        Ok(path)
    }

    /// Starts attempt `attempt` of the trainer; a trainer that cannot read the service's
    /// files (a Job) gets the training set as the artifact `training/training.parquet` of
    /// its run, named by MLOPS_TRAINING_DATA_ARTIFACT.
    async fn start_trainer(
        &self,
        r: &Retrain,
        run_id: &str,
        training: &std::path::Path,
        attempt: i64,
        facts: &mut Facts,
    ) -> Step {
        let trainer = r.policy.trainer.clone().unwrap_or_default();
        let d = r.policy.data.clone().unwrap_or_default();
        let rfc = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        let mut env = vec![
            ("MLOPS_RETRAIN_ID".to_owned(), r.id.clone()),
            ("MLOPS_MODEL".to_owned(), r.model.clone()),
            (
                "MLOPS_TRACKING_ADDR".to_owned(),
                self.env.tracking_addr.clone(),
            ),
            ("MLOPS_RUN_ID".to_owned(), run_id.to_owned()),
            (
                "MLOPS_TRAINING_WINDOW_START".to_owned(),
                if facts.window_start_ms > 0 {
                    rfc(facts.window_start_ms)
                } else {
                    String::new()
                },
            ),
            ("MLOPS_TRAINING_WINDOW_END".to_owned(), rfc(r.created_at)),
            (
                "MLOPS_FEATURES".to_owned(),
                d.features
                    .iter()
                    .map(|f| data::column_of(f))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("MLOPS_LABEL".to_owned(), d.label.clone()),
            (
                "MLOPS_FEATURE_STORE_ADDR".to_owned(),
                self.env.feature_store_addr.clone(),
            ),
        ];
        if self.runner.shares_files() {
            env.push(("MLOPS_TRAINING_DATA".into(), training.display().to_string()));
        } else {
            self.upload(run_id, TRAINING_ARTIFACT, training).await?;
            env.push((
                "MLOPS_TRAINING_DATA_ARTIFACT".into(),
                TRAINING_ARTIFACT.into(),
            ));
        }
        if !self.env.mlflow_url.is_empty() {
            env.push(("MLFLOW_TRACKING_URI".into(), self.env.mlflow_url.clone()));
            env.push(("MLFLOW_RUN_ID".into(), run_id.to_owned()));
        }
        for (k, v) in &trainer.parameters {
            env.push((format!("MLOPS_PARAM_{}", k.to_ascii_uppercase()), v.clone()));
        }
        env.extend(trainer.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let timeout = match trainer.timeout_seconds {
            0 => policy::DEFAULT_TIMEOUT_SECONDS,
            s => s,
        };
        let launch = Launch {
            command: trainer.command.clone(),
            env,
            dir: self.dir(r).join("work"),
            log: self.dir(r).join(format!("trainer-{attempt}.log")),
            timeout: Duration::from_secs(timeout),
            image: trainer.image.clone(),
        };
        let pid = self
            .runner
            .start(&r.id, attempt, &launch)
            .await
            .map_err(StepError::Fail)?;
        facts.trainer_pid = pid;
        let logs = self.runner.logs(&r.id, attempt, &launch.log);
        self.tag(run_id, "mlops.trainer_logs", &logs).await?;
        Ok(())
    }

    async fn tag(&self, run_id: &str, key: &str, value: &str) -> Step {
        use tr::tracking_service_client::TrackingServiceClient;
        let mut t = mlops_runtime::grpc_client!(TrackingServiceClient, self.clients.tracking);
        t.set_tag(tr::SetTagRequest {
            run_id: run_id.to_owned(),
            tag: Some(tr::Tag {
                key: key.into(),
                value: value.into(),
            }),
        })
        .await?;
        Ok(())
    }

    /// Uploads the file `path` as the artifact `artifact` of the run.
    async fn upload(&self, run_id: &str, artifact: &str, path: &std::path::Path) -> Step {
        use tr::tracking_service_client::TrackingServiceClient;
        let bytes = std::fs::read(path)
            .map_err(|e| StepError::Fail(format!("cannot read {}: {e}", path.display())))?;
        let mut messages = vec![tr::UploadArtifactRequest {
            item: Some(tr::upload_artifact_request::Item::Header(
                tr::ArtifactHeader {
                    run_id: run_id.to_owned(),
                    path: artifact.to_owned(),
                    logged_model_id: String::new(),
                },
            )),
        }];
        messages.extend(bytes.chunks(1 << 20).map(|c| tr::UploadArtifactRequest {
            item: Some(tr::upload_artifact_request::Item::Chunk(c.to_vec())),
        }));
        let mut t = mlops_runtime::grpc_client!(TrackingServiceClient, self.clients.tracking);
        t.upload_artifact(tokio_stream::iter(messages)).await?;
        Ok(())
    }

    /// TRAINING: waits for the trainer; retries a failed one with backoff.
    async fn watch_trainer(&self, r: &Retrain) -> Step {
        // an attempt whose failure is counted is over: the next one is due after its backoff
        let status = if r.facts.failed_attempt == r.attempts {
            Status::Unknown
        } else {
            self.runner
                .poll(&r.id, r.attempts)
                .await
                .map_err(StepError::Retry)?
        };
        match status {
            Status::Running => Ok(()),
            Status::Succeeded => {
                self.finish_run(&r.run_id, tr::RunStatus::Finished).await?;
                let reason = format!("the trainer succeeded; run {} finished", r.run_id);
                let event = Self::advanced(r, TRAINED, &reason, &r.run_id, 0);
                self.advance(r, TRAINED, Change::because(reason), &event)
                    .await?;
                Ok(())
            }
            Status::Failed(why) => {
                let retries = i64::from(r.policy.trainer.as_ref().map_or(0, |t| t.retries));
                let mut facts = r.facts.clone();
                facts.failures += 1;
                facts.failed_attempt = r.attempts;
                if facts.failures > retries {
                    self.finish_run(&r.run_id, tr::RunStatus::Failed).await?;
                    return fail(format!("{why} (attempt {} of {})", r.attempts, retries + 1));
                }
                facts.next_attempt_ms = now_millis() + 1000 * (1 << facts.failures.min(6));
                self.store
                    .note(r, r.attempts, &facts, &format!("{why}; retrying"))
                    .await?;
                Ok(())
            }
            Status::Unknown => {
                // the service restarted (a local trainer died with it), the Job is gone, or a
                // retry is due: a new attempt on the same run
                if now_millis() < r.facts.next_attempt_ms {
                    return Ok(());
                }
                if self.runner.shares_files() {
                    let program = r
                        .policy
                        .trainer
                        .as_ref()
                        .and_then(|t| t.command.first())
                        .cloned();
                    runner::stop_orphan(r.facts.trainer_pid, &program.unwrap_or_default());
                }
                let path = self.training_set(r).await?;
                let mut facts = r.facts.clone();
                let attempts = r.attempts + 1;
                self.start_trainer(r, &r.run_id, &path, attempts, &mut facts)
                    .await?;
                self.store
                    .note(
                        r,
                        attempts,
                        &facts,
                        &format!("trainer started (attempt {attempts})"),
                    )
                    .await?;
                Ok(())
            }
        }
    }

    async fn finish_run(&self, run_id: &str, status: tr::RunStatus) -> Step {
        use tr::tracking_service_client::TrackingServiceClient;
        let mut t = mlops_runtime::grpc_client!(TrackingServiceClient, self.clients.tracking);
        let run = t
            .get_run(tr::GetRunRequest {
                run_id: run_id.to_owned(),
            })
            .await?
            .into_inner();
        let current = run.run.and_then(|r| r.info).map(|i| i.status());
        if current == Some(tr::RunStatus::Running) {
            t.update_run(tr::UpdateRunRequest {
                run_id: run_id.to_owned(),
                status: status.into(),
                end_time: Some(now_millis()),
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    /// TRAINED: a version of the model from the run's `model/` (found if registered before).
    async fn register(&self, r: &Retrain) -> Step {
        use reg::registry_service_client::RegistryServiceClient;
        let mut g = mlops_runtime::grpc_client!(RegistryServiceClient, self.clients.registry);
        let found = g
            .search_model_versions(reg::SearchModelVersionsRequest {
                filter: format!(
                    "name = '{}' and run_id = '{}'",
                    r.model.replace('\'', "''"),
                    r.run_id
                ),
                max_results: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        let version = match found.model_versions.first() {
            Some(v) => v.version,
            None => {
                if let Err(s) = g
                    .get_registered_model(reg::GetRegisteredModelRequest {
                        name: r.model.clone(),
                    })
                    .await
                {
                    if s.code() != Code::NotFound {
                        return Err(s.into());
                    }
                    g.create_registered_model(reg::CreateRegisteredModelRequest {
                        name: r.model.clone(),
                        ..Default::default()
                    })
                    .await?;
                }
                g.create_model_version(reg::CreateModelVersionRequest {
                    name: r.model.clone(),
                    run_id: r.run_id.clone(),
                    artifact_path: "model".into(),
                    description: format!("retrain {} ({}: {})", r.id, r.trigger, r.trigger_detail),
                    tags: vec![reg::Tag {
                        key: "mlops.retrain_id".into(),
                        value: r.id.clone(),
                    }],
                    ..Default::default()
                })
                .await?
                .into_inner()
                .model_version
                .map_or(0, |v| v.version)
            }
        };
        let reason = format!("version {version} registered from run {}", r.run_id);
        let change = Change {
            reason: reason.clone(),
            version: Some(version),
            ..Default::default()
        };
        let event = Self::advanced(r, REGISTERED, &reason, &r.run_id, version);
        self.advance(r, REGISTERED, change, &event).await?;
        Ok(())
    }

    /// REGISTERED: once the version is READY, the candidate and the champion on the
    /// evaluation set, logged in the registry.
    async fn evaluate(&self, r: &Retrain) -> Step {
        use reg::registry_service_client::RegistryServiceClient;
        let mut g = mlops_runtime::grpc_client!(RegistryServiceClient, self.clients.registry);
        let candidate = g
            .get_model_version(reg::GetModelVersionRequest {
                name: r.model.clone(),
                version: r.version,
            })
            .await?
            .into_inner()
            .model_version
            .unwrap_or_default();
        match candidate.status() {
            reg::ModelVersionStatus::Ready => {}
            reg::ModelVersionStatus::FailedRegistration => {
                return fail(format!(
                    "version {} failed to register: {}",
                    r.version, candidate.status_message
                ))
            }
            _ => return Err(StepError::Retry("the version is still registering".into())),
        }
        let champion = match g
            .get_model_version_by_alias(reg::GetModelVersionByAliasRequest {
                name: r.model.clone(),
                alias: CHAMPION.into(),
            })
            .await
        {
            Ok(v) => v.into_inner().model_version,
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(s.into()),
        };
        let d = r.policy.data.clone().unwrap_or_default();
        let evaluation = d.evaluation.clone().unwrap_or_default();
        let mut table = data::join(
            &self.clients.features,
            &d.features,
            &evaluation.entity_table,
        )
        .await?;
        if evaluation.window_seconds > 0 {
            let start = r.created_at - evaluation.window_seconds.saturating_mul(1000);
            table = data::since(&table, start.saturating_mul(1_000_000))?;
        }
        let columns: Vec<&str> = d.features.iter().map(|f| data::column_of(f)).collect();
        let (input, labels) = data::inputs(&table, &columns, &d.label)?;
        let digest = data::digest(&table);
        let task = if d.task.is_empty() {
            "regression"
        } else {
            d.task.as_str()
        };
        let bytes = self.download(&candidate).await?;
        let candidate_metrics = data::evaluate(&bytes, &input, &labels, task)?;
        let (champion_version, champion_metrics) = match &champion {
            Some(c) if c.version != r.version => {
                let bytes = self.download(c).await?;
                (c.version, data::evaluate(&bytes, &input, &labels, task)?)
            }
            _ => (0, Default::default()),
        };
        let dataset = evaluation.entity_table.clone();
        for (version, metrics) in [
            (r.version, &candidate_metrics),
            (champion_version, &champion_metrics),
        ] {
            if version == 0 {
                continue;
            }
            g.log_evaluation(reg::LogEvaluationRequest {
                name: r.model.clone(),
                version,
                dataset: dataset.clone(),
                dataset_digest: digest.clone(),
                metrics: metrics.clone().into_iter().collect(),
            })
            .await?;
        }
        let facts = Facts {
            dataset: dataset.clone(),
            dataset_digest: digest.clone(),
            candidate_metrics: candidate_metrics.clone(),
            champion_metrics: champion_metrics.clone(),
            ..r.facts.clone()
        };
        let show = |m: &std::collections::BTreeMap<String, f64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let reason = if champion_version > 0 {
            format!(
                "on {dataset} ({} rows): candidate v{} {}; champion v{champion_version} {}",
                labels.len(),
                r.version,
                show(&candidate_metrics),
                show(&champion_metrics)
            )
        } else {
            format!(
                "on {dataset} ({} rows): candidate v{} {}; no champion",
                labels.len(),
                r.version,
                show(&candidate_metrics)
            )
        };
        let change = Change {
            reason,
            champion_version: Some(champion_version),
            facts: Some(facts),
            ..Default::default()
        };
        let event = ev::CandidateEvaluated {
            retrain_id: r.id.clone(),
            model: r.model.clone(),
            version: r.version,
            champion_version,
            dataset,
            dataset_digest: digest,
            candidate_metrics: candidate_metrics.into_iter().collect(),
            champion_metrics: champion_metrics.into_iter().collect(),
        };
        self.advance(r, EVALUATED, change, &event).await?;
        Ok(())
    }

    async fn download(&self, v: &reg::ModelVersion) -> Step<Vec<u8>> {
        use reg::registry_service_client::RegistryServiceClient;
        let file = v
            .signature
            .as_ref()
            .map(|s| s.file.clone())
            .unwrap_or_default();
        if file.is_empty() {
            return fail(format!(
                "version {} has no ONNX model file to evaluate",
                v.version
            ));
        }
        let mut g = mlops_runtime::grpc_client!(RegistryServiceClient, self.clients.registry);
        let mut stream = g
            .download_model_version_file(reg::DownloadModelVersionFileRequest {
                name: v.name.clone(),
                version: v.version,
                path: file,
            })
            .await?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            bytes.extend_from_slice(&chunk.chunk);
        }
        Ok(bytes)
    }

    /// EVALUATED: the registry's gate, against the champion on the evaluation set.
    async fn gate(&self, r: &Retrain) -> Step {
        use reg::registry_service_client::RegistryServiceClient;
        let mut thresholds = r.policy.gate.clone().unwrap_or_default().thresholds;
        let has_champion = r.champion_version > 0;
        if !has_champion {
            // the first model: only the absolute floors apply
            for t in &mut thresholds {
                t.min_absolute_change = None;
                t.min_relative_change = None;
                t.max_absolute_degradation = None;
            }
            thresholds.retain(|t| t.threshold.is_some());
        }
        let (passed, summary, failed) = if thresholds.is_empty() {
            (
                true,
                "no champion to compare with and no absolute threshold".to_owned(),
                vec![],
            )
        } else {
            let mut g = mlops_runtime::grpc_client!(RegistryServiceClient, self.clients.registry);
            let result = g
                .validate_candidate(reg::ValidateCandidateRequest {
                    name: r.model.clone(),
                    candidate_version: r.version,
                    baseline: has_champion.then_some(
                        reg::validate_candidate_request::Baseline::BaselineVersion(
                            r.champion_version,
                        ),
                    ),
                    thresholds,
                    dataset: r.facts.dataset.clone(),
                })
                .await?
                .into_inner()
                .result
                .unwrap_or_default();
            let failed: Vec<String> = result
                .metrics
                .iter()
                .filter(|m| !m.passed)
                .map(|m| m.metric.clone())
                .collect();
            let reasons: Vec<String> = result.metrics.iter().map(|m| m.reason.clone()).collect();
            (
                result.passed,
                format!("{}: {}", result.summary, reasons.join("; ")),
                failed,
            )
        };
        if passed {
            let event = Self::advanced(r, GATED, &summary, &r.run_id, r.version);
            self.advance(r, GATED, Change::because(summary), &event)
                .await?;
        } else {
            let event = ev::RetrainFailed {
                retrain_id: r.id.clone(),
                model: r.model.clone(),
                state: GATE_FAILED.into(),
                reason: summary.clone(),
                version: r.version,
                failed_metrics: failed,
            };
            self.advance(r, GATE_FAILED, Change::because(summary), &event)
                .await?;
        }
        Ok(())
    }

    async fn set_alias(&self, r: &Retrain, alias: &str) -> Step {
        use reg::registry_service_client::RegistryServiceClient;
        let mut g = mlops_runtime::grpc_client!(RegistryServiceClient, self.clients.registry);
        g.set_registered_model_alias(reg::SetRegisteredModelAliasRequest {
            name: r.model.clone(),
            alias: alias.into(),
            version: r.version,
        })
        .await?;
        Ok(())
    }

    /// The model's deployment, if the inference service has one.
    async fn deployment(&self, r: &Retrain) -> Step<Option<inf::Deployment>> {
        use inf::deployment_service_client::DeploymentServiceClient;
        let Some(client) = &self.clients.inference else {
            return Ok(None);
        };
        let mut d = mlops_runtime::grpc_client!(DeploymentServiceClient, client);
        match d
            .get_deployment(inf::GetDeploymentRequest {
                name: r.model.clone(),
            })
            .await
        {
            Ok(a) => Ok(a.into_inner().deployment),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(StepError::Retry(format!(
                "the inference service: {}",
                s.message()
            ))),
        }
    }

    async fn promote(&self, r: &Retrain, reason: String) -> Step {
        self.set_alias(r, CHAMPION).await?;
        let event = ev::RolloutAdvanced {
            retrain_id: r.id.clone(),
            model: r.model.clone(),
            version: r.version,
            stage: "promoted".into(),
            weight: 100,
            reason: reason.clone(),
        };
        self.advance(r, PROMOTED, Change::because(reason), &event)
            .await?;
        Ok(())
    }

    /// GATED: `challenger`, then the canary (or, without a deployment, the champion).
    async fn roll_out(&self, r: &Retrain) -> Step {
        self.set_alias(r, CHALLENGER).await?;
        let Some(deployment) = self.deployment(r).await? else {
            return self
                .promote(
                    r,
                    format!(
                        "version {} is the champion (the model is not deployed: no canary)",
                        r.version
                    ),
                )
                .await;
        };
        let rollout = r.policy.rollout.unwrap_or_default();
        let Some(analysis) = rollout.analysis else {
            return fail(
                "the model is deployed but the policy has no rollout.analysis to judge a canary",
            );
        };
        let weight = match rollout.canary_weight {
            0 => policy::DEFAULT_CANARY_WEIGHT,
            w => w,
        };
        let mut traffic = deployment.traffic.clone().unwrap_or_default();
        traffic.variants.retain(|v| v.name != CANARY_VARIANT);
        traffic.variants.push(inf::Variant {
            name: CANARY_VARIANT.into(),
            target: Some(inf::Target {
                choice: Some(inf::target::Choice::Version(r.version)),
            }),
            weight,
            fault: rollout.fault,
        });
        traffic.analysis = Some(analysis);
        use inf::deployment_service_client::DeploymentServiceClient;
        let client = self
            .clients
            .inference
            .as_ref()
            .expect("a deployment came from it");
        let mut d = mlops_runtime::grpc_client!(DeploymentServiceClient, client);
        d.set_traffic(inf::SetTrafficRequest {
            name: r.model.clone(),
            traffic: Some(traffic),
        })
        .await?;
        let reason = format!(
            "version {} serves {weight}% of {} beside v{} under automatic analysis",
            r.version, r.model, deployment.version
        );
        let facts = Facts {
            canary_started_ms: now_millis(),
            ..r.facts.clone()
        };
        let event = ev::RolloutAdvanced {
            retrain_id: r.id.clone(),
            model: r.model.clone(),
            version: r.version,
            stage: "canary".into(),
            weight,
            reason: reason.clone(),
        };
        let change = Change {
            reason,
            facts: Some(facts),
            ..Default::default()
        };
        self.advance(r, CANARY, change, &event).await?;
        Ok(())
    }

    /// CANARY: the analysis decides; a timeout rolls back.
    async fn watch_canary(&self, r: &Retrain) -> Step {
        use reg::registry_service_client::RegistryServiceClient;
        let mut g = mlops_runtime::grpc_client!(RegistryServiceClient, self.clients.registry);
        let champion = match g
            .get_model_version_by_alias(reg::GetModelVersionByAliasRequest {
                name: r.model.clone(),
                alias: CHAMPION.into(),
            })
            .await
        {
            Ok(v) => v.into_inner().model_version.map_or(0, |v| v.version),
            Err(s) if s.code() == Code::NotFound => 0,
            Err(s) => return Err(s.into()),
        };
        if champion == r.version {
            return self
                .promote(
                    r,
                    format!("the canary's analysis promoted version {}", r.version),
                )
                .await;
        }
        let Some(deployment) = self.deployment(r).await? else {
            return self
                .rolled_back(r, "the deployment was removed during the canary".into())
                .await;
        };
        let canary = deployment
            .traffic
            .as_ref()
            .is_some_and(|t| t.variants.iter().any(|v| v.name == CANARY_VARIANT));
        if !canary {
            if deployment.version == r.version {
                // a pinned deployment pins the promoted variant; the champion follows
                return self
                    .promote(
                        r,
                        format!("the canary's analysis promoted version {}", r.version),
                    )
                    .await;
            }
            let why = if deployment.reason.is_empty() {
                format!(
                    "the canary's analysis rolled the deployment back to version {}",
                    deployment.version
                )
            } else {
                format!(
                    "the canary's analysis rolled the deployment back to version {}: {}",
                    deployment.version, deployment.reason
                )
            };
            return self.rolled_back(r, why).await;
        }
        let timeout = match r.policy.rollout.as_ref().map_or(0, |o| o.timeout_seconds) {
            0 => policy::DEFAULT_TIMEOUT_SECONDS,
            s => s,
        };
        if now_millis() - r.facts.canary_started_ms > (timeout as i64).saturating_mul(1000) {
            use inf::deployment_service_client::DeploymentServiceClient;
            let client = self
                .clients
                .inference
                .as_ref()
                .expect("a deployment came from it");
            let mut d = mlops_runtime::grpc_client!(DeploymentServiceClient, client);
            let mut traffic = deployment.traffic.unwrap_or_default();
            traffic.variants.retain(|v| v.name != CANARY_VARIANT);
            if traffic.variants.is_empty() {
                traffic.analysis = None;
            }
            d.set_traffic(inf::SetTrafficRequest {
                name: r.model.clone(),
                traffic: Some(traffic),
            })
            .await?;
            return self
                .rolled_back(r, format!("the canary was undecided after {timeout} s"))
                .await;
        }
        Ok(())
    }

    async fn rolled_back(&self, r: &Retrain, reason: String) -> Step {
        let event = ev::RetrainRolledBack {
            retrain_id: r.id.clone(),
            model: r.model.clone(),
            version: r.version,
            champion_version: r.champion_version,
            reason: reason.clone(),
        };
        self.advance(r, ROLLED_BACK, Change::because(reason), &event)
            .await?;
        Ok(())
    }
}

/// The policy's trainer parameters, sorted by key.
fn trainer_params(r: &Retrain) -> std::collections::BTreeMap<String, String> {
    r.policy
        .trainer
        .as_ref()
        .map(|t| t.parameters.clone().into_iter().collect())
        .unwrap_or_default()
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
