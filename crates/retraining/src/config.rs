//! The retraining service's settings. Each is a flag and an environment variable
//! `MLOPS_RETRAINING_<NAME>`, and may be set in a TOML file (`--config`). The server,
//! database and bus settings are the kit's, shared by every service.

use mlops_events::consumer::AppliedEventsArgs;
use mlops_events::BusArgs;
use mlops_runtime::config::{ConfigError, ServerArgs, ServiceConfig};
use mlops_storage::DbArgs;

/// Settings of `mlops-retraining`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "mlops-retraining",
    version,
    about = "The retraining service (policies, trainers, the gate, canary and promotion: the closed loop)",
    mut_arg("listen_addr", |a| a.default_value("0.0.0.0:50056")),
    mut_arg("admin_addr", |a| a.default_value("0.0.0.0:9097")),
    mut_arg("database_url", |a| a.default_value("sqlite://data/retraining.db"))
)]
pub struct RetrainingConfig {
    /// Ports, message limit, concurrency, tokens.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Metadata database (policies, retrains and their transitions).
    #[command(flatten)]
    pub db: DbArgs,
    /// The tracking service's gRPC address: the runs trainers log to.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub tracking_addr: String,
    /// Bearer token sent to the tracking service (a writer's).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub tracking_token: String,
    /// The registry's gRPC address: versions, evaluations, the gate, aliases.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub registry_addr: String,
    /// Bearer token sent to the registry (a writer's: it registers versions and moves aliases).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub registry_token: String,
    /// The feature store's gRPC address: the training and evaluation sets.
    #[arg(long, default_value = "http://127.0.0.1:6566")]
    pub feature_store_addr: String,
    /// Bearer token sent to the feature store (a reader's).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub feature_store_token: String,
    /// The inference service's gRPC address: the canary; empty: no canary, a gated
    /// candidate becomes the champion at once.
    #[arg(long, default_value = "http://127.0.0.1:8001")]
    pub inference_addr: String,
    /// Bearer token sent to the inference service (a writer's: it sets traffic).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub inference_token: String,
    /// The MLflow gateway's URL, handed to trainers as MLFLOW_TRACKING_URI (empty: not set).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub mlflow_url: String,
    /// Where retrains keep their files (training sets, trainer logs), one directory each.
    #[arg(long, default_value = "data/retraining")]
    pub work_dir: String,
    /// Where trainers run: `local` (child processes of the service, with the training set
    /// as a local file) or `kubernetes` (a Job per attempt, from --kubernetes-job-template,
    /// with the training set as an artifact of the run).
    #[arg(long, default_value = "local", value_parser = ["local", "kubernetes"])]
    pub runner: String,
    /// The Kubernetes API server (`https://HOST:PORT`); empty: the cluster the service runs
    /// in, with its pod's service account.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub kubernetes_api_url: String,
    /// The namespace trainers' Jobs go in; empty: the service's own.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub kubernetes_namespace: String,
    /// The Job template, a YAML file (the chart mounts its ConfigMap here).
    #[arg(long, default_value = "/etc/mlops/retraining-job.yaml")]
    pub kubernetes_job_template: String,
    /// The trainer's image when neither the policy nor the template names one.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub kubernetes_default_image: String,
    /// How often retrains under way are looked at, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_interval_ms: u64,
    /// The consumer group the replicas share for triggers (one per platform on a shared broker).
    #[arg(long, default_value = "retraining-triggers")]
    pub trigger_group: String,
    /// Applied-event ids kept to make triggers idempotent.
    #[command(flatten)]
    pub applied_events: AppliedEventsArgs,
    /// Event bus settings.
    #[command(flatten)]
    pub bus: BusArgs,
}

impl ServiceConfig for RetrainingConfig {
    const NAME: &'static str = "retraining";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.db.validate()?;
        let bad = |setting, message: &str| {
            Err(ConfigError::Invalid {
                setting,
                message: message.into(),
            })
        };
        for (setting, addr) in [
            ("tracking_addr", &self.tracking_addr),
            ("registry_addr", &self.registry_addr),
            ("feature_store_addr", &self.feature_store_addr),
        ] {
            if addr.trim().is_empty() {
                return bad(setting, "must name the service, like http://host:port");
            }
        }
        if self.work_dir.trim().is_empty() {
            return bad("work_dir", "must name a directory");
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return bad("poll_interval_ms", "must be between 10 and 60000");
        }
        if self.trigger_group.is_empty() {
            return bad("trigger_group", "must not be empty");
        }
        Ok(())
    }
}

impl RetrainingConfig {
    /// Settings for one process on loopback: `addr` ports, files under `data_dir`.
    pub fn local(data_dir: &std::path::Path, listen_addr: &str, admin_addr: &str) -> Self {
        let mut c = RetrainingConfig::defaults();
        c.server.listen.set(listen_addr, admin_addr);
        c.db.database_url = format!("sqlite://{}", data_dir.join("retraining.db").display());
        c.work_dir = data_dir.join("retraining").display().to_string();
        c
    }
}
