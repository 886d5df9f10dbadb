//! What the service kit gives every service, seen from outside: each port lists
//! and counts only its own service, and the sandbox composes the gateway too.

use mlops_proto::registry::v1 as rpb;
use mlops_proto::tracking::v1 as pb;
use mlops_tests::{http_get, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_only_the_ports_own_services() {
    let sb = Sandbox::builder().registry().start().await.unwrap();
    assert_eq!(
        mlops_tests::listed_services(sb.tracking().grpc).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "mlops.tracking.v1.TrackingService"
        ]
    );
    assert_eq!(
        mlops_tests::listed_services(sb.registry().grpc).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "mlops.registry.v1.RegistryService"
        ]
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_admin_port_shows_its_own_metrics_only() {
    let sb = Sandbox::builder().mlflow().start().await.unwrap();
    // A call to each service, so that each has per-RPC metrics to show.
    let mut t = sb.tracking_client().await;
    t.get_experiment(pb::GetExperimentRequest {
        experiment_id: "0".into(),
    })
    .await
    .unwrap();
    let mut r = sb.registry_client().await;
    r.search_registered_models(rpb::SearchRegisteredModelsRequest::default())
        .await
        .unwrap();
    let (code, _) = http_get(
        sb.mlflow().api,
        "/api/2.0/mlflow/experiments/get?experiment_id=0",
    )
    .await
    .unwrap();
    assert_eq!(
        code, 200,
        "the gateway answers through the sandbox's services"
    );
    for (name, admin) in [
        ("tracking", sb.tracking().admin),
        ("registry", sb.registry().admin),
        ("mlflow", sb.mlflow().admin),
    ] {
        let (code, metrics) = http_get(admin, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        let own = format!("mlops_{name}_");
        assert!(
            metrics.contains(&own),
            "{name} shows none of its own:\n{metrics}"
        );
        for line in metrics.lines().filter(|l| !l.is_empty()) {
            let metric = line
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            assert!(
                metric.starts_with(&own),
                "{name}'s admin port shows another's metric: {line}"
            );
        }
        let (code, body) = http_get(admin, "/readyz").await.unwrap();
        assert_eq!((code, body.trim()), (200, "ready"), "{name}");
    }
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_service_joins_the_sandbox_with_one_line() {
    let sb = Sandbox::builder()
        .registry()
        .service::<mlops_mlflow::Gateway>(|c| c.max_body_bytes = 4096)
        .start()
        .await
        .unwrap();
    let api = sb.addresses("mlflow").api;
    let (code, body) = http_get(api, "/api/2.0/mlflow/experiments/get?experiment_id=0")
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"Default\""), "{body}");
    sb.stop().await.unwrap();
}
