//! The Open Inference Protocol over HTTP/JSON (`/v2/...`, KServe v2 REST with Triton's
//! extensions), on a port of its own, so `curl` and `tritonclient.http` work unchanged.
//!
//! - Tensors in JSON: `data` is a flat row-major array or nested arrays (flattened); BYTES
//!   elements are JSON strings, BOOL `true`/`false`. JSON has no NaN or infinity: `null` in a
//!   floating-point input is NaN, and a NaN or infinite output is written `null` (numpy reads
//!   `None` back as NaN). BYTES outputs are written as strings, invalid UTF-8 replaced by
//!   U+FFFD: ask for them as binary data to get the bytes exactly.
//! - Triton's binary tensor data extension (what `tritonclient.http` sends by default): the
//!   JSON header's length is in `Inference-Header-Content-Length`, and an input with the
//!   parameter `binary_data_size` takes that many bytes after it, in input order (raw
//!   little-endian; BYTES with a 4-byte length before each element). An output asked for with
//!   `binary_data` (or every output, with the request parameter `binary_data_output`) is
//!   answered the same way, with `application/octet-stream`.
//! - Not supported: compressed request bodies (`Content-Encoding`; `tritonclient` compresses
//!   only when asked to, and reads an uncompressed answer whatever it accepts), shared memory,
//!   the classification extension.
//! - Errors are `{"error": "..."}` with Triton's statuses: 400 for a bad request, 404 for an
//!   unknown model, 503 for a model not ready or a full queue, 500 for a model that failed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use mlops_proto::triton as pb;
use mlops_runtime::auth::{Role, Tokens};
use mlops_runtime::{ErrorCode, ServiceError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::InferenceError;

mod infer;
use crate::grpc::{self, EXTENSIONS, PLATFORM};
use crate::manager::{Cause, Manager, Slot};
use crate::models::dims;
use crate::tensors::datatype_name;
use infer::infer;

/// The header giving the length of the JSON part of a body that carries binary tensors.
const HEADER_LENGTH: HeaderName = HeaderName::from_static("inference-header-content-length");

/// The HTTP API over `manager`, with bearer `tokens` checked as on gRPC (health open, loading
/// and unloading a writer, the rest a reader) and request bodies of at most `max_body_bytes`.
pub fn router(manager: Manager, tokens: Tokens, max_body_bytes: usize) -> Router {
    let api = Arc::new(Api {
        manager,
        max_body_bytes,
    });
    let open = Router::new()
        .route("/v2/health/live", get(healthy))
        .route("/v2/health/ready", get(healthy));
    let mut read = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_statistics))
        .route("/v2/repository/index", post(index));
    for model in ["/v2/models/{name}", "/v2/models/{name}/versions/{version}"] {
        read = read
            .route(model, get(model_metadata))
            .route(&format!("{model}/ready"), get(model_ready))
            .route(&format!("{model}/config"), get(model_config))
            .route(&format!("{model}/stats"), get(model_statistics))
            .route(&format!("{model}/infer"), post(infer));
    }
    let write = Router::new()
        .route("/v2/repository/models/{name}/load", post(load))
        .route("/v2/repository/models/{name}/unload", post(unload));
    open.merge(guarded(
        read,
        &tokens,
        Role::Reader,
        "reading models and inference",
    ))
    .merge(guarded(
        write,
        &tokens,
        Role::Writer,
        "loading and unloading models",
    ))
    .fallback(no_route)
    .method_not_allowed_fallback(wrong_method)
    .with_state(api)
}

struct Api {
    manager: Manager,
    max_body_bytes: usize,
}

type Shared = State<Arc<Api>>;

/// An error answered as Triton does: `{"error": message}` with an HTTP status.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

/// Triton's HTTP status of an error code: 400 unless the model is unknown (404), not ready
/// or saturated (503), failed (500), or the caller is not allowed (401, 403).
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unavailable | ErrorCode::ResourceExhausted | ErrorCode::DeadlineExceeded => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::InvalidArgument
        | ErrorCode::AlreadyExists
        | ErrorCode::FailedPrecondition
        | ErrorCode::OutOfRange => StatusCode::BAD_REQUEST,
    }
}

