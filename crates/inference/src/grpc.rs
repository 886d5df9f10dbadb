//! Triton's `inference.GRPCInferenceService` (the Open Inference Protocol's gRPC API and
//! Triton's extensions that `tritonclient` calls) over the [`Manager`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use mlops_model::Tensor;
use mlops_proto::triton as pb;
use mlops_proto::triton::grpc_inference_service_server::GrpcInferenceService;
use mlops_runtime::auth::{Role, RoleTable};
use serde_json::Value;
use tonic::{Request, Response, Status};

pub use crate::describe::{config_datatype, model_config, statistics};
use crate::error::{invalid, Result};
use crate::manager::{Cause, Manager, Slot};
use crate::models::{dims, Call, Loaded};
use crate::settings;
use crate::tensors::{
    datatype_name, decode_raw, decode_typed, element_count, element_size, encode_raw, encode_typed,
    parse_datatype, tensor,
};

/// The role each RPC needs when auth is on: inference and metadata a reader, loading and
/// unloading a writer, server-wide settings an admin.
pub const ROLES: RoleTable = &[
    ("ServerLive", Role::Reader),
    ("ServerReady", Role::Reader),
    ("ModelReady", Role::Reader),
    ("ServerMetadata", Role::Reader),
    ("ModelMetadata", Role::Reader),
    ("ModelInfer", Role::Reader),
    ("ModelStreamInfer", Role::Reader),
    ("ModelConfig", Role::Reader),
    ("ModelStatistics", Role::Reader),
    ("RepositoryIndex", Role::Reader),
    ("RepositoryModelLoad", Role::Writer),
    ("RepositoryModelUnload", Role::Writer),
    ("SystemSharedMemoryStatus", Role::Reader),
    ("SystemSharedMemoryRegister", Role::Writer),
    ("SystemSharedMemoryUnregister", Role::Writer),
    ("CudaSharedMemoryStatus", Role::Reader),
    ("CudaSharedMemoryRegister", Role::Writer),
    ("CudaSharedMemoryUnregister", Role::Writer),
    ("TraceSetting", Role::Admin),
    ("LogSettings", Role::Admin),
];

/// The protocol extensions this server implements, as `ServerMetadata` lists them.
pub const EXTENSIONS: &[&str] = &[
    "model_repository",
    "model_configuration",
    "schedule_policy",
    "statistics",
    "parameters",
    "binary_tensor_data",
];

/// The platform reported for every model.
pub const PLATFORM: &str = "onnx";

/// The gRPC API.
#[derive(Clone)]
pub struct OipApi {
    manager: Manager,
}

impl OipApi {
    /// The API over `manager`.
    pub fn new(manager: Manager) -> Self {
        OipApi { manager }
    }
}

/// An `InferParameter` as JSON, the form settings are read in.
pub fn parameter_value(p: &pb::InferParameter) -> Value {
    use pb::infer_parameter::ParameterChoice as C;
    match &p.parameter_choice {
        Some(C::BoolParam(b)) => Value::Bool(*b),
        Some(C::Int64Param(i)) => Value::from(*i),
        Some(C::StringParam(s)) => Value::String(s.clone()),
        Some(C::DoubleParam(d)) => Value::from(*d),
        Some(C::Uint64Param(u)) => Value::from(*u),
        None => Value::Null,
    }
}

fn repository_parameter_value(p: &pb::ModelRepositoryParameter) -> Value {
    use pb::model_repository_parameter::ParameterChoice as C;
    match &p.parameter_choice {
        Some(C::BoolParam(b)) => Value::Bool(*b),
        Some(C::Int64Param(i)) => Value::from(*i),
        Some(C::StringParam(s)) => Value::String(s.clone()),
        Some(C::BytesParam(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        None => Value::Null,
    }
}

/// The request's timeout: Triton's `timeout` parameter, in microseconds.
pub fn timeout_of(params: &HashMap<String, Value>) -> Result<Option<Duration>> {
    match params.get("timeout") {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|us| (us > 0).then(|| Duration::from_micros(us)))
            .ok_or_else(|| {
                invalid(format!(
                    "parameter \"timeout\" must be a number of microseconds, not {v}"
                ))
            }),
    }
}

/// Decodes the request's tensors (typed or raw, never both) into the model's input order.
fn inputs_of(loaded: &Loaded, req: &mut pb::ModelInferRequest) -> Result<(usize, Vec<Tensor>)> {
    let raw = std::mem::take(&mut req.raw_input_contents);
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents holds {} tensors for {} inputs; send one per input, in order, or none and use contents",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut named = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.iter().enumerate() {
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
        let count = element_count(name, &input.shape)?;
        let declared = match (raw.get(i), element_size(dtype)) {
            (_, Some(size)) => count as u64 * size as u64,
            (Some(bytes), None) => bytes.len() as u64,
            (None, None) => 0,
        };
        loaded.check_size(name, declared)?;
        let data = match (raw.get(i), &input.contents) {
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "input {name:?} has both contents and raw_input_contents; send one"
                )))
            }
            (Some(bytes), None) => decode_raw(name, dtype, count, bytes)?,
            (None, Some(c)) => decode_typed(name, dtype, count, c)?,
            (None, None) => {
                return Err(invalid(format!(
                    "input {name:?} has no data: set its contents or raw_input_contents"
                )))
            }
        };
        named.push((name.clone(), tensor(&input.shape, data)));
    }
    loaded.arrange(named)
}

