//! The gateway's Prometheus metrics, and the middleware that records every HTTP
//! request (and opens its span, child of the caller's trace context).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use mlops_runtime::metrics::{histogram_vec, int_counter_vec};
use prometheus::{HistogramVec, IntCounterVec};
use tracing::Instrument;

/// The HTTP metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    /// Requests by route and HTTP status.
    pub requests: IntCounterVec,
    /// Time until the response headers, by route.
    pub duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers (once per process) and returns the metrics.
    pub fn new() -> Self {
        HttpMetrics {
            requests: int_counter_vec(
                "mlops_mlflow_http_requests_total",
                "MLflow REST requests handled, by route and HTTP status",
                &["route", "status"],
            ),
            duration: histogram_vec(
                "mlops_mlflow_http_request_duration_seconds",
                "MLflow REST request duration until the response headers, by route",
                &["route"],
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0,
                ],
            ),
        }
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The route label: the matched route pattern (bounded: artifact paths appear as
/// `{*path}`), or `unmatched`.
fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned())
}

/// Middleware (`axum::middleware::from_fn_with_state`): a span per request, and its
/// count and duration.
pub async fn record(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let span = tracing::info_span!("http", http.method = %req.method(), http.route = %route);
    mlops_runtime::telemetry::set_parent_from(
        &span,
        &mlops_runtime::telemetry::HeaderView(req.headers()),
    );
    let start = Instant::now();
    let resp = next.run(req).instrument(span).await;
    let status = resp.status();
    metrics
        .requests
        .with_label_values(&[route.as_str(), status.as_str()])
        .inc();
    metrics
        .duration
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(route = %route, status = status.as_u16(), "request failed");
    }
    resp
}
