//! A model using an operator this runtime does not implement is refused at load, naming it.

use mlops_model::{LoadError, Model};
use prost::Message;
use tract_onnx::pb::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// A float tensor `[N, 4]`.
fn value(name: &str) -> ValueInfoProto {
    let dim = |v| Dimension {
        value: Some(v),
        ..Dimension::default()
    };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(dimension::Value::DimParam("N".into())),
                        dim(dimension::Value::DimValue(4)),
                    ],
                }),
            })),
            ..TypeProto::default()
        }),
        ..ValueInfoProto::default()
    }
}

/// One node `op_type` (domain `domain`) from `x` to `y`.
fn one_node_model(op_type: &str, domain: &str) -> Vec<u8> {
    let model = ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            },
            OperatorSetIdProto {
                domain: "ai.onnx.ml".into(),
                version: 3,
            },
        ],
        graph: Some(GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                name: "the_node".into(),
                op_type: op_type.into(),
                domain: domain.into(),
                input: vec!["x".into()],
                output: vec!["y".into()],
                ..NodeProto::default()
            }],
            input: vec![value("x")],
            output: vec![value("y")],
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    };
    model.encode_to_vec()
}

#[test]
fn an_unsupported_operator_is_refused_at_load_by_name() {
    match Model::load(&one_node_model("TfIdfVectorizer", "")) {
        Err(LoadError::UnsupportedOperator { op, domain, node }) => {
            assert_eq!(op, "TfIdfVectorizer");
            assert_eq!(domain, "");
            assert_eq!(node, "the_node");
        }
        Err(e) => panic!("expected UnsupportedOperator, got {e}"),
        Ok(_) => panic!("a TfIdfVectorizer model loaded"),
    }
    let message = Model::load(&one_node_model("TfIdfVectorizer", ""))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("TfIdfVectorizer"), "{message}");
}

#[test]
fn an_operator_of_an_unknown_domain_is_refused_at_load() {
    match Model::load(&one_node_model("Relu", "com.example")) {
        Err(LoadError::UnsupportedOperator { op, domain, .. }) => {
            assert_eq!(op, "Relu");
            assert_eq!(domain, "com.example");
        }
        Err(e) => panic!("expected UnsupportedOperator, got {e}"),
        Ok(_) => panic!("a com.example model loaded"),
    }
}

/// The same hand-built graph with an operator we do run loads: the refusal above is about the
/// operator, not the bytes.
#[test]
fn the_same_graph_with_a_supported_operator_loads() {
    let model = Model::load(&one_node_model("Relu", "")).expect("a Relu model loads");
    assert_eq!(model.inputs()[0].shape, vec![None, Some(4)]);
}
