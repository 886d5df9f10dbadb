//! How every service runs, written once.
//!
//! A service builds a [`Runner`] from its bound ports and its API (gRPC routes or
//! an HTTP router), adds what it depends on ([`Runner::database`],
//! [`Runner::bus`], [`Runner::outbox`], [`Runner::check`]) and its background work
//! ([`Runner::task`]), and calls [`Runner::run`]. Then:
//! - the admin port serves `/metrics` (the service's own, with
//!   `mlops_<service>_build_info{version}`), `/healthz`, and
//!   `/readyz`, which is true while serving and every check passes;
//! - a background task that returns or panics before shutdown is logged, counted
//!   in `mlops_<service>_background_task_failures_total{task}`, and either turns
//!   readiness false for good ([`OnFailure::Unready`]) or stops the service with an
//!   error ([`OnFailure::Stop`]);
//! - on shutdown, in order: readiness off, no new requests, requests in flight
//!   drained, background work stopped (the outbox relay flushes what it can),
//!   admin port closed.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use mlops_events::outbox::Outbox;
use mlops_events::EventBus;
use mlops_runtime::admin::{Check, Readiness};
use mlops_runtime::auth::{Policy, RoleTable};
use mlops_runtime::config::ServerArgs;
use mlops_runtime::grpc::{GrpcServer, Listeners};
use mlops_runtime::shutdown::CancellationToken;
use mlops_storage::Db;
use tokio::net::TcpListener;

/// What a background task's failure does to its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Readiness turns false and stays false: the service keeps answering, but a
    /// load balancer stops sending it traffic and an operator sees why.
    Unready,
    /// The service stops (drains) and its run returns the error: the process exits
    /// and its supervisor restarts it.
    Stop,
}

type TaskFn = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

struct Task {
    name: String,
    on_failure: OnFailure,
    start: TaskFn,
}

enum Front {
    Grpc {
        listener: TcpListener,
        server: GrpcServer,
        routes: tonic::service::Routes,
    },
    Http {
        listener: TcpListener,
        router: axum::Router,
    },
}

/// A bound service, ready to run: see the module docs.
pub struct Runner {
    name: &'static str,
    admin: TcpListener,
    front: Front,
    checks: Vec<(String, Check)>,
    tasks: Vec<Task>,
    extra_http: Option<(TcpListener, axum::Router)>,
}

/// A readiness check from an async closure.
pub fn check<F, Fut>(f: F) -> Check
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(f()))
}

