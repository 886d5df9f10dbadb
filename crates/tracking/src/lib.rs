//! The experiment-tracking service (anchor: MLflow Tracking).
//!
//! - [`config`]: its settings (`mlops-tracking --help` lists them);
//! - [`store`]: experiments, runs, params, tags, metrics and inputs on SQLite or PostgreSQL;
//! - [`filter`]: MLflow's search grammar, re-exported from `mlops-filter`;
//! - [`artifacts`]: run artifacts on a local directory or S3;
//! - [`service`]: the gRPC API;
//! - [`Tracking`]: binds, serves, and shuts down in order (drain RPCs, then flush events).

pub mod artifacts;
pub mod config;
pub mod error;
pub mod metrics;
pub mod service;
pub mod store;
pub mod validate;

/// MLflow's search filter and `order_by` grammar, shared with the registry (`mlops-filter`).
pub use mlops_filter as filter;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mlops_events::outbox::Outbox;
use mlops_events::service::Service;
use mlops_events::EventBus;
use mlops_proto::tracking::v1::tracking_service_server::TrackingServiceServer;
use mlops_runtime::grpc::{GrpcServer, Listeners};
use mlops_runtime::shutdown::CancellationToken;
use mlops_storage::{Db, DbOptions};

pub use config::TrackingConfig;
pub use store::Store;

/// The topic the service publishes run events on.
pub use mlops_proto::events::topics::RUNS as RUNS_TOPIC;

/// A bound, ready-to-run tracking service.
pub struct Tracking {
    config: TrackingConfig,
    store: Store,
    artifacts: artifacts::Artifacts,
    bus: Arc<dyn EventBus>,
    listeners: Listeners,
}

impl Tracking {
    /// Connects the database (running migrations), the artifact store and the bus,
    /// and binds both ports. `bus` overrides the configured bus (one process, tests).
    pub async fn bind(
        config: TrackingConfig,
        bus: Option<Arc<dyn EventBus>>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let db = Db::connect(&DbOptions {
            url: config.database_url.clone(),
            max_connections: config.db_max_connections,
            acquire_timeout: Duration::from_millis(config.db_acquire_timeout_ms),
            statement_timeout: Duration::from_millis(config.db_statement_timeout_ms),
        })
        .await
        .context("connecting the tracking database")?;
        db.migrate("tracking", &store::migrations()).await?;
        db.migrate(
            "tracking-outbox",
            &mlops_events::outbox::migrations("tracking"),
        )
        .await?;
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
        let bus = match bus {
            Some(b) => b,
            None => mlops_events::connect(&config.bus, None)?,
        };
        if let Err(err) = bus.ensure_topics(&[RUNS_TOPIC]).await {
            // Not fatal: the relay keeps the events until the bus is back.
            tracing::warn!(error = %err, "cannot create the tracking topics yet");
        }
        let store = Store::new(
            db,
            Outbox::new("tracking"),
            artifacts.root_uri().to_owned(),
            metrics::Metrics::new(),
        );
        store.ensure_default_experiment().await?;
        let listeners = Listeners::bind(&config.listen_addr, &config.admin_addr).await?;
        Ok(Tracking {
            config,
            store,
            artifacts,
            bus,
            listeners,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr()
    }

    /// The bound admin HTTP address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin_addr()
    }

    /// The store, for tests and benchmarks that look under the API.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` is cancelled; then stops taking requests, drains the
    /// ones in flight, flushes the outbox and returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Tracking {
            config,
            store,
            artifacts,
            bus,
            listeners,
        } = self;
        let api = TrackingServiceServer::new(service::TrackingApi::new(store.clone(), artifacts))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes.max(64 * 1024 * 1024));
        let service = Service {
            name: "tracking",
            db: store.db().clone(),
            bus,
            outbox: store.outbox.clone(),
            listeners,
            server: GrpcServer {
                service: "tracking",
                grpc_names: vec!["mlops.tracking.v1.TrackingService", ""],
                tokens: config.auth_tokens.clone(),
                policy: Arc::new(service::policy),
                concurrency_per_connection: config.max_concurrent_per_connection,
            },
            routes: tonic::service::Routes::new(api),
        };
        let every = Duration::from_millis(config.lease_check_interval_ms);
        service
            .run(shutdown, |workers| {
                vec![tokio::spawn(reap_leases(store, every, workers))]
            })
            .await
    }
}

/// Kills RUNNING runs whose heartbeat lease ran out, and samples the pool gauge.
async fn reap_leases(store: Store, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
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

/// Runs the service with `config` until `shutdown` is cancelled.
pub async fn serve(config: TrackingConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    Tracking::bind(config, None).await?.run(shutdown).await
}
