//! The monitoring service (anchor: Evidently 0.7): data drift computed exactly as
//! Evidently computes it, on reference tables and current windows, stored as reports
//! over time, published as metrics and `DriftDetected` events.
//!
//! - [`stats`]: the two-sample statistics (ports of scipy's, which Evidently calls);
//! - [`drift`]: Evidently's drift methods over them: binning, thresholds, the default
//!   choice of method, dataset drift;
//! - [`report`]: a drift report over two tables, column by column;
//! - [`sketch`]: bounded, mergeable summaries of a column for the prediction log's
//!   windows; [`windows`]: those windows and the rows of a logged prediction;
//!   [`follower`]: the prediction log's consumer; [`references`]: reference tables read
//!   once per version;
//! - [`performance`]: the model's performance, realised from labels and estimated
//!   without them (CBPE); [`outcomes`]: what a monitor measures and the metrics by name;
//!   [`tracker`]: each window's performance kept up to date, with its alert; [`labels`]:
//!   labels from the user's Kafka topics;
//! - [`table`]: Arrow and Parquet columns as drift samples, with Evidently's column types;
//! - [`config`]: its settings (`mlops-monitoring --help` lists them); [`store`]:
//!   monitors, references, reports and events; [`service`]: the gRPC API; [`error`]:
//!   its errors as gRPC statuses; [`metrics`]: its metrics;
//! - [`Monitoring`]: the service for the kit (`mlops_kit::Service`).

pub mod capture;
pub mod config;
pub mod drift;
pub mod error;
pub mod follower;
pub mod histogram;
pub mod labels;
pub mod metrics;
pub mod outcomes;
pub mod performance;
pub mod references;
pub mod report;
pub mod service;
pub mod sketch;
pub mod stats;
pub mod store;
pub mod table;
pub mod tracker;
pub mod windows;

use std::sync::Arc;

use anyhow::Context;
use mlops_events::EventBus;
use mlops_kit::{open_bus, open_database, Addresses, Local, OnFailure, Runner, Service};
use mlops_proto::events::topics;
use mlops_proto::monitoring::v1::monitoring_service_server::{
    MonitoringServiceServer, SERVICE_NAME,
};
use mlops_runtime::grpc::Listeners;
use mlops_runtime::shutdown::CancellationToken;
use mlops_storage::blob::{self, BlobStore};

pub use config::MonitoringConfig;

/// A bound, ready-to-run monitoring service.
pub struct Monitoring {
    config: MonitoringConfig,
    store: store::Store,
    references: BlobStore,
    bus: Arc<dyn EventBus>,
    listeners: Listeners,
}

impl Service for Monitoring {
    type Config = MonitoringConfig;
    const TITLE: &'static str = "The monitoring service";
    const LOCAL_PORTS: (&'static str, &'static str) = ("127.0.0.1:50054", "127.0.0.1:9094");
    const SET_LOCALLY: &'static [&'static str] = &[
        "listen_addr",
        "admin_addr",
        "database_url",
        "reference_root",
    ];

    fn local(local: &Local) -> MonitoringConfig {
        let (api, admin) = local.ports::<Self>();
        MonitoringConfig::local(&local.data_dir, &api, &admin)
    }

    /// Connects the database (running migrations), the reference store and the bus, and
    /// binds both ports.
    async fn bind(
        config: MonitoringConfig,
        bus: Option<Arc<dyn EventBus>>,
    ) -> anyhow::Result<Self> {
        use mlops_runtime::config::ServiceConfig;
        config.validate()?;
        let db = open_database("monitoring", &config.db, &store::migrations()).await?;
        let references = blob::open(&config.reference_root, "monitoring")
            .with_context(|| format!("opening the reference store {}", config.reference_root))?;
        let bus = open_bus(
            "monitoring",
            bus,
            &config.bus,
            &[topics::MONITORING, topics::PREDICTIONS],
        )
        .await?;
        let store = store::Store::new(db);
        let listeners = Listeners::bind_to(&config.server.listen).await?;
        Ok(Monitoring {
            config,
            store,
            references,
            bus,
            listeners,
        })
    }

    fn addresses(&self) -> Addresses {
        Addresses::of(&self.listeners)
    }

    /// Serves until `shutdown` is cancelled; then drains and flushes the outbox.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Monitoring {
            config,
            store,
            references,
            bus,
            listeners,
        } = self;
        let loaded = references::References::new(references.clone());
        let follower = follower::Follower::new(
            &config.prediction_log_group,
            store.clone(),
            loaded.clone(),
            metrics::Metrics::new(),
            std::time::Duration::from_secs(config.label_retention_days.saturating_mul(86_400)),
        );
        let api = service::MonitoringApi::new(
            store.clone(),
            references,
            loaded,
            config.max_table_bytes,
            config.workers(),
        );
        let grpc = MonitoringServiceServer::new(api)
            .max_decoding_message_size(config.server.decoding_limit())
            .max_encoding_message_size(config.server.encoding_limit());
        let runner = Runner::grpc(
            "monitoring",
            listeners,
            &config.server,
            &[(SERVICE_NAME, service::ROLES)],
            tonic::service::Routes::new(grpc),
        )
        .outbox(store.outbox(), store.db(), &bus);
        let runner = if config.follow_prediction_log {
            let (log_bus, labels_bus) = (bus.clone(), bus.clone());
            let (labels_store, group) = (store.clone(), config.prediction_log_group.clone());
            runner
                .task("prediction-log", OnFailure::Unready, move |stop| {
                    follower.run(log_bus, stop)
                })
                .task("labels", OnFailure::Unready, move |stop| {
                    labels::run(
                        labels_store,
                        metrics::Metrics::new(),
                        labels_bus,
                        group,
                        stop,
                    )
                })
        } else {
            runner
        };
        runner.run(shutdown).await
    }
}
