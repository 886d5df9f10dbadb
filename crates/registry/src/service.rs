//! The gRPC front of the registry: request checks, then the store.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use mlops_proto::registry::v1 as pb;
use mlops_proto::registry::v1::registry_service_server::RegistryService;
use mlops_runtime::auth::{Role, RoleTable};
use tonic::{Request, Response, Status, Streaming};

use crate::error::invalid;
use crate::register::Registrar;
use crate::store::Store;

/// The role each RPC needs: reads are open to readers, changes need writers, and
/// what destroys history needs admins. Every RPC of the service is listed (a test
/// checks the table against the contract; an RPC missing here would need admin).
pub const ROLES: RoleTable = &[
    ("CreateRegisteredModel", Role::Writer),
    ("GetRegisteredModel", Role::Reader),
    ("RenameRegisteredModel", Role::Writer),
    ("UpdateRegisteredModel", Role::Writer),
    ("DeleteRegisteredModel", Role::Admin),
    ("SearchRegisteredModels", Role::Reader),
    ("SetRegisteredModelTag", Role::Writer),
    ("DeleteRegisteredModelTag", Role::Writer),
    ("CreateModelVersion", Role::Writer),
    ("UploadModelVersion", Role::Writer),
    ("GetModelVersion", Role::Reader),
    ("UpdateModelVersion", Role::Writer),
    ("DeleteModelVersion", Role::Writer),
    ("SearchModelVersions", Role::Reader),
    ("GetLatestVersions", Role::Reader),
    ("SetModelVersionTag", Role::Writer),
    ("DeleteModelVersionTag", Role::Writer),
    ("TransitionModelVersionStage", Role::Writer),
    ("ListModelVersionFiles", Role::Reader),
    ("DownloadModelVersionFile", Role::Reader),
    ("SetRegisteredModelAlias", Role::Writer),
    ("DeleteRegisteredModelAlias", Role::Writer),
    ("GetModelVersionByAlias", Role::Reader),
    ("LogEvaluation", Role::Writer),
    ("ListEvaluations", Role::Reader),
    ("ValidateCandidate", Role::Writer),
    ("ListGateResults", Role::Reader),
];

/// Implements `mlops.registry.v1.RegistryService`.
#[derive(Clone)]
pub struct RegistryApi {
    store: Store,
    registrar: Registrar,
}

impl RegistryApi {
    /// The API over a store and a registrar.
    pub fn new(store: Store, registrar: Registrar) -> Self {
        RegistryApi { store, registrar }
    }
}

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Res<T> {
    Ok(Response::new(v))
}

fn model(m: pb::RegisteredModel) -> Res<pb::RegisteredModelResponse> {
    ok(pb::RegisteredModelResponse {
        registered_model: Some(m),
    })
}

fn version(v: pb::ModelVersion) -> Res<pb::ModelVersionResponse> {
    ok(pb::ModelVersionResponse {
        model_version: Some(v),
    })
}

fn stage_of(v: i32) -> Result<pb::Stage, Status> {
    pb::Stage::try_from(v).map_err(|_| {
        Status::from(invalid(format!(
            "stage {v} is not one of STAGE_NONE, STAGE_STAGING, STAGE_PRODUCTION, STAGE_ARCHIVED"
        )))
    })
}

