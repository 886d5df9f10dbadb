//! Reading an ONNX-ML node's attributes, with errors that name the node and the attribute.

use tract_onnx::pb::NodeProto;

/// An operator we implement, given attributes we cannot run; surfaces as
/// [`crate::LoadError::UnsupportedAttribute`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("node {node:?} ({op}): {reason}")]
pub(crate) struct AttrError {
    pub op: String,
    pub node: String,
    pub reason: String,
}

/// A node's attributes.
pub(crate) struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Attrs<'a> {
        Attrs { node }
    }

    /// An error about this node.
    pub fn error(&self, reason: impl Into<String>) -> AttrError {
        AttrError {
            op: self.node.op_type.clone(),
            node: self.node.name.clone(),
            reason: reason.into(),
        }
    }

    fn get(&self, name: &str) -> Option<&'a tract_onnx::pb::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn floats(&self, name: &str) -> Vec<f32> {
        self.get(name).map(|a| a.floats.clone()).unwrap_or_default()
    }

    pub fn ints(&self, name: &str) -> Vec<i64> {
        self.get(name).map(|a| a.ints.clone()).unwrap_or_default()
    }

    pub fn strings(&self, name: &str) -> Vec<Vec<u8>> {
        self.get(name)
            .map(|a| a.strings.clone())
            .unwrap_or_default()
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .unwrap_or_else(|| default.to_string())
    }

    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.get(name).map(|a| a.i).unwrap_or(default)
    }

    pub fn float_or(&self, name: &str, default: f32) -> f32 {
        self.get(name).map(|a| a.f).unwrap_or(default)
    }

    /// Fails when any of `names` (tensor-valued variants we do not read) is present.
    pub fn refuse(&self, names: &[&str]) -> Result<(), AttrError> {
        match names.iter().find(|n| self.has(n)) {
            Some(n) => Err(self.error(format!("attribute {n} is not supported"))),
            None => Ok(()),
        }
    }

    /// A non-negative integer attribute value as an index.
    pub fn index(&self, name: &str, v: i64) -> Result<usize, AttrError> {
        usize::try_from(v).map_err(|_| self.error(format!("{name} has a negative value {v}")))
    }
}
