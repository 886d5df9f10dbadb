//! The inference service (anchors: Triton and KServe for the protocol, onnxruntime for
//! correctness and speed).
//!
//! - [`config`]: its settings (`mlops-inference --help` lists them);
//! - [`repository`]: the registry as the model repository, and the local file cache;
//! - [`manager`]: the deployments: which version each registered model serves here, changed
//!   by a deploy or, through [`follow`], by the registry's events (hot swap);
//! - [`models`]: a loaded version and running requests on it, one by one or through
//!   [`batcher`]'s dynamic batches;
//! - [`settings`]: a model's serving settings, from the defaults and a load's parameters;
//! - [`store`]: which models are served, kept across restarts;
//! - [`tensors`]: the protocol's datatypes and tensor encodings;
//! - [`grpc`]: Triton's `GRPCInferenceService`; [`rest`]: the same protocol over HTTP/JSON;
//!   [`deployments`]: our `mlops.inference.v1.DeploymentService` on the gRPC port;
//! - [`metrics`], [`error`]: Triton's metrics, errors as gRPC statuses;
//! - [`Inference`]: the service for the kit.

pub mod analysis;
pub mod batcher;
pub mod config;
pub mod deployments;
pub mod describe;
pub mod error;
pub mod follow;
pub mod grpc;
pub mod manager;
pub mod metrics;
pub mod models;
pub mod prediction_log;
pub mod priority;
pub mod repository;
pub mod rest;
pub mod settings;
pub mod shadows;
pub mod store;
pub mod tensors;
pub mod traffic;
pub mod window;

use std::sync::Arc;

use mlops_events::{EventBus, Subscription};
use mlops_kit::{open_bus, open_database, Addresses, Local, OnFailure, Runner, Service};
use mlops_proto::events::topics;
use mlops_proto::inference::v1::deployment_service_server::{
    DeploymentServiceServer, SERVICE_NAME as DEPLOYMENTS,
};
use mlops_proto::triton::grpc_inference_service_server::{
    GrpcInferenceServiceServer, SERVICE_NAME,
};
use mlops_runtime::grpc::Listeners;
use mlops_runtime::shutdown::CancellationToken;

pub use config::InferenceConfig;

/// A bound, ready-to-run inference service.
pub struct Inference {
    config: InferenceConfig,
    manager: manager::Manager,
    store: store::Store,
    bus: Arc<dyn EventBus>,
    /// The registry's events, subscribed before the service reports ready so no alias move
    /// after that is missed (`None`: the bus could not be reached; the follower retries).
    subscription: Option<Box<dyn Subscription>>,
    publisher: prediction_log::Publisher,
    /// The deployments recorded before this start, served by the restore task.
    recalled: Vec<store::Stored>,
    listeners: Listeners,
    http: tokio::net::TcpListener,
}

impl Inference {
    /// The models, for tests and benchmarks that look under the API.
    pub fn manager(&self) -> &manager::Manager {
        &self.manager
    }
}

