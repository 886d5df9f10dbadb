//! Reads the fixtures made by `scripts/make-onnx-fixtures.py`, models built here with `prost`,
//! and bytes that are not ONNX models.

use prost::Message;

use crate::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, OperatorSetIdProto, SparseTensorProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::{read_signature, Dim, OnnxError, Signature, TensorSpec};

const LINEAR: &[u8] = include_bytes!("../../../tests/fixtures/onnx/linear.onnx");
const CLASSIFIER: &[u8] = include_bytes!("../../../tests/fixtures/onnx/classifier.onnx");
const WEIGHTS_AS_INPUTS: &[u8] =
    include_bytes!("../../../tests/fixtures/onnx/weights_as_inputs.onnx");
const FIXTURES: [(&str, &[u8]); 3] = [
    ("linear", LINEAR),
    ("classifier", CLASSIFIER),
    ("weights_as_inputs", WEIGHTS_AS_INPUTS),
];

/// `pickle.dumps({"coef": [0.5, -1.0], "intercept": 0.1}, protocol=4)`.
const PICKLE: &[u8] = b"\x80\x04\x957\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04coef\x94]\x94(G?\xe0\x00\x00\x00\x00\x00\x00G\xbf\xf0\x00\x00\x00\x00\x00\x00e\x8c\x09intercept\x94G?\xb9\x99\x99\x99\x99\x99\x9au.";
/// A zip archive holding one file, `model/data.pkl`, as a PyTorch checkpoint does.
const ZIP: &[u8] = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00!X\x83\x16\xdc\x8c\x01\x00\x00\x00\x01\x00\x00\x00\x0e\x00\x00\x00model/data.pklxPK\x01\x02\x14\x03\x14\x00\x00\x00\x00\x00\x00\x00!X\x83\x16\xdc\x8c\x01\x00\x00\x00\x01\x00\x00\x00\x0e\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00\x00\x00\x00model/data.pklPK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00<\x00\x00\x00-\x00\x00\x00\x00\x00";

fn sym(name: &str) -> Dim {
    Dim::Symbolic(name.into())
}

fn spec(name: &str, elem_type: &str, shape: Option<Vec<Dim>>) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        elem_type: elem_type.into(),
        shape,
    }
}

fn error_of(bytes: &[u8]) -> OnnxError {
    match read_signature(bytes) {
        Ok(signature) => panic!("expected an error, read {signature:?}"),
        Err(err) => err,
    }
}

// --- the fixtures -------------------------------------------------------------------------

#[test]
fn reads_linear_fixture() {
    let signature = read_signature(LINEAR).unwrap();
    assert_eq!(
        signature,
        Signature {
            inputs: vec![spec("x", "float", Some(vec![sym("N"), Dim::Fixed(4)]))],
            outputs: vec![spec("y", "float", Some(vec![sym("N"), Dim::Fixed(1)]))],
            ir_version: 8,
            opsets: vec![(String::new(), 13)],
            producer: "mlops-make-onnx-fixtures 1".into(),
        }
    );
    assert_eq!(signature.inputs[0].to_string(), "x: float[N,4]");
    assert_eq!(signature.outputs[0].to_string(), "y: float[N,1]");
}

#[test]
fn reads_classifier_fixture() {
    let signature = read_signature(CLASSIFIER).unwrap();
    assert_eq!(
        signature,
        Signature {
            inputs: vec![
                spec("features", "float", Some(vec![sym("N"), Dim::Fixed(3)])),
                spec("bias", "float", Some(vec![Dim::Fixed(1)])),
            ],
            outputs: vec![
                spec("score", "float", Some(vec![sym("N")])),
                spec("label", "int64", Some(vec![sym("N")])),
            ],
            ir_version: 8,
            opsets: vec![(String::new(), 13)],
            producer: "mlops-make-onnx-fixtures 1".into(),
        }
    );
    let shown: Vec<String> = signature
        .inputs
        .iter()
        .chain(&signature.outputs)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "features: float[N,3]",
            "bias: float[1]",
            "score: float[N]",
            "label: int64[N]"
        ]
    );
}

