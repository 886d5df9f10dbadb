//! The ONNX-ML operators we run ourselves, plugged into tract.
//!
//! Each operator is a [`Kernel`]: attributes parsed once at load into flat arrays, an output
//! signature ([`OutSpec`]), and an `eval` over whole tensors. One generic pair of tract ops
//! wraps every kernel: [`MlExpansion`] takes part in tract's type and shape inference, then wires
//! [`MlOp`], the typed op tract's plan evaluates. Registering a kernel is one line in
//! [`register`].

mod attrs;
mod linear;
mod post;
mod svm;
mod transform;
mod tree;

use std::fmt;
use std::sync::Arc;

use tract_onnx::pb::NodeProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::*;
use tract_onnx::tract_hir::internal::*;

pub(crate) use attrs::AttrError;

/// The ONNX-ML operators of ours, by op type. They replace tract's own where tract has one.
pub(crate) const OPS: &[&str] = &[
    "ArrayFeatureExtractor",
    "Binarizer",
    "CategoryMapper",
    "Imputer",
    "LabelEncoder",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "OneHotEncoder",
    "Scaler",
    "SVMClassifier",
    "SVMRegressor",
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
];

/// Puts our kernels into tract's ONNX operator table.
pub(crate) fn register(onnx: &mut tract_onnx::Onnx) {
    let reg = &mut onnx.op_register;
    reg.insert("ArrayFeatureExtractor", |_, n| {
        build(n, transform::ArrayFeatureExtractor::parse)
    });
    reg.insert("Binarizer", |_, n| build(n, transform::Binarizer::parse));
    reg.insert("CategoryMapper", |_, n| {
        build(n, transform::CategoryMapper::parse)
    });
    reg.insert("Imputer", |_, n| build(n, transform::Imputer::parse));
    reg.insert("LabelEncoder", |_, n| {
        build(n, transform::LabelEncoder::parse)
    });
    reg.insert("LinearClassifier", |_, n| {
        build(n, linear::LinearClassifier::parse)
    });
    reg.insert("LinearRegressor", |_, n| {
        build(n, linear::LinearRegressor::parse)
    });
    reg.insert("Normalizer", |_, n| build(n, transform::Normalizer::parse));
    reg.insert("OneHotEncoder", |_, n| {
        build(n, transform::OneHotEncoder::parse)
    });
    reg.insert("Scaler", |_, n| build(n, transform::Scaler::parse));
    reg.insert("SVMClassifier", |_, n| build(n, svm::SvmClassifier::parse));
    reg.insert("SVMRegressor", |_, n| build(n, svm::SvmRegressor::parse));
    reg.insert("TreeEnsembleClassifier", |_, n| {
        build(n, tree::parse_classifier)
    });
    reg.insert("TreeEnsembleRegressor", |_, n| {
        build(n, tree::parse_regressor)
    });
}

type Built = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

fn build<K: Kernel>(node: &NodeProto, parse: fn(&attrs::Attrs) -> Result<K, AttrError>) -> Built {
    let kernel = parse(&attrs::Attrs::new(node))?;
    Ok((
        expand(MlExpansion {
            kernel: Arc::new(kernel),
        }),
        vec![],
    ))
}

/// The element type of an output.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OutType {
    /// Always this type.
    Fixed(DatumType),
    /// The type of input 0.
    AsInput,
}

/// The shape of an output, in terms of input 0's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OutShape {
    /// The same shape as input 0.
    AsInput,
    /// `[rows]`: one value per row of input 0.
    Rows,
    /// `[rows, n]`.
    RowsBy(usize),
    /// Input 0's shape with one more axis of `n` at the end.
    Append(usize),
    /// Input 0's shape with its last axis replaced by the element count of input 1.
    LastFromInput1,
}

/// One output of a kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutSpec {
    pub dt: OutType,
    pub shape: OutShape,
}

