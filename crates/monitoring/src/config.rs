//! The monitoring service's settings. Each is a flag and an environment variable
//! `MLOPS_MONITORING_<NAME>`, and may be set in a TOML file (`--config`). The server,
//! database and bus settings are the kit's, shared by every service.

use mlops_events::BusArgs;
use mlops_runtime::config::{ConfigError, ServerArgs, ServiceConfig};
use mlops_storage::DbArgs;

/// Settings of `mlops-monitoring`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-monitoring",
    version,
    about = "The monitoring service (Evidently's drift methods, exactly; reference tables, windows, reports over time)",
    mut_arg("listen_addr", |a| a.default_value("0.0.0.0:50054")),
    mut_arg("admin_addr", |a| a.default_value("0.0.0.0:9094")),
    mut_arg("database_url", |a| a.default_value("sqlite://data/monitoring.db"))
)]
pub struct MonitoringConfig {
    /// Ports, message limit, concurrency, tokens.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Metadata database (monitors, reference versions, reports).
    #[command(flatten)]
    pub db: DbArgs,
    /// Where reference tables are kept (Parquet): a directory, file:///DIR, or
    /// s3://BUCKET/PREFIX (AWS_* variables for credentials and endpoint).
    #[arg(long, default_value = "data/monitoring")]
    pub reference_root: String,
    /// Largest table (reference or window) accepted, in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    pub max_table_bytes: usize,
    /// Columns tested at once by one report (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub report_workers: usize,
    /// Follow the inference service's prediction log (`mlops.inference.predictions`)
    /// for the monitors that ask for it, and their labels topics; `false` serves pushed
    /// windows (and pushed labels) only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub follow_prediction_log: bool,
    /// The consumer group the replicas follow the prediction log in (one per platform
    /// on a shared broker).
    #[arg(long, default_value = "monitoring-predictions")]
    pub prediction_log_group: String,
    /// Days the predictions of monitors that measure performance, and their labels, are
    /// kept for the join (labels may come days after the predictions).
    #[arg(long, default_value_t = 30)]
    pub label_retention_days: u64,
    /// Event bus settings.
    #[command(flatten)]
    pub bus: BusArgs,
}

impl ServiceConfig for MonitoringConfig {
    const NAME: &'static str = "monitoring";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.db.validate()?;
        if self.prediction_log_group.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "prediction_log_group",
                message: "must not be empty".into(),
            });
        }
        if self.max_table_bytes < 1024 {
            return Err(ConfigError::Invalid {
                setting: "max_table_bytes",
                message: "must be at least 1024".into(),
            });
        }
        Ok(())
    }
}

impl MonitoringConfig {
    /// Settings for one process on loopback: `addr` ports, files under `data_dir`.
    pub fn local(data_dir: &std::path::Path, listen_addr: &str, admin_addr: &str) -> Self {
        let mut c = MonitoringConfig::defaults();
        c.server.listen.set(listen_addr, admin_addr);
        c.db.database_url = format!("sqlite://{}", data_dir.join("monitoring.db").display());
        c.reference_root = data_dir.join("monitoring").display().to_string();
        c
    }

    /// Columns a report tests at once.
    pub fn workers(&self) -> usize {
        match self.report_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}
