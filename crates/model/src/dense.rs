//! A matrix product by constant weights (`x W`, with `x` of `N × k`), with the bias `Add`
//! and the ReLU (`Max` with zero) that follow it, swapped for one [`DenseOp`] before
//! tract optimizes the graph: ONNX's `Gemm` and `MatMul` + `Add`, as an MLP writes them.
//!
//! tract 0.23's matrix product packs the activations on every call before its kernel runs;
//! on the bench MLP the packing alone took a fifth of the run, and the whole MLP ran at 0.9x
//! onnxruntime's batch throughput. [`mlops_dense::Dense`] reads the activations where they
//! lie and packs only the weights, once, at load (see its docs).

use mlops_dense::Dense;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_hir::internal::*;

/// Swaps every `x W [+ b] [max 0]` chain of `model` (decluttered, not yet optimized) whose
/// weights and bias are `f32` constants for a [`DenseOp`].
/// Only where a kernel of `mlops-dense` runs (AVX-512, or AVX2 with FMA): elsewhere tract's
/// matrix product, which picks a NEON or SSE kernel at run time, beats the portable loop.
pub(crate) fn swap_in(model: &mut TypedModel) -> TractResult<()> {
    if !mlops_dense::accelerated() {
        return Ok(());
    }
    // One chain at a time: a patch rewires the graph, and compacting drops the nodes it
    // left dead, so the next search sees only live ones.
    loop {
        model.compact()?;
        let mut found = None;
        for node in model.nodes() {
            if let Some(chain) = chain_at(model, node.id)? {
                found = Some(chain);
                break;
            }
        }
        let Some(chain) = found else {
            return Ok(());
        };
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, chain.x)?;
        let name = model.node(chain.last).name.clone();
        let out = patch.wire_node(name, DenseOp(chain.dense.into()), &[x])?;
        patch.shunt_outside(model, OutletId::new(chain.last, 0), out[0])?;
        patch.apply(model)?;
    }
}

/// One chain found: its input, the layer, and the node whose output it replaces.
struct Chain {
    x: OutletId,
    dense: Dense,
    last: usize,
}

/// The chain that starts at node `id`, if it is a matrix product `[N, k] × [k, n]` by
/// constant `f32` weights.
fn chain_at(model: &TypedModel, id: usize) -> TractResult<Option<Chain>> {
    let node = model.node(id);
    let Some(einsum) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if einsum.q_params.is_some() || einsum.operating_dt != DatumType::F32 || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let Some(layout) = plain_matmul(&einsum.axes.to_string()) else {
        return Ok(None);
    };
    let x = model.outlet_fact(node.inputs[0])?;
    let Some(w) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
        return Ok(None);
    };
    if x.datum_type != DatumType::F32 || w.datum_type() != DatumType::F32 || x.rank() != 2 {
        return Ok(None);
    }
    let (k, n) = match (layout, w.shape()) {
        (Weights::KByN, &[k, n]) => (k, n),
        (Weights::NByK, &[n, k]) => (k, n),
        _ => return Ok(None),
    };
    if k == 0 || n == 0 || x.shape[1].to_usize().ok() != Some(k) {
        return Ok(None);
    }
    let w = w.try_as_plain_ram()?.as_slice::<f32>()?;
    let weights = match layout {
        Weights::KByN => w.to_vec(),
        Weights::NByK => (0..k * n).map(|i| w[(i % n) * k + i / n]).collect(),
    };
    let mut last = id;
    let mut bias = None;
    let mut relu = false;
    if let Some((add, b)) = next_with_const(model, last, "Add")? {
        if row_shaped(&b, n) {
            bias = Some(b.try_as_plain_ram()?.as_slice::<f32>()?.to_vec());
            last = add;
        }
    }
    if let Some((max, zero)) = next_with_const(model, last, "Max")? {
        if zero.len() == 1 && zero.try_as_plain_ram()?.as_slice::<f32>()?[0] == 0.0 {
            relu = true;
            last = max;
        }
    }
    Ok(Some(Chain {
        x: node.inputs[0],
        dense: Dense::new(weights, k, n, bias, relu),
        last,
    }))
}

/// How the weights of a plain matrix product of two axes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weights {
    /// `ab,bc->ac`: `[k, n]`, as `MatMul` and `Gemm` write them.
    KByN,
    /// `ab,cb->ac`: `[n, k]`, as `Gemm` with `transB` (PyTorch's `Linear`) writes them.
    NByK,
}

