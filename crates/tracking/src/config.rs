//! The tracking service's settings. Each is a flag and an environment variable
//! `MLOPS_TRACKING_<NAME>`, and may be set in a TOML file (`--config`). The server,
//! database and bus settings are the kit's, shared by every service.

use mlops_events::BusArgs;
use mlops_runtime::config::{ConfigError, ServerArgs, ServiceConfig};
use mlops_storage::DbArgs;

/// Settings of `mlops-tracking`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-tracking",
    version,
    about = "The experiment-tracking service (MLflow Tracking's API over gRPC)",
    mut_arg("listen_addr", |a| a.default_value("0.0.0.0:50051").help("Address of the gRPC API.")),
    mut_arg("admin_addr", |a| a.default_value("0.0.0.0:9091")),
    mut_arg("database_url", |a| a.default_value("sqlite://data/tracking.db"))
)]
pub struct TrackingConfig {
    /// Ports, message limit, concurrency, tokens.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Metadata database.
    #[command(flatten)]
    pub db: DbArgs,
    /// Where artifacts go: a directory, file:///DIR, or s3://BUCKET/PREFIX (AWS_* variables for credentials and endpoint).
    #[arg(long, default_value = "data/artifacts")]
    pub artifact_root: String,
    /// Largest artifact file one upload may write, in bytes; 0 means no limit. A larger
    /// upload is refused with OUT_OF_RANGE (413 through the MLflow gateway) and
    /// leaves nothing behind.
    #[arg(long, default_value_t = 0)]
    pub max_artifact_bytes: u64,
    /// How often RUNNING runs with an expired heartbeat lease are looked for.
    #[arg(long, default_value_t = 1000)]
    pub lease_check_interval_ms: u64,
    /// Event bus settings.
    #[command(flatten)]
    pub bus: BusArgs,
}

impl ServiceConfig for TrackingConfig {
    const NAME: &'static str = "tracking";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.db.validate()?;
        if self.lease_check_interval_ms == 0 {
            return Err(ConfigError::Invalid {
                setting: "lease_check_interval_ms",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

impl TrackingConfig {
    /// Settings for one process on loopback: `addr` ports, files under `data_dir`.
    pub fn local(data_dir: &std::path::Path, listen_addr: &str, admin_addr: &str) -> Self {
        let mut c = TrackingConfig::defaults();
        c.server.listen.set(listen_addr, admin_addr);
        c.db.database_url = format!("sqlite://{}", data_dir.join("tracking.db").display());
        c.artifact_root = data_dir.join("artifacts").display().to_string();
        c
    }
}
