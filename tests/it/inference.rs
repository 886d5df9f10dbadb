//! The inference service over real gRPC, with the registry as its model repository: Triton's
//! protocol, loading by champion / latest / version, bad input, dynamic batching, queue
//! bounds, timeouts, statistics, metrics, a restart that keeps what was loaded, roles.

use std::collections::HashMap;

use mlops_inference::{Inference, InferenceConfig};
use mlops_proto::registry::v1 as rpb;
use mlops_proto::triton as pb;
use mlops_proto::triton::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_tests::{http_get, Sandbox};
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

use crate::registry::upload_msgs;

pub(crate) type Oip = GrpcInferenceServiceClient<Channel>;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sklearn");

/// A fixture's model bytes and its expected inputs and outputs.
pub(crate) struct Fixture {
    pub(crate) onnx: Vec<u8>,
    pub(crate) json: Value,
}

pub(crate) fn fixture(name: &str) -> Fixture {
    Fixture {
        onnx: std::fs::read(format!("{FIXTURES}/{name}.onnx")).expect("fixture model"),
        json: serde_json::from_str(
            &std::fs::read_to_string(format!("{FIXTURES}/{name}.json")).expect("fixture json"),
        )
        .expect("fixture json parses"),
    }
}

impl Fixture {
    /// The first input's rows `rows` as raw FP32 bytes, with its shape.
    fn input_rows(&self, rows: std::ops::Range<usize>) -> (Vec<i64>, Vec<f32>) {
        let input = &self.json["inputs"][0];
        let width = input["shape"][1].as_u64().unwrap() as usize;
        let data: Vec<f32> = input["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().map(|f| f as f32).unwrap_or(f32::NAN))
            .collect();
        (
            vec![rows.len() as i64, width as i64],
            data[rows.start * width..rows.end * width].to_vec(),
        )
    }

    /// The expected output `name` of rows `rows`, flattened.
    pub(crate) fn output_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Vec<f64> {
        let out = self.json["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .expect("the fixture has this output");
        let shape: Vec<usize> = out["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let width: usize = shape[1..].iter().product();
        let data: Vec<f64> = out["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        data[rows.start * width..rows.end * width].to_vec()
    }
}

impl Fixture {
    /// The recorded tensor `name` (`inputs` or `outputs`).
    pub(crate) fn tensor(&self, side: &str, name: &str) -> &Value {
        self.json[side]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .expect("the fixture has this tensor")
    }

    /// The first `rows` rows of float input `name` as f32 (null: NaN), with their shape.
    pub(crate) fn floats(&self, name: &str, rows: usize) -> (Vec<i64>, Vec<f32>) {
        let t = self.tensor("inputs", name);
        let width = t["shape"][1].as_u64().unwrap() as usize;
        let data = t["data"].as_array().unwrap()[..rows * width]
            .iter()
            .map(|v| v.as_f64().map(|f| f as f32).unwrap_or(f32::NAN))
            .collect();
        (vec![rows as i64, width as i64], data)
    }

    /// The first `rows` rows of output `name` as JSON values, flat.
    pub(crate) fn expected(&self, name: &str, rows: usize) -> Vec<Value> {
        let t = self.tensor("outputs", name);
        let width: u64 = t["shape"].as_array().unwrap()[1..]
            .iter()
            .map(|d| d.as_u64().unwrap())
            .product();
        t["data"].as_array().unwrap()[..rows * width as usize].to_vec()
    }
}

pub(crate) fn raw_f32(values: &[f32]) -> bytes::Bytes {
    values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>()
        .into()
}

pub(crate) fn f32s(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect()
}

pub(crate) fn i64s(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect()
}

pub(crate) fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "element counts differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

/// A request of `rows` rows of the fixture's first input, as raw FP32.
pub(crate) fn request(
    model: &str,
    f: &Fixture,
    rows: std::ops::Range<usize>,
) -> pb::ModelInferRequest {
    let (shape, data) = f.input_rows(rows);
    pb::ModelInferRequest {
        model_name: model.into(),
        id: "req-1".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape,
            ..Default::default()
        }],
        raw_input_contents: vec![raw_f32(&data)],
        ..Default::default()
    }
}

pub(crate) async fn oip(addr: std::net::SocketAddr) -> Oip {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the inference service accepts connections");
    GrpcInferenceServiceClient::new(channel)
}

pub(crate) async fn upload(sb: &Sandbox, name: &str, bytes: &[u8]) -> i64 {
    let mut r = sb.registry_client().await;
    let _ = r
        .create_registered_model(rpb::CreateRegisteredModelRequest {
            name: name.into(),
            ..Default::default()
        })
        .await;
    r.upload_model_version(futures::stream::iter(upload_msgs(
        name,
        "model.onnx",
        bytes,
    )))
    .await
    .expect("upload")
    .into_inner()
    .model_version
    .unwrap()
    .version
}

pub(crate) fn params(
    pairs: &[(&str, pb::model_repository_parameter::ParameterChoice)],
) -> HashMap<String, pb::ModelRepositoryParameter> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                pb::ModelRepositoryParameter {
                    parameter_choice: Some(v.clone()),
                },
            )
        })
        .collect()
}

