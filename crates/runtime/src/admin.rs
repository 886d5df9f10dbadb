//! The admin HTTP port: `/metrics` (Prometheus text), `/healthz` (the process is
//! alive) and `/readyz` (bound, serving, and every dependency reachable).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;

/// A readiness probe of one dependency: `Err` says what is unreachable.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Whether the service should receive traffic.
#[derive(Clone, Default)]
pub struct Readiness {
    serving: Arc<AtomicBool>,
    checks: Arc<Vec<(String, Check)>>,
}

impl Readiness {
    /// Readiness built from named dependency checks; not serving until [`Readiness::set_serving`].
    pub fn new(checks: Vec<(String, Check)>) -> Self {
        Readiness {
            serving: Arc::new(AtomicBool::new(false)),
            checks: Arc::new(checks),
        }
    }

    /// Marks the service as serving (after bind) or not (when shutting down).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::SeqCst);
    }

    /// `Ok` when serving and every dependency answers.
    pub async fn check(&self) -> Result<(), String> {
        if !self.serving.load(Ordering::SeqCst) {
            return Err("not serving (starting or shutting down)".to_owned());
        }
        for (name, check) in self.checks.iter() {
            check().await.map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    service: &'static str,
}

/// The admin router of `service`, for embedding or tests. Its `/metrics` shows the
/// service's own metrics only (`mlops_<service>_*`), so that in one process
/// (`mlops up`) a Prometheus scraping every admin port counts nothing twice.
pub fn router(service: &'static str, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(AdminState { readiness, service })
}

async fn metrics(
    State(state): State<AdminState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render_service(state.service),
    )
}

async fn ready(State(state): State<AdminState>) -> (StatusCode, String) {
    match state.readiness.check().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
    }
}

/// Serves the admin endpoints of `service` on `listener` until `shutdown` completes.
pub async fn serve(
    service: &'static str,
    listener: tokio::net::TcpListener,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service, readiness))
        .with_graceful_shutdown(shutdown)
        .await
}
