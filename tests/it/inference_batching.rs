//! The inference service's serving behaviour over real gRPC: dynamic batching gives each
//! request its rows, a full queue and a late request are refused as Triton does, a restart
//! serves the same models with the same settings, and roles guard loading.

use std::time::Duration;

use mlops_inference::{Inference, InferenceConfig};
use mlops_proto::triton as pb;
use mlops_proto::triton::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::Channel;
use tonic::Code;

use crate::inference::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_batching_gives_each_request_exactly_its_rows() {
    use pb::model_repository_parameter::ParameterChoice as P;
    let (sb, mut c) = sandbox(|_| {}).await;
    let f = fixture("rf");
    upload(&sb, "forest", &f.onnx).await;
    let config =
        r#"{"max_batch_size": 64, "dynamic_batching": {"max_queue_delay_microseconds": 20000}}"#;
    load(
        &mut c,
        "forest",
        params(&[("config", P::StringParam(config.into()))]),
    )
    .await
    .unwrap();
    // 12 requests of 1..=5 rows at once, each from its own slice of the fixture.
    let mut calls = Vec::new();
    for i in 0..12usize {
        let start = i % 15;
        let rows = start..(start + 1 + i % 5).min(20);
        let mut c = c.clone();
        let req = request("forest", &f, rows.clone());
        calls.push(tokio::spawn(async move {
            (rows, c.model_infer(req).await.map(|r| r.into_inner()))
        }));
    }
    for call in calls {
        let (rows, resp) = call.await.unwrap();
        let resp = resp.expect("batched inference");
        assert_eq!(resp.outputs[1].shape, [rows.len() as i64, 2]);
        assert_eq!(
            i64s(&resp.raw_output_contents[0]),
            f.output_rows("label", rows.clone())
        );
        assert_close(
            &f32s(&resp.raw_output_contents[1]),
            &f.output_rows("probabilities", rows),
            1e-5,
        );
    }
    let stats = c
        .model_statistics(pb::ModelStatisticsRequest {
            name: "forest".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .model_stats
        .remove(0);
    assert_eq!(
        stats
            .inference_stats
            .as_ref()
            .unwrap()
            .success
            .as_ref()
            .unwrap()
            .count,
        12
    );
    assert!(
        stats.execution_count < 12,
        "12 requests within 20 ms ran as {} executions",
        stats.execution_count
    );
    let config = c
        .model_config(pb::ModelConfigRequest {
            name: "forest".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 64);
    let Some(pb::model_config::SchedulingChoice::DynamicBatching(db)) = config.scheduling_choice
    else {
        panic!("dynamic batching is reported")
    };
    assert_eq!(db.max_queue_delay_microseconds, 20000);
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_resource_exhausted_and_a_late_request_times_out() {
    use pb::model_repository_parameter::ParameterChoice as P;
    let (sb, mut c) = sandbox(|_| {}).await;
    let f = fixture("rf");
    upload(&sb, "q", &f.onnx).await;
    load(
        &mut c,
        "q",
        params(&[
            ("dynamic_batching", P::BoolParam(true)),
            ("max_batch_size", P::Int64Param(1)),
            ("max_queue_size", P::Int64Param(1)),
        ]),
    )
    .await
    .unwrap();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let mut c = c.clone();
            let req = request("q", &f, (i % 20)..(i % 20 + 1));
            tokio::spawn(async move { c.model_infer(req).await })
        })
        .collect();
    let (mut ok, mut full) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("max_queue_size"), "{}", e.message());
                full += 1;
            }
        }
    }
    assert!(ok > 0 && full > 0, "{ok} answered, {full} refused");

    // A request whose timeout passes while it waits for a batch.
    load(
        &mut c,
        "q",
        params(&[
            ("dynamic_batching", P::BoolParam(true)),
            ("max_batch_size", P::Int64Param(8)),
            ("max_queue_delay_us", P::Int64Param(50_000)),
        ]),
    )
    .await
    .unwrap();
    let mut req = request("q", &f, 0..1);
    req.parameters.insert(
        "timeout".into(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(1000)),
        },
    );
    let err = c.model_infer(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    c.model_infer(request("q", &f, 0..1))
        .await
        .expect("no timeout, no problem");
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_same_models_with_the_same_settings() {
    use pb::model_repository_parameter::ParameterChoice as P;
    let state = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", state.path().join("inference.db").display());
    let cache = state.path().join("cache").display().to_string();
    let (db2, cache2) = (db.clone(), cache.clone());
    let (sb, mut c) = sandbox(move |c| {
        c.db.database_url = db2;
        c.model_cache_dir = cache2;
    })
    .await;
    let f = fixture("logreg");
    upload(&sb, "kept", &f.onnx).await;
    load(
        &mut c,
        "kept",
        params(&[
            ("dynamic_batching", P::BoolParam(true)),
            ("max_batch_size", P::Int64Param(16)),
        ]),
    )
    .await
    .unwrap();
    // A second process on the same state (the first one's files) comes up serving it.
    use mlops_kit::Service;
    use mlops_runtime::config::ServiceConfig;
    let mut config = InferenceConfig::defaults();
    config.server.listen.set("127.0.0.1:0", "127.0.0.1:0");
    config.http_addr = "127.0.0.1:0".into();
    config.db.database_url = db;
    config.model_cache_dir = cache;
    config.registry_addr = format!("http://{}", sb.registry().grpc);
    let second = Inference::bind(config, None).await.unwrap();
    let addr = second.addresses().api;
    let stop = mlops_runtime::shutdown::CancellationToken::new();
    let running = tokio::spawn(second.run(stop.clone()));
    let mut c2 = oip(addr).await;
    let mut config = None;
    for _ in 0..200 {
        if let Ok(r) = c2
            .model_config(pb::ModelConfigRequest {
                name: "kept".into(),
                version: String::new(),
            })
            .await
        {
            config = r.into_inner().config;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let config = config.expect("the restarted service loads the model again");
    assert_eq!(config.max_batch_size, 16);
    assert!(matches!(
        config.scheduling_choice,
        Some(pb::model_config::SchedulingChoice::DynamicBatching(_))
    ));
    c2.model_infer(request("kept", &f, 0..2)).await.unwrap();
    stop.cancel();
    running.await.unwrap().unwrap();
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_needs_a_reader_and_loading_a_writer() {
    let (sb, _) = sandbox(|c| {
        c.server.auth_tokens = "r:reader,w:writer".parse().unwrap();
    })
    .await;
    upload(&sb, "auth", &fixture("logreg").onnx).await;
    let channel = Channel::from_shared(format!("http://{}", sb.addresses("inference").api))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let with = |token: &'static str| {
        GrpcInferenceServiceClient::with_interceptor(
            channel.clone(),
            move |mut req: tonic::Request<()>| {
                req.metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                Ok(req)
            },
        )
    };
    let load_req = || pb::RepositoryModelLoadRequest {
        model_name: "auth".into(),
        ..Default::default()
    };
    let err = with("r")
        .repository_model_load(load_req())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    with("w").repository_model_load(load_req()).await.unwrap();
    with("r")
        .model_infer(request("auth", &fixture("logreg"), 0..1))
        .await
        .unwrap();
    let err = with("nobody")
        .model_infer(request("auth", &fixture("logreg"), 0..1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    sb.stop().await.unwrap();
}
