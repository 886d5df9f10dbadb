//! `x op c` with a constant row `c` (a scaler's `Sub` of the means, `Div` by the scales, a
//! bias `Add`), swapped in for tract's binary op after optimization.
//!
//! With the batch dimension symbolic, tract 0.23 evaluates `[N, k] op [1, k]` through
//! ndarray's generic broadcasting zip, one closure call per element: on the bench MLP its
//! `Sub` and `Mul` took a quarter of the run. Here the input is walked row by row against the
//! constant row, in place, which the compiler vectorizes. Each element is computed by the same
//! `f32` operation on the same operands, so results are bit-identical.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_hir::internal::*;

/// The arithmetic of a [`RowOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// Replaces every `f32` binary `Add`/`Sub`/`Mul`/`Div` in `model` whose one operand is a
/// constant spanning only the other's trailing axes by [`RowOp`].
pub(crate) fn swap_in(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes.len() {
        let Some(TypedBinOp(mini, None)) = model.nodes[id].op_as::<TypedBinOp>() else {
            continue;
        };
        let arith = match mini.name() {
            "Add" => Arith::Add,
            "Sub" => Arith::Sub,
            "Mul" => Arith::Mul,
            "Div" => Arith::Div,
            _ => continue,
        };
        let inputs = &model.nodes[id].inputs;
        if inputs.len() != 2 {
            continue;
        }
        let a = model.outlet_fact(inputs[0])?.clone();
        let b = model.outlet_fact(inputs[1])?.clone();
        let out = model.outlet_fact(OutletId::new(id, 0))?.clone();
        // the variable operand and the constant one; `const_first` when the constant is `a`
        let (x, c, const_first) = match (&a.konst, &b.konst) {
            (None, Some(c)) => (&a, c.clone(), false),
            (Some(c), None) => (&b, c.clone(), true),
            _ => continue,
        };
        if x.datum_type != DatumType::F32
            || c.datum_type() != DatumType::F32
            || out.datum_type != DatumType::F32
            || out.shape != x.shape
            || !spans_trailing_axes(&x.shape, c.shape())
        {
            continue;
        }
        let row = c.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        if row.is_empty() {
            continue;
        }
        model.nodes[id].op = Box::new(RowOp {
            arith,
            const_first,
            row: row.into(),
        });
    }
    Ok(())
}

/// Whether a constant of `c` dims is a row repeated along the leading axes of `x`: the same
/// rank, ones first, then exactly `x`'s (known) trailing dims.
fn spans_trailing_axes(x: &ShapeFact, c: &[usize]) -> bool {
    let start = c.iter().take_while(|&&d| d == 1).count();
    c.len() == x.rank()
        && c[start..]
            .iter()
            .zip(x.iter().skip(start))
            .all(|(&d, xd)| xd.to_usize().ok() == Some(d))
}

/// `x op row` (or `row op x`), row by row, in place. It keeps tract's two inputs (the
/// constant one, ignored, is the row it holds).
#[derive(Debug, Clone)]
pub(crate) struct RowOp {
    arith: Arith,
    const_first: bool,
    row: Arc<[f32]>,
}

impl PartialEq for RowOp {
    fn eq(&self, other: &Self) -> bool {
        self.arith == other.arith
            && self.const_first == other.const_first
            && Arc::ptr_eq(&self.row, &other.row)
    }
}

impl Eq for RowOp {}

/// `f` of every element of `data` and the element of `row` in its column.
#[inline(always)]
fn each(data: &mut [f32], row: &[f32], f: impl Fn(f32, f32) -> f32) {
    for chunk in data.chunks_exact_mut(row.len()) {
        for (v, &c) in chunk.iter_mut().zip(row) {
            *v = f(*v, c);
        }
    }
}

impl Op for RowOp {
    fn name(&self) -> StaticName {
        "RowOp".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} by a row of {}{}",
            self.arith,
            self.row.len(),
            if self.const_first { ", row first" } else { "" }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for RowOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (a, b) = args_2!(inputs);
        let mut t = if self.const_first { b } else { a }.into_tensor();
        let mut plain = t.try_as_plain_ram_mut()?;
        let data = plain.as_slice_mut::<f32>()?;
        let row = &*self.row;
        if data.len() % row.len() != 0 {
            bail!("{} values cannot be rows of {}", data.len(), self.row.len());
        }
        match (self.arith, self.const_first) {
            (Arith::Add, _) => each(data, row, |x, c| x + c),
            (Arith::Mul, _) => each(data, row, |x, c| x * c),
            (Arith::Sub, false) => each(data, row, |x, c| x - c),
            (Arith::Sub, true) => each(data, row, |x, c| c - x),
            (Arith::Div, false) => each(data, row, |x, c| x / c),
            (Arith::Div, true) => each(data, row, |x, c| c / x),
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for RowOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[usize::from(self.const_first)];
        Ok(tvec!(x.without_value()))
    }

    as_op!();
}
