//! The inference service's settings. Each is a flag and an environment variable
//! `MLOPS_INFERENCE_<NAME>`, and may be set in a TOML file (`--config`). The server and
//! database settings are the kit's, shared by every service.

use mlops_events::BusArgs;
use mlops_runtime::config::{ConfigError, ServerArgs, ServiceConfig};
use mlops_storage::DbArgs;

/// Settings of `mlops-inference`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-inference",
    version,
    about = "The inference service: Triton's Open Inference Protocol (gRPC and HTTP/JSON) over ONNX models from the registry, with dynamic batching",
    mut_arg("listen_addr", |a| a.default_value("0.0.0.0:8001").help("Address of the gRPC API (Triton's GRPCInferenceService; Triton uses 8001).")),
    mut_arg("admin_addr", |a| a.default_value("0.0.0.0:8002").help("Address of the admin HTTP port: /metrics (Triton's nv_inference_* names), /healthz, /readyz.")),
    mut_arg("database_url", |a| a.default_value("sqlite://data/inference.db"))
)]
pub struct InferenceConfig {
    /// Ports, message limit, concurrency, tokens.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Address of the Open Inference Protocol over HTTP/JSON (`/v2/...`; Triton uses 8000).
    #[arg(long, default_value = "0.0.0.0:8000")]
    pub http_addr: String,
    /// Which models are loaded, and their settings, kept across restarts.
    #[command(flatten)]
    pub db: DbArgs,
    /// Event bus settings: the registry's events move deployments (hot swap); deployment
    /// events are published on `mlops.inference.deployments`.
    #[command(flatten)]
    pub bus: BusArgs,
    /// The registry's gRPC address: the model repository.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub registry_addr: String,
    /// Bearer token sent to the registry (when its auth is on).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub registry_token: String,
    /// Where model files are cached, by registered model id and version (versions never change).
    #[arg(long, default_value = "data/model-cache")]
    pub model_cache_dir: String,
    /// Most rows one request may carry, and the largest batch (Triton's
    /// `max_batch_size`); a load's parameters may set another per model.
    #[arg(long, default_value_t = 1024)]
    pub max_batch_size: u32,
    /// Whether requests are batched together (Triton's `dynamic_batching`); a load's
    /// parameters may turn it on or off per model.
    #[arg(long, default_value_t = false)]
    pub dynamic_batching: bool,
    /// With dynamic batching: the longest a request waits for others to fill a batch, in microseconds.
    #[arg(long, default_value_t = 500)]
    pub max_queue_delay_us: u64,
    /// With dynamic batching: batch sizes (rows) that are run as soon as they are reached, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub preferred_batch_size: Vec<u32>,
    /// With dynamic batching: requests waiting per model before new ones are refused with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1024)]
    pub max_queue_size: u32,
    /// Default per-request timeout in microseconds, from arrival to the start of its
    /// computation (0: none); a request's `timeout` parameter overrides it.
    #[arg(long, default_value_t = 0)]
    pub default_timeout_us: u64,
    /// Share of predictions published on the prediction log (`mlops.inference.predictions`),
    /// from 0 (none) to 1 (every one); a model's `prediction_log_sample` load parameter sets
    /// its own.
    #[arg(long, default_value_t = 1.0)]
    pub prediction_log_sample: f64,
    /// Predictions buffered for the prediction log; when the bus cannot keep up, what does
    /// not fit is dropped (counted), never waited for.
    #[arg(long, default_value_t = 10_000)]
    pub prediction_log_buffer: usize,
    /// Largest tensor a request may carry, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_tensor_bytes: u64,
}

/// `MLOPS_DENSE_MAX_ISA`'s value (`None`: unset), checked where the service starts rather
/// than at its first model load.
fn dense_cap(value: Option<&str>) -> Result<(), ConfigError> {
    mlops_model::check_dense_cap(value).map_err(|message| ConfigError::Invalid {
        setting: "MLOPS_DENSE_MAX_ISA",
        message,
    })
}

impl ServiceConfig for InferenceConfig {
    const NAME: &'static str = "inference";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.db.validate()?;
        let bad = |setting: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                setting,
                message: message.into(),
            })
        };
        if self.http_addr.trim().is_empty() {
            return bad("http_addr", "must be an address like 0.0.0.0:8000");
        }
        if self.registry_addr.trim().is_empty() {
            return bad(
                "registry_addr",
                "must name the registry, like http://registry:50052",
            );
        }
        if self.max_batch_size == 0 {
            return bad("max_batch_size", "must be at least 1");
        }
        if self.max_queue_size == 0 {
            return bad("max_queue_size", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.prediction_log_sample) {
            return bad("prediction_log_sample", "must be between 0 and 1");
        }
        if self.prediction_log_buffer == 0 {
            return bad("prediction_log_buffer", "must be at least 1");
        }
        if self.max_tensor_bytes < 1024 {
            return bad("max_tensor_bytes", "must be at least 1024");
        }
        dense_cap(std::env::var("MLOPS_DENSE_MAX_ISA").ok().as_deref())?;
        if let Some(p) = self
            .preferred_batch_size
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch_size)
        {
            return Err(ConfigError::Invalid {
                setting: "preferred_batch_size",
                message: format!("{p} is not between 1 and max_batch_size"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_on_the_dense_kernels_outside_the_three_stops_the_service_at_start() {
        assert!(dense_cap(None).is_ok());
        for ok in ["avx512", "avx2", "none"] {
            assert!(dense_cap(Some(ok)).is_ok(), "{ok}");
        }
        let err = dense_cap(Some("avx")).unwrap_err().to_string();
        assert!(
            err.contains("MLOPS_DENSE_MAX_ISA") && err.contains("avx512, avx2 or none"),
            "{err}"
        );
    }
}