type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadModelVersionFileResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn create_registered_model(
        &self,
        req: Request<pb::CreateRegisteredModelRequest>,
    ) -> Res<pb::RegisteredModelResponse> {
        model(self.store.create_model(req.into_inner()).await?)
    }

    async fn get_registered_model(
        &self,
        req: Request<pb::GetRegisteredModelRequest>,
    ) -> Res<pb::RegisteredModelResponse> {
        model(self.store.get_model(&req.get_ref().name).await?)
    }

    async fn rename_registered_model(
        &self,
        req: Request<pb::RenameRegisteredModelRequest>,
    ) -> Res<pb::RegisteredModelResponse> {
        let r = req.get_ref();
        model(self.store.rename_model(&r.name, &r.new_name).await?)
    }

    async fn update_registered_model(
        &self,
        req: Request<pb::UpdateRegisteredModelRequest>,
    ) -> Res<pb::RegisteredModelResponse> {
        model(self.store.update_model(req.into_inner()).await?)
    }

    async fn delete_registered_model(
        &self,
        req: Request<pb::DeleteRegisteredModelRequest>,
    ) -> Res<pb::DeleteRegisteredModelResponse> {
        let id = self.store.delete_model(&req.get_ref().name).await?;
        self.registrar.files().remove_model(&id).await;
        ok(pb::DeleteRegisteredModelResponse {})
    }

    async fn search_registered_models(
        &self,
        req: Request<pb::SearchRegisteredModelsRequest>,
    ) -> Res<pb::SearchRegisteredModelsResponse> {
        let (registered_models, next_page_token) = self.store.search_models(req.get_ref()).await?;
        ok(pb::SearchRegisteredModelsResponse {
            registered_models,
            next_page_token,
        })
    }

    async fn set_registered_model_tag(
        &self,
        req: Request<pb::SetRegisteredModelTagRequest>,
    ) -> Res<pb::SetRegisteredModelTagResponse> {
        let r = req.get_ref();
        self.store.set_model_tag(&r.name, &r.key, &r.value).await?;
        ok(pb::SetRegisteredModelTagResponse {})
    }

    async fn delete_registered_model_tag(
        &self,
        req: Request<pb::DeleteRegisteredModelTagRequest>,
    ) -> Res<pb::DeleteRegisteredModelTagResponse> {
        let r = req.get_ref();
        self.store.delete_model_tag(&r.name, &r.key).await?;
        ok(pb::DeleteRegisteredModelTagResponse {})
    }

    async fn create_model_version(
        &self,
        req: Request<pb::CreateModelVersionRequest>,
    ) -> Res<pb::ModelVersionResponse> {
        version(self.registrar.register_artifact(req.into_inner()).await?)
    }

    async fn upload_model_version(
        &self,
        req: Request<Streaming<pb::UploadModelVersionRequest>>,
    ) -> Res<pb::ModelVersionResponse> {
        version(self.registrar.upload(req.into_inner()).await?)
    }

    async fn get_model_version(
        &self,
        req: Request<pb::GetModelVersionRequest>,
    ) -> Res<pb::ModelVersionResponse> {
        let r = req.get_ref();
        version(self.store.get_version(&r.name, r.version).await?)
    }

    async fn update_model_version(
        &self,
        req: Request<pb::UpdateModelVersionRequest>,
    ) -> Res<pb::ModelVersionResponse> {
        let r = req.get_ref();
        version(
            self.store
                .update_version(&r.name, r.version, &r.description)
                .await?,
        )
    }

    async fn delete_model_version(
        &self,
        req: Request<pb::DeleteModelVersionRequest>,
    ) -> Res<pb::DeleteModelVersionResponse> {
        let r = req.get_ref();
        let id = self.store.delete_version(&r.name, r.version).await?;
        self.registrar.files().remove_version(&id, r.version).await;
        ok(pb::DeleteModelVersionResponse {})
    }

    async fn search_model_versions(
        &self,
        req: Request<pb::SearchModelVersionsRequest>,
    ) -> Res<pb::SearchModelVersionsResponse> {
        let (model_versions, next_page_token) = self.store.search_versions(req.get_ref()).await?;
        ok(pb::SearchModelVersionsResponse {
            model_versions,
            next_page_token,
        })
    }

    async fn get_latest_versions(
        &self,
        req: Request<pb::GetLatestVersionsRequest>,
    ) -> Res<pb::GetLatestVersionsResponse> {
        let r = req.get_ref();
        let stages = r
            .stages
            .iter()
            .map(|s| stage_of(*s))
            .collect::<Result<Vec<_>, _>>()?;
        ok(pb::GetLatestVersionsResponse {
            model_versions: self.store.latest_versions(&r.name, &stages).await?,
        })
    }

    async fn set_model_version_tag(
        &self,
        req: Request<pb::SetModelVersionTagRequest>,
    ) -> Res<pb::SetModelVersionTagResponse> {
        let r = req.get_ref();
        self.store
            .set_version_tag(&r.name, r.version, &r.key, &r.value)
            .await?;
        ok(pb::SetModelVersionTagResponse {})
    }

    async fn delete_model_version_tag(
        &self,
        req: Request<pb::DeleteModelVersionTagRequest>,
    ) -> Res<pb::DeleteModelVersionTagResponse> {
        let r = req.get_ref();
        self.store
            .delete_version_tag(&r.name, r.version, &r.key)
            .await?;
        ok(pb::DeleteModelVersionTagResponse {})
    }

    async fn transition_model_version_stage(
        &self,
        req: Request<pb::TransitionModelVersionStageRequest>,
    ) -> Res<pb::ModelVersionResponse> {
        let r = req.get_ref();
        let stage = stage_of(r.stage)?;
        version(
            self.store
                .transition_stage(&r.name, r.version, stage, r.archive_existing_versions)
                .await?,
        )
    }

    async fn list_model_version_files(
        &self,
        req: Request<pb::ListModelVersionFilesRequest>,
    ) -> Res<pb::ListModelVersionFilesResponse> {
        let r = req.get_ref();
        let (_, storage_location, files) = self.store.version_files(&r.name, r.version).await?;
        ok(pb::ListModelVersionFilesResponse {
            storage_location,
            files: files
                .into_iter()
                .map(|(path, size)| pb::ModelFile { path, size })
                .collect(),
        })
    }

    type DownloadModelVersionFileStream = ChunkStream;

    async fn download_model_version_file(
        &self,
        req: Request<pb::DownloadModelVersionFileRequest>,
    ) -> Res<ChunkStream> {
        let r = req.into_inner();
        let (model_id, _, files) = self.store.version_files(&r.name, r.version).await?;
        if !files.iter().any(|(p, _)| *p == r.path) {
            let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
            return Err(Status::not_found(format!(
                "model `{}` version {} has no file `{}` (its files: {})",
                r.name,
                r.version,
                r.path,
                names.join(", ")
            )));
        }
        let stream = self
            .registrar
            .files()
            .read(&model_id, r.version, &r.path)
            .await?;
        // Re-chunk to at most 1 MiB per message, well under any message limit.
        let out = stream.flat_map(|c| {
            let items: Vec<Result<pb::DownloadModelVersionFileResponse, Status>> = match c {
                Ok(bytes) => bytes
                    .chunks(1024 * 1024)
                    .map(|b| Ok(pb::DownloadModelVersionFileResponse { chunk: b.to_vec() }))
                    .collect(),
                Err(e) => vec![Err(Status::from(e))],
            };
            futures::stream::iter(items)
        });
        ok(Box::pin(out))
    }

    async fn set_registered_model_alias(
        &self,
        req: Request<pb::SetRegisteredModelAliasRequest>,
    ) -> Res<pb::SetRegisteredModelAliasResponse> {
        let r = req.get_ref();
        let previous_version = self.store.set_alias(&r.name, &r.alias, r.version).await?;
        ok(pb::SetRegisteredModelAliasResponse { previous_version })
    }

    async fn delete_registered_model_alias(
        &self,
        req: Request<pb::DeleteRegisteredModelAliasRequest>,
    ) -> Res<pb::DeleteRegisteredModelAliasResponse> {
        let r = req.get_ref();
        self.store.delete_alias(&r.name, &r.alias).await?;
        ok(pb::DeleteRegisteredModelAliasResponse {})
    }

    async fn get_model_version_by_alias(
        &self,
        req: Request<pb::GetModelVersionByAliasRequest>,
    ) -> Res<pb::ModelVersionResponse> {
        let r = req.get_ref();
        version(self.store.version_by_alias(&r.name, &r.alias).await?)
    }

    async fn log_evaluation(
        &self,
        req: Request<pb::LogEvaluationRequest>,
    ) -> Res<pb::LogEvaluationResponse> {
        let evaluation = self.store.log_evaluation(req.get_ref()).await?;
        ok(pb::LogEvaluationResponse {
            evaluation: Some(evaluation),
        })
    }

    async fn list_evaluations(
        &self,
        req: Request<pb::ListEvaluationsRequest>,
    ) -> Res<pb::ListEvaluationsResponse> {
        let r = req.get_ref();
        ok(pb::ListEvaluationsResponse {
            evaluations: self.store.list_evaluations(&r.name, r.version).await?,
        })
    }

    async fn validate_candidate(
        &self,
        req: Request<pb::ValidateCandidateRequest>,
    ) -> Res<pb::ValidateCandidateResponse> {
        let result = self.store.validate_candidate(req.get_ref()).await?;
        ok(pb::ValidateCandidateResponse {
            result: Some(result),
        })
    }

    async fn list_gate_results(
        &self,
        req: Request<pb::ListGateResultsRequest>,
    ) -> Res<pb::ListGateResultsResponse> {
        let r = req.get_ref();
        ok(pb::ListGateResultsResponse {
            results: self.store.list_gate_results(&r.name, r.version).await?,
        })
    }
}

#[cfg(test)]
mod roles_tests {
    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::FILE_DESCRIPTOR_SET,
            mlops_proto::registry::v1::registry_service_server::SERVICE_NAME,
            super::ROLES,
        );
    }
}
