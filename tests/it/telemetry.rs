//! Traces: exported over OTLP/gRPC when an endpoint is configured, and continuing
//! the caller's trace when a request carries `traceparent` metadata, into the
//! events the request writes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlops_proto::tracking::v1 as pb;
use mlops_tests::Sandbox;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// A minimal OTLP collector that keeps what it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// (span name, trace id in hex, service.name) of every span received.
    fn spans(&self) -> Vec<(String, String, String)> {
        let mut out = vec![];
        for req in self.0.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                    .map(|a| format!("{:?}", a.value))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        let id = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                        out.push((s.name.clone(), id, service.clone()));
                    }
                }
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_otlp_collector_in_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let guard = mlops_runtime::telemetry::init_with("it", Some(format!("http://{addr}"))).unwrap();

    let sb = Sandbox::builder().tracking().start().await.unwrap();
    let mut c = sb.tracking_client().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = tonic::Request::new(pb::GetExperimentRequest {
        experiment_id: "0".into(),
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    c.get_experiment(req).await.unwrap();

    // An event written while serving a traced request carries that trace along.
    let mut sub = sb
        .bus
        .subscribe("trace", &[mlops_proto::events::topics::RUNS])
        .await
        .unwrap();
    let mut req = tonic::Request::new(pb::CreateRunRequest::default());
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    c.create_run(req).await.unwrap();
    let created = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("the RunCreated event arrives")
        .unwrap()
        .envelope;
    assert_eq!(created.ce_type, "mlops.events.v1.RunCreated");
    let traceparent = created
        .trace
        .get("traceparent")
        .expect("the event carries a traceparent");
    assert!(traceparent.contains(trace_id), "{traceparent}");
    // ...and the Kafka binding puts it in the message headers.
    assert!(created
        .headers()
        .iter()
        .any(|(k, v)| *k == "traceparent" && v == traceparent));
    sb.stop().await.unwrap();
    // Dropping the guard flushes the batch to the collector.
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spans = collector.spans();
        if let Some((_, _, service)) = spans
            .iter()
            .find(|(name, id, _)| name == "grpc" && id == trace_id)
        {
            assert!(service.contains("mlops-it"), "{service}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no grpc span in the caller's trace reached the collector: {spans:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.abort();
}
