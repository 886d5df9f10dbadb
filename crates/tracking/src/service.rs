//! The gRPC front of the tracking service: request checks, then the store.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use mlops_proto::tracking::v1 as pb;
use mlops_proto::tracking::v1::tracking_service_server::TrackingService;
use mlops_runtime::auth::{Role, RoleTable};
use tonic::{Request, Response, Status, Streaming};

use crate::artifacts::Artifacts;
use crate::error::invalid;
use crate::store::Store;

/// The role each RPC needs: reads are open to readers, changes need writers, and
/// what destroys history needs admins. Every RPC of the service is listed (a test
/// checks the table against the contract; an RPC missing here would need admin).
pub const ROLES: RoleTable = &[
    ("CreateExperiment", Role::Writer),
    ("GetExperiment", Role::Reader),
    ("GetExperimentByName", Role::Reader),
    ("SearchExperiments", Role::Reader),
    ("UpdateExperiment", Role::Writer),
    ("DeleteExperiment", Role::Admin),
    ("RestoreExperiment", Role::Admin),
    ("SetExperimentTag", Role::Writer),
    ("DeleteExperimentTag", Role::Writer),
    ("CreateRun", Role::Writer),
    ("GetRun", Role::Reader),
    ("UpdateRun", Role::Writer),
    ("DeleteRun", Role::Writer),
    ("RestoreRun", Role::Writer),
    ("Heartbeat", Role::Writer),
    ("LogMetric", Role::Writer),
    ("LogParam", Role::Writer),
    ("SetTag", Role::Writer),
    ("DeleteTag", Role::Writer),
    ("LogBatch", Role::Writer),
    ("LogInputs", Role::Writer),
    ("GetMetricHistory", Role::Reader),
    ("SearchRuns", Role::Reader),
    ("UploadArtifact", Role::Writer),
    ("DownloadArtifact", Role::Reader),
    ("ListArtifacts", Role::Reader),
    ("CreateLoggedModel", Role::Writer),
    ("GetLoggedModel", Role::Reader),
    ("FinalizeLoggedModel", Role::Writer),
    ("SearchLoggedModels", Role::Reader),
    ("DeleteLoggedModel", Role::Writer),
    ("SetLoggedModelTags", Role::Writer),
    ("DeleteLoggedModelTag", Role::Writer),
    ("LogLoggedModelParams", Role::Writer),
    ("LogOutputs", Role::Writer),
];

/// Implements `mlops.tracking.v1.TrackingService`.
#[derive(Clone)]
pub struct TrackingApi {
    store: Store,
    artifacts: Artifacts,
}

impl TrackingApi {
    /// The API over a store and an artifact store.
    pub fn new(store: Store, artifacts: Artifacts) -> Self {
        TrackingApi { store, artifacts }
    }

    /// The artifact root an artifact call names: a run's or a logged model's.
    async fn root_of(
        &self,
        run_id: &str,
        logged_model_id: &str,
        writable: bool,
    ) -> Result<String, Status> {
        match (run_id.is_empty(), logged_model_id.is_empty()) {
            (false, true) => Ok(self.store.artifact_uri(run_id, writable).await?),
            (true, false) => Ok(self
                .store
                .logged_model_artifact_uri(logged_model_id, writable)
                .await?),
            (true, true) => Err(Status::invalid_argument(
                "name whose artifacts these are: run_id or logged_model_id",
            )),
            (false, false) => Err(Status::invalid_argument(
                "give run_id or logged_model_id, not both",
            )),
        }
    }
}

type Res<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Res<T> {
    Ok(Response::new(v))
}

fn required<T>(v: Option<T>, what: &str) -> Result<T, Status> {
    v.ok_or_else(|| Status::invalid_argument(format!("{what} is required")))
}

#[tonic::async_trait]
impl TrackingService for TrackingApi {
    async fn create_experiment(
        &self,
        req: Request<pb::CreateExperimentRequest>,
    ) -> Res<pb::CreateExperimentResponse> {
        let experiment_id = self.store.create_experiment(req.into_inner()).await?;
        ok(pb::CreateExperimentResponse { experiment_id })
    }

    async fn get_experiment(
        &self,
        req: Request<pb::GetExperimentRequest>,
    ) -> Res<pb::GetExperimentResponse> {
        let experiment = self
            .store
            .get_experiment(&req.get_ref().experiment_id)
            .await?;
        ok(pb::GetExperimentResponse {
            experiment: Some(experiment),
        })
    }