/// An ONNX-ML operator evaluated by code of ours.
pub(crate) trait Kernel: fmt::Debug + Send + Sync + 'static {
    /// The ONNX op type.
    fn name(&self) -> &'static str;
    /// How many inputs it takes.
    fn n_inputs(&self) -> usize {
        1
    }
    /// Its outputs.
    fn outputs(&self) -> Vec<OutSpec>;
    /// Runs it; the inputs are the op's inputs, already checked for count.
    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>>;
}

/// The inference-time face of a kernel: shape and type rules, then wiring of [`MlOp`].
#[derive(Clone)]
pub(crate) struct MlExpansion {
    kernel: Arc<dyn Kernel>,
}

impl fmt::Debug for MlExpansion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kernel.fmt(f)
    }
}

impl Expansion for MlExpansion {
    fn name(&self) -> StaticName {
        self.kernel.name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.kernel.outputs().len())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, self.kernel.n_inputs())?;
        let specs = self.kernel.outputs();
        check_output_arity(outputs, specs.len())?;
        for (out, spec) in outputs.iter().zip(specs) {
            match spec.dt {
                OutType::Fixed(dt) => s.equals(&out.datum_type, dt)?,
                OutType::AsInput => s.equals(&out.datum_type, &inputs[0].datum_type)?,
            }
            match spec.shape {
                OutShape::AsInput => s.equals(&out.shape, &inputs[0].shape)?,
                OutShape::Rows => {
                    s.equals(&out.rank, 1)?;
                    s.equals(&out.shape[0], &inputs[0].shape[0])?;
                }
                OutShape::RowsBy(n) => {
                    s.equals(&out.rank, 2)?;
                    s.equals(&out.shape[0], &inputs[0].shape[0])?;
                    s.equals(&out.shape[1], (n as i64).to_dim())?;
                }
                OutShape::Append(n) => {
                    s.equals(&out.rank, inputs[0].rank.bex() + 1)?;
                    s.given(&inputs[0].rank, move |s, rank| {
                        let rank = rank as usize;
                        for axis in 0..rank {
                            s.equals(&out.shape[axis], &inputs[0].shape[axis])?;
                        }
                        s.equals(&out.shape[rank], (n as i64).to_dim())
                    })?;
                }
                OutShape::LastFromInput1 => {
                    s.equals(&out.rank, &inputs[0].rank)?;
                    s.given_2(
                        &inputs[0].rank,
                        &inputs[1].shape,
                        move |s, rank, indices| {
                            let rank = rank as usize;
                            for axis in 0..rank.saturating_sub(1) {
                                s.equals(&out.shape[axis], &inputs[0].shape[axis])?;
                            }
                            let count = indices.iter().product::<TDim>();
                            if rank > 0 {
                                s.equals(&out.shape[rank - 1], count)?;
                            }
                            Ok(())
                        },
                    )?;
                }
            }
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(
            prefix,
            MlOp {
                kernel: self.kernel.clone(),
            },
            inputs,
        )
    }
}

/// The typed op tract's plan runs: calls the kernel.
#[derive(Clone)]
pub(crate) struct MlOp {
    kernel: Arc<dyn Kernel>,
}

impl fmt::Debug for MlOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kernel.fmt(f)
    }
}

impl PartialEq for MlOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.kernel, &other.kernel)
    }
}

impl Eq for MlOp {}

impl Op for MlOp {
    fn name(&self) -> StaticName {
        self.kernel.name().into()
    }

    op_as_typed_op!();
}

impl EvalOp for MlOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if inputs.len() != self.kernel.n_inputs() {
            bail!(
                "{} takes {} inputs, got {}",
                self.kernel.name(),
                self.kernel.n_inputs(),
                inputs.len()
            );
        }
        Ok(self
            .kernel
            .eval(&inputs)?
            .into_iter()
            .map(|t| t.into_tvalue())
            .collect())
    }
}

