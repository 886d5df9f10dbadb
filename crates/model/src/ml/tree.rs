//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor`: our kernel, with onnxruntime's
//! aggregation semantics (`tree_ensemble_aggregator.h`).
//!
//! Layout: every node of every tree in flat arrays (structure of arrays) indexed by one node
//! number: `feature` (or `LEAF`), `threshold`, `left` (taken when the comparison holds),
//! `right`, `flags` (the comparison and the missing-value rule). A leaf keeps the range of its
//! weights in `left`/`right` (first, count). Rows are walked in blocks: for each block of
//! `BLOCK` rows, every tree in turn walks every row of the block, so a tree's nodes stay in
//! cache while the block's scores accumulate.
//!
//! When every branch uses one order comparison (`BRANCH_LEQ`, as scikit-learn exports, or
//! `LT`, `GTE`, `GT`), none tracks missing values and every leaf has as many weights, the
//! trees are also laid out compactly (`Fast`), and that is what runs: 16-byte nodes, each
//! tree breadth first with a branch's children adjacent, so that a step is
//! `child + !holds`, without a branch; a leaf's threshold is NaN, so it steps to itself, and
//! `LANES` rows walk a tree side by side for its depth, their loads overlapping. Node and
//! feature indices are masked to power-of-two sizes (each tree padded, the block's rows
//! copied into rows of a power-of-two width) so that the walk has no bounds checks either.
//! When every leaf adds to the same targets, sums skip the "has a score" bookkeeping.
//! The forest and its walk are in `forest`. Nothing on these paths allocates (buffers are reused from block to block) or fails.

use std::collections::HashSet;

use tract_onnx::tract_hir::internal::*;

use super::attrs::{AttrError, Attrs};
use super::post::{logistic, probit, PostTransform};
use super::{as_f32, rows_cols, tensor, Kernel, OutShape, OutSpec, OutType};

mod forest;
use forest::{Aggregate, Forest, Scores, BLOCK};

/// Class labels: integers or strings.
#[derive(Debug)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

/// `TreeEnsembleClassifier`.
#[derive(Debug)]
pub(crate) struct TreeClassifier {
    forest: Forest,
    labels: Labels,
    n_classes: usize,
    base_values: Vec<f32>,
    post: PostTransform,
    /// Two classes and the weights name only one of them.
    binary_case: bool,
    weights_all_positive: bool,
}

pub(crate) fn parse_classifier(attrs: &Attrs) -> Result<TreeClassifier, AttrError> {
    let ints = attrs.ints("classlabels_int64s");
    let strings = attrs.strings("classlabels_strings");
    let labels = if !strings.is_empty() {
        Labels::Strings(
            strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        )
    } else {
        Labels::Ints(ints)
    };
    let n_classes = match &labels {
        Labels::Ints(v) => v.len(),
        Labels::Strings(v) => v.len(),
    };
    if n_classes < 2 {
        return Err(attrs.error("a classifier needs at least two class labels"));
    }
    let forest = Forest::parse(attrs, "class", n_classes)?;
    let class_ids: HashSet<i64> = attrs.ints("class_ids").into_iter().collect();
    let weights_all_positive = attrs.floats("class_weights").iter().all(|&w| w >= 0.0);
    let base_values = attrs.floats("base_values");
    if base_values.len() > n_classes {
        return Err(attrs.error("more base_values than classes"));
    }
    Ok(TreeClassifier {
        forest,
        labels,
        n_classes,
        base_values,
        post: PostTransform::parse(attrs)?,
        binary_case: n_classes == 2 && class_ids.len() == 1,
        weights_all_positive,
    })
}