pub(crate) async fn load(
    c: &mut Oip,
    name: &str,
    p: HashMap<String, pb::ModelRepositoryParameter>,
) -> Result<(), tonic::Status> {
    c.repository_model_load(pb::RepositoryModelLoadRequest {
        model_name: name.into(),
        parameters: p,
        ..Default::default()
    })
    .await
    .map(|_| ())
}

pub(crate) async fn sandbox(tweak: impl FnOnce(&mut InferenceConfig) + 'static) -> (Sandbox, Oip) {
    let sb = Sandbox::builder()
        .registry()
        .service::<Inference>(tweak)
        .start()
        .await
        .expect("sandbox starts");
    let c = oip(sb.addresses("inference").api).await;
    (sb, c)
}

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

/// A valid ONNX file (its signature reads) whose one node is `op`: x float[N,4] -> y float[N,4].
pub(crate) fn model_with_op(op: &str) -> Vec<u8> {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct Node {
        #[prost(string, repeated, tag = "1")]
        input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        output: Vec<String>,
        #[prost(string, tag = "4")]
        op_type: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Graph {
        #[prost(message, repeated, tag = "1")]
        node: Vec<Node>,
        #[prost(string, tag = "2")]
        name: String,
        #[prost(message, repeated, tag = "11")]
        input: Vec<mlops_onnx_value_info::ValueInfo>,
        #[prost(message, repeated, tag = "12")]
        output: Vec<mlops_onnx_value_info::ValueInfo>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Opset {
        #[prost(string, tag = "1")]
        domain: String,
        #[prost(int64, tag = "2")]
        version: i64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Model {
        #[prost(int64, tag = "1")]
        ir_version: i64,
        #[prost(message, optional, tag = "7")]
        graph: Option<Graph>,
        #[prost(message, repeated, tag = "8")]
        opset_import: Vec<Opset>,
    }
    Model {
        ir_version: 8,
        graph: Some(Graph {
            node: vec![Node {
                input: vec!["x".into()],
                output: vec!["y".into()],
                op_type: op.into(),
            }],
            name: "g".into(),
            input: vec![mlops_onnx_value_info::float("x")],
            output: vec![mlops_onnx_value_info::float("y")],
        }),
        opset_import: vec![Opset {
            domain: String::new(),
            version: 13,
        }],
    }
    .encode_to_vec()
}

/// `ValueInfoProto` of a float[N,4] tensor, field numbers as in onnx.proto.
mod mlops_onnx_value_info {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        #[prost(int64, optional, tag = "1")]
        pub dim_value: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub dim_param: Option<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Shape {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dim>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorType {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<Shape>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TensorType>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfo {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    pub fn float(name: &str) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorType {
                    elem_type: 1,
                    shape: Some(Shape {
                        dim: vec![
                            Dim {
                                dim_value: None,
                                dim_param: Some("N".into()),
                            },
                            Dim {
                                dim_value: Some(4),
                                dim_param: None,
                            },
                        ],
                    }),
                }),
            }),
        }
    }
}
