//! Loads an ONNX model once and runs it.
//!
//! [`Model::load`] takes a model's bytes, refuses at once what it cannot run (an unsupported
//! operator is named), optimizes the graph once with a symbolic batch dimension, and returns a
//! model that any number of threads can [`Model::run`] at the same time, on any batch size.
//!
//! [`Tensor`] is the currency: a shape and one typed, row-major buffer.
//!
//! # Design
//!
//! - **tract runs the graph.** The bytes are decoded with tract-onnx's protobuf types, checked
//!   (every operator must be one tract or we implement, in the default or `ai.onnx.ml` domain),
//!   and handed to tract, which infers types and shapes with the batch axis as the symbol `N`,
//!   optimizes once and builds one plan. Each call to [`Model::run`] borrows a tract state from
//!   a pool (one per concurrent caller, reused, so a call does not rebuild it) and converts
//!   tensors once on the way in and once on the way out.
//! - **The ONNX-ML operators are ours** (module `ml`): `TreeEnsembleClassifier`,
//!   `TreeEnsembleRegressor`, `LinearClassifier`, `LinearRegressor`, `SVMClassifier`,
//!   `SVMRegressor`, `Scaler`, `Imputer`, `Binarizer`, `Normalizer`, `OneHotEncoder`,
//!   `LabelEncoder`, `ArrayFeatureExtractor`, `CategoryMapper`. tract 0.23 lacks most of them,
//!   rejects scikit-learn's binary gradient boosting, and its tree walk is slow; and each must
//!   match onnxruntime, the reference the models were validated against, down to its special
//!   cases (binary classifiers with one score column, `base_values`, post transforms,
//!   "has a score" flags). Each is a kernel plugged into tract's operator table, replacing
//!   tract's own where tract has one; tract still runs everything else (`Cast`, `Concat`,
//!   `Gemm`, `Softmax`, ...).
//! - **The tree kernel** flattens every tree into node tables and walks blocks of rows tree
//!   by tree, so a tree stays in cache for the whole block. Ensembles of one order comparison
//!   without missing-value tracking (all of scikit-learn's) also get a compact layout walked
//!   without branches or bounds checks, several rows side by side (see `ml::tree`). The hot
//!   loop neither allocates nor builds errors.
//! - **Dense layers are ours** (module `dense`, on the `mlops-dense` crate): before tract
//!   optimizes, every matrix product by constant `f32` weights (`Gemm`, `MatMul`), with the bias
//!   `Add` and the `Relu` that follow it, becomes one op whose kernel (AVX-512, or AVX2 with
//!   FMA) packs only the weights, once, where tract packed the activations on every call. An
//!   MLP runs faster than onnxruntime then. Without either the layers stay tract's.
//! - **A few of tract's ops are swapped for ours after optimization** where tract 0.23 is slow
//!   on a symbolic batch of short rows: a softmax over the trailing axes (module `softmax`) and
//!   `x op c` with a constant row `c` (module `rowwise`). Both compute each element with the
//!   same `f32` operations.
//! - **A trailing `ZipMap`** (a list of maps per row, which is no tensor) is stripped at load:
//!   its input tensor is served under the ZipMap's output name.

mod convert;
mod dense;
mod load;
mod ml;
mod rowwise;
mod softmax;
mod tensor;

use std::sync::{Arc, Mutex};

use tract_onnx::prelude::{TypedSimplePlan, TypedSimpleState};

pub use tensor::{DataType, Tensor, TensorData};

/// Checks a value of `MLOPS_DENSE_MAX_ISA`, the cap on the dense layers' instruction set
/// (`avx512`, `avx2` or `none`; `None`: unset): a service calls this at start.
pub use mlops_dense::check_cap as check_dense_cap;

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
    plan: Arc<TypedSimplePlan>,
    /// Idle run states, reused so that a call does not rebuild one; grows to the number of
    /// concurrent callers.
    states: Mutex<Vec<TypedSimpleState>>,
}

impl Model {
    /// Loads and optimizes a model from its ONNX bytes.
    pub fn load(bytes: &[u8]) -> Result<Model, LoadError> {
        let loaded = load::load(bytes)?;
        Ok(Model {
            inputs: loaded.inputs,
            outputs: loaded.outputs,
            plan: loaded.plan,
            states: Mutex::new(Vec::new()),
        })
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
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
        let values = convert::inputs(&self.inputs, inputs)?;
        let idle = self.states.lock().ok().and_then(|mut s| s.pop());
        let mut state = match idle {
            Some(state) => state,
            None => self
                .plan
                .spawn()
                .map_err(|e| RunError::Failed(format!("{e:#}")))?,
        };
        let outputs = state
            .run(values)
            .map_err(|e| RunError::Failed(format!("{e:#}")))?;
        if let Ok(mut idle) = self.states.lock() {
            idle.push(state);
        }
        convert::outputs(&self.outputs, outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Model>();
    }
}
