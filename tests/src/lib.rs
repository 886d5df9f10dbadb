//! The test sandbox: any set of services in one process on `127.0.0.1:0`, with
//! either database (SQLite in a temp dir, or a fresh PostgreSQL database) and
//! either bus (in-process, or the Kafka-protocol broker the test script started).
//!
//! Environment, set by `make test` (`scripts/test.sh`):
//! - `MLOPS_TEST_POSTGRES_URL`: a PostgreSQL URL whose user may create databases
//!   (default `postgres://postgres@127.0.0.1:5432/test`);
//! - `MLOPS_TEST_KAFKA_BROKERS`: the broker's address; tests on Kafka fail without it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use mlops_events::memory::InProcessBus;
use mlops_events::{BusArgs, BusKind, EventBus};
use mlops_inference::{Inference, InferenceConfig};
use mlops_kit::{Addresses, Composition, Local};
use mlops_mlflow::Gateway;
use mlops_proto::registry::v1::registry_service_client::RegistryServiceClient;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_registry::{Registry, RegistryConfig};
use mlops_runtime::shutdown::CancellationToken;
use mlops_tracking::{Tracking, TrackingConfig};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Which metadata database the services use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file per service in the sandbox's temp dir.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// An inference replica started beside a sandbox's ([`Sandbox::inference_replica`]).
pub struct Replica {
    /// Its gRPC address.
    pub api: SocketAddr,
    stop: CancellationToken,
    running: JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    /// Drains and stops it; its run's error, if any.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.running.await?
    }
}

/// Which event bus the services use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// One in-process bus shared by the sandbox's services.
    InProcess,
    /// The Kafka-protocol broker at `MLOPS_TEST_KAFKA_BROKERS`.
    Kafka,
}

/// The services a sandbox can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Experiment tracking.
    Tracking,
    /// The model registry (needs tracking).
    Registry,
    /// The MLflow REST gateway (needs tracking and the registry).
    Mlflow,
}

/// The PostgreSQL URL tests use to create their databases.
pub fn postgres_admin_url() -> String {
    std::env::var("MLOPS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The Kafka brokers of the test broker; panics with instructions when unset.
pub fn kafka_brokers() -> String {
    std::env::var("MLOPS_TEST_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("MLOPS_TEST_KAFKA_BROKERS is not set: run the tests with `make test`, which starts a tansu broker")
    })
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn fresh_postgres_database() -> anyhow::Result<String> {
    sqlx::any::install_default_drivers();
    let admin = postgres_admin_url();
    let name = format!("mlops_it_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {admin} ({e}); start it or set MLOPS_TEST_POSTGRES_URL"
            )
        })?;
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Ok(format!("{base}/{name}"))
}

/// The database URL a service of the sandbox should use on `db`: a fresh PostgreSQL
/// database, or `None` for the sandbox's own SQLite file.
pub async fn database_url(db: Database) -> Option<String> {
    match db {
        Database::Postgres => Some(
            fresh_postgres_database()
                .await
                .expect("a fresh PostgreSQL database"),
        ),
        Database::Sqlite => None,
    }
}

/// Bus settings for a sandbox on `bus`.
pub fn bus_args(bus: Bus) -> BusArgs {
    BusArgs {
        bus: match bus {
            Bus::InProcess => BusKind::InProcess,
            Bus::Kafka => BusKind::Kafka,
        },
        kafka_brokers: if bus == Bus::Kafka {
            kafka_brokers()
        } else {
            String::new()
        },
        kafka_partitions: 3,
        kafka_session_timeout_ms: 6000,
        kafka_message_timeout_ms: 60_000,
    }
}

/// A change to a service's config before it starts.
pub type Tweak<C> = Box<dyn FnOnce(&mut C) + Send>;

/// How to build a sandbox.
pub struct SandboxBuilder {
    database: Database,
    bus: Bus,
    services: Vec<Service>,
    tracking_tweak: Option<Tweak<TrackingConfig>>,
    registry_tweak: Option<Tweak<RegistryConfig>>,
    others: Vec<Starter>,
}

/// Binds one more service in the sandbox's composition.
type Starter = Box<
    dyn for<'a> FnOnce(
        &'a mut Composition,
    ) -> LocalBoxFuture<'a, anyhow::Result<(&'static str, Addresses)>>,
>;

impl SandboxBuilder {
    /// Uses `database`.
    pub fn database(mut self, database: Database) -> Self {
        self.database = database;
        self
    }

