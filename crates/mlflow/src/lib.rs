//! MLflow's REST API in front of the platform: `mlflow.set_tracking_uri("http://HOST:5000")`
//! and MLflow's own client works unchanged. A thin gateway: it speaks HTTP/JSON to
//! MLflow clients and gRPC to our services, and holds no data of its own.
//!
//! - [`config`]: its settings (`mlops-mlflow --help` lists them);
//! - [`state`]: the gRPC clients of the services, and the credential each request forwards;
//! - [`json`]: reading MLflow's requests (query string or JSON body) and writing its JSON;
//! - [`error`]: MLflow's error body and HTTP statuses, from gRPC statuses;
//! - [`entities`]: tracking's experiments and runs in MLflow's JSON;
//! - [`tracking`]: the experiment, run and metric endpoints;
//! - [`registry`]: the model registry endpoints (registered models, versions, aliases,
//!   stages), with [`registry_entities`] for their JSON;
//! - [`history`]: metric histories: a run's, page after page, and sampled ones of many
//!   runs (MLflow's charts);
//! - [`artifacts`]: the `mlflow-artifacts` proxy, streaming to and from tracking;
//! - [`logged_models`], [`info`]: what MLflow's client asks besides;
//! - [`metrics`]: the HTTP metrics and spans;
//! - [`ui`]: MLflow's own web UI from the installed `mlflow` package, with the routes it
//!   calls besides the REST API, which is mirrored under `/ajax-api/` for it, and
//!   [`graphql`], the GraphQL endpoint its pages query;
//! - [`Gateway`]: the service for the kit (`mlops_kit::Service`): binds, then runs on
//!   the kit's runner (readiness off, drain requests).
//!
//! Each area is a module with a `routes()`; [`router`] merges them.

pub mod artifacts;
pub mod config;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod history;
pub mod info;
pub mod json;
pub mod logged_models;
pub mod metrics;
pub mod registry;
pub mod registry_entities;
pub mod state;
pub mod tracking;
pub mod ui;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use mlops_kit::{Addresses, Local, Runner, Service};
use mlops_proto::registry::v1::registry_service_server::SERVICE_NAME as REGISTRY;
use mlops_proto::tracking::v1::tracking_service_server::SERVICE_NAME as TRACKING;
use mlops_runtime::admin::Check;
use mlops_runtime::config::ServiceConfig;
use mlops_runtime::grpc::Listeners;
use mlops_runtime::shutdown::CancellationToken;
use tower::ServiceExt;

pub use config::MlflowConfig;
use error::{ApiError, ErrorCode};
pub use state::AppState;

/// Every endpoint, with the HTTP metrics and MLflow's answers for unknown paths.
/// The REST API answers under `/api/` and, for MLflow's web UI, under `/ajax-api/`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(tracking::routes())
        .merge(registry::routes())
        .merge(artifacts::routes(&state))
        .merge(logged_models::routes())
        .merge(info::routes())
        .merge(ui::routes())
        .route("/graphql", get(graphql::handle).post(graphql::handle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            metrics::HttpMetrics::new(),
            metrics::record,
        ))
        .with_state(state);
    let mirrored = api.clone();
    let merged = api.clone();
    api.route(
        "/ajax-api/{*rest}",
        any(move |req: Request| ajax(mirrored.clone(), req)),
    )
    // As MLflow's server (werkzeug merges slashes): `//model-versions/get-artifact`.
    .fallback(move |req: Request| merge_slashes(merged.clone(), req))
}

/// A path with doubled slashes answered as the same path with single ones; any
/// other unknown path is MLflow's `ENDPOINT_NOT_FOUND`.
async fn merge_slashes(api: Router, req: Request) -> Response {
    if !req.uri().path().contains("//") {
        return not_found(req.method().clone(), req.uri().clone())
            .await
            .into_response();
    }
    let mut path = String::with_capacity(req.uri().path().len());
    for c in req.uri().path().chars() {
        if !(c == '/' && path.ends_with('/')) {
            path.push(c);
        }
    }
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    redispatch(api, req, &target).await
}

/// A request under `/ajax-api/` answered as the same request under `/api/`. It goes
/// in afresh (method, headers, body), without what routing here attached to it (the
/// `{*rest}` parameter would reach the handler's own path parameters).
async fn ajax(api: Router, req: Request) -> Response {
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().replacen("/ajax-api/", "/api/", 1))
        .unwrap_or_default();
    redispatch(api, req, &target).await
}

