//! The retraining service: the loop that closes by itself. Drift, degraded performance,
//! new data or a person trigger a retrain of a registered model under its policy; the
//! retrain joins its training set in the feature store, runs the trainer against a
//! tracking run, registers the run's model, evaluates candidate and champion on the same
//! evaluation set, passes the registry's gate, canaries the candidate through the
//! inference service's deployment with its automatic analysis, and ends promoted or rolled
//! back, every step persisted and published. A schedule (cron in a time zone) triggers one
//! too.
//!
//! - [`policy`]: a policy's checks and which events trigger it; the states;
//! - [`store`]: policies, retrains and their transitions (with their events, through the
//!   outbox);
//! - [`triggers`]: the bus consumer that starts retrains; [`schedule`]: the cron schedules
//!   and the task that fires them; [`pipeline`]: the state machine's
//!   steps; [`runner`]: trainers as local processes; [`data`]: the joined datasets and the
//!   evaluation;
//! - [`config`]: its settings (`mlops-retraining --help`); [`service`]: the gRPC API;
//!   [`error`]: its errors as gRPC statuses; [`metrics`]: its metrics;
//! - [`Retraining`]: the service for the kit (`mlops_kit::Service`).

pub mod config;
pub mod data;
pub mod error;
pub mod kubernetes;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod runner;
pub mod schedule;
pub mod service;
pub mod store;
pub mod triggers;

use std::sync::Arc;
use std::time::Duration;

use mlops_events::EventBus;
use mlops_kit::{open_bus, open_database, Addresses, Local, OnFailure, Runner, Service};
use mlops_proto::events::topics;
use mlops_proto::retraining::v1::retraining_service_server::{
    RetrainingServiceServer, SERVICE_NAME,
};
use mlops_runtime::client::Client;
use mlops_runtime::grpc::Listeners;
use mlops_runtime::shutdown::CancellationToken;

pub use config::RetrainingConfig;

/// How long a replica holds the retrains it drives without renewing its lease.
const LEASE: Duration = Duration::from_secs(10);

/// The runner the settings ask for.
fn trainers(config: &RetrainingConfig) -> anyhow::Result<runner::Trainers> {
    use anyhow::Context;
    if config.runner != "kubernetes" {
        return Ok(runner::Trainers::Local(runner::LocalRunner::default()));
    }
    let template = std::fs::read_to_string(&config.kubernetes_job_template).with_context(|| {
        format!(
            "reading the Job template {} (kubernetes_job_template)",
            config.kubernetes_job_template
        )
    })?;
    let jobs = kubernetes::JobRunner::new(&kubernetes::JobSettings {
        api_url: config.kubernetes_api_url.clone(),
        namespace: config.kubernetes_namespace.clone(),
        template,
        default_image: config.kubernetes_default_image.clone(),
    })
    .map_err(|e| anyhow::anyhow!("the Kubernetes runner: {e}"))?;
    Ok(runner::Trainers::Kubernetes(jobs))
}

/// A bound, ready-to-run retraining service.
pub struct Retraining {
    config: RetrainingConfig,
    store: store::Store,
    bus: Arc<dyn EventBus>,
    listeners: Listeners,
}