impl From<InferenceError> for HttpError {
    fn from(e: InferenceError) -> Self {
        HttpError::new(status_of(e.code()), e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "http request failed");
        }
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type Answer<T = Response> = std::result::Result<T, HttpError>;

/// What a group of routes needs of the caller's token.
#[derive(Clone)]
struct Guard {
    tokens: Tokens,
    role: Role,
    what: &'static str,
}

fn guarded(
    routes: Router<Arc<Api>>,
    tokens: &Tokens,
    role: Role,
    what: &'static str,
) -> Router<Arc<Api>> {
    let guard = Guard {
        tokens: tokens.clone(),
        role,
        what,
    };
    routes.route_layer(middleware::from_fn_with_state(guard, authorize))
}

/// Checks `Authorization: Bearer <token>` when tokens are configured, as the gRPC layer does.
async fn authorize(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if !guard.tokens.enabled() {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return HttpError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send the header `Authorization: Bearer <token>`",
        )
        .into_response();
    };
    match guard.tokens.role_of(token) {
        None => HttpError::new(StatusCode::UNAUTHORIZED, "unknown bearer token").into_response(),
        Some(role) if role < guard.role => HttpError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} needs the {} role; this token has the {role} role",
                guard.what, guard.role
            ),
        )
        .into_response(),
        Some(_) => next.run(req).await,
    }
}

async fn no_route(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint {method} {}: the Open Inference Protocol is served under /v2",
            uri.path()
        ),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// The model named in the path, and its version when the path has one.
#[derive(Deserialize)]
struct ModelPath {
    name: String,
    #[serde(default)]
    version: String,
}

async fn healthy() -> StatusCode {
    StatusCode::OK
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

async fn model_metadata(State(api): Shared, Path(p): Path<ModelPath>) -> Answer<Json<Value>> {
    let loaded = api.manager.ready(&p.name, &p.version)?;
    let meta = |specs: &[mlops_model::IoSpec]| {
        specs
            .iter()
            .map(|s| json!({"name": s.name, "datatype": datatype_name(s.dtype), "shape": dims(&s.shape)}))
            .collect::<Vec<_>>()
    };
    Ok(Json(json!({
        "name": loaded.name,
        "versions": [loaded.version.to_string()],
        "platform": PLATFORM,
        "inputs": meta(loaded.model.inputs()),
        "outputs": meta(loaded.model.outputs()),
    })))
}

/// 200 when ready; otherwise 400 with why, as Triton answers.
async fn model_ready(State(api): Shared, Path(p): Path<ModelPath>) -> Answer<StatusCode> {
    match api.manager.ready(&p.name, &p.version) {
        Ok(_) => Ok(StatusCode::OK),
        Err(e) => Err(HttpError::new(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

async fn model_config(State(api): Shared, Path(p): Path<ModelPath>) -> Answer<Json<Value>> {
    let loaded = api.manager.ready(&p.name, &p.version)?;
    Ok(Json(config_json(&grpc::model_config(&loaded))))
}

async fn all_statistics(State(api): Shared) -> Json<Value> {
    let stats: Vec<Value> = api
        .manager
        .slots()
        .values()
        .filter_map(|s| match s {
            Slot::Ready(l) => Some(statistics_json(&grpc::statistics(l))),
            _ => None,
        })
        .collect();
    Json(json!({ "model_stats": stats }))
}

async fn model_statistics(State(api): Shared, Path(p): Path<ModelPath>) -> Answer<Json<Value>> {
    let loaded = api.manager.ready(&p.name, &p.version)?;
    Ok(Json(
        json!({ "model_stats": [statistics_json(&grpc::statistics(&loaded))] }),
    ))
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

async fn index(State(api): Shared, body: Body) -> Answer<Json<Value>> {
    let req: IndexRequest = optional_json(&read_body(body, api.max_body_bytes).await?)?;
    let models = grpc::index(&api.manager, req.ready).await?;
    Ok(Json(Value::Array(
        models
            .into_iter()
            .map(|m| json!({"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}))
            .collect(),
    )))
}

#[derive(Deserialize, Default)]
struct RepositoryRequest {
    #[serde(default)]
    parameters: HashMap<String, Value>,
}

/// Loads with the same parameters as gRPC's load; `config` may also be given as a JSON object
/// rather than the string `tritonclient` sends.
async fn load(State(api): Shared, Path(name): Path<String>, body: Body) -> Answer<StatusCode> {
    let mut req: RepositoryRequest = optional_json(&read_body(body, api.max_body_bytes).await?)?;
    if let Some(config) = req.parameters.get_mut("config") {
        if config.is_object() {
            *config = Value::String(config.to_string());
        }
    }
    grpc::load(&api.manager, &name, &req.parameters).await?;
    Ok(StatusCode::OK)
}

/// Unloads; `unload_dependents` (which `tritonclient` always sends) is accepted and has no
/// effect: no model here depends on another.
async fn unload(State(api): Shared, Path(name): Path<String>, body: Body) -> Answer<StatusCode> {
    let _: RepositoryRequest = optional_json(&read_body(body, api.max_body_bytes).await?)?;
    api.manager.undeploy(&name, Cause::Undeploy).await?;
    Ok(StatusCode::OK)
}

/// Reads the whole body, refusing one over `limit` bytes (413) as soon as it passes it.
async fn read_body(body: Body, limit: usize) -> Answer<Bytes> {
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes (--max-message-bytes)"),
        )
    };
    let mut stream = body.into_data_stream();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}"),
            )
        })?;
        total += chunk.len();
        if total > limit {
            return Err(too_large());
        }
        parts.push(chunk);
    }
    Ok(match parts.len() {
        1 => parts.pop().unwrap_or_default(),
        _ => parts.concat().into(),
    })
}

/// A JSON body that may be empty (then the defaults).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Answer<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("the request body is not the JSON expected: {e}"),
        )
    })
}

