//! GATED → CANARY → PROMOTED or ROLLED_BACK: the `challenger` alias, the canary in the
//! deployment's traffic split with its automatic analysis, and the analysis' decision read
//! back (without a deployment, a gated candidate becomes the champion at once).
use super::*;

/// The inference service's deployment API, as the pipeline calls it.
type Deployments = inf::deployment_service_client::DeploymentServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        mlops_runtime::grpc::ClientAuth,
    >,
>;

impl Pipeline {
    /// The deployment API, when the service knows the inference service.
    fn deployments(&self) -> Option<Deployments> {
        use inf::deployment_service_client::DeploymentServiceClient;
        let client = self.clients.inference.as_ref()?;
        Some(mlops_runtime::grpc_client!(DeploymentServiceClient, client))
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
        let Some(mut d) = self.deployments() else {
            return Ok(None);
        };
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
    pub(super) async fn roll_out(&self, r: &Retrain) -> Step {
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
        let mut d = self.deployments().expect("a deployment came from it");
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
    pub(super) async fn watch_canary(&self, r: &Retrain) -> Step {
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
            let mut d = self.deployments().expect("a deployment came from it");
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
