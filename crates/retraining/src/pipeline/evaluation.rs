//! TRAINED → REGISTERED → EVALUATED → GATED or GATE_FAILED: a version from the run, the
//! candidate and the champion evaluated on the same evaluation set (logged in the
//! registry), and the registry's gate against the champion.
use super::*;

impl Pipeline {
    /// TRAINED: a version of the model from the run's `model/` (found if registered before).
    pub(super) async fn register(&self, r: &Retrain) -> Step {
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
    pub(super) async fn evaluate(&self, r: &Retrain) -> Step {
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
    pub(super) async fn gate(&self, r: &Retrain) -> Step {
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
}