    /// Uses `bus`.
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = bus;
        self
    }

    /// Starts the tracking service, with its config adjusted by `tweak`.
    pub fn tracking_with(
        mut self,
        tweak: impl FnOnce(&mut TrackingConfig) + Send + 'static,
    ) -> Self {
        self.services.push(Service::Tracking);
        self.tracking_tweak = Some(Box::new(tweak));
        self
    }

    /// Starts the tracking service.
    pub fn tracking(self) -> Self {
        self.tracking_with(|_| {})
    }

    /// Starts the registry (and tracking, which it needs), with its config adjusted
    /// by `tweak`.
    pub fn registry_with(
        mut self,
        tweak: impl FnOnce(&mut RegistryConfig) + Send + 'static,
    ) -> Self {
        if !self.services.contains(&Service::Tracking) {
            self = self.tracking();
        }
        self.services.push(Service::Registry);
        self.registry_tweak = Some(Box::new(tweak));
        self
    }

    /// Starts the registry (and tracking).
    pub fn registry(self) -> Self {
        self.registry_with(|_| {})
    }

    /// Also starts the MLflow REST gateway (and tracking and the registry, which it
    /// fronts).
    pub fn mlflow(mut self) -> Self {
        if !self.services.contains(&Service::Registry) {
            self = self.registry();
        }
        self.services.push(Service::Mlflow);
        self
    }

    /// Also starts the service `S` (any service of the kit), after those above and
    /// with its config adjusted by `tweak`; [`Sandbox::addresses`] says where it
    /// listens. A new service needs no other line here.
    pub fn service<S: mlops_kit::Service>(
        mut self,
        tweak: impl FnOnce(&mut S::Config) + 'static,
    ) -> Self {
        self.others.push(Box::new(move |platform| {
            Box::pin(async move {
                let a = platform.start::<S>(tweak).await?;
                Ok((<S::Config as mlops_runtime::config::ServiceConfig>::NAME, a))
            })
        }));
        self
    }

    /// Starts every requested service and waits until they listen.
    pub async fn start(self) -> anyhow::Result<Sandbox> {
        let dir = tempfile::tempdir()?;
        let in_process = InProcessBus::new();
        let bus: Arc<dyn EventBus> = match self.bus {
            Bus::InProcess => Arc::new(in_process.clone()),
            Bus::Kafka => mlops_events::connect(&bus_args(Bus::Kafka), None)?,
        };
        let mut platform = Composition::new(Local::new(dir.path()).with_bus(bus.clone()));
        let (database, bus_kind) = (self.database, self.bus);
        let postgres = || async move {
            Ok::<_, anyhow::Error>(match database {
                Database::Postgres => Some(fresh_postgres_database().await?),
                Database::Sqlite => None,
            })
        };
        let mut sandbox = Sandbox {
            tracking: None,
            registry: None,
            mlflow: None,
            others: Default::default(),
            bus,
            in_process: (self.bus == Bus::InProcess).then_some(in_process),
            shutdown: CancellationToken::new(),
            task: None,
            dir,
        };
        // One line per service; callees first.
        if self.services.contains(&Service::Tracking) {
            let url = postgres().await?;
            let tweak = self.tracking_tweak.unwrap_or_else(|| Box::new(|_| {}));
            let t = platform
                .bind::<Tracking>(|c| {
                    c.bus = bus_args(bus_kind);
                    c.lease_check_interval_ms = 100;
                    c.db.database_url = url.unwrap_or(c.db.database_url.clone());
                    tweak(c);
                })
                .await?;
            let store = t.store().clone();
            let a = platform.spawn(t);
            sandbox.tracking = Some(Endpoints {
                grpc: a.api,
                admin: a.admin,
                store,
            });
        }
        if self.services.contains(&Service::Registry) {
            let url = postgres().await?;
            let tweak = self.registry_tweak.unwrap_or_else(|| Box::new(|_| {}));
            let r = platform
                .bind::<Registry>(|c| {
                    c.bus = bus_args(bus_kind);
                    c.db.database_url = url.unwrap_or(c.db.database_url.clone());
                    tweak(c);
                })
                .await?;
            let store = r.store().clone();
            let a = platform.spawn(r);
            sandbox.registry = Some(RegistryEndpoints {
                grpc: a.api,
                admin: a.admin,
                store,
            });
        }
        if self.services.contains(&Service::Mlflow) {
            sandbox.mlflow = Some(platform.start::<Gateway>(|_| {}).await?);
        }
        for start in self.others {
            let (name, addresses) = start(&mut platform).await?;
            sandbox.others.insert(name, addresses);
        }
        sandbox.task = Some(tokio::spawn(platform.run(sandbox.shutdown.clone())));
        Ok(sandbox)
    }
}

/// Where one started service listens.
#[derive(Clone)]
pub struct Endpoints {
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The admin HTTP address.
    pub admin: SocketAddr,
    /// Its store, for looking under the API.
    pub store: mlops_tracking::Store,
}

/// Where the started registry listens.
#[derive(Clone)]
pub struct RegistryEndpoints {
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The admin HTTP address.
    pub admin: SocketAddr,
    /// Its store, for looking under the API.
    pub store: mlops_registry::Store,
}

