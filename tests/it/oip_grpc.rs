//! What the inference tests share: a Triton gRPC client, the scikit-learn fixtures with
//! their expected answers, raw tensor helpers, requests, uploads and loads through the
//! registry, a sandbox with the inference service, and ONNX models built op by op.

use std::collections::HashMap;

use mlops_inference::{Inference, InferenceConfig};
use mlops_proto::registry::v1 as rpb;
use mlops_proto::triton as pb;
use mlops_proto::triton::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlops_tests::Sandbox;
use serde_json::Value;
use tonic::transport::Channel;

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
    pub(crate) fn input_rows(&self, rows: std::ops::Range<usize>) -> (Vec<i64>, Vec<f32>) {
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