#[test]
fn leaves_initializers_listed_as_inputs_out_of_the_inputs() {
    // The file really does list W and b as graph inputs; only x is for the caller.
    let raw = ModelProto::decode(WEIGHTS_AS_INPUTS).unwrap();
    let declared: Vec<&str> = raw
        .graph
        .as_ref()
        .unwrap()
        .input
        .iter()
        .map(|v| v.name())
        .collect();
    assert_eq!(declared, ["x", "W", "b"]);

    let signature = read_signature(WEIGHTS_AS_INPUTS).unwrap();
    assert_eq!(
        signature,
        Signature {
            inputs: vec![spec("x", "float", Some(vec![sym("N"), Dim::Fixed(4)]))],
            outputs: vec![spec("y", "float", Some(vec![sym("N"), Dim::Fixed(1)]))],
            ir_version: 3,
            opsets: vec![(String::new(), 8)],
            producer: "mlops-make-onnx-fixtures 1".into(),
        }
    );
}

// --- models built here --------------------------------------------------------------------

fn tensor_type(elem_type: i32, shape: Option<Vec<Dimension>>) -> TypeProto {
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: Some(elem_type),
            shape: shape.map(|dim| TensorShapeProto { dim }),
        })),
    }
}

fn value(name: &str, ty: Option<TypeProto>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: ty,
    }
}

fn fixed(size: i64) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimValue(size)),
        denotation: None,
    }
}

fn param(name: &str) -> Dimension {
    Dimension {
        value: Some(dimension::Value::DimParam(name.into())),
        denotation: Some("DATA_BATCH".into()),
    }
}

fn unknown() -> Dimension {
    Dimension {
        value: None,
        denotation: None,
    }
}

/// A valid model with one float input `x` and one float output `y`, both `[N,2]`.
fn minimal_model() -> ModelProto {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto {
            domain: None,
            version: Some(17),
        }],
        producer_name: Some("rust-test".into()),
        producer_version: None,
        domain: None,
        model_version: None,
        doc_string: None,
        graph: Some(GraphProto {
            name: Some("g".into()),
            initializer: vec![],
            sparse_initializer: vec![],
            input: vec![value(
                "x",
                Some(tensor_type(1, Some(vec![param("N"), fixed(2)]))),
            )],
            output: vec![value(
                "y",
                Some(tensor_type(1, Some(vec![param("N"), fixed(2)]))),
            )],
        }),
    }
}

fn graph_mut(model: &mut ModelProto) -> &mut GraphProto {
    model.graph.as_mut().unwrap()
}

