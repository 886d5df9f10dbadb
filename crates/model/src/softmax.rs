//! A softmax over short rows, swapped in for tract's after optimization.
//!
//! tract 0.23 runs an `f32` softmax whose rows are not a multiple of 4 long (a classifier's 2
//! or 3 classes) row by row through three vectorized kernels, each call paying for a scratch
//! buffer lookup: on the bench MLP (256 rows of 2) that was a third of the whole run. Here a
//! row is a max, `exp`, a sum and one multiplication by the sum's reciprocal, in place, as
//! onnxruntime's MLAS computes it.
//!
//! `exp` is ours ([`exp_nonpositive`]), not libm's: glibc picks an AVX-encoded `expf`, and
//! a call to it from this crate's SSE code just after tract's AVX-512 matrix kernel (which
//! leaves the registers' upper halves dirty) paid a state transition into and out of every
//! call. On the bench MLP that made the softmax of 2 classes more than half of a batch's time.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::nn::{Softmax, SoftmaxKind};
use tract_onnx::tract_hir::internal::*;

/// Replaces every `f32` softmax over the trailing axes in `model` by [`RowSoftmax`].
pub(crate) fn swap_in(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes.len() {
        let Some(op) = model.nodes[id].op_as::<Softmax>() else {
            continue;
        };
        let fact = model.outlet_fact(model.nodes[id].inputs[0])?;
        let rank = fact.rank();
        let mut axes = op.axes.clone();
        axes.sort_unstable();
        let trailing = !axes.is_empty()
            && axes.len() <= rank
            && axes
                .iter()
                .enumerate()
                .all(|(i, &a)| a == rank - axes.len() + i);
        if op.kind != SoftmaxKind::Softmax
            || op.quant_output_dt.is_some()
            || fact.datum_type != DatumType::F32
            || !trailing
        {
            continue;
        }
        let row_axes = axes.len();
        model.nodes[id].op = Box::new(RowSoftmax { row_axes });
    }
    Ok(())
}

/// Softmax of `f32` rows: the last `row_axes` axes make a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowSoftmax {
    row_axes: usize,
}

impl Op for RowSoftmax {
    fn name(&self) -> StaticName {
        "RowSoftmax".into()
    }

    op_as_typed_op!();
}

impl EvalOp for RowSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let mut t = input.into_tensor();
        let shape = t.shape();
        let row: usize = shape[shape.len() - self.row_axes..].iter().product();
        if row > 0 {
            let mut plain = t.try_as_plain_ram_mut()?;
            softmax_rows(plain.as_slice_mut::<f32>()?, row);
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for RowSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

/// Every row (`row` values) of `data`, in place: each row's maximum taken away, then `exp`
/// over the whole buffer in one loop, which the compiler vectorizes across rows (a row of a
/// classifier's 2 or 3 classes is too short to vectorize alone), then each row times its
/// sum's reciprocal. Element by element the same arithmetic as one row at a time.
fn softmax_rows(data: &mut [f32], row: usize) {
    for r in data.chunks_exact_mut(row) {
        let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // below -87 `exp` leaves the normal range (and `exp_nonpositive` its domain); the
        // clamped value, about 1.6e-38, is as good as nothing beside the row's maximum's 1
        r.iter_mut().for_each(|v| *v = (*v - max).max(-87.0));
    }
    data.iter_mut().for_each(|v| *v = exp_nonpositive(*v));
    for r in data.chunks_exact_mut(row) {
        let mut sum = 0.0f32;
        r.iter().for_each(|v| sum += v);
        let scale = sum.recip();
        r.iter_mut().for_each(|v| *v *= scale);
    }
}

/// `e^x` for `x` in [-87, 0], within 2 units in the last place: Cephes' `expf`, a
/// polynomial on `x - n ln 2` scaled by `2^n`, in plain arithmetic (no libm call).
#[inline]
fn exp_nonpositive(x: f32) -> f32 {
    debug_assert!((-87.0..=0.0).contains(&x), "{x} is outside [-87, 0]");
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Cody and Waite's split of ln 2: `n * LN2_HI` is exact for the n here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and taking away 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n is in [-126, 0], so 2^n is a normal f32 built from its exponent bits.
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::{exp_nonpositive, softmax_rows};

    fn softmax(row: &mut [f32]) {
        softmax_rows(row, row.len());
    }

    #[test]
    fn exp_is_within_two_units_in_the_last_place_of_libms() {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = 0;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            worst = worst.max(ulps(exp_nonpositive(x), x.exp()));
        }
        for x in [
            0.0f32,
            -0.0,
            -1e-30,
            -0.5,
            -std::f32::consts::LN_2,
            -1.0,
            -86.999_99,
            -87.0,
        ] {
            worst = worst.max(ulps(exp_nonpositive(x), x.exp()));
        }
        assert!(worst <= 2, "{worst} units in the last place");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-87.0).is_normal());
    }

    #[test]
    fn a_row_sums_to_one_and_keeps_its_order() {
        let mut row = [1.0f32, 3.0, 2.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > row[2] && row[2] > row[0]);
        let mut big = [1000.0f32, 1000.0];
        softmax(&mut big);
        assert_eq!(big, [0.5, 0.5]);
        let mut far = [0.0f32, -1000.0];
        softmax(&mut far);
        assert_eq!(far[0], 1.0);
        assert!(far[1] < 1e-37);
    }

    #[test]
    fn rows_together_are_rows_one_at_a_time() {
        let data: Vec<f32> = (0..3 * 7).map(|i| (i as f32 * 1.7).sin() * 40.0).collect();
        let mut together = data.clone();
        softmax_rows(&mut together, 3);
        for (i, chunk) in data.chunks_exact(3).enumerate() {
            let mut alone = chunk.to_vec();
            softmax(&mut alone);
            assert_eq!(alone, together[i * 3..i * 3 + 3]);
        }
    }
}
