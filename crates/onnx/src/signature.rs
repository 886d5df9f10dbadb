//! A model's signature and how it is read from a `ModelProto`.

use std::collections::HashSet;
use std::fmt;

use prost::Message;

use crate::error::{decode_hint, sniff, OnnxError};
use crate::proto::{
    data_type_name, tensor_shape_proto::dimension, type_proto, GraphProto, ModelProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};

/// What a model takes and returns, plus the versions a runtime needs to load it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    /// The values a caller must feed, in the graph's order; weights are not among them.
    pub inputs: Vec<TensorSpec>,
    /// The values the model returns, in the graph's order.
    pub outputs: Vec<TensorSpec>,
    /// The ONNX IR version the file was written for (e.g. 8); a runtime supports up to some
    /// version.
    pub ir_version: i64,
    /// The imported operator sets as `(domain, version)`, in file order; the domain is as
    /// written, where `""` is the default `ai.onnx` domain.
    pub opsets: Vec<(String, i64)>,
    /// The tool that wrote the file, `"<producer_name> <producer_version>"` (e.g.
    /// `"pytorch 2.3.0"`), or empty when the file does not say.
    pub producer: String,
}

/// One graph input or output: its name, element type and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The name a caller feeds or fetches the value by.
    pub name: String,
    /// The element type as ONNX names it, lowercased: `float`, `int64`, `string`, `bool`,
    /// `float16`, `double`, `uint8`, ...; `undefined` when the file leaves it out.
    ///
    /// Values that are not dense tensors are written the way ONNX writes types:
    /// `sparse_tensor(float)`, `seq(tensor(float))`, `map(string,tensor(int64))`,
    /// `optional(tensor(float))`, `opaque(domain,name)`.
    pub elem_type: String,
    /// The dimensions, outermost first; `Some(vec![])` is a scalar, `None` means even the rank
    /// is unknown (and is always the case for sequences, maps, optionals and opaque values).
    pub shape: Option<Vec<Dim>>,
}

/// One dimension of a [`TensorSpec`]'s shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size fixed by the model, e.g. the 4 features of `float[N,4]`.
    Fixed(i64),
    /// A size chosen at call time and named so that equal names must be equal sizes, e.g. the
    /// batch `N`.
    Symbolic(String),
    /// A size the file does not describe (no value, an empty name, or a negative value).
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(size) => write!(f, "{size}"),
            Dim::Symbolic(name) => f.write_str(name),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// `x: float[N,4]`; a scalar is `x: float[]` and an unknown shape has no brackets: `x: float`.
impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.elem_type)?;
        if let Some(shape) = &self.shape {
            f.write_str("[")?;
            for (i, dim) in shape.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{dim}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// Reads the signature of the ONNX model serialized in `bytes` (the whole `.onnx` file).
///
/// Only the model's header and the graph's inputs, outputs and initializer names are looked
/// at; nodes and weights are skipped. Graph inputs that are also initializers (files written
/// before IR 4 list every weight as an input) are left out of [`Signature::inputs`], since a
/// caller does not feed them.
///
/// Fails when the bytes are not a `ModelProto`, or when the model lacks what every runnable
/// model has: a positive `ir_version`, a graph with at least one output, an operator set
/// (IR 3 and later), and a distinct, non-empty name on every input and output.
pub fn read_signature(bytes: &[u8]) -> Result<Signature, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::Empty);
    }
    let model = ModelProto::decode(bytes).map_err(|source| OnnxError::Decode {
        looks_like: decode_hint(bytes, &source),
        source,
    })?;

    let ir_version = model
        .ir_version
        .ok_or_else(|| OnnxError::MissingIrVersion {
            looks_like: sniff(bytes),
        })?;
    if ir_version <= 0 {
        return Err(OnnxError::InvalidIrVersion(ir_version));
    }
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::NoGraph {
        looks_like: sniff(bytes),
    })?;
    // opset_import arrived in IR 3; older files bind every node to opset 1 implicitly.
    if ir_version >= 3 && model.opset_import.is_empty() {
        return Err(OnnxError::NoOpsetImport { ir_version });
    }
    if graph.output.is_empty() {
        return Err(OnnxError::NoOutputs);
    }
    check_names("input", &graph.input)?;
    check_names("output", &graph.output)?;

    let weights = initializer_names(graph);
    let inputs = graph
        .input
        .iter()
        .filter(|value| !weights.contains(value.name()))
        .map(tensor_spec)
        .collect();
    let outputs = graph.output.iter().map(tensor_spec).collect();
    let opsets = model
        .opset_import
        .iter()
        .map(|opset| (opset.domain().to_owned(), opset.version()))
        .collect();

    Ok(Signature {
        inputs,
        outputs,
        ir_version,
        opsets,
        producer: producer(&model),
    })
}

