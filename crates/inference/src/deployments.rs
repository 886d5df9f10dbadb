//! `mlops.inference.v1.DeploymentService`: deploy a registered model by alias (followed) or
//! pinned version, undeploy, list and describe, on the same port as Triton's protocol.

use std::collections::HashMap;

use mlops_proto::inference::v1 as pb;
use mlops_proto::inference::v1::deployment_service_server::DeploymentService;
use mlops_runtime::auth::{Role, RoleTable};
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::error::{invalid, Result};
use crate::manager::{Cause, Deployment, Manager, Slot};
use crate::repository::Selector;
use crate::settings::{self, Settings};
use crate::traffic::TrafficSpec;

/// Who may call what: reading needs a reader token, changing a writer one.
pub const ROLES: RoleTable = &[
    ("Deploy", Role::Writer),
    ("Undeploy", Role::Writer),
    ("ListDeployments", Role::Reader),
    ("GetDeployment", Role::Reader),
    ("SetTraffic", Role::Writer),
    ("Rollback", Role::Writer),
];

/// The management API.
pub struct DeploymentApi {
    manager: Manager,
}

impl DeploymentApi {
    /// The API over `manager`'s deployments.
    pub fn new(manager: Manager) -> Self {
        DeploymentApi { manager }
    }
}

/// The selector a request's target names.
fn selector(target: Option<&pb::Target>) -> Result<Selector> {
    use pb::target::Choice;
    match target.and_then(|t| t.choice.as_ref()) {
        None => Ok(Selector::Default),
        Some(Choice::Alias(a)) if a.trim().is_empty() => Err(invalid(
            "target.alias is empty: name an alias (e.g. champion), or set no target to follow champion else the newest version",
        )),
        Some(Choice::Alias(a)) => Ok(Selector::Alias(a.clone())),
        Some(Choice::Version(v)) if *v < 1 => Err(invalid(format!(
            "target.version must be at least 1, not {v}"
        ))),
        Some(Choice::Version(v)) => Ok(Selector::Version(*v)),
    }
}

/// The API's form of a selector.
pub fn target(s: &Selector) -> pb::Target {
    use pb::target::Choice;
    pb::Target {
        choice: match s {
            Selector::Alias(a) => Some(Choice::Alias(a.clone())),
            Selector::Version(v) => Some(Choice::Version(*v)),
            Selector::Default => None,
        },
    }
}

