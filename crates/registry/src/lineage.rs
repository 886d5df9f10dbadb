//! What the registry asks the tracking service, over its gRPC API (the services
//! share no code and no database): a run for lineage, and the files of a run's
//! artifact to copy into the registry.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use mlops_proto::registry::v1 as pb;
use mlops_proto::tracking::v1 as tpb;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_runtime::client::{retry, Backoff, Client};
use mlops_runtime::grpc::ClientAuth;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

use crate::error::{precondition, RegistryError, Result};

/// A client of the tracking service, connecting lazily (the registry starts even
/// when tracking is not up yet). Reads are retried with backoff while tracking
/// answers UNAVAILABLE (restarting), then answer UNAVAILABLE.
#[derive(Clone)]
pub struct TrackingClient {
    addr: String,
    inner: TrackingServiceClient<InterceptedService<Channel, ClientAuth>>,
}

/// Whose artifacts: a run's or a logged model's.
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// A run id.
    Run(String),
    /// A logged model id ("m-...").
    LoggedModel(String),
}

impl Owner {
    fn ids(&self) -> (String, String) {
        match self {
            Owner::Run(r) => (r.clone(), String::new()),
            Owner::LoggedModel(m) => (String::new(), m.clone()),
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Run(r) => write!(f, "run {r}"),
            Owner::LoggedModel(m) => write!(f, "logged model {m}"),
        }
    }
}

/// One file of a run's artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactFile {
    /// Its path under the run's artifact root.
    pub path: String,
    /// Its path inside the model version (relative to the registered artifact path).
    pub rel: String,
    /// Bytes.
    pub size: u64,
    /// Its bytes, when the listing brought them (a small model): no download needed.
    pub content: Option<bytes::Bytes>,
}

impl TrackingClient {
    /// A client of the tracking service at `addr`, sending `token` when not empty.
    pub fn new(addr: &str, token: &str) -> anyhow::Result<Self> {
        let client = Client::lazy(addr, Some(token))?;
        let inner = mlops_runtime::grpc_client!(TrackingServiceClient, client);
        Ok(TrackingClient {
            addr: client.addr().to_owned(),
            inner,
        })
    }

    fn map(&self, what: &str, s: tonic::Status) -> RegistryError {
        match s.code() {
            Code::NotFound => RegistryError::NotFound(format!("{what}: {}", s.message())),
            Code::InvalidArgument => RegistryError::InvalidArgument(format!("{what}: {}", s.message())),
            Code::FailedPrecondition => precondition(format!("{what}: {}", s.message())),
            Code::Unauthenticated | Code::PermissionDenied => RegistryError::Unavailable(format!(
                "the tracking service at {} refused the registry ({}); set MLOPS_REGISTRY_TRACKING_TOKEN \
                 to a token with the reader role",
                self.addr,
                s.message()
            )),
            _ => RegistryError::Unavailable(format!(
                "the tracking service at {} cannot be reached for lineage ({}: {}); retry when it is up",
                self.addr,
                s.code(),
                s.message()
            )),
        }
    }

    /// A run with its data and inputs. A deleted run is refused: its artifacts may go.
    pub async fn run(&self, run_id: &str) -> Result<tpb::Run> {
        let run = retry(&Backoff::default(), || {
            let mut c = self.inner.clone();
            async move {
                c.get_run(tpb::GetRunRequest {
                    run_id: run_id.to_owned(),
                })
                .await
            }
        })
        .await
        .map_err(|s| {
            if s.code() == Code::NotFound {
                RegistryError::NotFound(format!("run {run_id} not found in the tracking service"))
            } else {
                self.map("reading the run", s)
            }
        })?
        .into_inner()
        .run
        .ok_or_else(|| RegistryError::Unavailable("tracking answered no run".into()))?;
        let deleted = run
            .info
            .as_ref()
            .map(|i| i.lifecycle_stage == tpb::LifecycleStage::Deleted as i32)
            .unwrap_or(false);
        if deleted {
            return Err(precondition(format!(
                "run {run_id} is deleted; restore it before registering its artifacts"
            )));
        }
        Ok(run)
    }

    /// A logged model; one whose upload failed, or a deleted one, is refused.
    pub async fn logged_model(&self, model_id: &str) -> Result<tpb::LoggedModel> {
        let model = retry(&Backoff::default(), || {
            let mut c = self.inner.clone();
            async move {
                c.get_logged_model(tpb::GetLoggedModelRequest {
                    model_id: model_id.to_owned(),
                    allow_deleted: false,
                })
                .await
            }
        })
        .await
        .map_err(|s| {
            if s.code() == Code::NotFound {
                RegistryError::NotFound(format!(
                    "logged model {model_id} not found in the tracking service"
                ))
            } else {
                self.map("reading the logged model", s)
            }
        })?
        .into_inner()
        .model
        .ok_or_else(|| RegistryError::Unavailable("tracking answered no model".into()))?;
        if model.status == tpb::LoggedModelStatus::LoggedModelUploadFailed as i32 {
            return Err(precondition(format!(
                "logged model {model_id} failed its upload; log it again"
            )));
        }
        Ok(model)
    }

