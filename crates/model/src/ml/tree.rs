//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor`: our kernel, with onnxruntime's
//! aggregation semantics (`tree_ensemble_aggregator.h`).
//!
//! Layout: every node of every tree in flat arrays (structure of arrays) indexed by one node
//! number: `feature` (or [`LEAF`]), `threshold`, `left` (taken when the comparison holds),
//! `right`, `flags` (the comparison and the missing-value rule). A leaf keeps the range of its
//! weights in `left`/`right` (first, count) and, as onnxruntime does for one-target ensembles,
//! its first weight in `threshold`. Rows are walked in blocks: for each block of
//! [`BLOCK`] rows, every tree in turn walks every row of the block, so a tree's nodes stay in
//! cache while the block's scores accumulate. Nothing on that path allocates or fails.

use std::collections::{HashMap, HashSet};

use tract_onnx::tract_hir::internal::*;

use super::attrs::{AttrError, Attrs};
use super::post::{logistic, probit, PostTransform};
use super::{as_f32, rows_cols, tensor, Kernel, OutShape, OutSpec, OutType};

/// `feature` of a leaf.
const LEAF: u32 = u32::MAX;
/// Rows walked together through each tree.
const BLOCK: usize = 128;
/// `flags` bit: a NaN feature takes the true branch.
const MISSING_TRUE: u8 = 0x10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Leq = 0,
    Lt = 1,
    Gte = 2,
    Gt = 3,
    Eq = 4,
    Neq = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// The trees, flattened.
#[derive(Debug, Default)]
struct Forest {
    feature: Vec<u32>,
    threshold: Vec<f32>,
    left: Vec<u32>,
    right: Vec<u32>,
    flags: Vec<u8>,
    roots: Vec<u32>,
    weight_target: Vec<u32>,
    weight_value: Vec<f32>,
    /// The one comparison all branches use, if they do.
    same_mode: Option<Mode>,
    has_missing: bool,
    max_feature: usize,
}