/// A model's configuration in Triton's JSON form (its protobuf field and enum names).
fn config_json(c: &pb::ModelConfig) -> Value {
    let dtype = |d: i32| {
        pb::DataType::try_from(d)
            .map(|d| d.as_str_name())
            .unwrap_or("TYPE_INVALID")
    };
    let mut config = json!({
        "name": c.name,
        "platform": c.platform,
        "backend": c.backend,
        "max_batch_size": c.max_batch_size,
        "input": c.input.iter().map(|i| json!({
            "name": i.name, "data_type": dtype(i.data_type), "dims": i.dims,
        })).collect::<Vec<_>>(),
        "output": c.output.iter().map(|o| json!({
            "name": o.name, "data_type": dtype(o.data_type), "dims": o.dims,
        })).collect::<Vec<_>>(),
    });
    if let Some(pb::model_version_policy::PolicyChoice::Specific(s)) = c
        .version_policy
        .as_ref()
        .and_then(|p| p.policy_choice.as_ref())
    {
        config["version_policy"] = json!({ "specific": { "versions": s.versions } });
    }
    if let Some(pb::model_config::SchedulingChoice::DynamicBatching(db)) = &c.scheduling_choice {
        let policy = db.default_queue_policy.unwrap_or_default();
        let action = pb::model_queue_policy::TimeoutAction::try_from(policy.timeout_action)
            .map(|a| a.as_str_name())
            .unwrap_or("REJECT");
        config["dynamic_batching"] = json!({
            "preferred_batch_size": db.preferred_batch_size,
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds,
            "preserve_ordering": db.preserve_ordering,
            "default_queue_policy": {
                "timeout_action": action,
                "default_timeout_microseconds": policy.default_timeout_microseconds,
                "allow_timeout_override": policy.allow_timeout_override,
                "max_queue_size": policy.max_queue_size,
            },
        });
    }
    config
}

/// A version's statistics in Triton's JSON form.
fn statistics_json(s: &pb::ModelStatistics) -> Value {
    let d = |d: &Option<pb::StatisticDuration>| {
        let d = d.unwrap_or_default();
        json!({ "count": d.count, "ns": d.ns })
    };
    let i = s.inference_stats.unwrap_or_default();
    json!({
        "name": s.name,
        "version": s.version,
        "last_inference": s.last_inference,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": d(&i.success),
            "fail": d(&i.fail),
            "queue": d(&i.queue),
            "compute_input": d(&i.compute_input),
            "compute_infer": d(&i.compute_infer),
            "compute_output": d(&i.compute_output),
            "cache_hit": d(&i.cache_hit),
            "cache_miss": d(&i.cache_miss),
        },
        "response_stats": {},
        "batch_stats": s.batch_stats.iter().map(|b| json!({
            "batch_size": b.batch_size,
            "compute_input": d(&b.compute_input),
            "compute_infer": d(&b.compute_infer),
            "compute_output": d(&b.compute_output),
        })).collect::<Vec<_>>(),
        "memory_usage": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn statuses_follow_triton() {
        assert_eq!(
            status_of(ErrorCode::InvalidArgument),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status_of(ErrorCode::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(ErrorCode::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(ErrorCode::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