/// The settings as the API shows them (the load parameters' names).
fn parameters(s: &Settings) -> HashMap<String, String> {
    let mut p = HashMap::new();
    p.insert("max_batch_size".into(), s.max_batch_size.to_string());
    p.insert("dynamic_batching".into(), s.dynamic_batching.to_string());
    p.insert(
        "max_queue_delay_us".into(),
        s.max_queue_delay_us.to_string(),
    );
    p.insert(
        "preferred_batch_size".into(),
        s.preferred_batch_size
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    p.insert("max_queue_size".into(), s.max_queue_size.to_string());
    p.insert(
        "default_timeout_us".into(),
        s.default_timeout_us.to_string(),
    );
    p
}

/// The message for `d`.
pub fn describe(d: &Deployment) -> pb::Deployment {
    let (state, mut reason) = d.slot.state();
    let version = match &d.slot {
        Slot::Ready(l) => l.version,
        _ => 0,
    };
    if reason.is_empty() {
        reason = d.notes.reason.clone();
    }
    pb::Deployment {
        name: d.name.clone(),
        model_id: d.spec.model_id.clone(),
        target: Some(target(&d.spec.target)),
        state: state.into(),
        version,
        reason,
        parameters: parameters(&d.spec.settings),
        recent_errors: d
            .notes
            .errors
            .iter()
            .rev()
            .map(|e| pb::DeploymentError {
                time: e.time,
                version: e.version,
                message: e.message.clone(),
            })
            .collect(),
        updated_at: d.notes.updated_at,
        traffic: Some(d.spec.traffic.to_proto()),
        variant_versions: d.variant_versions.iter().cloned().collect(),
        previous_version: d.spec.previous_version,
    }
}

type Answer<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl DeploymentService for DeploymentApi {
    async fn deploy(&self, req: Request<pb::DeployRequest>) -> Answer<pb::DeployResponse> {
        let req = req.into_inner();
        if req.name.trim().is_empty() {
            return Err(invalid("name is required: the registered model's name").into());
        }
        let target = selector(req.target.as_ref())?;
        if let Some(k) = req
            .parameters
            .keys()
            .find(|k| *k == "version" || *k == "alias")
        {
            return Err(invalid(format!(
                "parameter {k:?} is not a setting: name the version or alias in `target`"
            ))
            .into());
        }
        let params: HashMap<String, Value> = req
            .parameters
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let base = self.manager.settings_of(&req.name);
        let (_, settings) = settings::from_load_parameters(&base, &params)?;
        self.manager
            .deploy(&req.name, target, settings, Cause::Deploy)
            .await?;
        let d = self.manager.deployment(&req.name)?;
        Ok(Response::new(pb::DeployResponse {
            deployment: Some(describe(&d)),
        }))
    }

    async fn undeploy(&self, req: Request<pb::UndeployRequest>) -> Answer<pb::UndeployResponse> {
        let req = req.into_inner();
        if req.name.trim().is_empty() {
            return Err(invalid("name is required").into());
        }
        self.manager.undeploy(&req.name, Cause::Undeploy).await?;
        Ok(Response::new(pb::UndeployResponse {}))
    }

    async fn list_deployments(
        &self,
        _: Request<pb::ListDeploymentsRequest>,
    ) -> Answer<pb::ListDeploymentsResponse> {
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: self.manager.deployments().iter().map(describe).collect(),
        }))
    }

    async fn set_traffic(
        &self,
        req: Request<pb::SetTrafficRequest>,
    ) -> Answer<pb::SetTrafficResponse> {
        let req = req.into_inner();
        if req.name.trim().is_empty() {
            return Err(invalid("name is required").into());
        }
        let traffic = TrafficSpec::from_proto(&req.traffic.unwrap_or_default())?;
        self.manager
            .set_traffic(&req.name, traffic, Cause::Traffic)
            .await?;
        let d = self.manager.deployment(&req.name)?;
        Ok(Response::new(pb::SetTrafficResponse {
            deployment: Some(describe(&d)),
        }))
    }

    async fn rollback(&self, req: Request<pb::RollbackRequest>) -> Answer<pb::RollbackResponse> {
        let req = req.into_inner();
        if req.name.trim().is_empty() {
            return Err(invalid("name is required").into());
        }
        self.manager.rollback(&req.name, "requested").await?;
        let d = self.manager.deployment(&req.name)?;
        Ok(Response::new(pb::RollbackResponse {
            deployment: Some(describe(&d)),
        }))
    }

    async fn get_deployment(
        &self,
        req: Request<pb::GetDeploymentRequest>,
    ) -> Answer<pb::GetDeploymentResponse> {
        let req = req.into_inner();
        let d = self.manager.deployment(&req.name)?;
        Ok(Response::new(pb::GetDeploymentResponse {
            deployment: Some(describe(&d)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::FILE_DESCRIPTOR_SET,
            mlops_proto::inference::v1::deployment_service_server::SERVICE_NAME,
            ROLES,
        );
    }

    #[test]
    fn targets_are_checked() {
        use pb::target::Choice;
        let t = |c| pb::Target { choice: Some(c) };
        assert_eq!(selector(None).unwrap(), Selector::Default);
        assert_eq!(
            selector(Some(&t(Choice::Alias("champion".into())))).unwrap(),
            Selector::Alias("champion".into())
        );
        assert_eq!(
            selector(Some(&t(Choice::Version(3)))).unwrap(),
            Selector::Version(3)
        );
        let e = selector(Some(&t(Choice::Version(0)))).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        let e = selector(Some(&t(Choice::Alias(" ".into())))).unwrap_err();
        assert!(e.to_string().contains("alias is empty"), "{e}");
    }
}
