//! The gateway's settings. Each is a flag and an environment variable
//! `MLOPS_MLFLOW_<NAME>`, and may be set in a TOML file (`--config`).

use mlops_runtime::config::{ConfigError, ListenArgs, ServiceConfig};

/// Settings of `mlops-mlflow`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-mlflow",
    version,
    about = "MLflow's REST API in front of the platform's services (mlflow.set_tracking_uri(\"http://HOST:5000\"))",
    mut_arg("listen_addr", |a| a.default_value("0.0.0.0:5000").help("Address of the MLflow REST API (HTTP).")),
    mut_arg("admin_addr", |a| a.default_value("0.0.0.0:9095"))
)]
pub struct MlflowConfig {
    /// Where it listens.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// The tracking service's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub tracking_addr: String,
    /// The model registry's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub registry_addr: String,
    /// Bearer token sent to the services when a request has no Authorization header of its own.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub token: String,
    /// Largest JSON request body in bytes (artifact uploads are streamed and not limited by it).
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// MLflow's web UI: the build directory inside an installed `mlflow` package
    /// (`<site-packages>/mlflow/server/js/build`), served at `/`. Unset: no UI, the REST API only.
    #[arg(long, visible_alias = "mlflow-ui-dir")]
    pub ui_dir: Option<std::path::PathBuf>,
    /// Serve artifacts through this gateway (MLflow's `--serve-artifacts`, its default):
    /// runs, experiments and logged models advertise `mlflow-artifacts:/` URIs and the
    /// client uploads and downloads here. `false` is MLflow's `--no-serve-artifacts`:
    /// they advertise the tracking service's own locations (`file:///...`, `s3://...`),
    /// which the client must reach itself, and the `mlflow-artifacts` routes answer 503.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub serve_artifacts: bool,
}

impl ServiceConfig for MlflowConfig {
    const NAME: &'static str = "mlflow";

    /// Checks values that the types alone do not.
    fn validate(&self) -> Result<(), ConfigError> {
        self.listen.validate()?;
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                setting: "max_body_bytes",
                message: "must be at least 1024".into(),
            });
        }
        for (setting, addr) in [
            ("tracking_addr", &self.tracking_addr),
            ("registry_addr", &self.registry_addr),
        ] {
            if addr.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    setting,
                    message: "must be a gRPC address like http://127.0.0.1:50051".into(),
                });
            }
        }
        if let Some(dir) = &self.ui_dir {
            crate::ui::check_build_dir(dir).map_err(|message| ConfigError::Invalid {
                setting: "ui_dir",
                message,
            })?;
        }
        if self.token.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(ConfigError::Invalid {
                setting: "token",
                message: "must be printable ASCII (it is sent in a header)".into(),
            });
        }
        Ok(())
    }
}

impl MlflowConfig {
    /// Settings for one process on loopback (`mlops up`): the given addresses, the
    /// rest from the environment or the defaults.
    pub fn local(
        listen_addr: &str,
        admin_addr: &str,
        tracking_addr: &str,
        registry_addr: &str,
    ) -> Self {
        let mut c = MlflowConfig::defaults();
        c.listen.set(listen_addr, admin_addr);
        c.tracking_addr = tracking_addr.to_owned();
        c.registry_addr = registry_addr.to_owned();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags() {
        let c = MlflowConfig::load(["mlops-mlflow"]).unwrap();
        assert_eq!(c.listen.listen_addr, "0.0.0.0:5000");
        assert_eq!(c.listen.admin_addr, "0.0.0.0:9095");
        assert_eq!(c.tracking_addr, "http://127.0.0.1:50051");
        assert_eq!(c.registry_addr, "http://127.0.0.1:50052");
        assert_eq!(c.token, "");
        assert_eq!(c.max_body_bytes, 16 * 1024 * 1024);
        let c = MlflowConfig::load([
            "mlops-mlflow",
            "--listen-addr",
            "127.0.0.1:0",
            "--max-body-bytes",
            "2048",
        ])
        .unwrap();
        assert_eq!(
            (c.listen.listen_addr.as_str(), c.max_body_bytes),
            ("127.0.0.1:0", 2048)
        );
        assert!(MlflowConfig::load(["mlops-mlflow", "--max-body-bytes", "10"]).is_err());
        // MLflow's --serve-artifacts is on by default; `false` is its --no-serve-artifacts.
        assert!(c.serve_artifacts);
        let c = MlflowConfig::load(["mlops-mlflow", "--serve-artifacts", "false"]).unwrap();
        assert!(!c.serve_artifacts);
        assert!(MlflowConfig::load(["mlops-mlflow", "--serve-artifacts", "maybe"]).is_err());
    }
}
