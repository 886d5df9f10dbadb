//! How every service with an outbox runs: readiness on its database and bus, the
//! outbox relay and its own background work, the admin port, the gRPC server; and
//! on shutdown, in order: readiness off, in-flight requests drained, background
//! work stopped, events flushed.

use std::sync::Arc;

use mlops_runtime::admin::{Check, Readiness};
use mlops_runtime::grpc::{GrpcServer, Listeners};
use mlops_runtime::shutdown::CancellationToken;
use mlops_storage::Db;
use tokio::task::JoinHandle;

use crate::outbox::Outbox;
use crate::EventBus;

/// A bound service, ready to run.
pub struct Service {
    /// Its short name (`tracking`), for logs and the relay's metrics.
    pub name: &'static str,
    /// Its database (readiness, relay).
    pub db: Db,
    /// Its bus (readiness, relay).
    pub bus: Arc<dyn EventBus>,
    /// Its outbox.
    pub outbox: Outbox,
    /// Its bound ports.
    pub listeners: Listeners,
    /// How its gRPC server is set up.
    pub server: GrpcServer,
    /// Its gRPC services.
    pub routes: tonic::service::Routes,
}

fn check<F, Fut>(f: F) -> Check
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

impl Service {
    /// Serves until `shutdown` is cancelled. `background` starts the service's own
    /// loops; they get a token that is cancelled once requests are drained.
    pub async fn run(
        self,
        shutdown: CancellationToken,
        background: impl FnOnce(CancellationToken) -> Vec<JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        let Service {
            name,
            db,
            bus,
            outbox,
            listeners: Listeners { grpc, admin },
            server,
            routes,
        } = self;
        let readiness = Readiness::new(vec![
            ("database".into(), {
                let db = db.clone();
                check(move || {
                    let db = db.clone();
                    async move { db.ping().await.map_err(|e| e.to_string()) }
                })
            }),
            ("bus".into(), {
                let bus = bus.clone();
                check(move || {
                    let bus = bus.clone();
                    async move { bus.ping().await.map_err(|e| e.to_string()) }
                })
            }),
        ]);
        let workers = CancellationToken::new();
        let mut tasks = vec![tokio::spawn(
            outbox.relay(name, db, bus).run(workers.clone()),
        )];
        tasks.extend(background(workers.clone()));
        let admin_addr = admin.local_addr()?;
        let admin_server = tokio::spawn(mlops_runtime::admin::serve(admin, readiness.clone(), {
            let workers = workers.clone();
            async move { workers.cancelled().await }
        }));
        readiness.set_serving(true);
        tracing::info!(grpc = %grpc.local_addr()?, admin = %admin_addr, "{name} serving");
        let stop = {
            let readiness = readiness.clone();
            async move {
                shutdown.cancelled().await;
                readiness.set_serving(false);
            }
        };
        let served = server.serve(grpc, routes, stop).await;
        // Requests are drained: now stop the background work and flush events.
        workers.cancel();
        for t in tasks {
            let _ = t.await;
        }
        let _ = admin_server.await;
        tracing::info!("{name} stopped");
        served.map_err(|e| anyhow::anyhow!("{name}: gRPC server failed: {e}"))
    }
}
