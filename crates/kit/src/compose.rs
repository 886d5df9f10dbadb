//! Services in one process: `mlops up`, the test sandbox, the benchmarks.
//!
//! ```text
//! let mut platform = Composition::new(Local::new(data_dir));
//! platform.start::<Tracking>(|_| {}).await?;   // one line per service,
//! platform.start::<Registry>(|_| {}).await?;   // callees before callers
//! platform.run(shutdown).await?;               // stops callers first
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::{BoxFuture, LocalBoxFuture};
use mlops_events::memory::InProcessBus;
use mlops_events::EventBus;
use mlops_runtime::config::ServiceConfig;
use mlops_runtime::shutdown::CancellationToken;

use crate::service::{Addresses, Service};

/// What services in one process share: a data directory, one bus, the ports asked
/// for, and the addresses of the services already bound.
pub struct Local {
    /// Where SQLite files and artifacts go.
    pub data_dir: PathBuf,
    /// Where artifacts go instead of under `data_dir` (a directory or `s3://`).
    pub artifact_root: Option<String>,
    /// The one bus of the process.
    pub bus: Arc<dyn EventBus>,
    /// Whether services listen on their [`Service::LOCAL_PORTS`] (`mlops up`) or
    /// on free ports (`127.0.0.1:0`: tests, benchmarks) unless given others.
    pub fixed_ports: bool,
    ports: HashMap<String, (String, String)>,
    http_ports: HashMap<String, String>,
    bound: HashMap<String, Addresses>,
}

impl Local {
    /// Files under `data_dir`, an in-process bus, every port `127.0.0.1:0`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Local {
            data_dir: data_dir.into(),
            artifact_root: None,
            bus: Arc::new(InProcessBus::new()),
            fixed_ports: false,
            ports: HashMap::new(),
            http_ports: HashMap::new(),
            bound: HashMap::new(),
        }
    }

    /// Uses `bus` instead of a new in-process one.
    pub fn with_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = bus;
        self
    }

    /// Has the service `name` listen on `api` and `admin`.
    pub fn with_ports(mut self, name: &str, api: &str, admin: &str) -> Self {
        self.ports
            .insert(name.to_owned(), (api.to_owned(), admin.to_owned()));
        self
    }

    /// Has the second (HTTP) API port of the service `name` listen on `addr`.
    pub fn with_http_port(mut self, name: &str, addr: &str) -> Self {
        self.http_ports.insert(name.to_owned(), addr.to_owned());
        self
    }

    /// The address the second (HTTP) API port of `S` is to listen on: the one given, else
    /// `fixed` when ports are fixed, else a free port.
    pub fn http_port<S: Service>(&self, fixed: &str) -> String {
        let name = <S::Config as ServiceConfig>::NAME;
        match self.http_ports.get(name) {
            Some(p) => p.clone(),
            None if self.fixed_ports => fixed.to_owned(),
            None => "127.0.0.1:0".to_owned(),
        }
    }

    /// Has every service listen on its [`Service::LOCAL_PORTS`] unless given others.
    pub fn with_fixed_ports(mut self) -> Self {
        self.fixed_ports = true;
        self
    }

    /// The addresses `S` is to listen on: those given, else its
    /// [`Service::LOCAL_PORTS`] or free ports (see [`Local::fixed_ports`]).
    pub fn ports<S: Service>(&self) -> (String, String) {
        let name = <S::Config as ServiceConfig>::NAME;
        match self.ports.get(name) {
            Some(p) => p.clone(),
            None if self.fixed_ports => (S::LOCAL_PORTS.0.to_owned(), S::LOCAL_PORTS.1.to_owned()),
            None => ("127.0.0.1:0".to_owned(), "127.0.0.1:0".to_owned()),
        }
    }

    /// `http://ADDR` of the service `name`, bound earlier; panics when it is not
    /// (a composition starts callees before their callers).
    pub fn callee(&self, name: &str) -> String {
        let a = self
            .bound
            .get(name)
            .unwrap_or_else(|| panic!("{name} must be started before the services that call it"));
        format!("http://{}", a.api)
    }

    /// Where the service `name` listens, once bound.
    pub fn addresses(&self, name: &str) -> Option<Addresses> {
        self.bound.get(name).copied()
    }
}

type Run = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

struct Started {
    name: &'static str,
    title: &'static str,
    describe: String,
    run: Run,
}