/// Services running in this process until [`Sandbox::stop`].
pub struct Sandbox {
    /// The tracking service, when started.
    pub tracking: Option<Endpoints>,
    /// The registry, when started.
    pub registry: Option<RegistryEndpoints>,
    /// The MLflow REST gateway, when started.
    pub mlflow: Option<Addresses>,
    /// The services started with [`SandboxBuilder::service`], by name.
    pub others: std::collections::HashMap<&'static str, Addresses>,
    /// The bus the services publish to.
    pub bus: Arc<dyn EventBus>,
    /// The in-process bus, when that is the bus.
    pub in_process: Option<InProcessBus>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// A builder: SQLite, in-process bus, no services yet.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder {
            database: Database::Sqlite,
            bus: Bus::InProcess,
            services: vec![],
            tracking_tweak: None,
            registry_tweak: None,
            others: vec![],
        }
    }

    /// The tracking service's endpoints; panics when it was not started.
    pub fn tracking(&self) -> &Endpoints {
        self.tracking
            .as_ref()
            .expect("the sandbox was built without .tracking()")
    }

    /// A gRPC client of the tracking service.
    pub async fn tracking_client(&self) -> TrackingServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.tracking().grpc))
            .expect("a valid uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("the sandbox's tracking service accepts connections");
        TrackingServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// The registry's endpoints; panics when it was not started.
    pub fn registry(&self) -> &RegistryEndpoints {
        self.registry
            .as_ref()
            .expect("the sandbox was built without .registry()")
    }

    /// Another inference replica on this sandbox's registry and bus, with its own ports and
    /// its model cache under `state`; its database is `database_url` (a PostgreSQL one shared
    /// with the sandbox's replica, say), else a SQLite file under `state`. `tweak` sets the rest.
    pub async fn inference_replica(
        &self,
        state: &std::path::Path,
        database_url: Option<String>,
        tweak: impl FnOnce(&mut InferenceConfig),
    ) -> anyhow::Result<Replica> {
        use mlops_kit::Service;
        use mlops_runtime::config::ServiceConfig;
        let mut config = InferenceConfig::defaults();
        config.server.listen.set("127.0.0.1:0", "127.0.0.1:0");
        config.http_addr = "127.0.0.1:0".into();
        config.db.database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", state.join("inference.db").display()));
        config.model_cache_dir = state.join("cache").display().to_string();
        config.registry_addr = format!("http://{}", self.registry().grpc);
        tweak(&mut config);
        let service = Inference::bind(config, Some(self.bus.clone())).await?;
        let api = service.addresses().api;
        let stop = CancellationToken::new();
        let running = tokio::spawn(service.run(stop.clone()));
        Ok(Replica { api, stop, running })
    }

    /// A gRPC client of the registry.
    pub async fn registry_client(&self) -> RegistryServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.registry().grpc))
            .expect("a valid uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("the sandbox's registry accepts connections");
        RegistryServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024)
    }

    /// The sandbox's temporary directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Where the service `name`, started with [`SandboxBuilder::service`], listens;
    /// panics when it was not started.
    pub fn addresses(&self, name: &str) -> Addresses {
        *self
            .others
            .get(name)
            .unwrap_or_else(|| panic!("the sandbox was built without the service {name}"))
    }

    /// The MLflow gateway's addresses; panics when it was not started.
    pub fn mlflow(&self) -> Addresses {
        self.mlflow
            .expect("the sandbox was built without .mlflow()")
    }

    /// Stops every service (callers first; drain, flush) and returns the first error.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task {
            Some(t) => t.await?,
            None => Ok(()),
        }
    }
}

/// The services gRPC reflection lists on `addr`.
pub async fn listed_services(addr: std::net::SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let resp = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("a reflection answer");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer: {resp:?}")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Helpers the benchmarks share.
pub mod houses;

pub mod bench {
    use std::time::Duration;

    /// numpy's default percentile (linear interpolation) of `samples`, in ms.
    pub fn pct(samples: &[Duration], p: f64) -> f64 {
        let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = p / 100.0 * (v.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
    }

    /// A latency summary shaped like the peers' `lat_summary`.
    pub fn lat(samples: &[Duration]) -> serde_json::Value {
        let mean = samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() / samples.len() as f64;
        serde_json::json!({"n": samples.len(), "p50_ms": pct(samples, 50.0), "p90_ms": pct(samples, 90.0),
                           "p99_ms": pct(samples, 99.0), "mean_ms": mean * 1000.0})
    }

    /// A size from the environment, or `default`.
    pub fn env_usize(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Where benchmarks write their JSON lines: `MLOPS_BENCH_DIR`, else
    /// `$CARGO_TARGET_DIR/bench`.
    pub fn out_dir() -> String {
        let dir = std::env::var("MLOPS_BENCH_DIR").unwrap_or_else(|_| {
            let target = std::env::var("CARGO_TARGET_DIR")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").into());
            format!("{target}/bench")
        });
        std::fs::create_dir_all(&dir).expect("the bench output directory can be created");
        dir
    }
}