/// The outputs asked for, in the order asked (all, in the model's order, when none are named).
pub fn select_outputs(
    loaded: &Loaded,
    outputs: Vec<Tensor>,
    requested: &[String],
) -> Result<Vec<(String, Tensor)>> {
    let specs = loaded.model.outputs();
    let mut all: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
    if requested.is_empty() {
        return Ok(specs
            .iter()
            .zip(all)
            .filter_map(|(s, t)| t.map(|t| (s.name.clone(), t)))
            .collect());
    }
    requested
        .iter()
        .map(|name| {
            let at = specs
                .iter()
                .position(|s| &s.name == name)
                .ok_or_else(|| unknown_output(loaded, name))?;
            let t = match all[at].take() {
                Some(t) => t,
                None => return Err(invalid(format!("output {name:?} is requested twice"))),
            };
            Ok((name.clone(), t))
        })
        .collect()
}

/// An output the model does not have, named beside the ones it has.
fn unknown_output(loaded: &Loaded, name: &str) -> crate::error::InferenceError {
    let names: Vec<String> = loaded
        .model
        .outputs()
        .iter()
        .map(|s| format!("{:?}", s.name))
        .collect();
    invalid(format!(
        "unknown output {name:?}: model {:?} returns {}",
        loaded.name,
        names.join(", ")
    ))
}

fn check_requested(loaded: &Loaded, req: &pb::ModelInferRequest) -> Result<Vec<String>> {
    for out in &req.outputs {
        if out.parameters.contains_key("classification") {
            return Err(invalid(
                "the classification extension is not supported: request the output itself",
            ));
        }
        if !loaded.model.outputs().iter().any(|s| s.name == out.name) {
            return Err(unknown_output(loaded, &out.name));
        }
    }
    Ok(req.outputs.iter().map(|o| o.name.clone()).collect())
}

impl OipApi {
    /// One inference, as ModelInfer and ModelStreamInfer run it.
    pub async fn infer(
        &self,
        mut req: pb::ModelInferRequest,
        headers: &tonic::metadata::MetadataMap,
    ) -> Result<pb::ModelInferResponse> {
        let route = self
            .manager
            .route(&req.model_name, &req.model_version, |h| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })?;
        let loaded = route.loaded;
        let prepared = (|| {
            let params: HashMap<String, Value> = req
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), parameter_value(v)))
                .collect();
            let timeout = timeout_of(&params)?;
            let requested = check_requested(&loaded, &req)?;
            let raw = !req.raw_input_contents.is_empty();
            let (rows, inputs) = inputs_of(&loaded, &mut req)?;
            Ok((timeout, requested, raw, rows, inputs))
        })();
        let (timeout, requested, raw, rows, inputs) = match prepared {
            Ok(p) => p,
            Err(e) => {
                loaded.rejected(&e);
                return Err(e);
            }
        };
        let id = loaded.request_id(&req.id);
        let call = Call {
            request_id: &id,
            fault: route.fault,
        };
        let outputs = loaded
            .infer_shadowed(&call, rows, inputs, timeout, route.shadow)
            .await?;
        let outputs = select_outputs(&loaded, outputs, &requested)?;
        let mut resp = pb::ModelInferResponse {
            model_name: loaded.name.clone(),
            model_version: loaded.version.to_string(),
            id,
            ..Default::default()
        };
        for (name, t) in outputs {
            let mut out = pb::model_infer_response::InferOutputTensor {
                name,
                datatype: datatype_name(t.dtype()).to_owned(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            };
            // Answer in the form asked: raw for raw inputs (what tritonclient sends), typed
            // contents for typed inputs.
            if raw {
                resp.raw_output_contents.push(encode_raw(&t.data));
            } else {
                out.contents = Some(encode_typed(&t.data));
            }
            resp.outputs.push(out);
        }
        Ok(resp)
    }

    fn metadata(&self, name: &str, version: &str) -> Result<pb::ModelMetadataResponse> {
        let loaded = self.manager.ready(name, version)?;
        let meta = |specs: &[mlops_model::IoSpec]| {
            specs
                .iter()
                .map(|s| pb::model_metadata_response::TensorMetadata {
                    name: s.name.clone(),
                    datatype: datatype_name(s.dtype).to_owned(),
                    shape: dims(&s.shape),
                })
                .collect()
        };
        Ok(pb::ModelMetadataResponse {
            name: loaded.name.clone(),
            versions: vec![loaded.version.to_string()],
            platform: PLATFORM.to_owned(),
            inputs: meta(loaded.model.inputs()),
            outputs: meta(loaded.model.outputs()),
        })
    }
}

