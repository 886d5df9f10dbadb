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
//! - [`Registry`]: binds, serves, and shuts down in order (drain RPCs, then flush events).

pub mod config;
pub mod error;
pub mod files;
pub mod gate;
pub mod lineage;
pub mod metrics;
pub mod register;
pub mod service;
pub mod store;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mlops_events::outbox::Outbox;
use mlops_events::service::Service;
use mlops_events::EventBus;
use mlops_proto::registry::v1::registry_service_server::RegistryServiceServer;
use mlops_runtime::grpc::{GrpcServer, Listeners};
use mlops_runtime::shutdown::CancellationToken;
use mlops_storage::{Db, DbOptions};

pub use config::RegistryConfig;
pub use mlops_proto::events::topics::MODELS as MODELS_TOPIC;
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
    /// Connects the database (running migrations), the model store and the bus, and
    /// binds both ports. `bus` overrides the configured bus (one process, tests).
    pub async fn bind(
        config: RegistryConfig,
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
        .context("connecting the registry database")?;
        db.migrate("registry", &store::migrations()).await?;
        db.migrate(
            "registry-outbox",
            &mlops_events::outbox::migrations("registry"),
        )
        .await?;
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
        let bus = match bus {
            Some(b) => b,
            None => mlops_events::connect(&config.bus, None)?,
        };
        if let Err(err) = bus.ensure_topics(&[MODELS_TOPIC]).await {
            // Not fatal: the relay keeps the events until the bus is back.
            tracing::warn!(error = %err, "cannot create the registry topics yet");
        }
        let store = Store::new(db, Outbox::new("registry"), metrics::Metrics::new());
        let registrar =
            register::Registrar::new(store.clone(), files, tracking, config.max_model_bytes);
        let listeners = Listeners::bind(&config.listen_addr, &config.admin_addr).await?;
        Ok(Registry {
            config,
            store,
            registrar,
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
        let Registry {
            config,
            store,
            registrar,
            bus,
            listeners,
        } = self;
        let api = RegistryServiceServer::new(service::RegistryApi::new(store.clone(), registrar))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes.max(64 * 1024 * 1024));
        let service = Service {
            name: "registry",
            db: store.db().clone(),
            bus,
            outbox: store.outbox.clone(),
            listeners,
            server: GrpcServer {
                service: "registry",
                grpc_names: vec!["mlops.registry.v1.RegistryService", ""],
                tokens: config.auth_tokens.clone(),
                policy: Arc::new(service::policy),
                concurrency_per_connection: config.max_concurrent_per_connection,
            },
            routes: tonic::service::Routes::new(api),
        };
        let timeout = config.pending_timeout_ms as i64;
        service
            .run(shutdown, |workers| {
                vec![tokio::spawn(housekeeping(store, timeout, workers))]
            })
            .await
    }
}

/// Fails registrations cut off by a crash, and samples the pool gauge.
async fn housekeeping(store: Store, pending_timeout_ms: i64, stop: CancellationToken) {
    loop {
        if let Err(err) = store.expire_pending(pending_timeout_ms).await {
            tracing::warn!(error = %err, "failing stale pending registrations failed");
        }
        store.sample_pool();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Runs the registry with `config` until `shutdown` is cancelled.
pub async fn serve(config: RegistryConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    Registry::bind(config, None).await?.run(shutdown).await
}