    async fn get_experiment_by_name(
        &self,
        req: Request<pb::GetExperimentByNameRequest>,
    ) -> Res<pb::GetExperimentResponse> {
        let experiment = self
            .store
            .get_experiment_by_name(&req.get_ref().name)
            .await?;
        ok(pb::GetExperimentResponse {
            experiment: Some(experiment),
        })
    }

    async fn search_experiments(
        &self,
        req: Request<pb::SearchExperimentsRequest>,
    ) -> Res<pb::SearchExperimentsResponse> {
        let (experiments, next_page_token) = self.store.search_experiments(req.get_ref()).await?;
        ok(pb::SearchExperimentsResponse {
            experiments,
            next_page_token,
        })
    }

    async fn update_experiment(
        &self,
        req: Request<pb::UpdateExperimentRequest>,
    ) -> Res<pb::UpdateExperimentResponse> {
        let r = req.get_ref();
        self.store
            .rename_experiment(&r.experiment_id, &r.new_name)
            .await?;
        ok(pb::UpdateExperimentResponse {})
    }

    async fn delete_experiment(
        &self,
        req: Request<pb::DeleteExperimentRequest>,
    ) -> Res<pb::DeleteExperimentResponse> {
        self.store
            .delete_experiment(&req.get_ref().experiment_id)
            .await?;
        ok(pb::DeleteExperimentResponse {})
    }

    async fn restore_experiment(
        &self,
        req: Request<pb::RestoreExperimentRequest>,
    ) -> Res<pb::RestoreExperimentResponse> {
        self.store
            .restore_experiment(&req.get_ref().experiment_id)
            .await?;
        ok(pb::RestoreExperimentResponse {})
    }

    async fn set_experiment_tag(
        &self,
        req: Request<pb::SetExperimentTagRequest>,
    ) -> Res<pb::SetExperimentTagResponse> {
        let r = req.get_ref();
        self.store
            .set_experiment_tag(&r.experiment_id, &r.key, Some(&r.value))
            .await?;
        ok(pb::SetExperimentTagResponse {})
    }

    async fn delete_experiment_tag(
        &self,
        req: Request<pb::DeleteExperimentTagRequest>,
    ) -> Res<pb::DeleteExperimentTagResponse> {
        let r = req.get_ref();
        self.store
            .set_experiment_tag(&r.experiment_id, &r.key, None)
            .await?;
        ok(pb::DeleteExperimentTagResponse {})
    }

    async fn create_run(&self, req: Request<pb::CreateRunRequest>) -> Res<pb::CreateRunResponse> {
        let run = self.store.create_run(req.into_inner()).await?;
        ok(pb::CreateRunResponse { run: Some(run) })
    }

    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Res<pb::GetRunResponse> {
        let run = self.store.get_run(&req.get_ref().run_id).await?;
        ok(pb::GetRunResponse { run: Some(run) })
    }

    async fn update_run(&self, req: Request<pb::UpdateRunRequest>) -> Res<pb::UpdateRunResponse> {
        let run_info = self.store.update_run(req.into_inner()).await?;
        ok(pb::UpdateRunResponse {
            run_info: Some(run_info),
        })
    }

    async fn delete_run(&self, req: Request<pb::DeleteRunRequest>) -> Res<pb::DeleteRunResponse> {
        self.store.delete_run(&req.get_ref().run_id).await?;
        ok(pb::DeleteRunResponse {})
    }