impl Runner {
    /// A gRPC service named `name` (`tracking`) serving `routes`, whose gRPC services
    /// are `grpc_names` (health and reflection list exactly these) with the role of
    /// each RPC in `roles` (one table per gRPC service).
    pub fn grpc(
        name: &'static str,
        listeners: Listeners,
        server: &ServerArgs,
        roles: &[(&'static str, RoleTable)],
        routes: tonic::service::Routes,
    ) -> Self {
        let policy = roles.iter().fold(Policy::default(), |p, (service, table)| {
            p.with(service, table)
        });
        let Listeners { grpc, admin } = listeners;
        Runner {
            name,
            admin,
            front: Front::Grpc {
                listener: grpc,
                server: GrpcServer {
                    service: name,
                    grpc_names: roles.iter().map(|(s, _)| *s).collect(),
                    tokens: server.auth_tokens.clone(),
                    policy,
                    concurrency_per_connection: server.max_concurrent_per_connection,
                },
                routes,
            },
            checks: vec![],
            tasks: vec![],
            extra_http: None,
        }
    }

    /// An HTTP service (the MLflow gateway) serving `router` on the first listener.
    pub fn http(name: &'static str, listeners: Listeners, router: axum::Router) -> Self {
        let Listeners { grpc, admin } = listeners;
        Runner {
            name,
            admin,
            front: Front::Http {
                listener: grpc,
                router,
            },
            checks: vec![],
            tasks: vec![],
            extra_http: None,
        }
    }

    /// Also serves `router` on `listener`: a second API port speaking HTTP beside a gRPC
    /// one (inference's Open Inference Protocol over HTTP/JSON). It drains with the first.
    pub fn with_http(mut self, listener: TcpListener, router: axum::Router) -> Self {
        self.extra_http = Some((listener, router));
        self
    }

    /// Adds a readiness check: `Err` says what is wrong (a callee unreachable, no
    /// model loaded); `/readyz` answers 503 with it.
    pub fn check(mut self, name: &str, check: Check) -> Self {
        self.checks.push((name.to_owned(), check));
        self
    }

    /// Readiness on the database answering.
    pub fn database(self, db: &Db) -> Self {
        let db = db.clone();
        self.check(
            "database",
            check(move || {
                let db = db.clone();
                async move { db.ping().await.map_err(|e| e.to_string()) }
            }),
        )
    }

    /// Readiness on the bus answering.
    pub fn bus(self, bus: &Arc<dyn EventBus>) -> Self {
        let bus = bus.clone();
        self.check(
            "bus",
            check(move || {
                let bus = bus.clone();
                async move { bus.ping().await.map_err(|e| e.to_string()) }
            }),
        )
    }

    /// The outbox relay publishing `outbox` (in `db`) to `bus`, with readiness on
    /// both; it stops after the requests are drained, flushing what it can.
    pub fn outbox(self, outbox: &Outbox, db: &Db, bus: &Arc<dyn EventBus>) -> Self {
        let relay = outbox.relay(self.name, db.clone(), bus.clone());
        self.database(db)
            .bus(bus)
            .task("outbox-relay", OnFailure::Stop, move |stop| async move {
                relay.run(stop).await;
                Ok(())
            })
    }

    /// For a service that consumes events: deletes the ids of applied events older
    /// than `args` keeps (the table a group consumer records them in), every
    /// `applied_events_prune_interval_secs`. Flatten
    /// [`mlops_events::consumer::AppliedEventsArgs`] into the service's config.
    pub fn prune_applied_events(
        self,
        db: &Db,
        args: &mlops_events::consumer::AppliedEventsArgs,
    ) -> Self {
        let pruner = mlops_events::consumer::AppliedEventsPruner::new(db.clone(), self.name, args);
        self.task(
            "applied-events-pruner",
            OnFailure::Unready,
            move |stop| async move {
                pruner.run(stop).await;
                Ok(())
            },
        )
    }

    /// A background task, started after bind and stopped (its token cancelled)
    /// once the requests are drained. Returning, with an error or not, or
    /// panicking before that is a failure handled as `on_failure` says.
    pub fn task<F, Fut>(mut self, name: &str, on_failure: OnFailure, start: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.push(Task {
            name: name.to_owned(),
            on_failure,
            start: Box::new(move |stop| Box::pin(start(stop))),
        });
        self
    }

    /// Serves until `shutdown` is cancelled (or a task with [`OnFailure::Stop`]
    /// fails), then shuts down in order and returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Runner {
            name,
            admin,
            front,
            mut checks,
            tasks,
            extra_http,
        } = self;
        mlops_runtime::metrics::int_gauge_vec(
            &format!("mlops_{}_build_info", name.replace('-', "_")),
            "build information",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let failures = mlops_runtime::metrics::int_counter_vec(
            &format!(
                "mlops_{}_background_task_failures_total",
                name.replace('-', "_")
            ),
            "background tasks that ended or panicked while the service was serving, by task",
            &["task"],
        );
        let failed: Arc<Mutex<Vec<String>>> = Arc::default();
        checks.push(("background tasks".into(), {
            let failed = failed.clone();
            check(move || {
                let failed = failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
                async move {
                    if failed.is_empty() {
                        Ok(())
                    } else {
                        Err(failed.join("; "))
                    }
                }
            })
        }));
        let readiness = Readiness::new(checks);
        // `stop` ends the serving: the caller's shutdown, or a fatal task failure.
        let stop = shutdown.child_token();
        let fatal: Arc<Mutex<Option<String>>> = Arc::default();
        let workers = CancellationToken::new();
        let mut handles = Vec::new();
        for task in tasks {
            let handle = tokio::spawn((task.start)(workers.clone()));
            let supervisor = {
                let (workers, stop, failed, fatal, failures) = (
                    workers.clone(),
                    stop.clone(),
                    failed.clone(),
                    fatal.clone(),
                    failures.clone(),
                );
                async move {
                    let outcome = match handle.await {
                        Ok(Ok(())) => None,
                        Ok(Err(err)) => Some(format!("{err:#}")),
                        Err(join) if join.is_panic() => Some(format!(
                            "panicked: {}",
                            panic_message(join.into_panic().as_ref())
                        )),
                        Err(join) => Some(join.to_string()),
                    };
                    if workers.is_cancelled() {
                        if let Some(err) = outcome {
                            tracing::warn!(task = %task.name, error = %err, "background task failed while stopping");
                        }
                        return;
                    }
                    let err =
                        outcome.unwrap_or_else(|| "ended while the service was serving".into());
                    failures.with_label_values(&[&task.name]).inc();
                    let message = format!("{} {err}", task.name);
                    match task.on_failure {
                        OnFailure::Unready => {
                            tracing::error!(task = %task.name, error = %err, "background task failed; readiness is now false");
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(message);
                        }
                        OnFailure::Stop => {
                            tracing::error!(task = %task.name, error = %err, "background task failed; stopping the service");
                            fatal
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(message);
                            stop.cancel();
                        }
                    }
                }
            };
            handles.push(tokio::spawn(supervisor));
        }
        let admin_addr = admin.local_addr()?;
        let admin_stop = CancellationToken::new();
        let admin_server = tokio::spawn(mlops_runtime::admin::serve(
            name,
            admin,
            readiness.clone(),
            {
                let admin_stop = admin_stop.clone();
                async move { admin_stop.cancelled().await }
            },
        ));
        readiness.set_serving(true);
        let draining = {
            let readiness = readiness.clone();
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                readiness.set_serving(false);
                tracing::info!("{name} draining in-flight requests");
            }
        };
        let extra = extra_http.map(|(listener, router)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                tracing::info!(http = %listener.local_addr()?, "{name} serving HTTP");
                serve_http(listener, router, async move { stop.cancelled().await })
                    .await
                    .map_err(|e| anyhow::anyhow!("{name}: HTTP server failed: {e}"))
            })
        });
        let served: anyhow::Result<()> = match front {
            Front::Grpc {
                listener,
                server,
                routes,
            } => {
                tracing::info!(grpc = %listener.local_addr()?, admin = %admin_addr, "{name} serving");
                server
                    .serve(listener, routes, draining)
                    .await
                    .map_err(|e| anyhow::anyhow!("{name}: gRPC server failed: {e}"))
            }
            Front::Http { listener, router } => {
                tracing::info!(http = %listener.local_addr()?, admin = %admin_addr, "{name} serving");
                serve_http(listener, router, draining)
                    .await
                    .map_err(|e| anyhow::anyhow!("{name}: HTTP server failed: {e}"))
            }
        };
        let served = match extra {
            Some(extra) => {
                // The gRPC front returns once `stop` fired; the HTTP one drains on the same.
                stop.cancel();
                let http = extra
                    .await
                    .map_err(|e| anyhow::anyhow!("{name}: HTTP server task failed: {e}"))
                    .and_then(|r| r);
                served.and(http)
            }
            None => served,
        };
        // Requests are drained: now stop the background work (the relay flushes).
        workers.cancel();
        for h in handles {
            if let Err(err) = h.await {
                tracing::warn!(error = %err, "a task supervisor failed");
            }
        }
        admin_stop.cancel();
        match admin_server.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "admin port failed"),
            Err(err) => tracing::warn!(error = %err, "admin port task failed"),
        }
        tracing::info!("{name} stopped");
        served?;
        let fatal = fatal.lock().unwrap_or_else(|p| p.into_inner()).take();
        match fatal {
            Some(message) => Err(anyhow::anyhow!("{name} stopped: background task {message}")),
            None => Ok(()),
        }
    }
}

