//! Loads an ONNX model once and runs it.
//!
//! [`Model::load`] takes a model's bytes, refuses at once what it cannot run (an unsupported
//! operator is named), optimizes the graph once with a symbolic batch dimension, and returns a
//! model that any number of threads can [`Model::run`] at the same time, on any batch size.
//!
//! [`Tensor`] is the currency: a shape and one typed, row-major buffer.

mod tensor;

pub use tensor::{DataType, Tensor, TensorData};

/// A tensor a model takes or returns, as the model declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoSpec {
    /// The name in the graph.
    pub name: String,
    /// The element type.
    pub dtype: DataType,
    /// The dimensions; `None` is a dimension of any size (the batch, first, is one).
    pub shape: Vec<Option<usize>>,
}

/// Why a model could not be loaded; worded for the person who registered it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not an ONNX model, or a truncated one.
    #[error("not a valid ONNX model: {0}")]
    Invalid(String),
    /// The graph uses an operator this runtime does not implement.
    #[error("unsupported operator {op} (domain {domain:?}) in node {node:?}")]
    UnsupportedOperator {
        /// The operator's type, e.g. `TfIdfVectorizer`.
        op: String,
        /// Its domain; empty is the default `ai.onnx`.
        domain: String,
        /// The node's name.
        node: String,
    },
    /// An operator is supported but not with these attributes.
    #[error("node {node:?} ({op}): {reason}")]
    UnsupportedAttribute {
        /// The operator's type.
        op: String,
        /// The node's name.
        node: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The inputs do not match the model's signature (count, type, shape).
    #[error("{0}")]
    InvalidInput(String),
    /// The model failed while running.
    #[error("the model failed: {0}")]
    Failed(String),
}

/// A loaded, optimized model. `Send + Sync`: share it in an `Arc`.
pub struct Model {
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

impl Model {
    /// Loads and optimizes a model from its ONNX bytes.
    pub fn load(_bytes: &[u8]) -> Result<Model, LoadError> {
        Err(LoadError::Invalid("not implemented yet".into()))
    }

    /// The inputs, in the order [`Model::run`] takes them.
    pub fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    /// The outputs, in the order [`Model::run`] returns them. A trailing `ZipMap` was
    /// stripped at load: its input is the output here, under the ZipMap's output name.
    pub fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    /// Runs the model on one tensor per input, in [`Model::inputs`] order; returns one tensor per
    /// output, in [`Model::outputs`] order. The first dimension is the batch: rows are
    /// independent, so row `i` of every output belongs to row `i` of the inputs.
    pub fn run(&self, _inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
        Err(RunError::Failed("not implemented yet".into()))
    }
}