/// The layout of the weights if `axes` is a plain matrix product of three distinct axes.
fn plain_matmul(axes: &str) -> Option<Weights> {
    let (inputs, output) = axes.split_once("->")?;
    let (a, b) = inputs.split_once(',')?;
    let (a, b, o): (Vec<char>, Vec<char>, Vec<char>) = (
        a.chars().collect(),
        b.chars().collect(),
        output.chars().collect(),
    );
    if a.len() != 2 || b.len() != 2 || o.len() != 2 || a[0] == a[1] {
        return None;
    }
    let (m, k) = (a[0], a[1]);
    match (b[0], b[1]) {
        (bk, n) if bk == k && n != m && n != k && o == [m, n] => Some(Weights::KByN),
        (n, bk) if bk == k && n != m && n != k && o == [m, n] => Some(Weights::NByK),
        _ => None,
    }
}

/// A constant that is a row of `n` repeated over the leading axis: `[n]` or `[1, n]`.
fn row_shaped(c: &Tensor, n: usize) -> bool {
    matches!(c.shape(), [d] | [1, d] if *d == n)
}

/// The one successor of node `id`'s output, if it is the binary op `name` of that output and
/// an `f32` constant, and `id`'s output is not a graph output: its id and the constant.
fn next_with_const(
    model: &TypedModel,
    id: usize,
    name: &str,
) -> TractResult<Option<(usize, Arc<Tensor>)>> {
    let outlet = OutletId::new(id, 0);
    if model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    let Some(next) = model.single_succ(id)? else {
        return Ok(None);
    };
    let Some(TypedBinOp(op, None)) = next.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if op.name() != name || next.inputs.len() != 2 {
        return Ok(None);
    }
    let other = if next.inputs[0] == outlet {
        next.inputs[1]
    } else {
        next.inputs[0]
    };
    let fact = model.outlet_fact(other)?;
    let out = model.outlet_fact(OutletId::new(next.id, 0))?;
    match &fact.konst {
        Some(c)
            if c.datum_type() == DatumType::F32
                && out.shape == model.outlet_fact(outlet)?.shape =>
        {
            Ok(Some((next.id, c.clone())))
        }
        _ => Ok(None),
    }
}

/// `x W + b`, then ReLU if the graph had one, by [`Dense`].
#[derive(Debug, Clone)]
pub(crate) struct DenseOp(Arc<Dense>);

impl PartialEq for DenseOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for DenseOp {}

impl Op for DenseOp {
    fn name(&self) -> StaticName {
        "Dense".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {}{}",
            self.0.k(),
            self.0.n(),
            if self.0.relu() { ", relu" } else { "" }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DenseOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let view = x.try_as_plain_ram()?;
        let x = view.as_slice::<f32>()?;
        let (k, n) = (self.0.k(), self.0.n());
        if x.len() % k != 0 {
            bail!("{} values cannot be rows of {k}", x.len());
        }
        let rows = x.len() / k;
        let mut y = Tensor::zero::<f32>(&[rows, n])?;
        self.0
            .run(x, y.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
        Ok(tvec!(y.into_tvalue()))
    }
}

impl TypedOp for DenseOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let rows = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([rows, self.0.n().to_dim()])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ops of the plan of a fixture model, by name.
    fn plan_ops(fixture: &str) -> Vec<String> {
        let path = format!(
            "{}/../../tests/fixtures/sklearn/{fixture}.onnx",
            env!("CARGO_MANIFEST_DIR")
        );
        let loaded = crate::load::load(&std::fs::read(path).unwrap()).unwrap();
        loaded
            .plan
            .model()
            .nodes()
            .iter()
            .map(|n| n.op.name().to_string())
            .collect()
    }

    #[test]
    fn the_bench_mlp_runs_three_dense_layers_and_no_matrix_product_of_tracts() {
        let ops = plan_ops("mlp");
        if !mlops_dense::accelerated() {
            // tract keeps the layers on a CPU without AVX-512 or AVX2 (or `MLOPS_DENSE_MAX_ISA=none`).
            assert!(!ops.iter().any(|o| o == "Dense"), "{ops:?}");
            return;
        }
        assert_eq!(ops.iter().filter(|o| *o == "Dense").count(), 3, "{ops:?}");
        assert!(!ops.iter().any(|o| o.contains("MatMul")), "{ops:?}");
        // The biases and ReLUs went into the layers.
        assert!(!ops.iter().any(|o| o == "Max" || o == "Add"), "{ops:?}");
    }