impl TreeClassifier {
    /// Turns one row's aggregated scores into its label (an index into the labels) and its
    /// output scores, as onnxruntime's `TreeAggregatorClassifier::FinalizeScores`.
    fn finalize(&self, value: &mut [f32], has: &mut [bool], out: &mut [f32]) -> usize {
        let base = &self.base_values;
        if self.n_classes > 2 {
            for (k, &b) in base.iter().enumerate() {
                if has[k] {
                    value[k] += b;
                } else {
                    value[k] = b;
                    has[k] = true;
                }
            }
            let mut best: Option<usize> = None;
            for k in 0..self.n_classes {
                if has[k] && best.is_none_or(|b| value[k] > value[b]) {
                    best = Some(k);
                }
            }
            for k in 0..self.n_classes {
                out[k] = if has[k] { value[k] } else { 0.0 };
            }
            self.post.apply(out);
            return best.unwrap_or(0);
        }
        // two classes
        let mut write_additional = -1;
        let mut single = false;
        match base.len() {
            2 => {
                if has[1] {
                    value[1] = base[1] + value[0];
                    value[0] = -value[1];
                } else {
                    value[1] += base[1];
                    value[0] += base[0];
                }
            }
            1 => {
                value[0] += base[0];
                single = !has[1];
            }
            _ => {
                write_additional = 3;
                single = !has[1];
            }
        }
        let pos_weight = if !single && has[1] {
            value[1]
        } else if has[0] {
            value[0]
        } else {
            0.0
        };
        let label = if self.binary_case {
            if self.weights_all_positive {
                if pos_weight > 0.5 {
                    write_additional = 0;
                    1
                } else {
                    write_additional = 1;
                    0
                }
            } else if pos_weight > 0.0 {
                write_additional = 2;
                1
            } else {
                write_additional = 3;
                0
            }
        } else {
            usize::from(pos_weight > 0.0)
        };
        if !single {
            for k in 0..2 {
                out[k] = if has[k] { value[k] } else { 0.0 };
            }
            self.post.apply(out);
        } else {
            let s = if has[0] { value[0] } else { 0.0 };
            if self.post == PostTransform::Probit {
                out[0] = probit(s);
                out[1] = 0.0;
            } else {
                match write_additional {
                    0 | 1 => {
                        out[0] = 1.0 - s;
                        out[1] = s;
                    }
                    2 | 3 if self.post == PostTransform::Logistic => {
                        out[0] = logistic(-s);
                        out[1] = logistic(s);
                    }
                    2 | 3 => {
                        out[0] = -s;
                        out[1] = s;
                    }
                    _ => {
                        out[0] = s;
                        out[1] = 0.0;
                    }
                }
            }
        }
        label
    }
}

impl Kernel for TreeClassifier {
    fn name(&self) -> &'static str {
        "TreeEnsembleClassifier"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        let label_dt = match self.labels {
            Labels::Ints(_) => DatumType::I64,
            Labels::Strings(_) => DatumType::String,
        };
        vec![
            OutSpec {
                dt: OutType::Fixed(label_dt),
                shape: OutShape::Rows,
            },
            OutSpec {
                dt: OutType::Fixed(DatumType::F32),
                shape: OutShape::RowsBy(self.n_classes),
            },
        ]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (rows, cols) = rows_cols(&inputs[0]);
        self.forest.check_input(cols)?;
        let x = as_f32(&inputs[0])?;
        let c = self.n_classes;
        let mut out = vec![0.0f32; rows * c];
        let mut label_ix = vec![0usize; rows];
        let mut s = Scores::with_capacity(BLOCK * c);
        for start in (0..rows).step_by(BLOCK) {
            let end = (start + BLOCK).min(rows);
            self.forest.accumulate(
                &x[start * cols..end * cols],
                cols,
                c,
                Aggregate::Sum,
                &mut s,
            );
            for r in start..end {
                let k = (r - start) * c;
                label_ix[r] = self.finalize(
                    &mut s.value[k..k + c],
                    &mut s.has[k..k + c],
                    &mut out[r * c..(r + 1) * c],
                );
            }
        }
        let labels = match &self.labels {
            Labels::Ints(l) => tensor(&[rows], label_ix.iter().map(|&i| l[i]).collect())?,
            Labels::Strings(l) => {
                tensor(&[rows], label_ix.iter().map(|&i| l[i].clone()).collect())?
            }
        };
        Ok(tvec!(labels, tensor(&[rows, c], out)?))
    }
}

