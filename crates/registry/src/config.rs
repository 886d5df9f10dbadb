//! The registry's settings. Each is a flag and an environment variable
//! `MLOPS_REGISTRY_<NAME>`, and may be set in a TOML file (`--config`). The server,
//! database and bus settings are the kit's, shared by every service.

use mlops_events::BusArgs;
use mlops_runtime::config::{ConfigError, ServerArgs, ServiceConfig};
use mlops_storage::DbArgs;

/// Settings of `mlops-registry`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-registry",
    version,
    about = "The model registry service (MLflow Model Registry's API over gRPC, with lineage and an evaluation gate)",
    mut_arg("listen_addr", |a| a.default_value("0.0.0.0:50052").help("Address of the gRPC API.")),
    mut_arg("admin_addr", |a| a.default_value("0.0.0.0:9092")),
    mut_arg("database_url", |a| a.default_value("sqlite://data/registry.db"))
)]
pub struct RegistryConfig {
    /// Ports, message limit, concurrency, tokens.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Metadata database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Where registered model files are copied: a directory, file:///DIR, or s3://BUCKET/PREFIX (AWS_* variables for credentials and endpoint).
    #[arg(long, default_value = "data/models")]
    pub artifact_root: String,
    /// The tracking service's gRPC address, read for lineage and run artifacts.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub tracking_addr: String,
    /// Bearer token sent to the tracking service (when its auth is on).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub tracking_token: String,
    /// Largest model a version may hold, in bytes (all its files together).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    pub max_model_bytes: u64,
    /// A version still PENDING_REGISTRATION after this long (its registration was cut
    /// off, e.g. by a crash) is marked FAILED_REGISTRATION.
    #[arg(long, default_value_t = 600_000)]
    pub pending_timeout_ms: u64,
    /// Event bus settings.
    #[command(flatten)]
    pub bus: BusArgs,
}

impl ServiceConfig for RegistryConfig {
    const NAME: &'static str = "registry";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.db.validate()?;
        let bad = |setting: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                setting,
                message: message.into(),
            })
        };
        if self.max_model_bytes == 0 {
            return bad("max_model_bytes", "must be at least 1");
        }
        if self.pending_timeout_ms < 1000 {
            return bad("pending_timeout_ms", "must be at least 1000");
        }
        if self.tracking_addr.trim().is_empty() {
            return bad(
                "tracking_addr",
                "must name the tracking service, like http://tracking:50051",
            );
        }
        Ok(())
    }
}

impl RegistryConfig {
    /// Settings for one process on loopback: `addr` ports, files under `data_dir`,
    /// the tracking service at `tracking_addr`.
    pub fn local(
        data_dir: &std::path::Path,
        listen_addr: &str,
        admin_addr: &str,
        tracking_addr: &str,
    ) -> Self {
        let mut c = RegistryConfig::defaults();
        c.server.listen.set(listen_addr, admin_addr);
        c.db.database_url = format!("sqlite://{}", data_dir.join("registry.db").display());
        c.artifact_root = data_dir.join("models").display().to_string();
        c.tracking_addr = tracking_addr.to_owned();
        c
    }
}
