//! The inference service over real gRPC, with the registry as its model repository: Triton's
//! protocol, loading by champion / latest / version, bad input, dynamic batching, queue
//! bounds, timeouts, statistics, metrics, a restart that keeps what was loaded, roles.

use std::collections::HashMap;

use mlops_proto::registry::v1 as rpb;
use mlops_proto::triton as pb;
use mlops_tests::http_get;
use tonic::Code;

pub(crate) use crate::oip_grpc::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_registered_model_as_triton_does() {
    let (sb, mut c) = sandbox(|_| {}).await;
    let f = fixture("logreg");
    upload(&sb, "breast", &f.onnx).await;
    assert!(
        c.server_live(pb::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        c.server_ready(pb::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let ready = |c: &mut Oip| {
        let mut c = c.clone();
        async move {
            c.model_ready(pb::ModelReadyRequest {
                name: "breast".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .ready
        }
    };
    assert!(!ready(&mut c).await, "not loaded yet");
    load(&mut c, "breast", HashMap::new()).await.expect("load");
    assert!(ready(&mut c).await);

    let meta = c
        .model_metadata(pb::ModelMetadataRequest {
            name: "breast".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.versions, ["1"]);
    assert_eq!(meta.inputs[0].name, "input");
    assert_eq!(meta.inputs[0].datatype, "FP32");
    assert_eq!(meta.inputs[0].shape, [-1, 30]);
    let outs: Vec<(&str, &str)> = meta
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.datatype.as_str()))
        .collect();
    assert_eq!(outs, [("label", "INT64"), ("probabilities", "FP32")]);

    // Raw in, raw out; the id is echoed; both outputs in the model's order.
    let resp = c
        .model_infer(request("breast", &f, 0..20))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (resp.id.as_str(), resp.model_version.as_str()),
        ("req-1", "1")
    );
    assert_eq!(resp.outputs[0].shape, [20]);
    assert_eq!(resp.outputs[1].shape, [20, 2]);
    assert_eq!(
        i64s(&resp.raw_output_contents[0]),
        f.output_rows("label", 0..20)
    );
    assert_close(
        &f32s(&resp.raw_output_contents[1]),
        &f.output_rows("probabilities", 0..20),
        1e-5,
    );

    // Typed in, typed out; only the output asked for.
    let (shape, data) = f.input_rows(3..5);
    let resp = c
        .model_infer(pb::ModelInferRequest {
            model_name: "breast".into(),
            model_version: "1".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape,
                contents: Some(pb::InferTensorContents {
                    fp32_contents: data,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            outputs: vec![pb::model_infer_request::InferRequestedOutputTensor {
                name: "probabilities".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.raw_output_contents.is_empty());
    assert_eq!(resp.outputs.len(), 1);
    let probs: Vec<f64> = resp.outputs[0]
        .contents
        .as_ref()
        .unwrap()
        .fp32_contents
        .iter()
        .map(|&v| v as f64)
        .collect();
    assert_close(&probs, &f.output_rows("probabilities", 3..5), 1e-5);

    // Config, statistics, the index.
    let config = c
        .model_config(pb::ModelConfigRequest {
            name: "breast".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 1024);
    assert_eq!(config.input[0].dims, [30]);
    assert_eq!(config.input[0].data_type, pb::DataType::TypeFp32 as i32);
    let stats = c
        .model_statistics(pb::ModelStatisticsRequest {
            name: "breast".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.model_stats[0].inference_count, 22, "rows inferred");
    assert_eq!(stats.model_stats[0].execution_count, 2);
    assert_eq!(
        stats.model_stats[0]
            .inference_stats
            .as_ref()
            .unwrap()
            .success
            .as_ref()
            .unwrap()
            .count,
        2
    );
    let index = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry = index.models.iter().find(|m| m.name == "breast").unwrap();
    assert_eq!(
        (entry.state.as_str(), entry.version.as_str()),
        ("READY", "1")
    );

    // Triton's metric names on the admin port.
    let (code, metrics) = http_get(sb.addresses("inference").admin, "/metrics")
        .await
        .unwrap();
    assert_eq!(code, 200);
    for needle in [
        "nv_inference_request_success{model=\"breast\",version=\"1\"} 2",
        "nv_inference_count{model=\"breast\",version=\"1\"} 22",
        "nv_inference_exec_count{model=\"breast\",version=\"1\"} 2",
        "nv_inference_request_duration_us{model=\"breast\",version=\"1\"}",
        "nv_inference_queue_duration_us{model=\"breast\",version=\"1\"}",
        "nv_inference_compute_infer_duration_us{model=\"breast\",version=\"1\"}",
        "nv_inference_pending_request_count{model=\"breast\",version=\"1\"} 0",
        "mlops_inference_batch_size_bucket",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }

    // Unload: the model is unavailable and says why.
    c.repository_model_unload(pb::RepositoryModelUnloadRequest {
        model_name: "breast".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = c
        .model_infer(request("breast", &f, 0..1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("unloaded"), "{}", err.message());
    let index = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry = index.models.iter().find(|m| m.name == "breast").unwrap();
    assert_eq!(
        (entry.state.as_str(), entry.reason.as_str()),
        ("UNAVAILABLE", "unloaded")
    );
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_serves_the_champion_else_the_latest_else_the_version_named() {
    use pb::model_repository_parameter::ParameterChoice as P;
    let (sb, mut c) = sandbox(|_| {}).await;
    let logreg = fixture("logreg");
    let rf = fixture("rf");
    upload(&sb, "m", &logreg.onnx).await;
    upload(&sb, "m", &rf.onnx).await;
    let served = |c: &mut Oip| {
        let mut c = c.clone();
        async move {
            c.model_metadata(pb::ModelMetadataRequest {
                name: "m".into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .versions
        }
    };
    load(&mut c, "m", HashMap::new()).await.unwrap();
    assert_eq!(served(&mut c).await, ["2"], "the latest READY version");
    let mut r = sb.registry_client().await;
    r.set_registered_model_alias(rpb::SetRegisteredModelAliasRequest {
        name: "m".into(),
        alias: "champion".into(),
        version: 1,
    })
    .await
    .unwrap();
    load(&mut c, "m", HashMap::new()).await.unwrap();
    assert_eq!(served(&mut c).await, ["1"], "the champion");
    load(&mut c, "m", params(&[("version", P::Int64Param(2))]))
        .await
        .unwrap();
    assert_eq!(served(&mut c).await, ["2"], "the version named");
    load(
        &mut c,
        "m",
        params(&[("alias", P::StringParam("champion".into()))]),
    )
    .await
    .unwrap();
    assert_eq!(served(&mut c).await, ["1"], "the alias named");
    // A version that is not loaded is unavailable, naming the one that is.
    let mut req = request("m", &logreg, 0..1);
    req.model_version = "2".into();
    let err = c.model_infer(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("version 1 is"), "{}", err.message());

    // Bad loads: no such model, no such version, a bad parameter. The served version stays.
    let err = load(&mut c, "nope", HashMap::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = load(&mut c, "m", params(&[("version", P::Int64Param(9))]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = load(&mut c, "m", params(&[("max_batch", P::Int64Param(9))]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("known: version, alias"),
        "{}",
        err.message()
    );
    assert_eq!(served(&mut c).await, ["1"]);
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_says_what_was_expected() {
    let (sb, mut c) = sandbox(|c| {
        c.max_batch_size = 8;
        c.max_tensor_bytes = 4096;
    })
    .await;
    let f = fixture("logreg");
    upload(&sb, "b", &f.onnx).await;
    load(&mut c, "b", HashMap::new()).await.unwrap();
    type Change = Box<dyn Fn(&mut pb::ModelInferRequest)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "wrong name",
            Box::new(|r| r.inputs[0].name = "x".into()),
            "unexpected input \"x\"",
        ),
        (
            "wrong datatype",
            Box::new(|r| r.inputs[0].datatype = "FP64".into()),
            "expects FP32",
        ),
        (
            "unknown datatype",
            Box::new(|r| r.inputs[0].datatype = "FLOAT".into()),
            "unknown or unsupported datatype",
        ),
        (
            "wrong shape",
            Box::new(|r| r.inputs[0].shape = vec![4, 15]),
            "expects [-1, 30]",
        ),
        (
            "wrong rank",
            Box::new(|r| r.inputs[0].shape = vec![60]),
            "expects [-1, 30]",
        ),
        (
            "negative dim",
            Box::new(|r| r.inputs[0].shape = vec![-2, 30]),
            "negative dimension",
        ),
        (
            "short raw",
            Box::new(|r| r.raw_input_contents[0] = r.raw_input_contents[0].slice(4..)),
            "need 240",
        ),
        (
            "missing input",
            Box::new(|r| {
                r.inputs.clear();
                r.raw_input_contents.clear();
            }),
            "missing input \"input\"",
        ),
        (
            "raw count",
            Box::new(|r| r.raw_input_contents.push(bytes::Bytes::new())),
            "raw_input_contents holds 2 tensors for 1 inputs",
        ),
        (
            "no data",
            Box::new(|r| r.raw_input_contents.clear()),
            "has no data",
        ),
        (
            "unknown output",
            Box::new(|r| {
                r.outputs
                    .push(pb::model_infer_request::InferRequestedOutputTensor {
                        name: "proba".into(),
                        ..Default::default()
                    })
            }),
            "unknown output \"proba\"",
        ),
        (
            "bad timeout",
            Box::new(|r| {
                r.parameters.insert(
                    "timeout".into(),
                    pb::InferParameter {
                        parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(
                            "soon".into(),
                        )),
                    },
                );
            }),
            "microseconds",
        ),
    ];
    for (what, change, needle) in cases {
        let mut req = request("b", &f, 0..2);
        change(&mut req);
        let err = c.model_infer(req).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(needle), "{what}: {}", err.message());
    }
    // Over max_batch_size (8), and over the tensor size limit (4096 bytes; 8 rows are 960).
    let err = c.model_infer(request("b", &f, 0..9)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("at most 8 per request"),
        "{}",
        err.message()
    );
    c.model_infer(request("b", &f, 0..8))
        .await
        .expect("8 rows fit");
    let mut huge = request("b", &f, 0..1);
    huge.inputs[0].shape = vec![40, 30];
    huge.raw_input_contents[0] = raw_f32(&vec![0.0; 40 * 30]);
    let err = c.model_infer(huge).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("--max-tensor-bytes"),
        "{}",
        err.message()
    );
    // Unknown model: NOT_FOUND saying how to load it.
    let err = c.model_infer(request("nope", &f, 0..1)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("load it first"), "{}", err.message());
    // The failures are counted under Triton's reason.
    let (_, metrics) = http_get(sb.addresses("inference").admin, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "nv_inference_request_failure{model=\"b\",reason=\"REJECTED\",version=\"1\"}"
        ),
        "{metrics}"
    );
    // And the service still answers.
    c.model_infer(request("b", &f, 0..2)).await.unwrap();
    sb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_run_is_refused_at_load_with_the_reason() {
    let (sb, mut c) = sandbox(|_| {}).await;
    upload(&sb, "odd", &model_with_op("TfIdfVectorizer")).await;
    let err = load(&mut c, "odd", HashMap::new()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("TfIdfVectorizer"),
        "{}",
        err.message()
    );
    let index = c
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry = index.models.iter().find(|m| m.name == "odd").unwrap();
    assert_eq!(entry.state, "UNAVAILABLE");
    assert!(entry.reason.contains("TfIdfVectorizer"), "{}", entry.reason);
    let ready = c
        .repository_index(pb::RepositoryIndexRequest {
            ready: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ready.models.iter().all(|m| m.name != "odd"));
    sb.stop().await.unwrap();
}