impl TypedOp for MlOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs.first().context("no input")?;
        self.kernel
            .outputs()
            .iter()
            .map(|spec| {
                let dt = match spec.dt {
                    OutType::Fixed(dt) => dt,
                    OutType::AsInput => input.datum_type,
                };
                let dims: TVec<TDim> = match spec.shape {
                    OutShape::AsInput => input.shape.iter().cloned().collect(),
                    OutShape::Rows => tvec!(rows(input)),
                    OutShape::RowsBy(n) => tvec!(rows(input), n.to_dim()),
                    OutShape::Append(n) => input
                        .shape
                        .iter()
                        .cloned()
                        .chain(std::iter::once(n.to_dim()))
                        .collect(),
                    OutShape::LastFromInput1 => {
                        let count = inputs.get(1).context("no indices")?.shape.iter().product();
                        let mut dims: TVec<TDim> = input.shape.iter().cloned().collect();
                        match dims.last_mut() {
                            Some(last) => *last = count,
                            None => bail!("ArrayFeatureExtractor needs an input of rank 1 or more"),
                        }
                        dims
                    }
                };
                Ok(dt.fact(dims))
            })
            .collect()
    }

    as_op!();
}

/// The batch dimension: the first axis, or 1 for a single row given as a vector.
fn rows(fact: &TypedFact) -> TDim {
    if fact.rank() >= 2 {
        fact.shape[0].clone()
    } else {
        1.to_dim()
    }
}

/// A plain view of an input as `[rows, cols]` (a vector is one row).
pub(crate) fn rows_cols(t: &Tensor) -> (usize, usize) {
    match t.shape() {
        [] => (1, 1),
        [n] => (1, *n),
        [n, rest @ ..] => (*n, rest.iter().product()),
    }
}

/// Running sums a dot product keeps: one sum is a chain of dependent adds (a float sum cannot
/// be reordered by the compiler), eight independent ones vectorize.
const LANES: usize = 8;

/// `sum(f(a[i], b[i]))` over the common length, in [`LANES`] running sums.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    for (l, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += f(x, y);
    }
    acc.iter().sum()
}

/// `a . b` over their common length.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// The squared distance between `a` and `b` over their common length.
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// An input as `f32` elements: borrowed when it is `f32`, converted (as onnxruntime does, by
/// a C cast) when it is another number type.
pub(crate) fn as_f32(t: &Tensor) -> TractResult<std::borrow::Cow<'_, [f32]>> {
    use std::borrow::Cow;
    let view = t.try_as_plain_ram()?;
    Ok(match t.datum_type() {
        DatumType::F32 => Cow::Borrowed(view.as_slice::<f32>()?),
        DatumType::F64 => Cow::Owned(view.as_slice::<f64>()?.iter().map(|&v| v as f32).collect()),
        DatumType::I64 => Cow::Owned(view.as_slice::<i64>()?.iter().map(|&v| v as f32).collect()),
        DatumType::I32 => Cow::Owned(view.as_slice::<i32>()?.iter().map(|&v| v as f32).collect()),
        dt => bail!("expected a numeric input, got {dt:?}"),
    })
}

/// A tensor from a shape and a vector of elements.
pub(crate) fn tensor<T: Datum>(shape: &[usize], data: Vec<T>) -> TractResult<Tensor> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, data)?.into_tensor())
}

#[cfg(test)]
mod tests {
    use super::{dot, squared_distance};

    #[test]
    fn lane_sums_are_the_plain_sums_at_every_length() {
        for n in [0usize, 1, 7, 8, 9, 30, 64, 65] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos() - 0.5).collect();
            let plain_dot: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
            let plain_d2: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) * (x - y)) as f64)
                .sum();
            assert!(
                (dot(&a, &b) as f64 - plain_dot).abs() < 1e-5,
                "dot, n = {n}"
            );
            assert!(
                (squared_distance(&a, &b) as f64 - plain_d2).abs() < 1e-5,
                "squared distance, n = {n}"
            );
        }
        // Over the common length only.
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }
}
