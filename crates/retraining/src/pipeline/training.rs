//! TRIGGERED → TRAINING → TRAINED: the tracking run (found by its tag, else created, with the
//! policy's parameters as its params), the training set joined in the feature store, the
//! trainer started by the runner, watched, and retried with backoff.
use super::*;

impl Pipeline {
    /// TRIGGERED: the run, the training set, the trainer.
    pub(super) async fn train(&self, r: &Retrain) -> Step {
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
    pub(super) async fn watch_trainer(&self, r: &Retrain) -> Step {
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
}

/// The policy's trainer parameters, sorted by key.
fn trainer_params(r: &Retrain) -> std::collections::BTreeMap<String, String> {
    r.policy
        .trainer
        .as_ref()
        .map(|t| t.parameters.clone().into_iter().collect())
        .unwrap_or_default()
}