/// `req` answered by `api` as if it had asked for `target` (a path and query).
async fn redispatch(api: Router, req: Request, target: &str) -> Response {
    let Ok(uri) = Uri::builder().path_and_query(target).build() else {
        return ApiError::invalid("the request path is not valid").into_response();
    };
    let (parts, body) = req.into_parts();
    let mut fresh = Request::new(body);
    *fresh.method_mut() = parts.method;
    *fresh.uri_mut() = uri;
    *fresh.version_mut() = parts.version;
    *fresh.headers_mut() = parts.headers;
    match api.oneshot(fresh).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// MLflow's client treats `ENDPOINT_NOT_FOUND` as "this server has no such API"
/// (and falls back to older calls where it can).
async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::EndpointNotFound,
        format!(
            "no MLflow endpoint {method} {}: this server speaks MLflow's tracking, logged-model and model-registry REST API",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        format!("{} does not accept {method}", uri.path()),
    )
    .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}

/// A bound, ready-to-run gateway.
pub struct Gateway {
    state: AppState,
    listeners: Listeners,
}

impl Service for Gateway {
    type Config = MlflowConfig;
    const TITLE: &'static str = "The MLflow REST API";
    const LOCAL_PORTS: (&'static str, &'static str) = ("127.0.0.1:5000", "127.0.0.1:9095");
    const SET_LOCALLY: &'static [&'static str] = &[
        "listen_addr",
        "admin_addr",
        "tracking_addr",
        "registry_addr",
        // `mlops up --mlflow-ui-dir` (MLOPS_MLFLOW_UI_DIR), or found in the Python environment.
        "ui_dir",
    ];

    fn describe(addresses: &Addresses) -> String {
        format!(
            "http://{0}  admin http://{1}  (MLflow REST API: mlflow.set_tracking_uri(\"http://{0}\"))",
            addresses.api, addresses.admin
        )
    }

    fn local(local: &Local) -> MlflowConfig {
        let (api, admin) = local.ports::<Self>();
        MlflowConfig::local(
            &api,
            &admin,
            &local.callee("tracking"),
            &local.callee("registry"),
        )
    }

    /// Makes the service clients (they connect on first use) and binds both ports.
    async fn bind(
        config: MlflowConfig,
        _bus: Option<Arc<dyn mlops_kit::EventBus>>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let state = AppState::new(&config)?;
        let listeners = Listeners::bind_to(&config.listen).await?;
        Ok(Gateway { state, listeners })
    }

    fn addresses(&self) -> Addresses {
        Addresses::of(&self.listeners)
    }

    /// Serves until `shutdown` is cancelled; then turns readiness off, stops taking
    /// connections, lets the requests in flight finish and returns. Ready while both
    /// services say they are serving.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Gateway { state, listeners } = self;
        let tracking_check: Check = {
            let channel = state.tracking_channel();
            Arc::new(move || {
                let channel = channel.clone();
                Box::pin(async move { serving(channel, TRACKING).await })
            })
        };
        let registry_check: Check = {
            let channel = state.registry_channel();
            Arc::new(move || {
                let channel = channel.clone();
                Box::pin(async move { serving(channel, REGISTRY).await })
            })
        };
        Runner::http("mlflow", listeners, router(state))
            .check("tracking", tracking_check)
            .check("registry", registry_check)
            .run(shutdown)
            .await
    }
}

