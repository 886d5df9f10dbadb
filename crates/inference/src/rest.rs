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
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use mlops_model::{Tensor, TensorData};
use mlops_proto::triton as pb;
use mlops_runtime::auth::{Role, Tokens};
use mlops_runtime::{ErrorCode, ServiceError};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};

use crate::error::{invalid, InferenceError, Result};
use crate::grpc::{self, EXTENSIONS, PLATFORM};
use crate::manager::{Cause, Manager, Slot};
use crate::models::{dims, Call, Loaded};
use crate::tensors::{
    datatype_name, decode_raw, element_count, element_size, encode_raw, parse_datatype, tensor,
};

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

/// An inference request's JSON header.
#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: HashMap<String, Value>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Vec<RequestedOutput>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: HashMap<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: HashMap<String, Value>,
}

/// Splits a body into its JSON header and the binary tensor data after it.
fn split_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Answer<(&'b [u8], &'b [u8])> {
    let Some(value) = headers.get(&HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let length: usize = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                format!("Inference-Header-Content-Length must be a byte count, not {value:?}"),
            )
        })?;
    if length > body.len() {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "Inference-Header-Content-Length is {length} but the body has only {} bytes",
                body.len()
            ),
        ));
    }
    Ok(body.split_at(length))
}

async fn infer(
    State(api): Shared,
    Path(p): Path<ModelPath>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        if encoding.as_bytes() != b"identity" {
            return Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {encoding:?} is not supported: send the body uncompressed"
                ),
            ));
        }
    }
    let body = read_body(body, api.max_body_bytes).await?;
    let (header_part, binary) = split_body(&headers, &body)?;
    let route = api.manager.route(&p.name, &p.version, |h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })?;
    let loaded = route.loaded;
    let prepared = serde_json::from_slice::<InferRequest>(header_part)
        .map_err(|e| {
            invalid(format!(
                "the inference request is not the JSON expected: {e}"
            ))
        })
        .and_then(|req| prepare(&loaded, req, binary));
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            loaded.rejected(&e);
            return Err(e.into());
        }
    };
    let id = loaded.request_id(prepared.id.as_deref().unwrap_or_default());
    if let Some((shadow, fault)) = route.shadow {
        shadow.mirror(id.clone(), fault, loaded.named(&prepared.inputs));
    }
    let call = Call {
        request_id: &id,
        fault: route.fault,
    };
    let outputs = loaded
        .infer(&call, prepared.rows, prepared.inputs, prepared.timeout)
        .await?;
    let names: Vec<String> = prepared.wanted.iter().map(|(n, _)| n.clone()).collect();
    let outputs = grpc::select_outputs(&loaded, outputs, &names)?;
    let binary: Vec<bool> = if prepared.wanted.is_empty() {
        vec![prepared.all_binary; outputs.len()]
    } else {
        prepared.wanted.iter().map(|(_, b)| *b).collect()
    };
    let id = (!id.is_empty()).then_some(id);
    Ok(respond(&loaded, id.as_deref(), &outputs, &binary))
}

/// A request checked against the model and decoded, ready to run.
struct Prepared {
    id: Option<String>,
    timeout: Option<std::time::Duration>,
    /// The outputs asked for, each with whether it is wanted as binary data.
    wanted: Vec<(String, bool)>,
    /// Whether outputs not asked for by name are answered as binary data.
    all_binary: bool,
    rows: usize,
    inputs: Vec<Tensor>,
}

fn flag(params: &HashMap<String, Value>, key: &str) -> Result<Option<bool>> {
    params
        .get(key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| invalid(format!("parameter {key:?} must be true or false, not {v}")))
        })
        .transpose()
}

fn unsupported_parameters(what: &str, params: &HashMap<String, Value>) -> Result<()> {
    if params.contains_key("shared_memory_region") {
        return Err(invalid(format!(
            "{what}: shared memory is not supported by this server; send the tensor in the request"
        )));
    }
    Ok(())
}