    /// The listing of `path`, with the files' content when they hold at most `inline`
    /// bytes together.
    async fn list(&self, owner: &Owner, path: &str, inline: u64) -> Result<Vec<tpb::FileInfo>> {
        let (run_id, logged_model_id) = owner.ids();
        Ok(retry(&Backoff::default(), || {
            let mut c = self.inner.clone();
            let request = tpb::ListArtifactsRequest {
                run_id: run_id.clone(),
                path: path.to_owned(),
                logged_model_id: logged_model_id.clone(),
                inline_bytes: inline,
            };
            async move { c.list_artifacts(request).await }
        })
        .await
        .map_err(|s| self.map("listing the run's artifacts", s))?
        .into_inner()
        .files)
    }

    /// The files of `path` in a run or logged model: the file itself, or every file
    /// under the directory (the whole root when `path` is empty; none for an empty
    /// one). NOT_FOUND when there is nothing at `path`. Files that hold at most
    /// `inline` bytes together come with their content.
    pub async fn artifact_files(
        &self,
        owner: &Owner,
        path: &str,
        inline: u64,
    ) -> Result<Vec<ArtifactFile>> {
        let path = path.trim_end_matches('/');
        let mut inline = inline;
        // A directory lists its entries; a file (or nothing) lists none, and then its
        // parent says which. One call for the usual case, a model directory.
        let first = self.list(owner, path, inline).await?;
        if first.is_empty() && !path.is_empty() {
            let (parent, _) = path.rsplit_once('/').unwrap_or(("", path));
            // The parent's other files are not wanted: no content.
            let entry = self
                .list(owner, parent, 0)
                .await?
                .into_iter()
                .find(|f| f.path == path)
                .ok_or_else(|| {
                    RegistryError::NotFound(format!(
                        "artifact `{path}` not found in {owner}; list its artifacts to find the model's path"
                    ))
                })?;
            if !entry.is_dir {
                let name = path.rsplit('/').next().unwrap_or(path).to_owned();
                return Ok(vec![ArtifactFile {
                    path: path.to_owned(),
                    rel: name,
                    size: entry.file_size,
                    content: None,
                }]);
            }
        }
        let mut out = vec![];
        let mut dirs: Vec<String> = vec![];
        let mut listing = Some(first);
        loop {
            let entries = match listing.take() {
                Some(l) => l,
                None => match dirs.pop() {
                    Some(dir) => self.list(owner, &dir, inline).await?,
                    None => break,
                },
            };
            for f in entries {
                if f.is_dir {
                    dirs.push(f.path);
                } else {
                    let rel = f
                        .path
                        .strip_prefix(path)
                        .unwrap_or(&f.path)
                        .trim_start_matches('/')
                        .to_owned();
                    let content = f.content.map(bytes::Bytes::from);
                    inline = inline.saturating_sub(content.as_ref().map_or(0, |c| c.len() as u64));
                    out.push(ArtifactFile {
                        path: f.path,
                        rel,
                        size: f.file_size,
                        content,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    /// The bytes of one file of a run, as a stream of chunks.
    pub async fn download(
        &self,
        owner: &Owner,
        path: &str,
    ) -> Result<BoxStream<'static, Result<bytes::Bytes>>> {
        let (run_id, logged_model_id) = owner.ids();
        let stream = self
            .inner
            .clone()
            .download_artifact(tpb::DownloadArtifactRequest {
                run_id,
                path: path.to_owned(),
                logged_model_id,
            })
            .await
            .map_err(|s| self.map("downloading the artifact", s))?
            .into_inner();
        let this = self.clone();
        Ok(stream
            .map_ok(|c| bytes::Bytes::from(c.chunk))
            .map_err(move |s| this.map("downloading the artifact", s))
            .boxed())
    }
}

/// The lineage of a version registered from `run` at `artifact_path`.
pub fn lineage_of(run: &tpb::Run, artifact_path: &str) -> pb::Lineage {
    let info = run.info.clone().unwrap_or_default();
    let data = run.data.clone().unwrap_or_default();
    let inputs = run.inputs.clone().unwrap_or_default();
    pb::Lineage {
        run_id: info.run_id,
        experiment_id: info.experiment_id,
        run_name: info.run_name,
        artifact_path: artifact_path.to_owned(),
        run_artifact_uri: info.artifact_uri,
        datasets: inputs
            .dataset_inputs
            .into_iter()
            .map(|d| {
                let ds = d.dataset.unwrap_or_default();
                pb::LineageDataset {
                    name: ds.name,
                    digest: ds.digest,
                    context: d.context,
                    source_type: ds.source_type,
                    source: ds.source,
                }
            })
            .collect(),
        metrics: data
            .metrics
            .into_iter()
            .map(|m| pb::LineageMetric {
                key: m.key,
                value: m.value,
                step: m.step,
                timestamp: m.timestamp,
            })
            .collect(),
        params: data
            .params
            .into_iter()
            .map(|p| pb::Tag {
                key: p.key,
                value: p.value,
            })
            .collect(),
        // The run's user, as MLflow shows a version's; a request's own user_id wins.
        user_id: info.user_id,
        ..Default::default()
    }
}
