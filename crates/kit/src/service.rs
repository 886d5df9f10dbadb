//! What a service implements once: from it come its binary's [`main`] and its
//! place in every composition ([`crate::Composition`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use mlops_events::EventBus;
use mlops_runtime::config::{ConfigError, ServiceConfig};
use mlops_runtime::shutdown::CancellationToken;

use crate::compose::Local;

/// Where a bound service listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// Its API: gRPC, or HTTP for the MLflow gateway.
    pub api: SocketAddr,
    /// Its admin HTTP port (/metrics, /healthz, /readyz).
    pub admin: SocketAddr,
    /// A second API port speaking HTTP, for a gRPC service that has one (inference's Open
    /// Inference Protocol over HTTP/JSON).
    pub http: Option<SocketAddr>,
}

/// A service: its settings, how it binds, where it listens, how it runs.
pub trait Service: Sized + Send + 'static {
    /// Its settings (`mlops-<name> --help`).
    type Config: ServiceConfig;

    /// Its title in listings: "The tracking service".
    const TITLE: &'static str;

    /// The ports it listens on in one process unless told otherwise (`mlops up`):
    /// its API's and its admin port's, on loopback.
    const LOCAL_PORTS: (&'static str, &'static str);

    /// How `mlops up` shows where it listens:
    /// `grpc 127.0.0.1:50051  admin http://127.0.0.1:9091`.
    fn describe(addresses: &Addresses) -> String {
        format!("grpc {}  admin http://{}", addresses.api, addresses.admin)
    }

    /// The settings [`Service::local`] sets itself (ports, files under the data
    /// directory, the addresses of its callees), which the environment therefore
    /// cannot change in one process; each must be a setting of [`Service::Config`].
    const SET_LOCALLY: &'static [&'static str];

    /// Its settings for one process on loopback ([`Local`]): ports, files under the
    /// data directory, the addresses of the services it calls (bound before it).
    fn local(local: &Local) -> Self::Config;

    /// Connects what it needs (database, stores, bus) and binds its ports; `bus`
    /// overrides the configured bus (one process, tests). (Not required to be
    /// `Send`: binding happens before anything is spawned.)
    fn bind(
        config: Self::Config,
        bus: Option<Arc<dyn EventBus>>,
    ) -> impl Future<Output = anyhow::Result<Self>>;

    /// Where it listens.
    fn addresses(&self) -> Addresses;

    /// Serves until `shutdown` is cancelled, then drains and returns.
    fn run(self, shutdown: CancellationToken) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The whole `main` of a service's binary: settings from the command line, the
/// environment and a file (`--help`, and exit 2 naming a bad setting), telemetry,
/// SIGINT/SIGTERM to the ordered drain.
pub fn main<S: Service>() -> anyhow::Result<()> {
    let name = <S::Config as ServiceConfig>::NAME;
    let config = match <S::Config as ServiceConfig>::load(std::env::args_os()) {
        Ok(c) => c,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("mlops-{name}: {e}");
            std::process::exit(2);
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let _telemetry = mlops_runtime::telemetry::init(name)?;
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                mlops_runtime::shutdown::signal().await;
                trigger.cancel();
            });
            S::bind(config, None).await?.run(shutdown).await
        })
}

impl Addresses {
    /// Where `listeners` are bound.
    pub fn of(listeners: &mlops_runtime::grpc::Listeners) -> Self {
        Addresses {
            api: listeners.grpc_addr(),
            admin: listeners.admin_addr(),
            http: None,
        }
    }

    /// With a second API port speaking HTTP.
    pub fn with_http(self, http: SocketAddr) -> Self {
        Addresses {
            http: Some(http),
            ..self
        }
    }
}

/// Opens the database of the service `name` and brings it up to date: its own
/// `migrations`, then its outbox's.
pub async fn open_database(
    name: &str,
    args: &mlops_storage::DbArgs,
    migrations: &[mlops_storage::Migration],
) -> anyhow::Result<mlops_storage::Db> {
    use anyhow::Context;
    let db = mlops_storage::Db::connect(&args.options())
        .await
        .with_context(|| format!("connecting the {name} database"))?;
    db.migrate(name, migrations).await?;
    db.migrate(
        &format!("{name}-outbox"),
        &mlops_events::outbox::migrations(name),
    )
    .await?;
    Ok(db)
}

/// The bus a service publishes to: `given` (one process, tests) or the configured
/// one, with `topics` created when the broker can be reached now (otherwise the
/// outbox keeps the events until it can).
pub async fn open_bus(
    name: &str,
    given: Option<Arc<dyn EventBus>>,
    args: &mlops_events::BusArgs,
    topics: &[&str],
) -> anyhow::Result<Arc<dyn EventBus>> {
    let bus = match given {
        Some(b) => b,
        None => mlops_events::connect(args, None)?,
    };
    if let Err(err) = bus.ensure_topics(topics).await {
        tracing::warn!(error = %err, "cannot create the {name} topics yet");
    }
    Ok(bus)
}
