//! What the handlers share: gRPC clients of the services, and the credential each
//! request forwards to them.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use mlops_proto::registry::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::tracking::v1 as tpb;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_runtime::client::Client;
use mlops_runtime::grpc::ClientAuth;
use tokio::sync::OnceCell;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::MlflowConfig;
use crate::error::{ApiError, ErrorCode, Result};

/// A client of the tracking service.
pub type TrackingClient = TrackingServiceClient<InterceptedService<Channel, ClientAuth>>;
/// A client of the model registry.
pub type RegistryClient = RegistryServiceClient<InterceptedService<Channel, ClientAuth>>;

/// Messages up to this size come back from the services (a page of runs, a metric history).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// The handlers' shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    tracking: TrackingClient,
    tracking_channel: Channel,
    registry: RegistryClient,
    registry_channel: Channel,
    /// `Bearer <token>` from the configuration, sent when a request brings none.
    token: Option<AsciiMetadataValue>,
    max_body_bytes: usize,
    /// The tracking service's artifact root, learned once (see [`AppState::artifact_root`]).
    artifact_root: OnceCell<String>,
    /// MLflow's web UI build, when it is served.
    ui_dir: Option<std::path::PathBuf>,
    /// Whether artifacts go through the gateway (`mlflow-artifacts:/` URIs).
    serve_artifacts: bool,
}

impl AppState {
    /// Clients of the services named in `config`. They connect lazily: the gateway
    /// starts when the services are not up yet, and calls answer 503 meanwhile.
    pub fn new(config: &MlflowConfig) -> anyhow::Result<Self> {
        // The client sends the trace context; the credential goes per request.
        let tracking =
            Client::lazy(&config.tracking_addr, None)?.with_max_message_bytes(MAX_RESPONSE_BYTES);
        let registry =
            Client::lazy(&config.registry_addr, None)?.with_max_message_bytes(MAX_RESPONSE_BYTES);
        let tracking_channel = tracking.channel();
        let registry_channel = registry.channel();
        let tracking = mlops_runtime::grpc_client!(TrackingServiceClient, tracking);
        let registry = mlops_runtime::grpc_client!(RegistryServiceClient, registry);
        let token = match config.token.trim() {
            "" => None,
            t => Some(format!("Bearer {t}").parse().map_err(|_| {
                anyhow::anyhow!("the token has characters not allowed in a header")
            })?),
        };
        Ok(AppState {
            inner: Arc::new(Inner {
                tracking,
                tracking_channel,
                registry,
                registry_channel,
                token,
                max_body_bytes: config.max_body_bytes,
                artifact_root: OnceCell::new(),
                ui_dir: config.ui_dir.clone(),
                serve_artifacts: config.serve_artifacts,
            }),
        })
    }

    /// A client of the tracking service.
    pub fn tracking(&self) -> TrackingClient {
        self.inner.tracking.clone()
    }

    /// The channel to the tracking service (its health service answers readiness).
    pub fn tracking_channel(&self) -> Channel {
        self.inner.tracking_channel.clone()
    }

    /// The channel to the model registry (readiness).
    pub fn registry_channel(&self) -> Channel {
        self.inner.registry_channel.clone()
    }

    /// A client of the model registry.
    pub fn registry(&self) -> RegistryClient {
        self.inner.registry.clone()
    }

    /// A live logged model of tracking's (NOT_FOUND for an unknown or deleted one).
    pub async fn logged_model(&self, auth: &Auth, model_id: &str) -> Result<tpb::LoggedModel> {
        Ok(self
            .tracking()
            .get_logged_model(auth.request(tpb::GetLoggedModelRequest {
                model_id: model_id.to_owned(),
                allow_deleted: false,
            }))
            .await?
            .into_inner()
            .model
            .unwrap_or_default())
    }

    /// MLflow's web UI build directory, when the UI is served.
    pub fn ui_dir(&self) -> Option<&std::path::Path> {
        self.inner.ui_dir.as_deref()
    }

