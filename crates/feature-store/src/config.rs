//! The feature store's settings. Each is a flag and an environment variable
//! `MLOPS_FEATURE_STORE_<NAME>`, and may be set in a TOML file (`--config`). The server,
//! database and bus settings are the kit's, shared by every service.

use mlops_events::BusArgs;
use mlops_runtime::config::{ConfigError, ServerArgs, ServiceConfig};
use mlops_storage::DbArgs;

/// Settings of `mlops-feature-store`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-feature-store",
    version,
    about = "The feature store (Feast's concepts: entities, feature views, feature services; exact point-in-time joins on Arrow)",
    mut_arg("listen_addr", |a| a.default_value("0.0.0.0:6566").help("Address of the gRPC API (Feast's feature server port).")),
    mut_arg("admin_addr", |a| a.default_value("0.0.0.0:9096")),
    mut_arg("database_url", |a| a.default_value("sqlite://data/feature-store.db"))
)]
pub struct FeatureStoreConfig {
    /// Ports, message limit, concurrency, tokens.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Metadata database (definitions).
    #[command(flatten)]
    pub db: DbArgs,
    /// The offline store, where Parquet sources, entity tables and written training tables
    /// live: a directory, file:///DIR, or s3://BUCKET/PREFIX (AWS_* variables for
    /// credentials and endpoint). Source paths are relative to it.
    #[arg(long, default_value = "data/features")]
    pub offline_root: String,
    /// Size of the Arrow IPC chunks a training table is streamed back in, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub ipc_chunk_bytes: usize,
    /// The memory a training-data join may hold for the views' history (their columns
    /// and the index over them), in bytes. A query whose views are estimated above it
    /// (from the Parquet footers) is joined in partitions spilled under `spill_dir`, a
    /// partition at a time, whatever the size of the history or of the entity table.
    #[arg(long, default_value_t = 1 << 30)]
    pub join_memory_bytes: u64,
    /// Where a join that does not fit in `join_memory_bytes` keeps its partitions (each
    /// join in a directory of its own, removed when it ends). Empty: the system's
    /// temporary directory.
    #[arg(long, default_value = "")]
    pub spill_dir: String,
    /// Event bus settings.
    #[command(flatten)]
    pub bus: BusArgs,
}

impl ServiceConfig for FeatureStoreConfig {
    const NAME: &'static str = "feature-store";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.db.validate()?;
        if self.ipc_chunk_bytes < 1024 || self.ipc_chunk_bytes > self.server.encoding_limit() {
            return Err(ConfigError::Invalid {
                setting: "ipc_chunk_bytes",
                message: format!(
                    "must be between 1024 and the encoding limit ({} bytes)",
                    self.server.encoding_limit()
                ),
            });
        }
        if self.join_memory_bytes < 1024 {
            return Err(ConfigError::Invalid {
                setting: "join_memory_bytes",
                message: "must be at least 1024 bytes".into(),
            });
        }
        Ok(())
    }
}

impl FeatureStoreConfig {
    /// How a training-data join holds the views' history.
    pub fn join_budget(&self) -> crate::offline::historical::JoinBudget {
        crate::offline::historical::JoinBudget {
            memory_bytes: self.join_memory_bytes,
            spill_dir: if self.spill_dir.is_empty() {
                std::env::temp_dir()
            } else {
                self.spill_dir.clone().into()
            },
        }
    }

    /// Settings for one process on loopback: `addr` ports, files under `data_dir`.
    pub fn local(data_dir: &std::path::Path, listen_addr: &str, admin_addr: &str) -> Self {
        let mut c = FeatureStoreConfig::defaults();
        c.server.listen.set(listen_addr, admin_addr);
        c.db.database_url = format!("sqlite://{}", data_dir.join("feature-store.db").display());
        c.offline_root = data_dir.join("features").display().to_string();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_budget_is_checked_and_defaults_to_the_temporary_directory() {
        let mut c = FeatureStoreConfig::defaults();
        assert_eq!(c.join_memory_bytes, 1 << 30);
        assert_eq!(c.join_budget().spill_dir, std::env::temp_dir());
        c.join_memory_bytes = 100;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("join_memory_bytes") && e.contains("1024"), "{e}");
        c.join_memory_bytes = 1024;
        c.spill_dir = "/var/spill".into();
        c.validate().unwrap();
        assert_eq!(
            c.join_budget().spill_dir,
            std::path::Path::new("/var/spill")
        );
    }
}