impl Service for Retraining {
    type Config = RetrainingConfig;
    const TITLE: &'static str = "The retraining service";
    const LOCAL_PORTS: (&'static str, &'static str) = ("127.0.0.1:50056", "127.0.0.1:9097");
    const SET_LOCALLY: &'static [&'static str] = &[
        "listen_addr",
        "admin_addr",
        "database_url",
        "work_dir",
        "tracking_addr",
        "registry_addr",
        "feature_store_addr",
        "inference_addr",
        "mlflow_url",
    ];

    /// Its callees are those of the composition; one it does not hold keeps the setting's
    /// default (a test composes retraining alone over services started elsewhere).
    fn local(local: &Local) -> RetrainingConfig {
        let (api, admin) = local.ports::<Self>();
        let mut c = RetrainingConfig::local(&local.data_dir, &api, &admin);
        let callee = |name: &str| local.addresses(name).map(|a| format!("http://{}", a.api));
        if let Some(a) = callee("tracking") {
            c.tracking_addr = a;
        }
        if let Some(a) = callee("registry") {
            c.registry_addr = a;
        }
        if let Some(a) = callee("feature-store") {
            c.feature_store_addr = a;
        }
        c.inference_addr = callee("inference").unwrap_or_default();
        c.mlflow_url = callee("mlflow").unwrap_or_default();
        c
    }

    /// Connects the database (running migrations) and the bus, and binds both ports.
    async fn bind(
        config: RetrainingConfig,
        bus: Option<Arc<dyn EventBus>>,
    ) -> anyhow::Result<Self> {
        use mlops_runtime::config::ServiceConfig;
        config.validate()?;
        let db = open_database("retraining", &config.db, &store::migrations()).await?;
        let bus = open_bus(
            "retraining",
            bus,
            &config.bus,
            &[topics::RETRAINING, topics::MONITORING, topics::FEATURES],
        )
        .await?;
        let listeners = Listeners::bind_to(&config.server.listen).await?;
        Ok(Retraining {
            config,
            store: store::Store::new(db),
            bus,
            listeners,
        })
    }

    fn addresses(&self) -> Addresses {
        Addresses::of(&self.listeners)
    }

    /// Serves until `shutdown` is cancelled; then drains and flushes the outbox. Trainers
    /// still running are stopped; their retrains resume at the next start.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Retraining {
            config,
            store,
            bus,
            listeners,
        } = self;
        let token = |t: &str| (!t.is_empty()).then(|| t.to_owned());
        let clients = pipeline::Clients {
            tracking: Client::lazy(
                &config.tracking_addr,
                token(&config.tracking_token).as_deref(),
            )?,
            registry: Client::lazy(
                &config.registry_addr,
                token(&config.registry_token).as_deref(),
            )?,
            features: Client::lazy(
                &config.feature_store_addr,
                token(&config.feature_store_token).as_deref(),
            )?,
            inference: if config.inference_addr.trim().is_empty() {
                None
            } else {
                Some(Client::lazy(
                    &config.inference_addr,
                    token(&config.inference_token).as_deref(),
                )?)
            },
        };
        let wake = Arc::new(tokio::sync::Notify::new());
        let pipeline = pipeline::Pipeline {
            store: store.clone(),
            clients,
            env: pipeline::Environment {
                tracking_addr: config.tracking_addr.clone(),
                feature_store_addr: config.feature_store_addr.clone(),
                mlflow_url: config.mlflow_url.clone(),
            },
            runner: trainers(&config)?,
            work_dir: std::path::PathBuf::from(&config.work_dir),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            lease_ms: LEASE.as_millis() as i64,
            wake: wake.clone(),
            metrics: metrics::Metrics::new(),
        };
        let api = service::RetrainingApi::new(store.clone(), wake.clone());
        let grpc = RetrainingServiceServer::new(api)
            .max_decoding_message_size(config.server.decoding_limit())
            .max_encoding_message_size(config.server.encoding_limit());
        let poll = Duration::from_millis(config.poll_interval_ms);
        let (trigger_store, trigger_bus, group) =
            (store.clone(), bus.clone(), config.trigger_group.clone());
        let (schedule_store, schedule_wake) = (store.clone(), wake.clone());
        Runner::grpc(
            "retraining",
            listeners,
            &config.server,
            &[(SERVICE_NAME, service::ROLES)],
            tonic::service::Routes::new(grpc),
        )
        .outbox(store.outbox(), store.db(), &bus)
        .task("triggers", OnFailure::Unready, move |stop| {
            triggers::run(trigger_store, trigger_bus, group, wake, stop)
        })
        .task("schedule", OnFailure::Unready, move |stop| {
            schedule::run(schedule_store, schedule_wake, stop)
        })
        .task("pipeline", OnFailure::Unready, move |stop| {
            pipeline.run(poll, stop)
        })
        .prune_applied_events(store.db(), &config.applied_events)
        .run(shutdown)
        .await
    }
}
