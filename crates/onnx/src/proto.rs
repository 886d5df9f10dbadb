//! The subset of `onnx.proto` (package `onnx`, proto2) needed to read a model's signature.
//!
//! Written by hand with `prost`'s derive so the crate needs no `protoc` and no build script.
//! Field numbers are those of the upstream `onnx/onnx.proto` (checked against the descriptors
//! of the `onnx` 1.23.2 Python package); fields that are left out, such as the graph's nodes
//! and the tensors' data, are skipped by `prost` while decoding, so a large model decodes
//! without its weights being copied.
//!
//! Scalar fields are `Option` where proto2 keeps presence and the reader cares whether a value
//! was written (a missing `ir_version` is a different mistake from `ir_version: 0`).
//!
//! These types are public so that tests elsewhere can build a model with an unusual signature
//! without a Python toolchain: encode a [`ModelProto`] with [`prost::Message::encode_to_vec`].

/// `onnx.ModelProto`: the top-level message of a `.onnx` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The IR version the file was written for; every ONNX file must set it.
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    /// The operator sets (domain and version) the graph's nodes bind against.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    /// The tool that wrote the file, e.g. `pytorch`.
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    /// The version of that tool.
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    /// Reverse-DNS namespace of the model, e.g. `com.example`.
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    /// The version of the model itself, chosen by its author.
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    /// Free-form documentation.
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    /// The computation; a model without one cannot be run.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// `onnx.OperatorSetIdProto`: one imported operator set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// The operator set's domain; empty (or absent) means the default `ai.onnx` domain.
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    /// The operator set's version.
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// `onnx.GraphProto`, without its nodes (field 1), which a signature does not need.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// The graph's name.
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    /// Constant tensors (weights); only their names are kept.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Constant tensors stored sparsely; only their names are kept.
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    /// The graph's inputs; before IR 4 this also lists every initializer.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// The graph's outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `onnx.TensorProto`, reduced to its name: its data is skipped while decoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The tensor's name, which graph inputs refer to.
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
}

/// `onnx.SparseTensorProto`, reduced to the tensor that carries its name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// The non-default values; their `name` names the sparse tensor.
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
}

/// `onnx.ValueInfoProto`: a named, typed value such as a graph input or output.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// The value's name, which callers use to feed or fetch it.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The value's type; required for the inputs and outputs of the top-level graph.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `onnx.TypeProto`: the type of a value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// Which kind of type this is.
    #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 7, 8, 9")]
    pub value: Option<type_proto::Value>,
}

/// Nested messages of [`TypeProto`].
pub mod type_proto {
    use super::{TensorShapeProto, TypeProto};

    /// `onnx.TypeProto.value`: the kinds of type a value may have.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        /// A dense tensor.
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        /// A sequence of values of one type.
        #[prost(message, tag = "4")]
        SequenceType(Sequence),
        /// A map from a scalar key type to a value type.
        #[prost(message, tag = "5")]
        MapType(Map),
        /// A type opaque to ONNX, named by a domain and a name.
        #[prost(message, tag = "7")]
        OpaqueType(Opaque),
        /// A sparse tensor.
        #[prost(message, tag = "8")]
        SparseTensorType(SparseTensor),
        /// A value that may be absent.
        #[prost(message, tag = "9")]
        OptionalType(Optional),
    }

    /// `onnx.TypeProto.Tensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        /// A `TensorProto.DataType` number, e.g. 1 for `float`.
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// The shape; absent when even the rank is unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// `onnx.TypeProto.SparseTensor`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SparseTensor {
        /// A `TensorProto.DataType` number.
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        /// The dense shape; absent when unknown.
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// `onnx.TypeProto.Sequence`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        /// The type of every element.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// `onnx.TypeProto.Map`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        /// A `TensorProto.DataType` number (an integer type or string).
        #[prost(int32, optional, tag = "1")]
        pub key_type: Option<i32>,
        /// The type of the values.
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<TypeProto>>,
    }

    /// `onnx.TypeProto.Optional`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Optional {
        /// The type of the value when it is present.
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    /// `onnx.TypeProto.Opaque`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Opaque {
        /// The domain that defines the type.
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        /// The type's name within its domain.
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
    }
}

/// `onnx.TensorShapeProto`: a list of dimensions; an empty list is a scalar.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The dimensions, outermost first.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// Nested messages of [`TensorShapeProto`].
pub mod tensor_shape_proto {
    /// `onnx.TensorShapeProto.Dimension`: a size, a symbol, or neither (unknown).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        /// The size or symbol, when known.
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        /// A standard meaning of the axis, e.g. `DATA_BATCH`.
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }

    /// Nested types of [`Dimension`].
    pub mod dimension {
        /// `onnx.TensorShapeProto.Dimension.value`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            /// A fixed size.
            #[prost(int64, tag = "1")]
            DimValue(i64),
            /// A named size, the same wherever the name appears (e.g. `N` for the batch).
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// The lowercase ONNX name of a `TensorProto.DataType` number, e.g. `float` for 1.
///
/// Numbers newer than this table (ONNX 1.23, up to 28) read as `unknown(<n>)`.
pub fn data_type_name(data_type: i32) -> String {
    let name = match data_type {
        0 => "undefined",
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        24 => "float8e8m0",
        25 => "uint2",
        26 => "int2",
        27 => "float6e2m3",
        28 => "float6e3m2",
        other => return format!("unknown({other})"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_type_names_follow_the_onnx_enum() {
        assert_eq!(data_type_name(0), "undefined");
        assert_eq!(data_type_name(1), "float");
        assert_eq!(data_type_name(7), "int64");
        assert_eq!(data_type_name(8), "string");
        assert_eq!(data_type_name(9), "bool");
        assert_eq!(data_type_name(10), "float16");
        assert_eq!(data_type_name(11), "double");
        assert_eq!(data_type_name(16), "bfloat16");
        assert_eq!(data_type_name(28), "float6e3m2");
        assert_eq!(data_type_name(29), "unknown(29)");
        assert_eq!(data_type_name(-1), "unknown(-1)");
    }
}
