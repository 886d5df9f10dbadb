//! The model repository is the registry: names, versions and aliases come from it over gRPC,
//! and model files are downloaded once into a local cache keyed by the registered model's id
//! and the version (versions are immutable, so a cached file never goes stale).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use mlops_proto::registry::v1 as reg;
use mlops_proto::registry::v1::registry_service_client::RegistryServiceClient;
use mlops_runtime::client::{retry, Backoff, Client};
use mlops_runtime::grpc::ClientAuth;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

type RegistryClient = RegistryServiceClient<InterceptedService<Channel, ClientAuth>>;

use crate::error::{InferenceError, Result};

/// Which version of a registered model to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// This version.
    Version(i64),
    /// The version this alias points at.
    Alias(String),
    /// The `champion` alias if the model has one, else its newest READY version.
    Default,
}

impl Selector {
    /// How it is stored and shown: `version:3`, `alias:challenger`, `default`.
    pub fn encode(&self) -> String {
        match self {
            Selector::Version(v) => format!("version:{v}"),
            Selector::Alias(a) => format!("alias:{a}"),
            Selector::Default => "default".into(),
        }
    }

    /// The inverse of [`Selector::encode`].
    pub fn decode(s: &str) -> Option<Selector> {
        if s == "default" {
            return Some(Selector::Default);
        }
        if let Some(v) = s.strip_prefix("version:") {
            return v.parse().ok().map(Selector::Version);
        }
        s.strip_prefix("alias:").map(|a| Selector::Alias(a.into()))
    }
}

/// A version resolved in the registry, with its model file on local disk.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The registered model's name.
    pub name: String,
    /// Its stable id.
    pub model_id: String,
    /// The version.
    pub version: i64,
    /// The ONNX file in the cache.
    pub path: PathBuf,
    /// The registry's record of the version.
    pub record: reg::ModelVersion,
}

/// A registered model as the repository index lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its name.
    pub name: String,
    /// Its newest version, 0 if it has none.
    pub latest_version: i64,
}

/// The registry as a model repository.
#[derive(Clone)]
pub struct Repository {
    client: Client,
    cache_dir: PathBuf,
}

fn unavailable(what: &str, status: &tonic::Status) -> InferenceError {
    InferenceError::Unavailable(format!(
        "the registry cannot be reached while {what}: {}",
        status.message()
    ))
}

impl Repository {
    /// The registry at `addr` (with `token` when its auth is on), caching files under `cache_dir`.
    pub fn new(addr: &str, token: &str, cache_dir: &Path) -> anyhow::Result<Self> {
        let token = (!token.is_empty()).then_some(token);
        Ok(Repository {
            client: Client::lazy(addr, token)?,
            cache_dir: cache_dir.to_owned(),
        })
    }

    fn api(&self) -> RegistryClient {
        mlops_runtime::grpc_client!(RegistryServiceClient, self.client)
    }