/// The repository index: every registered model, with its state here.
pub async fn index(
    manager: &Manager,
    ready_only: bool,
) -> Result<Vec<pb::repository_index_response::ModelIndex>> {
    let listed = manager.repository().list().await?;
    let slots = manager.slots();
    let mut out = Vec::with_capacity(listed.len());
    for m in listed {
        let (state, reason, version) = match slots.get(&m.name) {
            Some(Slot::Ready(l)) => ("READY", String::new(), l.version.to_string()),
            Some(slot) => {
                let (state, reason) = slot.state();
                (state, reason, String::new())
            }
            None => ("UNAVAILABLE", "not loaded".to_owned(), String::new()),
        };
        if ready_only && state != "READY" {
            continue;
        }
        out.push(pb::repository_index_response::ModelIndex {
            name: m.name,
            version,
            state: state.to_owned(),
            reason,
        });
    }
    Ok(out)
}

/// Loads `name` with a load request's parameters over its stored settings.
pub async fn load(manager: &Manager, name: &str, params: &HashMap<String, Value>) -> Result<()> {
    if name.is_empty() {
        return Err(invalid("model_name is required"));
    }
    let base = manager.settings_of(name);
    let (selector, settings) = settings::from_load_parameters(&base, params)?;
    manager
        .deploy(name, selector, settings, Cause::Deploy)
        .await
        .map(|_| ())
}

type Answer<T> = std::result::Result<Response<T>, Status>;

fn unsupported(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported by this server: send tensors in the request itself"
    ))
}

#[tonic::async_trait]
impl GrpcInferenceService for OipApi {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Answer<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Answer<pb::ServerReadyResponse> {
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        req: Request<pb::ModelReadyRequest>,
    ) -> Answer<pb::ModelReadyResponse> {
        let req = req.into_inner();
        let ready = self.manager.ready(&req.name, &req.version).is_ok();
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Answer<pb::ServerMetadataResponse> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "mlops-inference".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<pb::ModelMetadataRequest>,
    ) -> Answer<pb::ModelMetadataResponse> {
        let req = req.into_inner();
        Ok(Response::new(self.metadata(&req.name, &req.version)?))
    }

    async fn model_infer(
        &self,
        req: Request<pb::ModelInferRequest>,
    ) -> Answer<pb::ModelInferResponse> {
        let (headers, _, req) = req.into_parts();
        Ok(Response::new(self.infer(req, &headers).await?))
    }

    type ModelStreamInferStream = Pin<
        Box<dyn Stream<Item = std::result::Result<pb::ModelStreamInferResponse, Status>> + Send>,
    >;

