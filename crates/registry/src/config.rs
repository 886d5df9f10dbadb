//! The registry's settings. Each is a flag and an environment variable
//! `MLOPS_REGISTRY_<NAME>`, and may be set in a TOML file (`--config`).

use mlops_events::BusArgs;
use mlops_runtime::auth::Tokens;
use mlops_runtime::config::ConfigError;

/// Settings of `mlops-registry`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-registry",
    version,
    about = "The model registry service (MLflow Model Registry's API over gRPC, with lineage and an evaluation gate)"
)]
pub struct RegistryConfig {
    /// Address of the gRPC API.
    #[arg(long, default_value = "0.0.0.0:50052")]
    pub listen_addr: String,
    /// Address of the admin HTTP port (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:9092")]
    pub admin_addr: String,
    /// Metadata database: sqlite://PATH (created if missing) or postgres://USER:PASS@HOST:PORT/DB.
    #[arg(long, default_value = "sqlite://data/registry.db")]
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
    /// Where registered model files are copied: a directory, file:///DIR, or s3://BUCKET/PREFIX (AWS_* variables for credentials and endpoint).
    #[arg(long, default_value = "data/models")]
    pub artifact_root: String,
    /// The tracking service's gRPC address, read for lineage and run artifacts.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub tracking_addr: String,
    /// Bearer token sent to the tracking service (when its auth is on).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub tracking_token: String,
    /// Bearer tokens as token:role pairs, comma separated (roles reader, writer, admin); empty turns auth off.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub auth_tokens: Tokens,
    /// Largest gRPC request message in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Concurrent requests per client connection before new ones wait.
    #[arg(long, default_value_t = 256)]
    pub max_concurrent_per_connection: usize,
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

impl RegistryConfig {
    /// Loads the settings from `args`, the environment and an optional file.
    pub fn load<I, A>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = A>,
        A: Into<std::ffi::OsString> + Clone,
    {
        let c: RegistryConfig = mlops_runtime::config::load("registry", args)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks values that the types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                setting,
                message: message.into(),
            })
        };
        if self.db_max_connections == 0 {
            return bad("db_max_connections", "must be at least 1");
        }
        if self.max_message_bytes < 1024 {
            return bad("max_message_bytes", "must be at least 1024");
        }
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

    /// Settings for one process on loopback: `addr` ports, files under `data_dir`,
    /// the tracking service at `tracking_addr`.
    pub fn local(
        data_dir: &std::path::Path,
        listen_addr: &str,
        admin_addr: &str,
        tracking_addr: &str,
    ) -> Self {
        let mut c = RegistryConfig::load(["mlops-registry"])
            .unwrap_or_else(|_| <RegistryConfig as clap::Parser>::parse_from(["mlops-registry"]));
        c.listen_addr = listen_addr.to_owned();
        c.admin_addr = admin_addr.to_owned();
        c.database_url = format!("sqlite://{}", data_dir.join("registry.db").display());
        c.artifact_root = data_dir.join("models").display().to_string();
        c.tracking_addr = tracking_addr.to_owned();
        c
    }
}