#[test]
fn reads_back_a_model_encoded_with_prost() {
    let boxed = |ty: TypeProto| Some(Box::new(ty));
    let mut model = minimal_model();
    model.opset_import.push(OperatorSetIdProto {
        domain: Some("ai.onnx.ml".into()),
        version: Some(3),
    });
    model.producer_version = Some("0.1.0".into());
    let graph = graph_mut(&mut model);
    graph.initializer = vec![TensorProto {
        name: Some("weights".into()),
    }];
    graph.sparse_initializer = vec![SparseTensorProto {
        values: Some(TensorProto {
            name: Some("sparse_weights".into()),
        }),
    }];
    graph.input = vec![
        value(
            "tokens",
            Some(tensor_type(
                7,
                Some(vec![param("batch"), unknown(), fixed(0)]),
            )),
        ),
        value("text", Some(tensor_type(8, Some(vec![])))),
        value("mask", Some(tensor_type(9, None))),
        value(
            "half",
            Some(tensor_type(10, Some(vec![fixed(-1), param("")]))),
        ),
        value("weights", Some(tensor_type(1, Some(vec![fixed(3)])))),
        value("sparse_weights", Some(tensor_type(1, Some(vec![fixed(3)])))),
        value("untyped", None),
        value(
            "sparse",
            Some(TypeProto {
                value: Some(type_proto::Value::SparseTensorType(
                    type_proto::SparseTensor {
                        elem_type: Some(11),
                        shape: Some(TensorShapeProto {
                            dim: vec![fixed(100), fixed(100)],
                        }),
                    },
                )),
            }),
        ),
    ];
    graph.output = vec![
        value(
            "probabilities",
            Some(TypeProto {
                value: Some(type_proto::Value::SequenceType(type_proto::Sequence {
                    elem_type: boxed(TypeProto {
                        value: Some(type_proto::Value::MapType(type_proto::Map {
                            key_type: Some(7),
                            value_type: boxed(tensor_type(1, None)),
                        })),
                    }),
                })),
            }),
        ),
        value(
            "maybe",
            Some(TypeProto {
                value: Some(type_proto::Value::OptionalType(type_proto::Optional {
                    elem_type: boxed(tensor_type(2, Some(vec![fixed(4)]))),
                })),
            }),
        ),
        value(
            "handle",
            Some(TypeProto {
                value: Some(type_proto::Value::OpaqueType(type_proto::Opaque {
                    domain: Some("com.example".into()),
                    name: Some("Handle".into()),
                })),
            }),
        ),
        value("nothing", Some(TypeProto { value: None })),
    ];

    let bytes = model.encode_to_vec();
    assert_eq!(ModelProto::decode(bytes.as_slice()).unwrap(), model);

    let signature = read_signature(&bytes).unwrap();
    assert_eq!(
        signature,
        Signature {
            inputs: vec![
                spec(
                    "tokens",
                    "int64",
                    Some(vec![sym("batch"), Dim::Unknown, Dim::Fixed(0)])
                ),
                spec("text", "string", Some(vec![])),
                spec("mask", "bool", None),
                spec("half", "float16", Some(vec![Dim::Unknown, Dim::Unknown])),
                spec("untyped", "undefined", None),
                spec(
                    "sparse",
                    "sparse_tensor(double)",
                    Some(vec![Dim::Fixed(100), Dim::Fixed(100)])
                ),
            ],
            outputs: vec![
                spec("probabilities", "seq(map(int64,tensor(float)))", None),
                spec("maybe", "optional(tensor(uint8))", None),
                spec("handle", "opaque(com.example,Handle)", None),
                spec("nothing", "undefined", None),
            ],
            ir_version: 9,
            opsets: vec![(String::new(), 17), ("ai.onnx.ml".into(), 3)],
            producer: "rust-test 0.1.0".into(),
        }
    );
    let shown: Vec<String> = signature.inputs.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "tokens: int64[batch,?,0]",
            "text: string[]",
            "mask: bool",
            "half: float16[?,?]",
            "untyped: undefined",
            "sparse: sparse_tensor(double)[100,100]",
        ]
    );
}

#[test]
fn a_model_without_inputs_is_valid() {
    let mut model = minimal_model();
    graph_mut(&mut model).input.clear();
    let signature = read_signature(&model.encode_to_vec()).unwrap();
    assert!(signature.inputs.is_empty());
    assert_eq!(signature.outputs.len(), 1);
}

#[test]
fn models_before_ir_3_need_no_opset_import() {
    let mut model = minimal_model();
    model.ir_version = Some(2);
    model.opset_import.clear();
    let signature = read_signature(&model.encode_to_vec()).unwrap();
    assert!(signature.opsets.is_empty());
}

#[test]
fn producer_is_name_and_version_when_present() {
    let producer_of = |name: Option<&str>, version: Option<&str>| {
        let mut model = minimal_model();
        model.producer_name = name.map(Into::into);
        model.producer_version = version.map(Into::into);
        read_signature(&model.encode_to_vec()).unwrap().producer
    };
    assert_eq!(producer_of(Some("pytorch"), Some("2.3.0")), "pytorch 2.3.0");
    assert_eq!(producer_of(Some("skl2onnx"), None), "skl2onnx");
    assert_eq!(producer_of(None, Some("1.0")), "1.0");
    assert_eq!(producer_of(None, None), "");
}

// --- the validity rules -------------------------------------------------------------------

fn error_after(change: impl FnOnce(&mut ModelProto)) -> String {
    let mut model = minimal_model();
    change(&mut model);
    error_of(&model.encode_to_vec()).to_string()
}

#[test]
fn rejects_a_missing_or_non_positive_ir_version() {
    assert_eq!(
        error_after(|m| m.ir_version = None),
        "not an ONNX model: ir_version is missing (every ONNX file sets it to a positive number)"
    );
    assert_eq!(
        error_after(|m| m.ir_version = Some(0)),
        "invalid ONNX model: ir_version is 0, expected a positive number such as 8"
    );
    assert_eq!(
        error_after(|m| m.ir_version = Some(-3)),
        "invalid ONNX model: ir_version is -3, expected a positive number such as 8"
    );
}

#[test]
fn rejects_a_model_without_a_graph() {
    assert_eq!(
        error_after(|m| m.graph = None),
        "not an ONNX model: it has no graph"
    );
}