fn check_names(kind: &'static str, values: &[ValueInfoProto]) -> Result<(), OnnxError> {
    let mut seen = HashSet::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let name = value.name();
        if name.is_empty() {
            return Err(OnnxError::UnnamedValue { kind, index });
        }
        if !seen.insert(name) {
            return Err(OnnxError::DuplicateName {
                kind,
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

fn initializer_names(graph: &GraphProto) -> HashSet<&str> {
    let dense = graph.initializer.iter().map(|tensor| tensor.name());
    let sparse = graph
        .sparse_initializer
        .iter()
        .filter_map(|sparse| sparse.values.as_ref())
        .map(|values| values.name());
    dense
        .chain(sparse)
        .filter(|name| !name.is_empty())
        .collect()
}

fn producer(model: &ModelProto) -> String {
    let name = model.producer_name().trim();
    let version = model.producer_version().trim();
    match (name.is_empty(), version.is_empty()) {
        (false, false) => format!("{name} {version}"),
        (false, true) => name.to_owned(),
        (true, _) => version.to_owned(),
    }
}

fn tensor_spec(value: &ValueInfoProto) -> TensorSpec {
    let (elem_type, shape) = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(tensor)) => (
            data_type_name(tensor.elem_type()),
            tensor.shape.as_ref().map(dims),
        ),
        Some(type_proto::Value::SparseTensorType(sparse)) => (
            format!("sparse_tensor({})", data_type_name(sparse.elem_type())),
            sparse.shape.as_ref().map(dims),
        ),
        Some(_) => (type_name(value.r#type.as_ref()), None),
        None => (data_type_name(0), None),
    };
    TensorSpec {
        name: value.name().to_owned(),
        elem_type,
        shape,
    }
}

/// The ONNX spelling of a type, as in its operator docs: `tensor(float)`, `seq(...)`, ...
fn type_name(ty: Option<&TypeProto>) -> String {
    let Some(value) = ty.and_then(|t| t.value.as_ref()) else {
        return data_type_name(0);
    };
    match value {
        type_proto::Value::TensorType(tensor) => {
            format!("tensor({})", data_type_name(tensor.elem_type()))
        }
        type_proto::Value::SparseTensorType(sparse) => {
            format!("sparse_tensor({})", data_type_name(sparse.elem_type()))
        }
        type_proto::Value::SequenceType(seq) => {
            format!("seq({})", type_name(seq.elem_type.as_deref()))
        }
        type_proto::Value::MapType(map) => format!(
            "map({},{})",
            data_type_name(map.key_type()),
            type_name(map.value_type.as_deref())
        ),
        type_proto::Value::OptionalType(opt) => {
            format!("optional({})", type_name(opt.elem_type.as_deref()))
        }
        type_proto::Value::OpaqueType(opaque) => {
            format!("opaque({},{})", opaque.domain(), opaque.name())
        }
    }
}

fn dims(shape: &TensorShapeProto) -> Vec<Dim> {
    shape
        .dim
        .iter()
        .map(|dim| match &dim.value {
            Some(dimension::Value::DimValue(size)) if *size >= 0 => Dim::Fixed(*size),
            Some(dimension::Value::DimParam(name)) if !name.is_empty() => {
                Dim::Symbolic(name.clone())
            }
            _ => Dim::Unknown,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, elem_type: &str, shape: Option<Vec<Dim>>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            elem_type: elem_type.into(),
            shape,
        }
    }

    #[test]
    fn dims_display_as_number_symbol_or_question_mark() {
        assert_eq!(Dim::Fixed(4).to_string(), "4");
        assert_eq!(Dim::Symbolic("batch".into()).to_string(), "batch");
        assert_eq!(Dim::Unknown.to_string(), "?");
    }

    #[test]
    fn tensor_specs_display_like_a_declaration() {
        let x = spec(
            "input",
            "float",
            Some(vec![Dim::Symbolic("N".into()), Dim::Fixed(4)]),
        );
        assert_eq!(x.to_string(), "input: float[N,4]");
        let partly = spec("x", "int64", Some(vec![Dim::Unknown, Dim::Fixed(3)]));
        assert_eq!(partly.to_string(), "x: int64[?,3]");
        assert_eq!(spec("s", "string", Some(vec![])).to_string(), "s: string[]");
        assert_eq!(spec("u", "float", None).to_string(), "u: float");
        assert_eq!(
            spec("q", "seq(tensor(float))", None).to_string(),
            "q: seq(tensor(float))"
        );
    }
}
