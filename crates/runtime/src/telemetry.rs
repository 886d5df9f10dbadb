//! Logs and traces: `tracing` everywhere, OTLP export when asked, and the W3C
//! trace context carried across gRPC metadata and Kafka headers.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{global, Context};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps telemetry alive; dropping it flushes the spans not yet exported.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error = %err, "flushing traces failed");
            }
        }
    }
}

/// Installs the global subscriber for `service`: the `RUST_LOG` filter (default
/// `info`), text or JSON logs (`MLOPS_LOG_FORMAT=json`), and OTLP/gRPC trace export
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Calling it again is harmless.
pub fn init(service: &str) -> anyhow::Result<TelemetryGuard> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    init_with(service, endpoint)
}

/// [`init`] with the OTLP endpoint given rather than read from the environment.
pub fn init_with(service: &str, otlp_endpoint: Option<String>) -> anyhow::Result<TelemetryGuard> {
    use opentelemetry_otlp::WithExportConfig;
    global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("MLOPS_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };

    let provider = match otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(format!("mlops-{service}"))
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("mlops"))
            .with_filter(filter())
    });
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter()))
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        if let Some(p) = &provider {
            global::set_tracer_provider(p.clone());
        }
    }
    Ok(TelemetryGuard { provider })
}

/// Writes the current span's trace context into `carrier` (gRPC metadata, Kafka headers).
pub fn inject_current(carrier: &mut dyn Injector) {
    let cx = tracing::Span::current().context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, carrier));
}

/// Reads a trace context from `carrier`.
pub fn extract(carrier: &dyn Extractor) -> Context {
    global::get_text_map_propagator(|p| p.extract(carrier))
}

/// Makes `span` a child of the trace context found in `carrier`, if any.
pub fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let cx = extract(carrier);
    let _ = span.set_parent(cx);
}

/// Trace context in HTTP/2 headers (the transport of gRPC metadata).
pub struct HeaderCarrier<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Read-only view of headers for extraction.
pub struct HeaderView<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderView<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A tonic client interceptor that sends the current trace context along.
pub fn grpc_client_interceptor(
    mut req: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let mut headers = std::mem::take(req.metadata_mut()).into_headers();
    inject_current(&mut HeaderCarrier(&mut headers));
    *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    Ok(req)
}