impl Forest {
    fn parse(attrs: &Attrs, prefix: &str, n_targets: usize) -> Result<Forest, AttrError> {
        attrs.refuse(&[
            "nodes_values_as_tensor",
            "base_values_as_tensor",
            "class_weights_as_tensor",
            "target_weights_as_tensor",
        ])?;
        let tree_ids = attrs.ints("nodes_treeids");
        let node_ids = attrs.ints("nodes_nodeids");
        let features = attrs.ints("nodes_featureids");
        let values = attrs.floats("nodes_values");
        let modes = attrs.strings("nodes_modes");
        let trues = attrs.ints("nodes_truenodeids");
        let falses = attrs.ints("nodes_falsenodeids");
        let missing = attrs.ints("nodes_missing_value_tracks_true");
        let n = tree_ids.len();
        if n == 0 {
            return Err(attrs.error("the ensemble has no nodes"));
        }
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", features.len()),
            ("nodes_values", values.len()),
            ("nodes_modes", modes.len()),
            ("nodes_truenodeids", trues.len()),
            ("nodes_falsenodeids", falses.len()),
        ] {
            if len != n {
                return Err(attrs.error(format!("{name} has {len} values, expected {n}")));
            }
        }
        if !missing.is_empty() && missing.len() != n {
            return Err(attrs.error("nodes_missing_value_tracks_true has the wrong length"));
        }
        let mut index = HashMap::with_capacity(n);
        for i in 0..n {
            if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
                return Err(attrs.error(format!(
                    "node {} of tree {} is defined twice",
                    node_ids[i], tree_ids[i]
                )));
            }
        }
        let mut f = Forest {
            feature: vec![LEAF; n],
            threshold: values.clone(),
            left: vec![0; n],
            right: vec![0; n],
            flags: vec![0; n],
            ..Forest::default()
        };
        let mut first_mode = None;
        let mut same = true;
        for i in 0..n {
            let mode = match modes[i].as_slice() {
                b"LEAF" => None,
                b"BRANCH_LEQ" => Some(Mode::Leq),
                b"BRANCH_LT" => Some(Mode::Lt),
                b"BRANCH_GTE" => Some(Mode::Gte),
                b"BRANCH_GT" => Some(Mode::Gt),
                b"BRANCH_EQ" => Some(Mode::Eq),
                b"BRANCH_NEQ" => Some(Mode::Neq),
                other => {
                    return Err(attrs.error(format!(
                        "unknown node mode {:?}",
                        String::from_utf8_lossy(other)
                    )))
                }
            };
            let Some(mode) = mode else { continue };
            match first_mode {
                None => first_mode = Some(mode),
                Some(m) if m != mode => same = false,
                _ => {}
            }
            let feature = attrs.index("nodes_featureids", features[i])?;
            f.max_feature = f.max_feature.max(feature);
            f.feature[i] =
                u32::try_from(feature).map_err(|_| attrs.error("feature id too large"))?;
            let child = |id: i64, which: &str| -> Result<u32, AttrError> {
                match index.get(&(tree_ids[i], id)) {
                    Some(&c) if c != i => Ok(c as u32),
                    _ => Err(attrs.error(format!(
                        "node {} of tree {}: {which} child {id} does not exist",
                        node_ids[i], tree_ids[i]
                    ))),
                }
            };
            f.left[i] = child(trues[i], "true")?;
            f.right[i] = child(falses[i], "false")?;
            let tracks = missing.get(i).is_some_and(|&m| m == 1);
            f.has_missing |= tracks;
            f.flags[i] = mode as u8 | if tracks { MISSING_TRUE } else { 0 };
        }
        f.same_mode = if same { first_mode } else { None };
        // a tree starts where its id changes, as onnxruntime counts them
        let mut previous = None;
        for (i, &tree) in tree_ids.iter().enumerate() {
            if previous != Some(tree) {
                f.roots.push(i as u32);
            }
            previous = Some(tree);
        }
        // leaf weights, in (tree, node) order
        let w_trees = attrs.ints(&format!("{prefix}_treeids"));
        let w_nodes = attrs.ints(&format!("{prefix}_nodeids"));
        let w_ids = attrs.ints(&format!("{prefix}_ids"));
        let w_values = attrs.floats(&format!("{prefix}_weights"));
        let m = w_ids.len();
        if w_trees.len() != m || w_nodes.len() != m || w_values.len() != m {
            return Err(attrs.error(format!("{prefix}_* attributes differ in length")));
        }
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by_key(|&k| (w_trees[k], w_nodes[k]));
        let mut n_weights = vec![0u32; n];
        for k in order {
            let Some(&leaf) = index.get(&(w_trees[k], w_nodes[k])) else {
                return Err(attrs.error(format!(
                    "weight for node {} of tree {} which does not exist",
                    w_nodes[k], w_trees[k]
                )));
            };
            if f.feature[leaf] != LEAF {
                continue; // onnxruntime ignores weights on branches
            }
            let target = attrs.index(&format!("{prefix}_ids"), w_ids[k])?;
            if target >= n_targets {
                return Err(attrs.error(format!(
                    "{prefix}_ids has {target}, expected below {n_targets}"
                )));
            }
            if n_weights[leaf] == 0 {
                f.left[leaf] = f.weight_value.len() as u32;
                f.threshold[leaf] = w_values[k];
            }
            n_weights[leaf] += 1;
            f.weight_target.push(target as u32);
            f.weight_value.push(w_values[k]);
        }
        for i in 0..n {
            if f.feature[i] == LEAF {
                if n_weights[i] == 0 {
                    return Err(attrs.error(format!(
                        "leaf {} of tree {} has no weight",
                        node_ids[i], tree_ids[i]
                    )));
                }
                f.right[i] = n_weights[i];
            }
        }
        f.check_acyclic(attrs)?;
        Ok(f)
    }

    /// Refuses a graph of nodes that loops, which would never reach a leaf.
    fn check_acyclic(&self, attrs: &Attrs) -> Result<(), AttrError> {
        for &root in &self.roots {
            let mut stack = vec![(root as usize, 0usize)];
            let mut seen = HashSet::new();
            while let Some((node, depth)) = stack.pop() {
                if depth > self.feature.len() || !seen.insert(node) {
                    return Err(attrs.error("a tree has a cycle or a shared node"));
                }
                if self.feature[node] != LEAF {
                    stack.push((self.left[node] as usize, depth + 1));
                    stack.push((self.right[node] as usize, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// The leaf `x` reaches from `root`.
    #[inline(always)]
    fn leaf(&self, root: u32, x: &[f32]) -> usize {
        match (self.same_mode, self.has_missing) {
            (Some(Mode::Leq), false) => self.walk(root, x, |v, t| v <= t),
            (Some(Mode::Lt), false) => self.walk(root, x, |v, t| v < t),
            (Some(Mode::Gte), false) => self.walk(root, x, |v, t| v >= t),
            (Some(Mode::Gt), false) => self.walk(root, x, |v, t| v > t),
            _ => self.walk_general(root, x),
        }
    }

    #[inline(always)]
    fn walk(&self, root: u32, x: &[f32], cmp: impl Fn(f32, f32) -> bool) -> usize {
        let mut n = root as usize;
        loop {
            let f = self.feature[n];
            if f == LEAF {
                return n;
            }
            let v = x[f as usize];
            n = if cmp(v, self.threshold[n]) {
                self.left[n]
            } else {
                self.right[n]
            } as usize;
        }
    }

    fn walk_general(&self, root: u32, x: &[f32]) -> usize {
        let mut n = root as usize;
        loop {
            let f = self.feature[n];
            if f == LEAF {
                return n;
            }
            let v = x[f as usize];
            let t = self.threshold[n];
            let flags = self.flags[n];
            let holds = match flags & 0x0f {
                0 => v <= t,
                1 => v < t,
                2 => v >= t,
                3 => v > t,
                4 => v == t,
                _ => v != t,
            } || (flags & MISSING_TRUE != 0 && v.is_nan());
            n = if holds { self.left[n] } else { self.right[n] } as usize;
        }
    }

    fn weights(&self, leaf: usize) -> std::ops::Range<usize> {
        let first = self.left[leaf] as usize;
        first..first + self.right[leaf] as usize
    }
}

/// Scores of one block of rows, `n_targets` per row, with onnxruntime's "has a score" flags.
struct Scores {
    value: Vec<f32>,
    has: Vec<bool>,
}

impl Forest {
    /// Aggregates every tree's leaf for rows `x` (`rows` of `cols` features) into `scores`.
    fn accumulate(&self, x: &[f32], cols: usize, n_targets: usize, agg: Aggregate, s: &mut Scores) {
        let rows = x.len() / cols.max(1);
        s.value.clear();
        s.value.resize(rows * n_targets, 0.0);
        s.has.clear();
        s.has.resize(rows * n_targets, false);
        for &root in &self.roots {
            for r in 0..rows {
                let leaf = self.leaf(root, &x[r * cols..(r + 1) * cols]);
                let base = r * n_targets;
                for w in self.weights(leaf) {
                    let k = base + self.weight_target[w] as usize;
                    let v = self.weight_value[w];
                    match agg {
                        Aggregate::Sum | Aggregate::Average => s.value[k] += v,
                        Aggregate::Min => {
                            if !s.has[k] || v < s.value[k] {
                                s.value[k] = v
                            }
                        }
                        Aggregate::Max => {
                            if !s.has[k] || v > s.value[k] {
                                s.value[k] = v
                            }
                        }
                    }
                    s.has[k] = true;
                }
            }
        }
    }

    /// One-target ensembles, onnxruntime's `*1` path: the first weight of each leaf.
    fn accumulate_one(&self, x: &[f32], cols: usize, agg: Aggregate, s: &mut Scores) {
        let rows = x.len() / cols.max(1);
        s.value.clear();
        s.value.resize(rows, 0.0);
        s.has.clear();
        s.has.resize(rows, false);
        for &root in &self.roots {
            for r in 0..rows {
                let leaf = self.leaf(root, &x[r * cols..(r + 1) * cols]);
                let v = self.threshold[leaf];
                let (score, has) = (&mut s.value[r], &mut s.has[r]);
                match agg {
                    Aggregate::Sum | Aggregate::Average => *score += v,
                    Aggregate::Min => {
                        if !*has || v < *score {
                            *score = v;
                        }
                        *has = true;
                    }
                    Aggregate::Max => {
                        if !*has || v > *score {
                            *score = v;
                        }
                        *has = true;
                    }
                }
            }
        }
    }

    fn check_input(&self, cols: usize) -> TractResult<()> {
        if self.max_feature >= cols {
            bail!(
                "the trees read feature {} but the input has {cols} features",
                self.max_feature
            );
        }
        Ok(())
    }
}

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
        let mut s = Scores {
            value: Vec::with_capacity(BLOCK * c),
            has: Vec::with_capacity(BLOCK * c),
        };
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
        let mut s = Scores {
            value: Vec::with_capacity(BLOCK * t),
            has: Vec::with_capacity(BLOCK * t),
        };
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