/// `Ok` when the service `name` behind `channel` says it is serving.
async fn serving(channel: tonic::transport::Channel, name: &str) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: name.to_owned(),
        })
        .await
        .map_err(|s| format!("{name} is unreachable: {}", s.message()))?;
    if resp.into_inner().status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(format!("{name} is not serving"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    /// A router whose services are not there (nothing listens on port 1).
    fn app() -> Router {
        let mut config = MlflowConfig::local(
            "127.0.0.1:0",
            "127.0.0.1:0",
            "http://127.0.0.1:1",
            "http://127.0.0.1:1",
        );
        config.max_body_bytes = 4096;
        router(AppState::new(&config).unwrap())
    }

    async fn call(req: Request<Body>) -> (StatusCode, Value) {
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn post(path: &str, content_type: Option<&str>, body: &str) -> Request<Body> {
        let mut req = Request::post(path);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        req.body(Body::from(body.to_owned())).unwrap()
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_answer_in_mlflows_format() {
        let (status, body) = call(
            Request::get("/api/2.0/mlflow/nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status.as_u16(), body["error_code"].as_str()),
            (404, Some("ENDPOINT_NOT_FOUND"))
        );
        let (status, _) = call(post(
            "/api/2.0/mlflow/runs/get",
            Some("application/json"),
            "{}",
        ))
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn bodies_are_checked_before_any_backend_call() {
        let path = "/api/2.0/mlflow/experiments/create";
        let (status, body) = call(post(path, None, "{\"name\": \"x\"}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["message"],
            "Bad Request. Content-Type header is missing."
        );
        let (status, _) = call(post(path, Some("text/plain"), "{\"name\": \"x\"}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body) = call(post(path, Some("application/json; charset=utf-8"), "{}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
        let (status, body) = call(post(path, Some("application/json"), "{\"name\": ")).await;
        assert_eq!(
            (status.as_u16(), body["error_code"].as_str()),
            (400, Some("INVALID_PARAMETER_VALUE"))
        );
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(5000));
        let (status, _) = call(post(path, Some("application/json"), &big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, body) = call(
            Request::get("/api/2.0/mlflow/runs/get")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["message"].as_str().unwrap().contains("'run_id'"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn the_rest_api_answers_under_ajax_api_too_and_the_ui_is_off_by_default() {
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let (status, direct) = call(get("/api/3.0/mlflow/server-info")).await;
        let (mirrored_status, mirrored) = call(get("/ajax-api/3.0/mlflow/server-info")).await;
        assert_eq!((status, mirrored_status), (StatusCode::OK, StatusCode::OK));
        assert_eq!(direct, mirrored);
        // Parameters and their errors arrive intact.
        let (status, body) = call(get("/ajax-api/2.0/mlflow/runs/get?run_id=")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["message"].as_str().unwrap().contains("'run_id'"),
            "{body}"
        );
        let (status, body) = call(get("/ajax-api/2.0/mlflow/nope")).await;
        assert_eq!(
            (status.as_u16(), body["error_code"].as_str()),
            (404, Some("ENDPOINT_NOT_FOUND"))
        );
        assert!(body["message"]
            .as_str()
            .unwrap()
            .contains("/api/2.0/mlflow/nope"));
        let (status, body) = call(get("/")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body["message"].as_str().unwrap().contains("--ui-dir"),
            "{body}"
        );
        // Doubled slashes are merged, as werkzeug merges them for MLflow's server.
        let (status, merged) = call(get("//api/3.0//mlflow/server-info")).await;
        assert_eq!((status, &merged), (StatusCode::OK, &direct));
        let (status, body) = call(get("//api/2.0/mlflow/nope")).await;
        assert_eq!(
            (status.as_u16(), body["error_code"].as_str()),
            (404, Some("ENDPOINT_NOT_FOUND"))
        );
        // The UI's dataset list checks its request before asking tracking.
        let search = |body: String| {
            Request::post("/ajax-api/2.0/mlflow/experiments/search-datasets")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap()
        };
        let (status, body) = call(search("{}".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["message"],
            "SearchDatasets request must specify at least one experiment_id."
        );
        let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        let (status, body) = call(search(
            serde_json::json!({ "experiment_ids": many }).to_string(),
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with("SearchDatasets request cannot specify more than 20 experiment_ids."));
    }

    #[tokio::test]
    async fn an_unreachable_service_is_temporarily_unavailable() {
        let req = Request::get("/api/2.0/mlflow/experiments/get?experiment_id=0")
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(req).await;
        assert_eq!(
            (status.as_u16(), body["error_code"].as_str()),
            (503, Some("TEMPORARILY_UNAVAILABLE"))
        );
    }

    #[tokio::test]
    async fn server_info_says_what_the_client_may_use() {
        let (status, body) = call(
            Request::get("/api/3.0/mlflow/server-info")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["multipart_uploads_enabled"], false);
        assert_eq!(body["multipart_downloads_enabled"], false);
        let resp = app()
            .oneshot(Request::get("/health").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        // Multipart uploads answer the message MLflow's client falls back on.
        let (status, body) = call(post(
            "/api/2.0/mlflow-artifacts/mpu/create/1/x",
            Some("application/json"),
            "{}",
        ))
        .await;
        assert_eq!(status.as_u16(), 501);
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with("Multipart upload is not supported"));
    }
}