fn prepare(loaded: &Loaded, req: InferRequest, mut binary: &[u8]) -> Result<Prepared> {
    let timeout = grpc::timeout_of(&req.parameters)?;
    let all_binary = flag(&req.parameters, "binary_data_output")?.unwrap_or(false);
    let mut wanted = Vec::with_capacity(req.outputs.len());
    for out in &req.outputs {
        if out.parameters.contains_key("classification") {
            return Err(invalid(
                "the classification extension is not supported: request the output itself",
            ));
        }
        unsupported_parameters(&format!("output {:?}", out.name), &out.parameters)?;
        if !loaded.model.outputs().iter().any(|s| s.name == out.name) {
            return Err(
                grpc::select_outputs(loaded, vec![], std::slice::from_ref(&out.name))
                    .err()
                    .unwrap_or_else(|| invalid("unknown output")),
            );
        }
        let b = flag(&out.parameters, "binary_data")?.unwrap_or(all_binary);
        wanted.push((out.name.clone(), b));
    }
    let mut named = Vec::with_capacity(req.inputs.len());
    for input in req.inputs {
        let name = &input.name;
        let dtype = parse_datatype(&input.datatype).ok_or_else(|| {
            invalid(format!(
                "input {name:?}: unknown or unsupported datatype {:?}; use one of BOOL, UINT8..UINT64, INT8..INT64, FP32, FP64, BYTES",
                input.datatype
            ))
        })?;
        // The type first: a wrong datatype also makes the byte count wrong, and the type is
        // the mistake to report.
        loaded.check_datatype(name, dtype)?;
        unsupported_parameters(&format!("input {name:?}"), &input.parameters)?;
        let count = element_count(name, &input.shape)?;
        let size = input
            .parameters
            .get("binary_data_size")
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    invalid(format!(
                        "input {name:?}: binary_data_size must be a byte count, not {v}"
                    ))
                })
            })
            .transpose()?;
        let data = match (size, &input.data) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "input {name:?} has both data and binary_data_size; send one"
                )))
            }
            (Some(size), None) => {
                loaded.check_size(name, size)?;
                let size = size as usize;
                if size > binary.len() {
                    return Err(invalid(format!(
                        "input {name:?}: binary_data_size is {size} but only {} bytes of binary data follow (the JSON header's length is in Inference-Header-Content-Length; inputs take the bytes after it in order)",
                        binary.len()
                    )));
                }
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                decode_raw(name, dtype, count, raw)?
            }
            (None, Some(data)) => {
                if let Some(width) = element_size(dtype) {
                    loaded.check_size(name, count as u64 * width as u64)?;
                }
                from_json(name, dtype, count, data)?
            }
            (None, None) => {
                return Err(invalid(format!(
                    "input {name:?} has no data: set its data, or its binary_data_size and the bytes after the JSON header"
                )))
            }
        };
        named.push((input.name, tensor(&input.shape, data)));
    }
    if !binary.is_empty() {
        return Err(invalid(format!(
            "{} bytes of binary data follow the inputs' binary_data_size; each byte must belong to an input",
            binary.len()
        )));
    }
    let (rows, inputs) = loaded.arrange(named)?;
    Ok(Prepared {
        id: req.id,
        timeout,
        wanted,
        all_binary,
        rows,
        inputs,
    })
}

/// Collects the elements of a flat or nested JSON array, row-major.
fn flatten<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// Decodes `count` elements of `dtype` from JSON `data`.
fn from_json(
    name: &str,
    dtype: mlops_model::DataType,
    count: usize,
    data: &Value,
) -> Result<TensorData> {
    use mlops_model::DataType as D;
    let mut flat = Vec::with_capacity(count.min(1 << 20));
    flatten(data, &mut flat);
    if flat.len() != count {
        return Err(invalid(format!(
            "input {name:?}: data holds {} elements; its shape needs {count}",
            flat.len()
        )));
    }
    let wrong = |i: usize, v: &Value, takes: &str| {
        invalid(format!(
            "input {name:?}: data element {i} is {v}; {} takes {takes}",
            datatype_name(dtype)
        ))
    };
    fn each<T>(flat: &[&Value], f: impl Fn(usize, &Value) -> Result<T>) -> Result<Vec<T>> {
        flat.iter().enumerate().map(|(i, v)| f(i, v)).collect()
    }
    let int = |i: usize, v: &Value| -> Result<i64> {
        v.as_i64()
            .ok_or_else(|| wrong(i, v, "integers in its range"))
    };
    macro_rules! narrow {
        ($t:ty) => {
            each(&flat, |i, v| {
                <$t>::try_from(int(i, v)?).map_err(|_| wrong(i, v, "integers in its range"))
            })?
        };
    }
    let float = |i: usize, v: &Value| -> Result<f64> {
        match v {
            Value::Null => Ok(f64::NAN),
            v => v
                .as_f64()
                .ok_or_else(|| wrong(i, v, "numbers (null for NaN)")),
        }
    };
    Ok(match dtype {
        D::Bool => TensorData::Bool(each(&flat, |i, v| {
            v.as_bool().ok_or_else(|| wrong(i, v, "true or false"))
        })?),
        D::U8 => TensorData::U8(narrow!(u8)),
        D::U16 => TensorData::U16(narrow!(u16)),
        D::U32 => TensorData::U32(narrow!(u32)),
        D::U64 => TensorData::U64(each(&flat, |i, v| {
            v.as_u64()
                .ok_or_else(|| wrong(i, v, "integers in its range"))
        })?),
        D::I8 => TensorData::I8(narrow!(i8)),
        D::I16 => TensorData::I16(narrow!(i16)),
        D::I32 => TensorData::I32(narrow!(i32)),
        D::I64 => TensorData::I64(each(&flat, int)?),
        D::F32 => TensorData::F32(each(&flat, |i, v| float(i, v).map(|f| f as f32))?),
        D::F64 => TensorData::F64(each(&flat, float)?),
        D::String => TensorData::String(each(&flat, |i, v| {
            v.as_str()
                .map(|s| s.as_bytes().to_vec())
                .ok_or_else(|| wrong(i, v, "strings"))
        })?),
    })
}

