//! The tracking service's settings. Each is a flag and an environment variable
//! `MLOPS_TRACKING_<NAME>`, and may be set in a TOML file (`--config`).

use mlops_events::BusArgs;
use mlops_runtime::auth::Tokens;
use mlops_runtime::config::ConfigError;

/// Settings of `mlops-tracking`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-tracking",
    version,
    about = "The experiment-tracking service (MLflow Tracking's API over gRPC)"
)]
pub struct TrackingConfig {
    /// Address of the gRPC API.
    #[arg(long, default_value = "0.0.0.0:50051")]
    pub listen_addr: String,
    /// Address of the admin HTTP port (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:9091")]
    pub admin_addr: String,
    /// Metadata database: sqlite://PATH (created if missing) or postgres://USER:PASS@HOST:PORT/DB.
    #[arg(long, default_value = "sqlite://data/tracking.db")]
    pub database_url: String,
    /// Most database connections open at once.
    #[arg(long, default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection before RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 2000)]
    pub db_acquire_timeout_ms: u64,
    /// The longest one database statement may run, in milliseconds, before it is
    /// cancelled with DEADLINE_EXCEEDED (0: no limit). On SQLite only searches are
    /// bounded, and the answer stops waiting rather than the statement stopping.
    #[arg(long, default_value_t = 30_000)]
    pub db_statement_timeout_ms: u64,
    /// Where artifacts go: a directory, file:///DIR, or s3://BUCKET/PREFIX (AWS_* variables for credentials and endpoint).
    #[arg(long, default_value = "data/artifacts")]
    pub artifact_root: String,
    /// Bearer tokens as token:role pairs, comma separated (roles reader, writer, admin); empty turns auth off.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub auth_tokens: Tokens,
    /// Largest gRPC request message in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Concurrent requests per client connection before new ones wait.
    #[arg(long, default_value_t = 256)]
    pub max_concurrent_per_connection: usize,
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

impl TrackingConfig {
    /// Loads the settings from `args`, the environment and an optional file.
    pub fn load<I, A>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = A>,
        A: Into<std::ffi::OsString> + Clone,
    {
        let c: TrackingConfig = mlops_runtime::config::load("tracking", args)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                setting: "db_max_connections",
                message: "must be at least 1".into(),
            });
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid {
                setting: "max_message_bytes",
                message: "must be at least 1024".into(),
            });
        }
        if self.lease_check_interval_ms == 0 {
            return Err(ConfigError::Invalid {
                setting: "lease_check_interval_ms",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// Settings for one process on loopback: `addr` ports, files under `data_dir`.
    pub fn local(data_dir: &std::path::Path, listen_addr: &str, admin_addr: &str) -> Self {
        let mut c = TrackingConfig::load(["mlops-tracking"])
            .unwrap_or_else(|_| <TrackingConfig as clap::Parser>::parse_from(["mlops-tracking"]));
        c.listen_addr = listen_addr.to_owned();
        c.admin_addr = admin_addr.to_owned();
        c.database_url = format!("sqlite://{}", data_dir.join("tracking.db").display());
        c.artifact_root = data_dir.join("artifacts").display().to_string();
        c
    }
}