#[test]
fn rejects_a_model_without_opset_import() {
    assert_eq!(
        error_after(|m| m.opset_import.clear()),
        "invalid ONNX model: it imports no operator set (opset_import is empty; ir_version 9 \
         requires at least one, e.g. the default domain at version 13)"
    );
}

#[test]
fn rejects_a_graph_without_outputs() {
    assert_eq!(
        error_after(|m| graph_mut(m).output.clear()),
        "invalid ONNX model: the graph declares no outputs (a model needs at least one)"
    );
}

#[test]
fn rejects_unnamed_inputs_and_outputs() {
    assert_eq!(
        error_after(|m| graph_mut(m).input.push(value("", None))),
        "invalid ONNX model: graph input #1 has no name (every input needs one)"
    );
    assert_eq!(
        error_after(|m| graph_mut(m).output[0].name = None),
        "invalid ONNX model: graph output #0 has no name (every output needs one)"
    );
}

#[test]
fn rejects_duplicate_names() {
    assert_eq!(
        error_after(|m| {
            let again = graph_mut(m).output[0].clone();
            graph_mut(m).output.push(again);
        }),
        "invalid ONNX model: the graph declares output \"y\" more than once"
    );
}

// --- bytes that are not ONNX models -------------------------------------------------------

#[test]
fn rejects_empty_input() {
    assert_eq!(
        error_of(b"").to_string(),
        "not an ONNX model: the file is empty (0 bytes); expected a serialized ModelProto"
    );
}

#[test]
fn rejects_a_pickle() {
    let message = error_of(PICKLE).to_string();
    assert!(message.starts_with("not an ONNX model: "), "{message}");
    assert!(
        message.ends_with(
            "; the file looks like a Python pickle (e.g. a pickled or joblib-saved \
             scikit-learn model)"
        ),
        "{message}"
    );
}

#[test]
fn rejects_text() {
    for text in [
        "hello world",
        "hello world\n",
        "{\"inputs\": [1, 2, 3]}\n",
        "x",
    ] {
        let message = error_of(text.as_bytes()).to_string();
        assert!(
            message.starts_with("not an ONNX model: "),
            "{text:?}: {message}"
        );
        assert!(
            message.ends_with("; the file looks like a text file"),
            "{text:?}: {message}"
        );
    }
}

#[test]
fn rejects_a_zip_archive() {
    for bytes in [
        ZIP,
        b"PK\x03\x04".as_slice(),
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
    ] {
        let message = error_of(bytes).to_string();
        assert!(message.starts_with("not an ONNX model: "), "{message}");
        assert!(
            message.contains("; the file looks like a zip archive"),
            "{message}"
        );
    }
}

#[test]
fn rejects_a_decode_failure_with_the_decoders_reason() {
    // Field 1 (ir_version) as a varint whose continuation bit promises a byte that is missing.
    let err = error_of(b"\x08\x80");
    assert!(
        matches!(
            err,
            OnnxError::Decode {
                looks_like: None,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("not an ONNX model: the file is not a valid ModelProto protobuf ("),
        "{message}"
    );
}

#[test]
fn rejects_every_truncation_of_the_fixtures() {
    for (name, bytes) in FIXTURES {
        for len in 1..bytes.len() {
            if let Ok(signature) = read_signature(&bytes[..len]) {
                panic!(
                    "{name} cut to {len} of {} bytes was read as {signature:?}",
                    bytes.len()
                );
            }
        }
    }
}

#[test]
fn says_when_a_model_looks_cut_short() {
    let message = error_of(&LINEAR[..100]).to_string();
    assert_eq!(
        message,
        "not an ONNX model: the file is not a valid ModelProto protobuf (failed to decode \
         Protobuf message: ModelProto.graph: buffer underflow); the file looks like an ONNX \
         model cut short (an incomplete upload or copy?)"
    );
}

#[test]
fn rejects_pseudo_random_bytes() {
    // xorshift64 with a fixed seed, so a failure reproduces.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2_000 {
        let len = 1 + (next() % 600) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Ok(signature) = read_signature(&bytes) {
            panic!("round {round}: random bytes were read as {signature:?}");
        }
    }
}

#[test]
fn rejects_a_model_behind_a_foreign_header() {
    // A real model with a foreign header in front is not a model.
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend_from_slice(LINEAR);
    assert!(read_signature(&bytes).is_err());
}
