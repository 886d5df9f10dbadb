//! The experiment-tracking service (anchor: MLflow Tracking).
//!
//! - [`config`]: its settings (`mlops-tracking --help` lists them);
//! - [`store`]: experiments, runs, params, tags, metrics and inputs on SQLite or PostgreSQL;
//! - [`artifacts`]: run artifacts on a local directory or S3;
//! - [`service`]: the gRPC API;
//! - [`metrics`], [`error`], [`validate`]: its metrics, its errors as gRPC statuses,
//!   request checks;
//! - [`Tracking`]: the service for the kit (`mlops_kit::Service`): binds, then runs on
//!   the kit's runner (drain RPCs, then flush events).

pub mod artifacts;
pub mod config;
pub mod error;
pub mod metrics;
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
use mlops_proto::tracking::v1::tracking_service_server::{TrackingServiceServer, SERVICE_NAME};
use mlops_runtime::grpc::Listeners;
use mlops_runtime::shutdown::CancellationToken;

pub use config::TrackingConfig;
pub use store::Store;

/// A bound, ready-to-run tracking service.
pub struct Tracking {
    config: TrackingConfig,
    store: Store,
    artifacts: artifacts::Artifacts,
    bus: Arc<dyn EventBus>,
    listeners: Listeners,
}

impl Tracking {
    /// The store, for tests and benchmarks that look under the API.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Service for Tracking {
    type Config = TrackingConfig;
    const TITLE: &'static str = "The tracking service";
    const LOCAL_PORTS: (&'static str, &'static str) = ("127.0.0.1:50051", "127.0.0.1:9091");
    const SET_LOCALLY: &'static [&'static str] =
        &["listen_addr", "admin_addr", "database_url", "artifact_root"];

    fn local(local: &Local) -> TrackingConfig {
        let (api, admin) = local.ports::<Self>();
        let mut c = TrackingConfig::local(&local.data_dir, &api, &admin);
        if let Some(root) = &local.artifact_root {
            c.artifact_root = root.clone();
        }
        c
    }

    /// Connects the database (running migrations), the artifact store and the bus,
    /// and binds both ports.
    async fn bind(config: TrackingConfig, bus: Option<Arc<dyn EventBus>>) -> anyhow::Result<Self> {
        use mlops_runtime::config::ServiceConfig;
        config.validate()?;
        let db = open_database("tracking", &config.db, &store::migrations()).await?;
        let artifacts = artifacts::Artifacts::open(&config.artifact_root)
            .with_context(|| format!("opening the artifact root {}", config.artifact_root))?
            .with_max_bytes(config.max_artifact_bytes);
        // Before any upload starts: what is staged now belongs to a process that stopped.
        let removed = artifacts
            .remove_staged()
            .await
            .context("removing unfinished uploads from the artifact root's staging directory")?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed unfinished uploads left by an earlier process"
            );
        }
        let bus = open_bus("tracking", bus, &config.bus, &[topics::RUNS]).await?;
        let store = Store::new(
            db,
            Outbox::new("tracking"),
            artifacts.root_uri().to_owned(),
            metrics::Metrics::new(),
        );
        store.ensure_default_experiment().await?;
        let listeners = Listeners::bind_to(&config.server.listen).await?;
        Ok(Tracking {
            config,
            store,
            artifacts,
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
        let Tracking {
            config,
            store,
            artifacts,
            bus,
            listeners,
        } = self;
        let api = TrackingServiceServer::new(service::TrackingApi::new(store.clone(), artifacts))
            .max_decoding_message_size(config.server.decoding_limit())
            .max_encoding_message_size(config.server.encoding_limit());
        let every = Duration::from_millis(config.lease_check_interval_ms);
        Runner::grpc(
            "tracking",
            listeners,
            &config.server,
            &[(SERVICE_NAME, service::ROLES)],
            tonic::service::Routes::new(api),
        )
        .outbox(&store.outbox.clone(), &store.db().clone(), &bus)
        .task("lease-reaper", OnFailure::Unready, move |stop| {
            reap_leases(store, every, stop)
        })
        .run(shutdown)
        .await
    }
}

/// Kills RUNNING runs whose heartbeat lease ran out, and samples the pool gauge.
async fn reap_leases(store: Store, every: Duration, stop: CancellationToken) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(err) = store.expire_leases().await {
            tracing::warn!(error = %err, "expiring run leases failed");
        }
        let (size, idle) = store.db().pool_stats();
        store
            .metrics
            .db_pool
            .with_label_values(&["idle"])
            .set(idle as i64);
        store
            .metrics
            .db_pool
            .with_label_values(&["in_use"])
            .set(size as i64 - idle as i64);
    }
}