    /// `relu(x W + b)` as one ONNX `Gemm` (with `transB`, `w` is `[n, k]`) and a `Relu`.
    fn gemm_relu(trans_b: bool, w: &[f32], b: &[f32], k: usize, n: usize) -> Vec<u8> {
        use prost::Message;
        use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
        use tract_onnx::pb::{
            type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
            TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
        };
        let value = |name: &str, width: usize| {
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
                                dim(dimension::Value::DimValue(width as i64)),
                            ],
                        }),
                    })),
                    ..TypeProto::default()
                }),
                ..ValueInfoProto::default()
            }
        };
        let tensor = |name: &str, dims: Vec<i64>, data: &[f32]| TensorProto {
            name: name.into(),
            dims,
            data_type: 1,
            float_data: data.to_vec(),
            ..TensorProto::default()
        };
        let (rows, cols) = if trans_b { (n, k) } else { (k, n) };
        let node = |op: &str, input: &[&str], output: &str| NodeProto {
            name: op.into(),
            op_type: op.into(),
            input: input.iter().map(|i| i.to_string()).collect(),
            output: vec![output.into()],
            ..NodeProto::default()
        };
        let mut gemm = node("Gemm", &["x", "W", "B"], "h");
        gemm.attribute.push(AttributeProto {
            name: "transB".into(),
            r#type: 2,
            i: i64::from(trans_b),
            ..AttributeProto::default()
        });
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![gemm, node("Relu", &["h"], "y")],
                initializer: vec![
                    tensor("W", vec![rows as i64, cols as i64], w),
                    tensor("B", vec![n as i64], b),
                ],
                input: vec![value("x", k)],
                output: vec![value("y", n)],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_gemm_with_either_weight_layout_runs_as_one_dense_layer() {
        let (k, n, rows) = (5, 3, 4);
        let w: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.9).sin()).collect(); // [k, n]
        let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect(); // [n, k]
        let b = [0.5, -0.25, 0.0];
        let x: Vec<f32> = (0..rows * k)
            .map(|i| (i as f32 * 0.37).cos() * 2.0)
            .collect();
        let want: Vec<f32> = (0..rows * n)
            .map(|i| {
                let (r, j) = (i / n, i % n);
                let s: f32 = b[j] + (0..k).map(|kk| x[r * k + kk] * w[kk * n + j]).sum::<f32>();
                s.max(0.0)
            })
            .collect();
        for (trans_b, weights) in [(false, &w), (true, &wt)] {
            let bytes = gemm_relu(trans_b, weights, &b, k, n);
            let loaded = crate::load::load(&bytes).unwrap();
            let ops: Vec<String> = loaded
                .plan
                .model()
                .nodes()
                .iter()
                .map(|n| n.op.name().to_string())
                .collect();
            if mlops_dense::accelerated() {
                assert_eq!(
                    ops.iter().filter(|o| *o == "Dense").count(),
                    1,
                    "transB {trans_b}: {ops:?}"
                );
                assert!(!ops.iter().any(|o| o == "Max" || o == "Add"), "{ops:?}");
            }
            let model = crate::Model::load(&bytes).unwrap();
            let input =
                crate::Tensor::new(vec![rows, k], crate::TensorData::F32(x.clone())).unwrap();
            let out = model.run(&[input]).unwrap();
            let crate::TensorData::F32(got) = &out[0].data else {
                panic!("f32 out");
            };
            assert_eq!(out[0].shape, [rows, n]);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-5,
                    "transB {trans_b}: {got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn only_plain_matrix_products_are_taken() {
        assert_eq!(plain_matmul("mk,kn->mn"), Some(Weights::KByN));
        assert_eq!(plain_matmul("ab,bc->ac"), Some(Weights::KByN));
        assert_eq!(plain_matmul("mk,nk->mn"), Some(Weights::NByK));
        assert_eq!(plain_matmul("mk,kn->nm"), None);
        assert_eq!(plain_matmul("bmk,kn->bmn"), None);
        assert_eq!(plain_matmul("mk,km->mm"), None);
        assert_eq!(plain_matmul("mk,mk->mm"), None);
        assert_eq!(plain_matmul("mk,kn"), None);
    }
}