impl Service for Inference {
    type Config = InferenceConfig;
    const TITLE: &'static str = "The inference service";
    const LOCAL_PORTS: (&'static str, &'static str) = ("127.0.0.1:8001", "127.0.0.1:8002");
    const SET_LOCALLY: &'static [&'static str] = &[
        "listen_addr",
        "admin_addr",
        "http_addr",
        "database_url",
        "model_cache_dir",
        "registry_addr",
    ];

    fn local(local: &Local) -> InferenceConfig {
        use mlops_runtime::config::ServiceConfig;
        let (api, admin) = local.ports::<Self>();
        let mut c = InferenceConfig::defaults();
        c.server.listen.set(&api, &admin);
        c.http_addr = local.http_port::<Self>("127.0.0.1:8000");
        c.db.database_url = format!("sqlite://{}", local.data_dir.join("inference.db").display());
        c.model_cache_dir = local.data_dir.join("model-cache").display().to_string();
        c.registry_addr = local.callee("registry");
        c
    }

    fn describe(a: &Addresses) -> String {
        match a.http {
            Some(http) => format!(
                "grpc {}  http http://{http}  admin http://{}",
                a.api, a.admin
            ),
            None => format!("grpc {}  admin http://{}", a.api, a.admin),
        }
    }

    /// Connects the database, the registry client, the model cache and the bus (subscribing
    /// to the registry's events), and binds the three ports. Deployments recorded before a
    /// restart load in the background once it runs.
    async fn bind(config: InferenceConfig, bus: Option<Arc<dyn EventBus>>) -> anyhow::Result<Self> {
        use anyhow::Context;
        use mlops_runtime::config::ServiceConfig;
        config.validate()?;
        let db = open_database("inference", &config.db, &store::migrations()).await?;
        let repository = repository::Repository::new(
            &config.registry_addr,
            &config.registry_token,
            std::path::Path::new(&config.model_cache_dir),
        )
        .with_context(|| format!("the registry address {}", config.registry_addr))?;
        mlops_runtime::metrics::claim_prefix("inference", "nv_inference_");
        let bus = open_bus(
            "inference",
            bus,
            &config.bus,
            &[topics::MODELS, topics::DEPLOYMENTS, topics::PREDICTIONS],
        )
        .await?;
        let subscription = follow::subscribe(&bus).await;
        let store = store::Store::new(db);
        let replica = manager::replica_name();
        let (log, publisher) = prediction_log::PredictionLog::new(
            bus.clone(),
            config.prediction_log_sample,
            config.prediction_log_buffer,
            &replica,
        );
        let manager = manager::Manager::new(
            repository,
            store.clone(),
            settings::Settings::defaults(&config),
            metrics::Metrics::new(),
            config.max_tensor_bytes,
            replica,
            log,
        );
        // Before serving: a request during the restore finds its deployment loading.
        let recalled = manager.recall().await?;
        let listeners = Listeners::bind_to(&config.server.listen).await?;
        let http = tokio::net::TcpListener::bind(&config.http_addr)
            .await
            .with_context(|| format!("binding the HTTP address {}", config.http_addr))?;
        Ok(Inference {
            config,
            manager,
            store,
            bus,
            subscription,
            publisher,
            recalled,
            listeners,
            http,
        })
    }

    fn addresses(&self) -> Addresses {
        Addresses::of(&self.listeners).with_http(
            self.http
                .local_addr()
                .expect("a bound listener has an address"),
        )
    }

    /// Serves gRPC and HTTP until `shutdown` is cancelled, then drains both.
    async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Inference {
            config,
            manager,
            store,
            bus,
            subscription,
            publisher,
            recalled,
            listeners,
            http,
        } = self;
        let api = GrpcInferenceServiceServer::new(grpc::OipApi::new(manager.clone()))
            .max_decoding_message_size(config.server.decoding_limit())
            .max_encoding_message_size(config.server.encoding_limit());
        let router = rest::router(
            manager.clone(),
            config.server.auth_tokens.clone(),
            config.server.decoding_limit(),
        );
        let deployments =
            DeploymentServiceServer::new(deployments::DeploymentApi::new(manager.clone()))
                .max_decoding_message_size(config.server.decoding_limit())
                .max_encoding_message_size(config.server.encoding_limit());
        let (restoring, following, analyzing) = (manager.clone(), bus.clone(), manager.clone());
        Runner::grpc(
            "inference",
            listeners,
            &config.server,
            &[
                (SERVICE_NAME, grpc::ROLES),
                (DEPLOYMENTS, deployments::ROLES),
            ],
            tonic::service::Routes::new(api).add_service(deployments),
        )
        .with_http(http, router)
        .outbox(store.outbox(), store.db(), &bus)
        .task(
            "restore-models",
            OnFailure::Unready,
            move |stop| async move {
                restoring.restore(recalled, stop.clone()).await?;
                // Restoring is done; the task stays until shutdown so its end is not a failure.
                stop.cancelled().await;
                Ok(())
            },
        )
        .task("follow-registry", OnFailure::Unready, move |stop| {
            follow::follow(manager, following, subscription, stop)
        })
        .task("analysis", OnFailure::Unready, move |stop| {
            analysis::run(analyzing, stop)
        })
        .task("prediction-log", OnFailure::Unready, move |stop| {
            publisher.run(stop)
        })
        .run(shutdown)
        .await
    }
}