    async fn restore_run(
        &self,
        req: Request<pb::RestoreRunRequest>,
    ) -> Res<pb::RestoreRunResponse> {
        self.store.restore_run(&req.get_ref().run_id).await?;
        ok(pb::RestoreRunResponse {})
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Res<pb::HeartbeatResponse> {
        let lease_expires_at = self.store.heartbeat(&req.get_ref().run_id).await?;
        ok(pb::HeartbeatResponse { lease_expires_at })
    }

    async fn log_metric(&self, req: Request<pb::LogMetricRequest>) -> Res<pb::LogMetricResponse> {
        let r = req.into_inner();
        let metric = required(r.metric, "metric")?;
        self.store.log_batch(&r.run_id, &[metric], &[], &[]).await?;
        ok(pb::LogMetricResponse {})
    }

    async fn log_param(&self, req: Request<pb::LogParamRequest>) -> Res<pb::LogParamResponse> {
        let r = req.into_inner();
        let param = required(r.param, "param")?;
        self.store.log_batch(&r.run_id, &[], &[param], &[]).await?;
        ok(pb::LogParamResponse {})
    }

    async fn set_tag(&self, req: Request<pb::SetTagRequest>) -> Res<pb::SetTagResponse> {
        let r = req.into_inner();
        let tag = required(r.tag, "tag")?;
        self.store.log_batch(&r.run_id, &[], &[], &[tag]).await?;
        ok(pb::SetTagResponse {})
    }

    async fn delete_tag(&self, req: Request<pb::DeleteTagRequest>) -> Res<pb::DeleteTagResponse> {
        let r = req.get_ref();
        self.store.delete_tag(&r.run_id, &r.key).await?;
        ok(pb::DeleteTagResponse {})
    }

    async fn log_batch(&self, req: Request<pb::LogBatchRequest>) -> Res<pb::LogBatchResponse> {
        let r = req.get_ref();
        self.store
            .log_batch(&r.run_id, &r.metrics, &r.params, &r.tags)
            .await?;
        ok(pb::LogBatchResponse {})
    }

    async fn log_inputs(&self, req: Request<pb::LogInputsRequest>) -> Res<pb::LogInputsResponse> {
        let r = req.get_ref();
        self.store
            .log_inputs(&r.run_id, &r.datasets, &r.models)
            .await?;
        ok(pb::LogInputsResponse {})
    }

    async fn get_metric_history(
        &self,
        req: Request<pb::GetMetricHistoryRequest>,
    ) -> Res<pb::GetMetricHistoryResponse> {
        ok(self.store.metric_history(req.get_ref()).await?)
    }

    async fn search_runs(
        &self,
        req: Request<pb::SearchRunsRequest>,
    ) -> Res<pb::SearchRunsResponse> {
        let (runs, next_page_token) = self.store.search_runs(req.get_ref()).await?;
        ok(pb::SearchRunsResponse {
            runs,
            next_page_token,
        })
    }

    async fn upload_artifact(
        &self,
        req: Request<Streaming<pb::UploadArtifactRequest>>,
    ) -> Res<pb::UploadArtifactResponse> {
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            Status::invalid_argument("the upload stream is empty: send a header first")
        })?;
        let header = match first.item {
            Some(pb::upload_artifact_request::Item::Header(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first upload message must be the header (run_id, path)",
                ))
            }
        };
        crate::artifacts::check_path(&header.path, false)?;
        let artifact_uri = self
            .root_of(&header.run_id, &header.logged_model_id, true)
            .await?;
        let chunks = stream
            .map(|m| match m {
                Ok(pb::UploadArtifactRequest {
                    item: Some(pb::upload_artifact_request::Item::Chunk(b)),
                }) => Ok(Bytes::from(b)),
                Ok(_) => Err(invalid(
                    "only the first upload message may be a header; the next ones carry bytes",
                )),
                Err(status) => Err(invalid(format!(
                    "the upload stream broke: {}",
                    status.message()
                ))),
            })
            .boxed();
        let file_size = self
            .artifacts
            .upload(&artifact_uri, &header.path, chunks)
            .await?;
        self.store
            .metrics
            .artifact_bytes
            .with_label_values(&["upload"])
            .inc_by(file_size);
        ok(pb::UploadArtifactResponse {
            path: header.path,
            file_size,
        })
    }

    type DownloadArtifactStream =
        Pin<Box<dyn Stream<Item = Result<pb::DownloadArtifactResponse, Status>> + Send>>;

    async fn download_artifact(
        &self,
        req: Request<pb::DownloadArtifactRequest>,
    ) -> Res<Self::DownloadArtifactStream> {
        let r = req.into_inner();
        crate::artifacts::check_path(&r.path, false)?;
        let uri = self.root_of(&r.run_id, &r.logged_model_id, false).await?;
        let bytes = self.artifacts.download(&uri, &r.path).await?;
        let counter = self
            .store
            .metrics
            .artifact_bytes
            .with_label_values(&["download"]);
        let stream = bytes.map(move |c| match c {
            Ok(chunk) => {
                counter.inc_by(chunk.len() as u64);
                Ok(pb::DownloadArtifactResponse {
                    chunk: chunk.to_vec(),
                })
            }
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_artifacts(
        &self,
        req: Request<pb::ListArtifactsRequest>,
    ) -> Res<pb::ListArtifactsResponse> {
        let r = req.get_ref();
        crate::artifacts::check_path(&r.path, true)?;
        let root_uri = self.root_of(&r.run_id, &r.logged_model_id, false).await?;
        let entries = self.artifacts.list(&root_uri, &r.path).await?;
        let contents = self
            .artifacts
            .read_listed(&root_uri, &entries, r.inline_bytes)
            .await;
        let files = entries
            .into_iter()
            .zip(contents)
            .map(|(e, content)| pb::FileInfo {
                file_size: content.as_ref().map_or(e.size, |c| c.len() as u64),
                content: content.map(Vec::from),
                ..pb::FileInfo::from(e)
            })
            .collect();
        ok(pb::ListArtifactsResponse { root_uri, files })
    }

    async fn create_logged_model(
        &self,
        req: Request<pb::CreateLoggedModelRequest>,
    ) -> Res<pb::LoggedModelResponse> {
        logged(self.store.create_logged_model(req.get_ref()).await?)
    }

    async fn get_logged_model(
        &self,
        req: Request<pb::GetLoggedModelRequest>,
    ) -> Res<pb::LoggedModelResponse> {
        let r = req.get_ref();
        logged(
            self.store
                .get_logged_model(&r.model_id, r.allow_deleted)
                .await?,
        )
    }

    async fn finalize_logged_model(
        &self,
        req: Request<pb::FinalizeLoggedModelRequest>,
    ) -> Res<pb::LoggedModelResponse> {
        let r = req.get_ref();
        logged(
            self.store
                .finalize_logged_model(&r.model_id, r.status)
                .await?,
        )
    }

    async fn search_logged_models(
        &self,
        req: Request<pb::SearchLoggedModelsRequest>,
    ) -> Res<pb::SearchLoggedModelsResponse> {
        let (models, next_page_token) = self.store.search_logged_models(req.get_ref()).await?;
        ok(pb::SearchLoggedModelsResponse {
            models,
            next_page_token,
        })
    }

    async fn delete_logged_model(
        &self,
        req: Request<pb::DeleteLoggedModelRequest>,
    ) -> Res<pb::DeleteLoggedModelResponse> {
        self.store
            .delete_logged_model(&req.get_ref().model_id)
            .await?;
        ok(pb::DeleteLoggedModelResponse {})
    }

    async fn set_logged_model_tags(
        &self,
        req: Request<pb::SetLoggedModelTagsRequest>,
    ) -> Res<pb::SetLoggedModelTagsResponse> {
        let r = req.get_ref();
        self.store
            .set_logged_model_tags(&r.model_id, &r.tags)
            .await?;
        ok(pb::SetLoggedModelTagsResponse {})
    }

    async fn delete_logged_model_tag(
        &self,
        req: Request<pb::DeleteLoggedModelTagRequest>,
    ) -> Res<pb::DeleteLoggedModelTagResponse> {
        let r = req.get_ref();
        self.store
            .delete_logged_model_tag(&r.model_id, &r.key)
            .await?;
        ok(pb::DeleteLoggedModelTagResponse {})
    }

    async fn log_logged_model_params(
        &self,
        req: Request<pb::LogLoggedModelParamsRequest>,
    ) -> Res<pb::LogLoggedModelParamsResponse> {
        let r = req.get_ref();
        self.store
            .log_logged_model_params(&r.model_id, &r.params)
            .await?;
        ok(pb::LogLoggedModelParamsResponse {})
    }

    async fn log_outputs(
        &self,
        req: Request<pb::LogOutputsRequest>,
    ) -> Res<pb::LogOutputsResponse> {
        let r = req.get_ref();
        self.store.log_outputs(&r.run_id, &r.models).await?;
        ok(pb::LogOutputsResponse {})
    }
}

fn logged(model: pb::LoggedModel) -> Res<pb::LoggedModelResponse> {
    ok(pb::LoggedModelResponse { model: Some(model) })
}

impl From<crate::artifacts::Entry> for pb::FileInfo {
    fn from(e: crate::artifacts::Entry) -> Self {
        pb::FileInfo {
            path: e.path,
            is_dir: e.is_dir,
            file_size: e.size,
            content: None,
        }
    }
}

#[cfg(test)]
mod roles_tests {
    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::FILE_DESCRIPTOR_SET,
            mlops_proto::tracking::v1::tracking_service_server::SERVICE_NAME,
            super::ROLES,
        );
    }
}