    /// The largest JSON request body.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// Whether artifacts go through the gateway's proxy (`--serve-artifacts`).
    pub fn serves_artifacts(&self) -> bool {
        self.inner.serve_artifacts
    }

    /// The root that the artifact URIs handed to clients are advertised under, as
    /// `mlflow-artifacts:/`: tracking's artifact root when the gateway serves
    /// artifacts, `None` when clients get tracking's own locations
    /// (`--serve-artifacts false`) or while tracking cannot answer.
    pub async fn proxy_root(&self, auth: &Auth) -> Option<String> {
        if !self.inner.serve_artifacts {
            return None;
        }
        self.artifact_root(auth).await
    }

    /// The tracking service's artifact root (`file:///…` or `s3://…`), which the
    /// `mlflow-artifacts:/` URIs stand for. It is the Default experiment's location
    /// without its `/0`: tracking puts experiment `N` at `<root>/N` unless told
    /// otherwise. Asked once; `None` while tracking cannot answer.
    pub async fn artifact_root(&self, auth: &Auth) -> Option<String> {
        let got = self
            .inner
            .artifact_root
            .get_or_try_init(|| async {
                let exp = self
                    .tracking()
                    .get_experiment(auth.request(tpb::GetExperimentRequest {
                        experiment_id: "0".into(),
                    }))
                    .await?
                    .into_inner()
                    .experiment
                    .unwrap_or_default();
                let root = exp
                    .artifact_location
                    .strip_suffix("/0")
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        tonic::Status::internal(format!(
                            "the Default experiment's artifact location {} does not end in /0",
                            exp.artifact_location
                        ))
                    })?;
                Ok::<_, tonic::Status>(root)
            })
            .await;
        match got {
            Ok(root) => Some(root.clone()),
            Err(status) => {
                tracing::warn!(error = %status.message(), "cannot learn the tracking artifact root yet");
                None
            }
        }
    }
}

/// The credential a request forwards to the services: its own `Authorization`
/// header when it has one, else the configured token, else none.
#[derive(Clone, Debug, Default)]
pub struct Auth(Option<AsciiMetadataValue>);

impl Auth {
    /// `msg` as a gRPC request carrying the credential.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        req
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        match parts.headers.get(header::AUTHORIZATION) {
            Some(v) => MetadataValue::try_from(v.as_bytes())
                .map(|v| Auth(Some(v)))
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::Unauthenticated,
                        "the Authorization header has characters not allowed in gRPC metadata",
                    )
                }),
            None => Ok(Auth(state.inner.token.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(token: &str) -> AppState {
        let mut c = MlflowConfig::local(
            "127.0.0.1:0",
            "127.0.0.1:0",
            "http://127.0.0.1:1",
            "http://127.0.0.1:1",
        );
        c.token = token.into();
        AppState::new(&c).unwrap()
    }

    async fn auth_of(state: &AppState, header: Option<&str>) -> Result<Option<String>> {
        let mut req = axum::http::Request::get("/");
        if let Some(h) = header {
            req = req.header(header::AUTHORIZATION, h);
        }
        let (mut parts, _) = req.body(()).unwrap().into_parts();
        let auth = Auth::from_request_parts(&mut parts, state).await?;
        let grpc = auth.request(());
        Ok(grpc
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()))
    }

    #[tokio::test]
    async fn a_request_forwards_its_own_credential_else_the_configured_token() {
        let with_token = state("s3cret");
        assert_eq!(
            auth_of(&with_token, None).await.unwrap().as_deref(),
            Some("Bearer s3cret")
        );
        assert_eq!(
            auth_of(&with_token, Some("Bearer mine"))
                .await
                .unwrap()
                .as_deref(),
            Some("Bearer mine")
        );
        let without = state("");
        assert_eq!(auth_of(&without, None).await.unwrap(), None);
        assert_eq!(
            auth_of(&without, Some("Bearer mine"))
                .await
                .unwrap()
                .as_deref(),
            Some("Bearer mine")
        );
    }
}
