//! Prometheus metrics: get-or-create helpers on the default registry, and the
//! tower layer that records every RPC's count, in-flight and duration.
//!
//! Metrics are created by name once per process and shared afterwards, so that
//! several instances of a service in one process (`mlops up`, tests) do not
//! collide on registration.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use prometheus::core::Collector;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

fn cache() -> &'static Mutex<HashMap<String, Box<dyn Any + Send>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Box<dyn Any + Send>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn get_or_create<C>(name: &str, make: impl FnOnce() -> prometheus::Result<C>) -> C
where
    C: Collector + Clone + Send + 'static,
{
    let mut cache = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = cache.get(name).and_then(|b| b.downcast_ref::<C>()) {
        return existing.clone();
    }
    // The names are literals from our code; an invalid one is a bug caught by any test.
    let metric = make().unwrap_or_else(|e| panic!("invalid metric {name}: {e}"));
    if let Err(err) = prometheus::register(Box::new(metric.clone())) {
        tracing::warn!(metric = name, error = %err, "metric registration failed");
    }
    cache.insert(name.to_owned(), Box::new(metric.clone()));
    metric
}

/// A counter named `name`.
pub fn int_counter(name: &str, help: &str) -> IntCounter {
    get_or_create(name, || IntCounter::new(name, help))
}

/// A counter with labels.
pub fn int_counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    get_or_create(name, || IntCounterVec::new(Opts::new(name, help), labels))
}

/// A gauge.
pub fn int_gauge(name: &str, help: &str) -> IntGauge {
    get_or_create(name, || IntGauge::new(name, help))
}

/// A gauge with labels.
pub fn int_gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    get_or_create(name, || IntGaugeVec::new(Opts::new(name, help), labels))
}

/// A gauge of real numbers with labels (scores, shares).
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    get_or_create(name, || GaugeVec::new(Opts::new(name, help), labels))
}

/// A histogram with labels and the given buckets.
pub fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    get_or_create(name, || {
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
    })
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> String {
    let encoder = prometheus::TextEncoder::new();
    encoder
        .encode_to_string(&prometheus::gather())
        .unwrap_or_default()
}

static CLAIMED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Has the admin port of `service` also show the families named `prefix*`: names that are
/// not ours but a standard's (inference writes Triton's `nv_inference_*`).
pub fn claim_prefix(service: &str, prefix: &str) {
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    let entry = (service.to_owned(), prefix.to_owned());
    if !claimed.contains(&entry) {
        claimed.push(entry);
    }
}

/// The Prometheus text exposition of the metrics of `service`: those named
/// `mlops_<service>_*` (`-` in the name as `_`), and of the events crate's
/// per-consumer metrics (`mlops_events_*{consumer}`) the series of the consumers
/// named after it (`<service>` or `<service>-...`). So in one process (`mlops up`)
/// a Prometheus scraping every admin port counts nothing twice.
pub fn render_service(service: &str) -> String {
    let prefix = format!("mlops_{}_", service.replace('-', "_"));
    let claimed: Vec<String> = CLAIMED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(owner, _)| owner == service)
        .map(|(_, p)| p.clone())
        .collect();
    let owner = format!("{service}-");
    let mine = |m: &prometheus::proto::Metric| {
        m.get_label().iter().any(|l| {
            l.name() == "consumer" && (l.value() == service || l.value().starts_with(&owner))
        })
    };
    let families: Vec<_> = prometheus::gather()
        .into_iter()
        .filter_map(|mut f| {
            if f.name().starts_with(&prefix) || claimed.iter().any(|p| f.name().starts_with(p)) {
                return Some(f);
            }
            if !f.name().starts_with("mlops_events_") {
                return None;
            }
            let kept: Vec<_> = f.take_metric().into_iter().filter(|m| mine(m)).collect();
            if kept.is_empty() {
                return None;
            }
            *f.mut_metric() = kept;
            Some(f)
        })
        .collect();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_default()
}

