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
pub(crate) fn swap_in(model: &mut TypedModel) -> TractResult<()> {
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
    if einsum.q_params.is_some()
        || einsum.operating_dt != DatumType::F32
        || node.inputs.len() != 2
        || !is_plain_matmul(&einsum.axes.to_string())
    {
        return Ok(None);
    }
    let x = model.outlet_fact(node.inputs[0])?;
    let Some(w) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
        return Ok(None);
    };
    if x.datum_type != DatumType::F32 || w.datum_type() != DatumType::F32 || x.rank() != 2 {
        return Ok(None);
    }
    let &[k, n] = w.shape() else {
        return Ok(None);
    };
    if k == 0 || n == 0 || x.shape[1].to_usize().ok() != Some(k) {
        return Ok(None);
    }
    let weights = w.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    let mut last = id;
    let mut bias = None;
    let mut relu = false;
    if let Some((add, b)) = next_with_const(model, last, "Add")? {
        if b.len() == n && row_shaped(&b, n) {
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

/// `ab,bc->ac` with three distinct axes: a plain matrix product.
fn is_plain_matmul(axes: &str) -> bool {
    let Some((inputs, output)) = axes.split_once("->") else {
        return false;
    };
    let Some((a, b)) = inputs.split_once(',') else {
        return false;
    };
    let (a, b, o): (Vec<char>, Vec<char>, Vec<char>) = (
        a.chars().collect(),
        b.chars().collect(),
        output.chars().collect(),
    );
    a.len() == 2
        && b.len() == 2
        && o.len() == 2
        && a[1] == b[0]
        && o == [a[0], b[1]]
        && a[0] != a[1]
        && b[1] != a[0]
        && b[1] != a[1]
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
        assert_eq!(ops.iter().filter(|o| *o == "Dense").count(), 3, "{ops:?}");
        assert!(!ops.iter().any(|o| o.contains("MatMul")), "{ops:?}");
        // The biases and ReLUs went into the layers.
        assert!(!ops.iter().any(|o| o == "Max" || o == "Add"), "{ops:?}");
    }

    #[test]
    fn only_plain_matrix_products_are_taken() {
        assert!(is_plain_matmul("mk,kn->mn"));
        assert!(is_plain_matmul("ab,bc->ac"));
        assert!(!is_plain_matmul("mk,nk->mn"));
        assert!(!is_plain_matmul("mk,kn->nm"));
        assert!(!is_plain_matmul("bmk,kn->bmn"));
        assert!(!is_plain_matmul("mk,km->mm"));
    }
}