/// An inference response's JSON header.
#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// A tensor's elements as a flat JSON array: floats in their shortest form (`null` when not
/// finite), BYTES as strings (invalid UTF-8 replaced).
struct JsonData<'a>(&'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::Bool(v) => v.serialize(s),
            TensorData::U8(v) => v.serialize(s),
            TensorData::U16(v) => v.serialize(s),
            TensorData::U32(v) => v.serialize(s),
            TensorData::U64(v) => v.serialize(s),
            TensorData::I8(v) => v.serialize(s),
            TensorData::I16(v) => v.serialize(s),
            TensorData::I32(v) => v.serialize(s),
            TensorData::I64(v) => v.serialize(s),
            TensorData::F32(v) => v.serialize(s),
            TensorData::F64(v) => v.serialize(s),
            TensorData::String(v) => s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}

/// The response: JSON alone, or JSON then each binary output's bytes in order, with the JSON's
/// length in `Inference-Header-Content-Length`.
fn respond(
    loaded: &Loaded,
    id: Option<&str>,
    outputs: &[(String, Tensor)],
    binary: &[bool],
) -> Response {
    let raw: Vec<Option<Bytes>> = outputs
        .iter()
        .zip(binary)
        .map(|((_, t), &b)| b.then(|| encode_raw(&t.data)))
        .collect();
    let header = InferResponse {
        model_name: &loaded.name,
        model_version: loaded.version.to_string(),
        id: id.filter(|i| !i.is_empty()),
        outputs: outputs
            .iter()
            .zip(&raw)
            .map(|((name, t), raw)| OutputTensor {
                name,
                datatype: datatype_name(t.dtype()),
                shape: &t.shape,
                parameters: raw.as_ref().map(|r| BinarySize {
                    binary_data_size: r.len(),
                }),
                data: raw.is_none().then_some(JsonData(&t.data)),
            })
            .collect(),
    };
    let mut body = match serde_json::to_vec(&header) {
        Ok(b) => b,
        Err(e) => {
            return HttpError::from(InferenceError::Internal(format!(
                "writing the response: {e}"
            )))
            .into_response()
        }
    };
    if raw.iter().all(Option::is_none) {
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let json_length = body.len();
    body.reserve(raw.iter().flatten().map(Bytes::len).sum());
    for r in raw.iter().flatten() {
        body.extend_from_slice(r);
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (HEADER_LENGTH, HeaderValue::from(json_length)),
        ],
        body,
    )
        .into_response()
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
    use mlops_model::DataType as D;

    #[test]
    fn nested_and_flat_data_decode_alike() {
        let flat = from_json("x", D::F32, 4, &json!([1, 2.5, 0, -1])).unwrap();
        let nested = from_json("x", D::F32, 4, &json!([[1, 2.5], [0, -1]])).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat, TensorData::F32(vec![1.0, 2.5, 0.0, -1.0]));
        let TensorData::F64(v) = from_json("x", D::F64, 1, &json!([null])).unwrap() else {
            panic!("f64")
        };
        assert!(v[0].is_nan());
        assert_eq!(
            from_json("x", D::String, 2, &json!(["a", "bé"])).unwrap(),
            TensorData::String(vec![b"a".to_vec(), "bé".as_bytes().to_vec()])
        );
        assert_eq!(
            from_json("x", D::Bool, 2, &json!([true, false])).unwrap(),
            TensorData::Bool(vec![true, false])
        );
    }

    #[test]
    fn bad_data_says_which_element_and_what_was_expected() {
        let err = from_json("x", D::F32, 3, &json!([1, 2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds 2 elements; its shape needs 3"), "{err}");
        let err = from_json("x", D::I8, 2, &json!([1, 300]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("element 1 is 300; INT8 takes integers"),
            "{err}"
        );
        let err = from_json("x", D::F32, 1, &json!(["a"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("FP32 takes numbers"), "{err}");
        let err = from_json("x", D::String, 1, &json!([1]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BYTES takes strings"), "{err}");
    }

    #[test]
    fn outputs_write_floats_short_and_non_finite_as_null() {
        let data = TensorData::F32(vec![0.1, f32::NAN, f32::INFINITY]);
        assert_eq!(
            serde_json::to_string(&JsonData(&data)).unwrap(),
            "[0.1,null,null]"
        );
        let data = TensorData::String(vec![b"ok".to_vec(), vec![0xff]]);
        assert_eq!(
            serde_json::to_string(&JsonData(&data)).unwrap(),
            "[\"ok\",\"\u{fffd}\"]"
        );
    }

    #[test]
    fn the_header_length_splits_the_body() {
        let mut h = HeaderMap::new();
        assert_eq!(split_body(&h, b"{}ab").unwrap(), (&b"{}ab"[..], &b""[..]));
        h.insert(HEADER_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(split_body(&h, b"{}ab").unwrap(), (&b"{}"[..], &b"ab"[..]));
        h.insert(HEADER_LENGTH, HeaderValue::from_static("9"));
        let err = split_body(&h, b"{}ab").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("only 4 bytes"), "{}", err.message);
        h.insert(HEADER_LENGTH, HeaderValue::from_static("two"));
        assert!(split_body(&h, b"{}").is_err());
    }

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