    async fn model_stream_infer(
        &self,
        req: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Answer<Self::ModelStreamInferStream> {
        let api = self.clone();
        // The stream's headers route each of its requests.
        let (headers, _, requests) = req.into_parts();
        let headers = Arc::new(headers);
        let stream = requests.then(move |item| {
            let (api, headers) = (api.clone(), headers.clone());
            async move {
                let req = item?;
                let id = req.id.clone();
                Ok(match api.infer(req, &headers).await {
                    Ok(resp) => pb::ModelStreamInferResponse {
                        error_message: String::new(),
                        infer_response: Some(resp),
                    },
                    // A failed request is answered in the stream, which stays open.
                    Err(e) => pb::ModelStreamInferResponse {
                        error_message: Status::from(e).message().to_owned(),
                        infer_response: Some(pb::ModelInferResponse {
                            id,
                            ..Default::default()
                        }),
                    },
                })
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn model_config(
        &self,
        req: Request<pb::ModelConfigRequest>,
    ) -> Answer<pb::ModelConfigResponse> {
        let req = req.into_inner();
        let loaded = self.manager.ready(&req.name, &req.version)?;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(model_config(&loaded)),
        }))
    }

    async fn model_statistics(
        &self,
        req: Request<pb::ModelStatisticsRequest>,
    ) -> Answer<pb::ModelStatisticsResponse> {
        let req = req.into_inner();
        let model_stats = if req.name.is_empty() {
            self.manager
                .slots()
                .values()
                .filter_map(|s| match s {
                    Slot::Ready(l) => Some(statistics(l)),
                    _ => None,
                })
                .collect()
        } else {
            let loaded = self.manager.ready(&req.name, &req.version)?;
            vec![statistics(&loaded)]
        };
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        req: Request<pb::RepositoryIndexRequest>,
    ) -> Answer<pb::RepositoryIndexResponse> {
        let req = req.into_inner();
        Ok(Response::new(pb::RepositoryIndexResponse {
            models: index(&self.manager, req.ready).await?,
        }))
    }

    async fn repository_model_load(
        &self,
        req: Request<pb::RepositoryModelLoadRequest>,
    ) -> Answer<pb::RepositoryModelLoadResponse> {
        let req = req.into_inner();
        let params = req
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), repository_parameter_value(v)))
            .collect();
        load(&self.manager, &req.model_name, &params).await?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        req: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Answer<pb::RepositoryModelUnloadResponse> {
        let req = req.into_inner();
        self.manager
            .undeploy(&req.model_name, Cause::Undeploy)
            .await?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        _: Request<pb::SystemSharedMemoryStatusRequest>,
    ) -> Answer<pb::SystemSharedMemoryStatusResponse> {
        Ok(Response::new(
            pb::SystemSharedMemoryStatusResponse::default(),
        ))
    }

    async fn system_shared_memory_register(
        &self,
        _: Request<pb::SystemSharedMemoryRegisterRequest>,
    ) -> Answer<pb::SystemSharedMemoryRegisterResponse> {
        Err(unsupported("system shared memory"))
    }

    async fn system_shared_memory_unregister(
        &self,
        _: Request<pb::SystemSharedMemoryUnregisterRequest>,
    ) -> Answer<pb::SystemSharedMemoryUnregisterResponse> {
        Err(unsupported("system shared memory"))
    }

    async fn cuda_shared_memory_status(
        &self,
        _: Request<pb::CudaSharedMemoryStatusRequest>,
    ) -> Answer<pb::CudaSharedMemoryStatusResponse> {
        Ok(Response::new(pb::CudaSharedMemoryStatusResponse::default()))
    }

    async fn cuda_shared_memory_register(
        &self,
        _: Request<pb::CudaSharedMemoryRegisterRequest>,
    ) -> Answer<pb::CudaSharedMemoryRegisterResponse> {
        Err(unsupported("CUDA shared memory"))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<pb::CudaSharedMemoryUnregisterRequest>,
    ) -> Answer<pb::CudaSharedMemoryUnregisterResponse> {
        Err(unsupported("CUDA shared memory"))
    }

    async fn trace_setting(
        &self,
        _: Request<pb::TraceSettingRequest>,
    ) -> Answer<pb::TraceSettingResponse> {
        Err(Status::unimplemented(
            "trace settings are not supported: traces go to the OpenTelemetry collector the service is configured with",
        ))
    }

    async fn log_settings(
        &self,
        _: Request<pb::LogSettingsRequest>,
    ) -> Answer<pb::LogSettingsResponse> {
        Err(Status::unimplemented(
            "log settings are not supported: set RUST_LOG when starting the service",
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_has_a_declared_role() {
        mlops_runtime::auth::assert_declared(
            mlops_proto::triton::FILE_DESCRIPTOR_SET,
            mlops_proto::triton::grpc_inference_service_server::SERVICE_NAME,
            super::ROLES,
        );
    }
}