/// `TreeEnsembleRegressor`.
#[derive(Debug)]
pub(crate) struct TreeRegressor {
    forest: Forest,
    n_targets: usize,
    aggregate: Aggregate,
    base_values: Vec<f32>,
    post: PostTransform,
}

pub(crate) fn parse_regressor(attrs: &Attrs) -> Result<TreeRegressor, AttrError> {
    let n_targets = attrs.index("n_targets", attrs.int_or("n_targets", 0))?;
    if n_targets == 0 {
        return Err(attrs.error("n_targets must be positive"));
    }
    let aggregate = match attrs.string_or("aggregate_function", "SUM").as_str() {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => return Err(attrs.error(format!("unknown aggregate_function {other:?}"))),
    };
    Ok(TreeRegressor {
        forest: Forest::parse(attrs, "target", n_targets)?,
        n_targets,
        aggregate,
        base_values: attrs.floats("base_values"),
        post: PostTransform::parse(attrs)?,
    })
}

// the loops follow onnxruntime's finalization, index by index
#[allow(clippy::needless_range_loop)]
impl Kernel for TreeRegressor {
    fn name(&self) -> &'static str {
        "TreeEnsembleRegressor"
    }

    fn outputs(&self) -> Vec<OutSpec> {
        vec![OutSpec {
            dt: OutType::Fixed(DatumType::F32),
            shape: OutShape::RowsBy(self.n_targets),
        }]
    }

    fn eval(&self, inputs: &[TValue]) -> TractResult<TVec<Tensor>> {
        let (rows, cols) = rows_cols(&inputs[0]);
        self.forest.check_input(cols)?;
        let x = as_f32(&inputs[0])?;
        let t = self.n_targets;
        let n_trees = self.forest.roots.len() as f32;
        let mut out = vec![0.0f32; rows * t];
        let mut s = Scores::with_capacity(BLOCK * t);
        let origin = if self.base_values.len() == 1 {
            self.base_values[0]
        } else {
            0.0
        };
        let use_base = self.base_values.len() == t;
        for start in (0..rows).step_by(BLOCK) {
            let end = (start + BLOCK).min(rows);
            let x = &x[start * cols..end * cols];
            if t == 1 {
                self.forest.accumulate_one(x, cols, self.aggregate, &mut s);
                for r in start..end {
                    let (v, has) = (s.value[r - start], s.has[r - start]);
                    let score = match self.aggregate {
                        Aggregate::Sum => v + origin,
                        Aggregate::Average => v / n_trees + origin,
                        Aggregate::Min | Aggregate::Max => {
                            if has {
                                v + origin
                            } else {
                                origin
                            }
                        }
                    };
                    out[r] = if self.post == PostTransform::Probit {
                        probit(score)
                    } else {
                        score
                    };
                }
                continue;
            }
            self.forest.accumulate(x, cols, t, self.aggregate, &mut s);
            for r in start..end {
                let k = (r - start) * t;
                let row = &mut out[r * t..(r + 1) * t];
                for j in 0..t {
                    let mut v = s.value[k + j];
                    match self.aggregate {
                        Aggregate::Sum => v += if use_base { self.base_values[j] } else { 0.0 },
                        Aggregate::Average => {
                            v = v / n_trees + if use_base { self.base_values[j] } else { 0.0 }
                        }
                        Aggregate::Min | Aggregate::Max => {
                            v += if use_base { self.base_values[j] } else { 0.0 }
                        }
                    }
                    row[j] = if s.has[k + j] { v } else { 0.0 };
                }
                self.post.apply(row);
            }
        }
        Ok(tvec!(tensor(&[rows, t], out)?))
    }
}