/// A service as a composition root lists it: `entry::<Tracking>()`.
pub struct Entry {
    /// Its short name (`tracking`).
    pub name: &'static str,
    /// Its title ("The tracking service").
    pub title: &'static str,
    /// Its settings as a command line (ids, help, defaults).
    pub command: fn() -> clap::Command,
    /// The settings [`Service::local`] sets itself.
    pub set_locally: &'static [&'static str],
    /// Loads its settings from the environment alone, to refuse an invalid one.
    pub check_environment: fn() -> Result<(), mlops_runtime::config::ConfigError>,
    /// Binds it in a composition and adds it to those that run.
    pub start: for<'a> fn(&'a mut Composition) -> LocalBoxFuture<'a, anyhow::Result<()>>,
}

/// The [`Entry`] of `S`.
pub fn entry<S: Service>() -> Entry {
    Entry {
        name: <S::Config as ServiceConfig>::NAME,
        title: S::TITLE,
        command: <S::Config as clap::CommandFactory>::command,
        set_locally: S::SET_LOCALLY,
        check_environment: || {
            let program = format!("mlops-{}", <S::Config as ServiceConfig>::NAME);
            <S::Config as ServiceConfig>::load([program]).map(|_| ())
        },
        start: |c| Box::pin(async move { c.start::<S>(|_| {}).await.map(|_| ()) }),
    }
}

/// Bound services of one process, run together and stopped in reverse order.
pub struct Composition {
    local: Local,
    started: Vec<Started>,
}

impl Composition {
    /// An empty composition over `local`.
    pub fn new(local: Local) -> Self {
        Composition {
            local,
            started: vec![],
        }
    }

    /// What the services share.
    pub fn local(&self) -> &Local {
        &self.local
    }

    /// Binds `S` with its [`Service::local`] settings changed by `tweak`, and
    /// returns it for a look under its API before it runs ([`Composition::spawn`]).
    pub async fn bind<S: Service>(
        &mut self,
        tweak: impl FnOnce(&mut S::Config),
    ) -> anyhow::Result<S> {
        let mut config = S::local(&self.local);
        tweak(&mut config);
        let service = S::bind(config, Some(self.local.bus.clone())).await?;
        self.local.bound.insert(
            <S::Config as ServiceConfig>::NAME.to_owned(),
            service.addresses(),
        );
        Ok(service)
    }

    /// Adds a bound service to those [`Composition::run`] runs.
    pub fn spawn<S: Service>(&mut self, service: S) -> Addresses {
        let addresses = service.addresses();
        self.started.push(Started {
            name: <S::Config as ServiceConfig>::NAME,
            title: S::TITLE,
            describe: S::describe(&addresses),
            run: Box::new(move |stop| Box::pin(service.run(stop))),
        });
        addresses
    }

    /// Binds `S` (see [`Composition::bind`]) and adds it to those that run.
    pub async fn start<S: Service>(
        &mut self,
        tweak: impl FnOnce(&mut S::Config),
    ) -> anyhow::Result<Addresses> {
        let service = self.bind::<S>(tweak).await?;
        Ok(self.spawn(service))
    }

    /// One line per service: name, API address, admin address.
    pub fn describe(&self) -> Vec<String> {
        self.started
            .iter()
            .map(|s| format!("  {:<9} {}", s.name, s.describe))
            .collect()
    }

    /// The started services' names and titles, in start order.
    pub fn names(&self) -> Vec<(&'static str, &'static str)> {
        self.started.iter().map(|s| (s.name, s.title)).collect()
    }

    /// Runs every service until `shutdown` is cancelled or one of them stops on
    /// its own; then stops them in reverse order of start, each drained before
    /// the next (the callers before the services they call). The first error wins.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let ended = CancellationToken::new();
        for s in self.started {
            let stop = CancellationToken::new();
            let fut = (s.run)(stop.clone());
            let ended = ended.clone();
            tasks.push((
                s.name,
                tokio::spawn(async move {
                    let r = fut.await;
                    ended.cancel();
                    r
                }),
            ));
            stops.push(stop);
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = ended.cancelled() => tracing::warn!("a service stopped on its own; stopping the others"),
        }
        let mut first_error = None;
        for ((name, task), stop) in tasks.into_iter().zip(stops).rev() {
            stop.cancel();
            let result = match task.await {
                Ok(r) => r,
                Err(join) => Err(anyhow::anyhow!("{name} panicked: {join}")),
            };
            if let Err(err) = result {
                tracing::error!(service = name, error = %format!("{err:#}"), "service failed");
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}