/// Serves `router` until `shutdown` completes, then drains.
async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Without TCP_NODELAY, small responses wait on delayed ACKs (~40 ms each).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        let code = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = buf.split_once("\r\n\r\n").unwrap().1.to_owned();
        (code, body)
    }

    async fn runner(name: &'static str) -> (Runner, std::net::SocketAddr, std::net::SocketAddr) {
        let listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await.unwrap();
        let (api, admin) = (listeners.grpc_addr(), listeners.admin_addr());
        let router = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        (Runner::http(name, listeners, router), api, admin)
    }

    async fn until_unready(admin: std::net::SocketAddr) -> String {
        for _ in 0..200 {
            let (code, body) = get(admin, "/readyz").await;
            if code == 503 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("readiness stayed true");
    }

    #[tokio::test]
    async fn a_failed_task_turns_readiness_false_counts_and_keeps_serving() {
        let (runner, api, admin) = runner("kit-test-unready").await;
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(
            runner
                .check("always", check(|| async { Ok(()) }))
                .task("flaky", OnFailure::Unready, |_stop| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    anyhow::bail!("lost the connection")
                })
                .run(shutdown.clone()),
        );
        let body = until_unready(admin).await;
        assert!(body.contains("flaky lost the connection"), "{body}");
        assert_eq!(get(api, "/ping").await, (200, "pong".to_owned()));
        let (_, metrics) = get(admin, "/metrics").await;
        assert!(
            metrics.contains(
                "mlops_kit_test_unready_background_task_failures_total{task=\"flaky\"} 1"
            ),
            "{metrics}"
        );
        shutdown.cancel();
        run.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_panicking_task_with_stop_stops_the_service_with_its_message() {
        let (runner, _api, _admin) = runner("kit-test-stop").await;
        let run = runner
            .task("worker", OnFailure::Stop, |_stop| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                panic!("index out of range");
            })
            .run(CancellationToken::new());
        let err = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the service stops on its own")
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker panicked: index out of range"), "{err}");
    }

    #[tokio::test]
    async fn shutdown_stops_tasks_after_the_drain_and_their_errors_do_not_count() {
        let (runner, _api, admin) = runner("kit-test-drain").await;
        let shutdown = CancellationToken::new();
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = stopped.clone();
        let run = tokio::spawn(
            runner
                .task("loop", OnFailure::Stop, move |stop| async move {
                    stop.cancelled().await;
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    anyhow::bail!("an error while stopping is only logged")
                })
                .run(shutdown.clone()),
        );
        assert_eq!(get(admin, "/readyz").await.0, 200);
        shutdown.cancel();
        run.await.unwrap().unwrap();
        assert!(stopped.load(std::sync::atomic::Ordering::SeqCst));
        let metrics = mlops_runtime::metrics::render_service("kit-test-drain");
        assert!(!metrics.contains("task=\"loop\""), "{metrics}");
    }
}
