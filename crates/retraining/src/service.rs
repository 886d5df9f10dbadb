//! The gRPC front of the retraining service.

use std::sync::Arc;

use mlops_proto::retraining::v1 as pb;
use mlops_proto::retraining::v1::retraining_service_server::RetrainingService;
use mlops_runtime::auth::{Role, RoleTable};
use tonic::{Request, Response, Status};

use crate::error::{invalid, RetrainingError};
use crate::policy::Trigger;
use crate::store::{Refused, Retrain, Store};

/// The role each RPC needs (a test checks the table against the contract).
pub const ROLES: RoleTable = &[
    ("SetPolicy", Role::Writer),
    ("GetPolicy", Role::Reader),
    ("ListPolicies", Role::Reader),
    ("DeletePolicy", Role::Writer),
    ("StartRetrain", Role::Writer),
    ("GetRetrain", Role::Reader),
    ("ListRetrains", Role::Reader),
];

/// The most retrains one listing answers.
const MAX_LIST: u32 = 1000;

type Answer<T> = std::result::Result<Response<T>, Status>;

/// The API.
pub struct RetrainingApi {
    store: Store,
    wake: Arc<tokio::sync::Notify>,
}

impl RetrainingApi {
    pub fn new(store: Store, wake: Arc<tokio::sync::Notify>) -> Self {
        RetrainingApi { store, wake }
    }

    async fn with_transitions(&self, r: Retrain) -> Result<pb::Retrain, RetrainingError> {
        let transitions = self.store.transitions(&r.id).await?;
        Ok(retrain_to_proto(&r, transitions))
    }
}

fn model_name(model: &str) -> Result<&str, RetrainingError> {
    let m = model.trim();
    if m.is_empty() {
        return Err(invalid("model must name a registered model"));
    }
    Ok(m)
}

#[tonic::async_trait]
impl RetrainingService for RetrainingApi {
    async fn set_policy(
        &self,
        req: Request<pb::SetPolicyRequest>,
    ) -> Answer<pb::SetPolicyResponse> {
        let policy = req
            .into_inner()
            .policy
            .ok_or_else(|| invalid("policy is required"))?;
        let policy = self.store.set_policy(policy).await?;
        Ok(Response::new(pb::SetPolicyResponse {
            policy: Some(policy),
        }))
    }

    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Answer<pb::GetPolicyResponse> {
        let model = model_name(&req.get_ref().model)?;
        let policy = self.store.policy(model).await?.ok_or_else(|| {
            RetrainingError::NotFound(format!("model `{model}` has no retraining policy"))
        })?;
        Ok(Response::new(pb::GetPolicyResponse {
            policy: Some(policy),
        }))
    }

    async fn list_policies(
        &self,
        _req: Request<pb::ListPoliciesRequest>,
    ) -> Answer<pb::ListPoliciesResponse> {
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: self.store.policies().await?,
        }))
    }

    async fn delete_policy(
        &self,
        req: Request<pb::DeletePolicyRequest>,
    ) -> Answer<pb::DeletePolicyResponse> {
        let model = model_name(&req.get_ref().model)?;
        if !self.store.delete_policy(model).await? {
            return Err(RetrainingError::NotFound(format!(
                "model `{model}` has no retraining policy"
            ))
            .into());
        }
        Ok(Response::new(pb::DeletePolicyResponse {}))
    }

    async fn start_retrain(
        &self,
        req: Request<pb::StartRetrainRequest>,
    ) -> Answer<pb::StartRetrainResponse> {
        let req = req.into_inner();
        let model = model_name(&req.model)?;
        let trigger = Trigger {
            kind: "manual",
            detail: if req.reason.trim().is_empty() {
                "started by hand".to_owned()
            } else {
                req.reason.trim().to_owned()
            },
        };
        let r = match self.store.start(model, &trigger, req.force).await? {
            Ok(r) => r,
            Err(Refused::NoPolicy) => {
                return Err(RetrainingError::NotFound(format!(
                    "model `{model}` has no retraining policy: set one first (mlops retrain policy set)"
                ))
                .into())
            }
            Err(refused) => {
                return Err(RetrainingError::FailedPrecondition(format!(
                    "no retrain of `{model}` started: {refused}"
                ))
                .into())
            }
        };
        self.wake.notify_one();
        Ok(Response::new(pb::StartRetrainResponse {
            retrain: Some(self.with_transitions(r).await?),
        }))
    }

    async fn get_retrain(
        &self,
        req: Request<pb::GetRetrainRequest>,
    ) -> Answer<pb::GetRetrainResponse> {
        let id = req.get_ref().id.trim();
        if id.is_empty() {
            return Err(invalid("id must name a retrain").into());
        }
        let r = self
            .store
            .retrain(id)
            .await?
            .ok_or_else(|| RetrainingError::NotFound(format!("no retrain `{id}`")))?;
        Ok(Response::new(pb::GetRetrainResponse {
            retrain: Some(self.with_transitions(r).await?),
        }))
    }

    async fn list_retrains(
        &self,
        req: Request<pb::ListRetrainsRequest>,
    ) -> Answer<pb::ListRetrainsResponse> {
        let req = req.into_inner();
        let limit = match req.limit {
            0 => 20,
            n if n > MAX_LIST => {
                return Err(invalid(format!("limit must be at most {MAX_LIST}, got {n}")).into())
            }
            n => n,
        };
        let mut retrains = vec![];
        for r in self
            .store
            .retrains(req.model.trim(), i64::from(limit))
            .await?
        {
            retrains.push(self.with_transitions(r).await?);
        }
        Ok(Response::new(pb::ListRetrainsResponse { retrains }))
    }
}

impl std::fmt::Debug for RetrainingApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrainingApi").finish_non_exhaustive()
    }
}

/// A retrain as the API answers it, with its transitions.
fn retrain_to_proto(r: &Retrain, transitions: Vec<pb::Transition>) -> pb::Retrain {
    pb::Retrain {
        id: r.id.clone(),
        model: r.model.clone(),
        state: r.state.clone(),
        trigger: r.trigger.clone(),
        trigger_detail: r.trigger_detail.clone(),
        policy_version: r.policy_version,
        run_id: r.run_id.clone(),
        version: r.version,
        champion_version: r.champion_version,
        reason: r.reason.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        transitions,
        candidate_metrics: r.facts.candidate_metrics.clone().into_iter().collect(),
        champion_metrics: r.facts.champion_metrics.clone().into_iter().collect(),
        attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod roles_tests {
    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::FILE_DESCRIPTOR_SET,
            mlops_proto::retraining::v1::retraining_service_server::SERVICE_NAME,
            super::ROLES,
        );
    }
}
