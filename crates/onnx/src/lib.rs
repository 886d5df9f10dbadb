//! Reads an ONNX model's signature — its inputs, outputs, element types and shapes — from the
//! `.onnx` file itself.
//!
//! The model registry calls [`read_signature`] when an ONNX model version is registered and
//! stores the result with the version, so that:
//! - a file that is not an ONNX model (a pickle, a zip, a truncated upload) is refused at
//!   registration with a message saying what it is, rather than failing later in a runtime;
//! - the signature can be shown without downloading the model;
//! - inference (not part of the platform yet) can check a request's tensor names, element
//!   types and fixed dimensions against it before running anything.
//!
//! The signature is read from what the file declares, not from a user's description, so it
//! cannot drift from the model. Only the header and the graph's inputs, outputs and
//! initializer names are decoded; the nodes and weights are skipped, which keeps reading a
//! large model cheap.
//!
//! The crate's parts:
//! - `signature` (private; its items are re-exported here): [`read_signature`], bytes in,
//!   [`Signature`] out, with the validity checks that tell an ONNX model from other bytes;
//!   [`Signature`], [`TensorSpec`], [`Dim`]: what a model takes and returns; `TensorSpec`
//!   displays as `x: float[N,4]`;
//! - `error` (private; re-exported): [`OnnxError`], why a file was refused, worded for the
//!   person who uploaded it, with the hints that say what the bytes look like instead;
//! - [`proto`]: the hand-written `prost` messages for the subset of `onnx.proto` read here
//!   (no `protoc`, no build script).
//!
//! ```
//! # fn main() -> Result<(), mlops_onnx::OnnxError> {
//! let bytes = include_bytes!("../../../tests/fixtures/onnx/linear.onnx");
//! let signature = mlops_onnx::read_signature(bytes)?;
//! assert_eq!(signature.inputs[0].to_string(), "x: float[N,4]");
//! assert_eq!(signature.outputs[0].to_string(), "y: float[N,1]");
//! # Ok(())
//! # }
//! ```

mod error;
pub mod proto;
mod signature;

pub use error::OnnxError;
pub use signature::{read_signature, Dim, Signature, TensorSpec};

#[cfg(test)]
mod tests;