    /// One registry call, retried while the registry is unavailable, its error mapped.
    async fn call<Req, Resp, F, Fut>(&self, what: &str, req: Req, f: F) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(RegistryClient, Req) -> Fut,
        Fut:
            std::future::Future<Output = std::result::Result<tonic::Response<Resp>, tonic::Status>>,
    {
        retry(&Backoff::default(), || f(self.api(), req.clone()))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.map(what, s))
    }

    /// Maps a registry status: NOT_FOUND stays NOT_FOUND with the registry's words, an
    /// unreachable registry is UNAVAILABLE, anything else a failed precondition.
    fn map(&self, what: &str, status: tonic::Status) -> InferenceError {
        match status.code() {
            Code::NotFound => InferenceError::NotFound(status.message().to_owned()),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Internal => {
                unavailable(what, &status)
            }
            Code::Unauthenticated | Code::PermissionDenied => InferenceError::Unavailable(format!(
                "the registry refused this service while {what} (check --registry-token): {}",
                status.message()
            )),
            _ => InferenceError::FailedPrecondition(status.message().to_owned()),
        }
    }

    /// Points `name`'s `alias` at `version` in the registry (a rollback; the model's gate
    /// policy applies: a refusal is FAILED_PRECONDITION with the registry's reason).
    pub async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<()> {
        self.call(
            "moving the alias",
            reg::SetRegisteredModelAliasRequest {
                name: name.to_owned(),
                alias: alias.to_owned(),
                version,
            },
            |mut api, req| async move { api.set_registered_model_alias(req).await },
        )
        .await
        .map(|_| ())
    }

    /// Finds the version `selector` names for `name`, checks it can be served (READY, with an
    /// ONNX signature) and makes sure its file is in the cache.
    pub async fn resolve(&self, name: &str, selector: &Selector) -> Result<Resolved> {
        let model = self
            .call(
                "looking up the model",
                reg::GetRegisteredModelRequest {
                    name: name.to_owned(),
                },
                |mut api, req| async move { api.get_registered_model(req).await },
            )
            .await?
            .registered_model
            .ok_or_else(|| InferenceError::Internal("the registry answered no model".into()))?;
        let alias = match selector {
            Selector::Alias(a) => Some(a.clone()),
            Selector::Default if model.aliases.iter().any(|a| a.alias == "champion") => {
                Some("champion".to_owned())
            }
            _ => None,
        };
        let record = match (selector, alias) {
            (_, Some(alias)) => {
                self.call(
                    "resolving the alias",
                    reg::GetModelVersionByAliasRequest {
                        name: name.to_owned(),
                        alias,
                    },
                    |mut api, req| async move { api.get_model_version_by_alias(req).await },
                )
                .await?
                .model_version
            }
            (Selector::Version(v), None) => {
                self.call(
                    "looking up the version",
                    reg::GetModelVersionRequest {
                        name: name.to_owned(),
                        version: *v,
                    },
                    |mut api, req| async move { api.get_model_version(req).await },
                )
                .await?
                .model_version
            }
            (_, None) => self.latest_ready(name).await?,
        }
        .ok_or_else(|| {
            InferenceError::NotFound(format!("model {name:?} has no version that can be served"))
        })?;
        if record.status != reg::ModelVersionStatus::Ready as i32 {
            return Err(InferenceError::FailedPrecondition(format!(
                "version {} of {name:?} is not READY in the registry ({})",
                record.version,
                if record.status_message.is_empty() {
                    "still registering".to_owned()
                } else {
                    record.status_message.clone()
                }
            )));
        }
        if record.reference_only {
            return Err(InferenceError::FailedPrecondition(format!(
                "version {} of {name:?} is a reference to `{}` that the registry records without \
                 holding its files, so it cannot be served; register the model from a run, a \
                 logged model or an upload",
                record.version, record.source
            )));
        }
        let file = match &record.signature {
            Some(sig) if sig.format == "onnx" && !sig.file.is_empty() => sig.file.clone(),
            _ => {
                return Err(InferenceError::FailedPrecondition(format!(
                    "version {} of {name:?} holds no ONNX model (the registry read no ONNX signature from its files)",
                    record.version
                )))
            }
        };
        let path = self.fetch(&model.id, name, record.version, &file).await?;
        Ok(Resolved {
            name: name.to_owned(),
            model_id: model.id,
            version: record.version,
            path,
            record,
        })
    }

    async fn latest_ready(&self, name: &str) -> Result<Option<reg::ModelVersion>> {
        let filter = format!("name = '{}'", name.replace('\'', "''"));
        let page = self
            .call(
                "listing the model's versions",
                reg::SearchModelVersionsRequest {
                    filter,
                    max_results: 1000,
                    order_by: vec!["version_number DESC".into()],
                    page_token: String::new(),
                },
                |mut api, req| async move { api.search_model_versions(req).await },
            )
            .await?;
        Ok(page
            .model_versions
            .into_iter()
            .find(|v| v.status == reg::ModelVersionStatus::Ready as i32))
    }

    /// The cached file of (`model_id`, `version`), downloaded when missing. The download goes
    /// to a temporary name and is renamed into place, so a cut-off download is never used.
    async fn fetch(&self, model_id: &str, name: &str, version: i64, file: &str) -> Result<PathBuf> {
        let safe = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !safe(model_id) {
            return Err(InferenceError::Internal(format!(
                "unexpected model id {model_id:?}"
            )));
        }
        let dir = self.cache_dir.join(model_id).join(version.to_string());
        let path = dir.join("model.onnx");
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            InferenceError::Internal(format!("creating the model cache {}: {e}", dir.display()))
        })?;
        let mut stream = self
            .api()
            .download_model_version_file(reg::DownloadModelVersionFileRequest {
                name: name.to_owned(),
                version,
                path: file.to_owned(),
            })
            .await
            .map_err(|s| self.map("downloading the model file", s))?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| self.map("downloading the model file", s))?;
            bytes.extend_from_slice(&chunk.chunk);
        }
        let tmp = dir.join(format!(".model.onnx.{}", uuid::Uuid::new_v4().simple()));
        let write = async {
            tokio::fs::write(&tmp, &bytes).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(InferenceError::Internal(format!(
                "writing the model cache {}: {e}",
                path.display()
            )));
        }
        Ok(path)
    }

    /// Every registered model, by name.
    pub async fn list(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .call(
                    "listing the registered models",
                    reg::SearchRegisteredModelsRequest {
                        filter: String::new(),
                        max_results: 1000,
                        order_by: vec![],
                        page_token: token.clone(),
                    },
                    |mut api, req| async move { api.search_registered_models(req).await },
                )
                .await?;
            out.extend(page.registered_models.into_iter().map(|m| {
                Listed {
                    latest_version: m
                        .latest_versions
                        .iter()
                        .map(|v| v.version)
                        .max()
                        .unwrap_or(0),
                    name: m.name,
                }
            }));
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }
}
