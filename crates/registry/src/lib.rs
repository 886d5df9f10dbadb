//! The model registry service (anchor: MLflow Model Registry).
//!
//! - [`config`]: its settings (`mlops-registry --help` lists them);
//! - [`store`]: models, versions, tags, aliases, stages, evaluations and gate results
//!   on SQLite or PostgreSQL, each write with its events;
//! - [`register`]: registration from a tracking run's artifact or an upload, with the
//!   ONNX signature read from the file itself;
//! - [`lineage`]: the tracking service, asked over gRPC for runs and their files;
//! - [`files`]: the registry's copy of each version's files (local directory or S3);
//! - [`gate`]: the evaluation gate's verdicts, in MLflow's threshold semantics;
//! - [`service`]: the gRPC API;
//! - [`metrics`], [`error`], [`validate`]: its metrics, its errors as gRPC statuses,
//!   request checks;
//! - [`Registry`]: the service for the kit (`mlops_kit::Service`): binds, then runs on
//!   the kit's runner (drain RPCs, then flush events).

pub mod config;
mod copies;
pub mod error;
pub mod files;
pub mod gate;
pub mod lineage;
pub mod metrics;
pub mod register;
pub mod service;
pub mod store;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mlops_events::outbox::Outbox;
use mlops_events::EventBus;
use mlops_kit::{open_bus, open_database, Addresses, Local, OnFailure, Runner, Service};
use mlops_proto::events::topics;
use mlops_proto::registry::v1::registry_service_server::{RegistryServiceServer, SERVICE_NAME};
use mlops_runtime::grpc::Listeners;
use mlops_runtime::shutdown::CancellationToken;

pub use config::RegistryConfig;
pub use store::Store;

/// A bound, ready-to-run registry.
pub struct Registry {
    config: RegistryConfig,
    store: Store,
    registrar: register::Registrar,
    bus: Arc<dyn EventBus>,
    listeners: Listeners,
}

impl Registry {
    /// The store, for tests and benchmarks that look under the API.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Service for Registry {
    type Config = RegistryConfig;
    const TITLE: &'static str = "The model registry";
    const LOCAL_PORTS: (&'static str, &'static str) = ("127.0.0.1:50052", "127.0.0.1:9092");
    const SET_LOCALLY: &'static [&'static str] = &[
        "listen_addr",
        "admin_addr",
        "database_url",
        "artifact_root",
        "tracking_addr",
    ];

    fn local(local: &Local) -> RegistryConfig {
        let (api, admin) = local.ports::<Self>();
        let mut c = RegistryConfig::local(&local.data_dir, &api, &admin, &local.callee("tracking"));
        if let Some(root) = &local.artifact_root {
            // Model files sit beside the runs' (experiment folders are numbered).
            c.artifact_root = format!("{}/models", root.trim_end_matches('/'));
        }
        c
    }

    /// Connects the database (running migrations), the model store and the bus, and
    /// binds both ports.
    async fn bind(config: RegistryConfig, bus: Option<Arc<dyn EventBus>>) -> anyhow::Result<Self> {
        use mlops_runtime::config::ServiceConfig;
        config.validate()?;
        let db = open_database("registry", &config.db, &store::migrations()).await?;
        let files = files::ModelFiles::open(&config.artifact_root)
            .with_context(|| format!("opening the model store {}", config.artifact_root))?;
        // Before any upload starts: what is staged now belongs to a process that stopped.
        let removed = files
            .remove_staged()
            .await
            .context("removing unfinished uploads from the model store's staging directory")?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed unfinished model uploads left by an earlier process"
            );
        }
        let tracking = lineage::TrackingClient::new(&config.tracking_addr, &config.tracking_token)
            .with_context(|| format!("the tracking address {}", config.tracking_addr))?;
        let bus = open_bus("registry", bus, &config.bus, &[topics::MODELS]).await?;
        let store = Store::new(db, Outbox::new("registry"), metrics::Metrics::new());
        let registrar =
            register::Registrar::new(store.clone(), files, tracking, config.max_model_bytes);
        let listeners = Listeners::bind_to(&config.server.listen).await?;
        Ok(Registry {
            config,
            store,
            registrar,
            bus,
            listeners,
        })
    }

    fn addresses(&self) -> Addresses {
        Addresses::of(&self.listeners)
    }

    /// Serves until `shutdown` is cancelled; then stops taking requests, drains the
    /// ones in flight, flushes the outbox and returns.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Registry {
            config,
            store,
            registrar,
            bus,
            listeners,
        } = self;
        let api = RegistryServiceServer::new(service::RegistryApi::new(store.clone(), registrar))
            .max_decoding_message_size(config.server.decoding_limit())
            .max_encoding_message_size(config.server.encoding_limit());
        let timeout = config.pending_timeout_ms as i64;
        Runner::grpc(
            "registry",
            listeners,
            &config.server,
            &[(SERVICE_NAME, service::ROLES)],
            tonic::service::Routes::new(api),
        )
        .outbox(&store.outbox.clone(), &store.db().clone(), &bus)
        .task("housekeeping", OnFailure::Unready, move |stop| {
            housekeeping(store, timeout, stop)
        })
        .run(shutdown)
        .await
    }
}

/// Fails registrations cut off by a crash, and samples the pool gauge.
async fn housekeeping(
    store: Store,
    pending_timeout_ms: i64,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if let Err(err) = store.expire_pending(pending_timeout_ms).await {
            tracing::warn!(error = %err, "failing stale pending registrations failed");
        }
        store.sample_pool();
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
