//! What operators rely on: auth, health, reflection, the admin port, overload.

use std::time::Duration;

use mlops_proto::tracking::v1 as pb;
use mlops_proto::tracking::v1::tracking_service_client::TrackingServiceClient;
use mlops_tests::{http_get, Database, Sandbox};
use tonic::transport::Channel;
use tonic::Code;

async fn client_with_token(
    sb: &Sandbox,
    token: Option<&str>,
) -> TrackingServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, impl tonic::service::Interceptor>,
> {
    let channel = Channel::from_shared(format!("http://{}", sb.tracking().grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let header: Option<tonic::metadata::MetadataValue<_>> =
        token.map(|t| format!("Bearer {t}").parse().unwrap());
    TrackingServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(h) = &header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_and_roles() {
    let sb = Sandbox::builder()
        .tracking_with(|c| {
            c.server.auth_tokens = "read-tok:reader,write-tok:writer,admin-tok:admin"
                .parse()
                .unwrap()
        })
        .start()
        .await
        .unwrap();
    let create = || pb::CreateExperimentRequest {
        name: format!("auth-{}", uuid::Uuid::new_v4().simple()),
        ..Default::default()
    };
    let mut anon = client_with_token(&sb, None).await;
    let e = anon
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("Bearer"));
    let mut wrong = client_with_token(&sb, Some("guess")).await;
    assert_eq!(
        wrong
            .get_experiment(pb::GetExperimentRequest {
                experiment_id: "0".into()
            })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut reader = client_with_token(&sb, Some("read-tok")).await;
    reader
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "0".into(),
        })
        .await
        .unwrap();
    let denied = reader.create_experiment(create()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("writer"), "{}", denied.message());
    let mut writer = client_with_token(&sb, Some("write-tok")).await;
    let id = writer
        .create_experiment(create())
        .await
        .unwrap()
        .into_inner()
        .experiment_id;
    let not_admin = writer
        .delete_experiment(pb::DeleteExperimentRequest {
            experiment_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    let mut admin = client_with_token(&sb, Some("admin-tok")).await;
    admin
        .delete_experiment(pb::DeleteExperimentRequest { experiment_id: id })
        .await
        .unwrap();

    // Health stays open for probes.
    let channel = Channel::from_shared(format!("http://{}", sb.tracking().grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "mlops.tracking.v1.TrackingService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_metrics_health_readiness() {
    let sb = Sandbox::builder().tracking().start().await.unwrap();
    let mut c = sb.tracking_client().await;
    c.get_experiment(pb::GetExperimentRequest {
        experiment_id: "0".into(),
    })
    .await
    .unwrap();
    let _ = c
        .get_experiment(pb::GetExperimentRequest {
            experiment_id: "x".into(),
        })
        .await;
    let admin = sb.tracking().admin;
    assert_eq!(http_get(admin, "/healthz").await.unwrap().0, 200);
    let (code, body) = http_get(admin, "/readyz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ready"));
    let (code, metrics) = http_get(admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains("mlops_tracking_grpc_requests_total{code=\"OK\",method=\"GetExperiment\"}"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "mlops_tracking_grpc_requests_total{code=\"INVALID_ARGUMENT\",method=\"GetExperiment\"}"
    ));
    assert!(metrics.contains("mlops_tracking_grpc_request_duration_seconds_bucket"));
    assert!(metrics.contains("mlops_tracking_build_info"));
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_resource_exhausted_and_the_service_survives() {
    for db in [Database::Sqlite, Database::Postgres] {
        let sb = Sandbox::builder()
            .database(db)
            .tracking_with(|c| {
                c.db.db_max_connections = 1;
                c.db.db_acquire_timeout_ms = 300;
            })
            .start()
            .await
            .unwrap();
        let mut c = sb.tracking_client().await;
        let exp = crate::experiment(&mut c, "overload").await;
        for _ in 0..5 {
            crate::run(&mut c, &exp).await;
        }
        // Saturate the pool: its only reader connection is busy elsewhere (and on
        // PostgreSQL the only connection of the searches' own pool too).
        let db_ = sb.tracking().store.db();
        let held = db_.reader().acquire().await.unwrap();
        let held_search = match db {
            Database::Postgres => Some(db_.searcher().acquire().await.unwrap()),
            Database::Sqlite => None,
        };
        let mut tasks = vec![];
        for _ in 0..8 {
            let mut c = sb.tracking_client().await;
            let exp = exp.clone();
            tasks.push(tokio::spawn(async move {
                let req = pb::SearchRunsRequest {
                    experiment_ids: vec![exp],
                    ..Default::default()
                };
                let started = std::time::Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(20), c.search_runs(req)).await;
                (r, started.elapsed())
            }));
        }
        for t in tasks {
            let (result, took) = t.await.unwrap();
            let status = result
                .expect("no request hangs")
                .expect_err("the pool is saturated");
            assert_eq!(status.code(), Code::ResourceExhausted, "{db:?}: {status:?}");
            assert!(status.message().contains("retry"), "{}", status.message());
            assert!(
                took < Duration::from_secs(5),
                "{db:?}: overload answered after {took:?}"
            );
        }
        drop(held);
        drop(held_search);
        let found = c
            .search_runs(pb::SearchRunsRequest {
                experiment_ids: vec![exp],
                ..Default::default()
            })
            .await
            .expect("serving again once a connection is free");
        assert_eq!(found.into_inner().runs.len(), 5);
        sb.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_services() {
    let sb = Sandbox::builder().tracking().start().await.unwrap();
    let names = mlops_tests::listed_services(sb.tracking().grpc).await;
    assert!(
        names.contains(&"mlops.tracking.v1.TrackingService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_and_the_service_stays_up() {
    let sb = Sandbox::builder()
        .tracking_with(|c| c.server.max_message_bytes = 64 * 1024)
        .start()
        .await
        .unwrap();
    let mut c = sb.tracking_client().await;
    let exp = crate::experiment(&mut c, "size").await;
    let run = crate::run(&mut c, &exp).await;
    let big = pb::LogBatchRequest {
        run_id: run.clone(),
        tags: (0..20)
            .map(|i| crate::tag(&format!("t{i}"), &"x".repeat(5000)))
            .collect(),
        ..Default::default()
    };
    let err = c.log_batch(big).await.unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    assert!(
        err.message().contains("too large") || err.message().contains("limit"),
        "{err:?}"
    );
    let data = crate::get_run(&mut c, &run).await.data.unwrap();
    assert!(
        !data.tags.iter().any(|t| t.key == "t0"),
        "nothing of the refused batch was written"
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() {
    let sb = Sandbox::builder().tracking().start().await.unwrap();
    let mut c = sb.tracking_client().await;
    let exp = crate::experiment(&mut c, "drain").await;
    let run = crate::run(&mut c, &exp).await;
    // An upload is under way when the stop comes; its remaining chunks arrive after.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::UploadArtifactRequest {
        item: Some(pb::upload_artifact_request::Item::Header(
            pb::ArtifactHeader {
                run_id: run.clone(),
                path: "late.bin".into(),
                ..Default::default()
            },
        )),
    })
    .await
    .unwrap();
    tx.send(pb::UploadArtifactRequest {
        item: Some(pb::upload_artifact_request::Item::Chunk(vec![1; 1000])),
    })
    .await
    .unwrap();
    let upload = tokio::spawn(async move {
        c.upload_artifact(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(sb.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stopping.is_finished(),
        "the server waits for the request in flight"
    );
    tx.send(pb::UploadArtifactRequest {
        item: Some(pb::upload_artifact_request::Item::Chunk(vec![2; 1000])),
    })
    .await
    .unwrap();
    drop(tx);
    let done = upload
        .await
        .unwrap()
        .expect("the in-flight upload completes")
        .into_inner();
    assert_eq!(done.file_size, 2000);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("then the server stops")
        .unwrap()
        .unwrap();
}