/// Per-RPC metrics of one service.
#[derive(Clone)]
pub struct RpcMetrics {
    requests: IntCounterVec,
    in_flight: IntGaugeVec,
    duration: HistogramVec,
}

impl RpcMetrics {
    /// The metrics `mlops_<service>_grpc_*`.
    pub fn new(service: &str) -> Self {
        let service = service.replace('-', "_");
        RpcMetrics {
            requests: int_counter_vec(
                &format!("mlops_{service}_grpc_requests_total"),
                "gRPC requests handled, by method and status code",
                &["method", "code"],
            ),
            in_flight: int_gauge_vec(
                &format!("mlops_{service}_grpc_requests_in_flight"),
                "gRPC requests being handled, by method",
                &["method"],
            ),
            duration: histogram_vec(
                &format!("mlops_{service}_grpc_request_duration_seconds"),
                "gRPC request duration until the response headers, by method and status code",
                &["method", "code"],
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
        }
    }
}

/// The tower layer recording [`RpcMetrics`] for every request.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcMetricsLayer {
    /// A layer for `service`.
    pub fn new(service: &str) -> Self {
        RpcMetricsLayer {
            metrics: Arc::new(RpcMetrics::new(service)),
        }
    }
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`RpcMetricsLayer`].
#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

/// The method name of a gRPC path, `/pkg.Service/Method` -> `Method`.
pub fn method_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The gRPC status code name in response headers (trailers-only responses), or `OK`.
fn code_of<B>(resp: &http::Response<B>) -> &'static str {
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for RpcMetricsService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let method = method_of(req.uri().path()).to_owned();
        let metrics = self.metrics.clone();
        // Take the service that was polled ready and leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let gauge = metrics.in_flight.with_label_values(&[&method]);
            gauge.inc();
            let start = Instant::now();
            let result = inner.call(req).await;
            gauge.dec();
            let code = match &result {
                Ok(resp) => code_of(resp),
                Err(_) => "UNKNOWN",
            };
            metrics.requests.with_label_values(&[&method, code]).inc();
            metrics
                .duration
                .with_label_values(&[&method, code])
                .observe(start.elapsed().as_secs_f64());
            result
        })
    }
}

/// The tower layer that opens a span per RPC, child of the caller's trace context.
#[derive(Clone, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = TraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TraceService { inner }
    }
}

/// The service made by [`TraceLayer`].
#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for TraceService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        use tracing::Instrument;
        let span = tracing::info_span!("grpc", rpc.method = %req.uri().path());
        crate::telemetry::set_parent_from(&span, &crate::telemetry::HeaderView(req.headers()));
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { inner.call(req).await }.instrument(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_services_rendering_holds_its_metrics_and_its_consumers_series_only() {
        int_counter("mlops_svcx_things_total", "x").inc();
        int_counter("mlops_svcy_things_total", "y").inc();
        let events = int_counter_vec("mlops_events_test_skipped_total", "e", &["consumer"]);
        events.with_label_values(&["svcx-models"]).inc();
        events.with_label_values(&["svcy"]).inc();
        let x = render_service("svcx");
        assert!(x.contains("mlops_svcx_things_total 1"), "{x}");
        assert!(x.contains("consumer=\"svcx-models\""), "{x}");
        assert!(!x.contains("svcy"), "{x}");
        let y = render_service("svcy");
        assert!(y.contains("consumer=\"svcy\""), "{y}");
        assert!(!y.contains("svcx"), "{y}");
    }

    #[test]
    fn shared_by_name_and_rendered() {
        let a = int_counter("mlops_test_things_total", "things");
        let b = int_counter("mlops_test_things_total", "things");
        a.inc();
        b.inc();
        assert_eq!(a.get(), 2);
        assert!(render().contains("mlops_test_things_total 2"));
        assert_eq!(
            method_of("/mlops.tracking.v1.TrackingService/CreateRun"),
            "CreateRun"
        );
    }
}
