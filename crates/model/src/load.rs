//! From bytes to a plan: decode, check every operator, strip a trailing `ZipMap`, let tract
//! infer and optimize with a symbolic batch dimension.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use tract_onnx::pb::{self, type_proto, ModelProto};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

use crate::convert::{data_type, datum_type};
use crate::ml::{self, AttrError};
use crate::{DataType, IoSpec, LoadError};

/// A loaded model's parts.
pub(crate) struct Loaded {
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    pub plan: Arc<TypedSimplePlan>,
}

/// tract's ONNX front end with our operators registered, built once.
fn onnx() -> &'static tract_onnx::Onnx {
    static ONNX: OnceLock<tract_onnx::Onnx> = OnceLock::new();
    ONNX.get_or_init(|| {
        let mut onnx = tract_onnx::onnx();
        ml::register(&mut onnx);
        onnx
    })
}

/// The ONNX `elem_type` of a tensor, as ours.
fn elem_type(t: i32) -> Option<DataType> {
    Some(match t {
        1 => DataType::F32,
        2 => DataType::U8,
        3 => DataType::I8,
        4 => DataType::U16,
        5 => DataType::I16,
        6 => DataType::I32,
        7 => DataType::I64,
        8 => DataType::String,
        9 => DataType::Bool,
        11 => DataType::F64,
        12 => DataType::U32,
        13 => DataType::U64,
        _ => return None,
    })
}

fn invalid(e: impl std::fmt::Display) -> LoadError {
    LoadError::Invalid(e.to_string())
}

/// Maps a tract error to ours: an attribute we refused, or an invalid model.
fn from_tract(e: TractError) -> LoadError {
    match e.chain().find_map(|c| c.downcast_ref::<AttrError>()) {
        Some(a) => LoadError::UnsupportedAttribute {
            op: a.op.clone(),
            node: a.node.clone(),
            reason: a.reason.clone(),
        },
        None => LoadError::Invalid(format!("{e:#}")),
    }
}

pub(crate) fn load(bytes: &[u8]) -> Result<Loaded, LoadError> {
    let mut proto = onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| invalid(format!("cannot decode the protobuf: {e:#}")))?;
    let inputs = check(&mut proto)?;
    match catch_unwind(AssertUnwindSafe(|| build(&proto, &inputs))) {
        Ok(result) => result,
        Err(_) => Err(invalid(
            "the graph could not be analysed (the runtime panicked)",
        )),
    }
}

/// Checks the graph's operators and inputs, strips a trailing ZipMap; returns the inputs.
fn check(proto: &mut ModelProto) -> Result<Vec<IoSpec>, LoadError> {
    let graph = proto
        .graph
        .as_mut()
        .ok_or_else(|| invalid("the model has no graph"))?;
    if graph.node.is_empty() || graph.output.is_empty() {
        return Err(invalid("the graph has no nodes or no outputs"));
    }
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let register = &onnx().op_register.0;
    for node in graph.node.iter_mut() {
        let domain_ok = matches!(node.domain.as_str(), "" | "ai.onnx" | "ai.onnx.ml");
        if node.op_type == "ZipMap" && domain_ok {
            // a list of maps per row is no tensor: serve the probabilities themselves
            if node.input.len() != 1 || node.output.len() != 1 || !outputs.contains(&node.output[0])
            {
                return Err(unsupported(node, "(a ZipMap that is not a graph output)"));
            }
            node.op_type = "Identity".into();
            node.domain.clear();
            node.attribute.clear();
            let name = node.output[0].clone();
            if let Some(out) = graph.output.iter_mut().find(|o| o.name == name) {
                out.r#type = Some(pb::TypeProto {
                    denotation: String::new(),
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: 1,
                        shape: None,
                    })),
                });
            }
            continue;
        }
        let ours = ml::OPS.contains(&node.op_type.as_str());
        if !domain_ok || !(ours || register.contains_key(&node.op_type)) {
            return Err(unsupported(node, ""));
        }
    }
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut inputs = Vec::new();
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
    {
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(invalid(format!("input {:?} is not a tensor", input.name)));
        };
        let dtype = elem_type(t.elem_type).ok_or_else(|| {
            invalid(format!(
                "input {:?} has element type {}, which is not supported",
                input.name, t.elem_type
            ))
        })?;
        let shape = t
            .shape
            .as_ref()
            .ok_or_else(|| invalid(format!("input {:?} has no shape", input.name)))?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => {
                    Some(v as usize)
                }
                _ => None,
            })
            .collect();
        inputs.push(IoSpec {
            name: input.name.clone(),
            dtype,
            shape,
        });
    }
    Ok(inputs)
}

fn unsupported(node: &pb::NodeProto, suffix: &str) -> LoadError {
    LoadError::UnsupportedOperator {
        op: format!(
            "{}{}{}",
            node.op_type,
            if suffix.is_empty() { "" } else { " " },
            suffix
        ),
        domain: node.domain.clone(),
        node: node.name.clone(),
    }
}

fn build(proto: &ModelProto, inputs: &[IoSpec]) -> Result<Loaded, LoadError> {
    let mut model = onnx().model_for_proto_model(proto).map_err(from_tract)?;
    if model.input_outlets().map_err(from_tract)?.len() != inputs.len() {
        return Err(invalid("the graph's inputs do not match its declaration"));
    }
    let batch = model.symbols.sym("N");
    for (ix, spec) in inputs.iter().enumerate() {
        let dims: TVec<TDim> = spec
            .shape
            .iter()
            .enumerate()
            .map(|(axis, d)| match (d, axis) {
                (Some(d), _) => d.to_dim(),
                (None, 0) => batch.to_dim(),
                (None, axis) => model.symbols.sym(&format!("{}_{axis}", spec.name)).to_dim(),
            })
            .collect();
        let fact = InferenceFact::dt_shape(datum_type(spec.dtype), dims);
        model.set_input_fact(ix, fact).map_err(from_tract)?;
    }
    let mut typed = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(from_tract)?;
    crate::dense::swap_in(&mut typed).map_err(from_tract)?;
    let mut typed = typed.into_optimized().map_err(from_tract)?;
    crate::softmax::swap_in(&mut typed).map_err(from_tract)?;
    crate::rowwise::swap_in(&mut typed).map_err(from_tract)?;
    let names: Vec<String> = proto
        .graph
        .as_ref()
        .map(|g| g.output.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default();
    let outlets = typed.output_outlets().map_err(from_tract)?.to_vec();
    if outlets.len() != names.len() {
        return Err(invalid("the optimized graph lost an output"));
    }
    let mut outputs = Vec::with_capacity(names.len());
    for (name, outlet) in names.into_iter().zip(outlets) {
        let fact = typed.outlet_fact(outlet).map_err(from_tract)?;
        let dtype = data_type(fact.datum_type).ok_or_else(|| {
            invalid(format!(
                "output {name:?} has type {:?}, which is not supported",
                fact.datum_type
            ))
        })?;
        let shape = fact.shape.iter().map(|d| d.to_usize().ok()).collect();
        outputs.push(IoSpec { name, dtype, shape });
    }
    let plan = typed.into_runnable().map_err(from_tract)?;
    Ok(Loaded {
        inputs: inputs.to_vec(),
        outputs,
        plan,
    })
}
