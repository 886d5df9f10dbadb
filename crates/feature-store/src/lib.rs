//! The feature store (anchor: Feast): entities, data sources, feature views and feature
//! services defined declaratively and versioned; exact point-in-time joins for training
//! data on Arrow.
//!
//! - [`config`]: its settings (`mlops-feature-store --help` lists them);
//! - [`defs`]: definitions, read from YAML and validated as a set;
//! - [`store`]: definitions as applied, their history and events;
//! - [`offline`]: the offline store (Parquet), the point-in-time join, tables over gRPC;
//! - [`online`]: the online store (materialization, online reads);
//! - [`service`]: the gRPC API; [`feast`]: Feast's `ServingService` on the same port;
//!   [`error`]: its errors as gRPC statuses; [`metrics`]: its metrics;
//! - [`FeatureStore`]: the service for the kit (`mlops_kit::Service`).

pub mod config;
pub mod defs;
pub mod error;
pub mod feast;
mod follow;
pub mod metrics;
pub mod offline;
pub mod online;
pub mod service;
pub mod store;

use std::sync::Arc;

use anyhow::Context;
use mlops_events::EventBus;
use mlops_kit::{open_bus, open_database, Addresses, Local, OnFailure, Runner, Service};
use mlops_proto::events::topics;
use mlops_proto::feast::serving::serving_service_server::{
    ServingServiceServer, SERVICE_NAME as FEAST_SERVICE_NAME,
};
use mlops_proto::featurestore::v1::feature_store_service_server::{
    FeatureStoreServiceServer, SERVICE_NAME,
};
use mlops_runtime::grpc::Listeners;
use mlops_runtime::shutdown::CancellationToken;

pub use config::FeatureStoreConfig;

/// A bound, ready-to-run feature store.
pub struct FeatureStore {
    config: FeatureStoreConfig,
    store: store::Store,
    offline: offline::files::OfflineStore,
    bus: Arc<dyn EventBus>,
    /// Definition changes and materializations of every replica, subscribed before the
    /// service serves (`None`: the bus could not be reached; the follower retries).
    subscription: Option<Box<dyn mlops_events::Subscription>>,
    listeners: Listeners,
}

impl Service for FeatureStore {
    type Config = FeatureStoreConfig;
    const TITLE: &'static str = "The feature store";
    const LOCAL_PORTS: (&'static str, &'static str) = ("127.0.0.1:6566", "127.0.0.1:9096");
    const SET_LOCALLY: &'static [&'static str] =
        &["listen_addr", "admin_addr", "database_url", "offline_root"];

    fn local(local: &Local) -> FeatureStoreConfig {
        let (api, admin) = local.ports::<Self>();
        let mut c = FeatureStoreConfig::local(&local.data_dir, &api, &admin);
        // `mlops up --artifact-root DIR|s3://...`: the offline store goes beside the run
        // artifacts and the registry's models, under <root>/features.
        if let Some(root) = &local.artifact_root {
            c.offline_root = format!("{}/features", root.trim_end_matches('/'));
        }
        c
    }

    /// Connects the database (running migrations), the offline store and the bus, and
    /// binds both ports.
    async fn bind(
        config: FeatureStoreConfig,
        bus: Option<Arc<dyn EventBus>>,
    ) -> anyhow::Result<Self> {
        use mlops_runtime::config::ServiceConfig;
        config.validate()?;
        let db = open_database("feature-store", &config.db, &store::migrations()).await?;
        let offline = offline::files::OfflineStore::open(&config.offline_root)
            .with_context(|| format!("opening the offline store {}", config.offline_root))?;
        let spill_dir = config.join_budget().spill_dir;
        std::fs::create_dir_all(&spill_dir)
            .with_context(|| format!("creating the spill directory {}", spill_dir.display()))?;
        let bus = open_bus("feature-store", bus, &config.bus, &[topics::FEATURES]).await?;
        let store = store::Store::new(db);
        metrics::Metrics::new()
            .definition_version
            .set(store.version().await?);
        let subscription = follow::subscribe(&bus).await;
        let listeners = Listeners::bind_to(&config.server.listen).await?;
        Ok(FeatureStore {
            config,
            store,
            offline,
            bus,
            subscription,
            listeners,
        })
    }

    fn addresses(&self) -> Addresses {
        Addresses::of(&self.listeners)
    }

    /// Serves until `shutdown` is cancelled; then drains and flushes the outbox.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let FeatureStore {
            config,
            store,
            offline,
            bus,
            subscription,
            listeners,
        } = self;
        let online = online::OnlineStore::new(store.clone(), offline.clone());
        if let Err(e) = online.report_freshness().await {
            tracing::warn!(error = %e, "cannot read the online store's freshness yet");
        }
        let api = service::FeatureStoreApi::new(
            store.clone(),
            offline,
            online,
            config.ipc_chunk_bytes,
            config.join_budget(),
        );
        let (following, follow_bus) = (api.clone(), bus.clone());
        let (ingesting, ingest_bus) = (api.clone(), bus.clone());
        let feast = ServingServiceServer::new(feast::FeastApi::new(api.clone()))
            .max_decoding_message_size(config.server.decoding_limit())
            .max_encoding_message_size(config.server.encoding_limit());
        let grpc = FeatureStoreServiceServer::new(api)
            .max_decoding_message_size(config.server.decoding_limit())
            .max_encoding_message_size(config.server.encoding_limit());
        Runner::grpc(
            "feature-store",
            listeners,
            &config.server,
            &[
                (SERVICE_NAME, service::ROLES),
                (FEAST_SERVICE_NAME, feast::ROLES),
            ],
            tonic::service::Routes::new(grpc).add_service(feast),
        )
        .outbox(store.outbox(), store.db(), &bus)
        .task("follow-changes", OnFailure::Unready, move |stop| {
            follow::follow(following, follow_bus, subscription, stop)
        })
        .task("kafka-ingest", OnFailure::Unready, move |stop| {
            online::ingest::run(ingesting, ingest_bus, stop)
        })
        .run(shutdown)
        .await
    }
}
