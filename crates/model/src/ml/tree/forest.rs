//! The trees of an ensemble, flattened, and walked for blocks of rows (see [`super`] for the
//! layout): parsing the ONNX attributes, the compact branch-free layout, and the walk that
//! aggregates every tree's leaf weights.

use std::collections::{HashMap, HashSet};

use tract_onnx::tract_hir::internal::*;

use super::super::attrs::{AttrError, Attrs};

/// `feature` of a leaf.
const LEAF: u32 = u32::MAX;
/// Rows walked together through each tree.
pub(super) const BLOCK: usize = 128;
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
pub(super) enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// The trees, flattened.
#[derive(Debug, Default)]
pub(super) struct Forest {
    pub(super) feature: Vec<u32>,
    pub(super) threshold: Vec<f32>,
    pub(super) left: Vec<u32>,
    pub(super) right: Vec<u32>,
    pub(super) flags: Vec<u8>,
    pub(super) roots: Vec<u32>,
    /// Leaf weights, (target, value), each leaf's together.
    pub(super) weights: Vec<(u32, f32)>,
    /// The one comparison all branches use, if they do.
    same_mode: Option<Mode>,
    pub(super) has_missing: bool,
    pub(super) max_feature: usize,
    /// The compact layout walked without branches, when every branch uses one of the four
    /// order comparisons and none tracks missing values.
    fast: Option<Fast>,
}

/// A node of [`Fast`]: 16 bytes, the fields one step reads. A branch's children are
/// adjacent: the true child at `child`, the false one at `child + 1`. A leaf has a NaN
/// `threshold`, so every comparison fails and it steps to `child + 1`, itself; `leaf` indexes
/// its weight range ([`INTERNAL`] on branches).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Node {
    threshold: f32,
    feature: u32,
    child: u32,
    leaf: u32,
}

/// `Node::leaf` of a branch.
const INTERNAL: u32 = u32::MAX;
/// Rows walked side by side through a tree.
const LANES: usize = 8;
/// The narrowest and widest row blocks of [`Fast`].
const MIN_WIDTH: usize = 32;
const MAX_WIDTH: usize = 256;

/// The trees re-laid out for a branch-free walk: each tree's nodes breadth first, children
/// adjacent, so a step is `child + !holds`.
#[derive(Debug)]
struct Fast {
    mode: Mode,
    /// Rows are copied into blocks this wide (a power of two past the highest feature read),
    /// so that a masked feature index needs no bounds check.
    width: usize,
    nodes: Vec<Node>,
    /// How many weights every leaf has.
    per_leaf: usize,
    /// The targets of every leaf's weights, in order, when all leaves have the same.
    targets: Option<Vec<u32>>,
    trees: Vec<FastTree>,
}

#[derive(Debug, Clone, Copy)]
struct FastTree {
    /// Where its nodes start; children are numbered from there.
    base: u32,
    /// How many nodes it has, padded to a power of two.
    size: u32,
    /// Its longest root-to-leaf path: rows walk it side by side for this many steps, a leaf
    /// stepping to itself.
    depth: u32,
}

impl Forest {
    pub(super) fn parse(
        attrs: &Attrs,
        prefix: &str,
        n_targets: usize,
    ) -> Result<Forest, AttrError> {
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
                f.left[leaf] = f.weights.len() as u32;
                f.threshold[leaf] = w_values[k];
            }
            n_weights[leaf] += 1;
            f.weights.push((target as u32, w_values[k]));
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
        if !f.has_missing
            && matches!(
                f.same_mode,
                Some(Mode::Leq | Mode::Lt | Mode::Gte | Mode::Gt)
            )
        {
            f.fast = f.compact();
        }
        Ok(f)
    }

    /// The compact layout of [`Fast`], or `None` if it does not apply: leaves with different
    /// numbers of weights, features past [`MAX_WIDTH`], indices that would not fit.
    fn compact(&self) -> Option<Fast> {
        let width = (self.max_feature + 1).next_power_of_two().max(MIN_WIDTH);
        if width > MAX_WIDTH {
            return None;
        }
        let mut fast = Fast {
            mode: self.same_mode?,
            width,
            nodes: Vec::with_capacity(self.feature.len()),
            per_leaf: 0,
            targets: None,
            trees: Vec::with_capacity(self.roots.len()),
        };
        let mut targets: Option<Vec<u32>> = None;
        let mut same_targets = true;
        for &root in &self.roots {
            let base = fast.nodes.len();
            // breadth first: (old index, depth); a branch reserves two adjacent slots
            let mut order = vec![(root as usize, 0u32)];
            let mut i = 0;
            let mut deepest = 0;
            while i < order.len() {
                let (old, depth) = order[i];
                let local = u32::try_from(i).ok()?;
                let node = if self.feature[old] == LEAF {
                    deepest = deepest.max(depth);
                    let count = self.right[old] as usize;
                    if fast.per_leaf == 0 {
                        fast.per_leaf = count;
                    } else if fast.per_leaf != count {
                        return None;
                    }
                    let first = self.left[old] as usize;
                    let these = self.weights[first..first + count].iter().map(|w| w.0);
                    match &targets {
                        None => targets = Some(these.collect()),
                        Some(t) => same_targets &= t.iter().copied().eq(these),
                    }
                    Node {
                        threshold: f32::NAN,
                        feature: 0,
                        child: local.wrapping_sub(1),
                        leaf: self.left[old],
                    }
                } else {
                    let child = u32::try_from(order.len()).ok()?;
                    order.push((self.left[old] as usize, depth + 1));
                    order.push((self.right[old] as usize, depth + 1));
                    Node {
                        threshold: self.threshold[old],
                        feature: self.feature[old],
                        child,
                        leaf: INTERNAL,
                    }
                };
                fast.nodes.push(node);
                i += 1;
            }
            // pad to a power of two, so that a masked index needs no bounds check
            let size = order.len().next_power_of_two();
            let pad = fast.nodes[base];
            fast.nodes.resize(base + size, pad);
            fast.trees.push(FastTree {
                base: u32::try_from(base).ok()?,
                size: u32::try_from(size).ok()?,
                depth: deepest,
            });
        }
        if same_targets {
            fast.targets = targets;
        }
        Some(fast)
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

    /// Calls `visit(leaves)` for every tree, in order, with the leaf it gives every row of `x`
    /// (row `r`'s is `leaves[r]`: its weights' first index and count).
    #[inline(always)]
    fn for_each_tree(
        &self,
        x: &[f32],
        cols: usize,
        scratch: &mut Scratch,
        mut visit: impl FnMut(&[(u32, u32)]),
    ) {
        let rows = x.len() / cols.max(1);
        let Some(fast) = &self.fast else {
            let leaves = &mut scratch.leaves;
            leaves.clear();
            leaves.resize(rows, (0, 0));
            for &root in &self.roots {
                for (r, out) in leaves.iter_mut().enumerate() {
                    let leaf = self.walk_general(root, &x[r * cols..(r + 1) * cols]);
                    *out = (self.left[leaf], self.right[leaf]);
                }
                visit(leaves);
            }
            return;
        };
        match fast.width {
            32 => fast.walk::<32>(x, cols, rows, scratch, &mut visit),
            64 => fast.walk::<64>(x, cols, rows, scratch, &mut visit),
            128 => fast.walk::<128>(x, cols, rows, scratch, &mut visit),
            _ => fast.walk::<MAX_WIDTH>(x, cols, rows, scratch, &mut visit),
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
}

impl Fast {
    /// [`Forest::for_each_tree`] on the compact layout: the rows are copied into rows of `W`
    /// features (`W` at least the highest feature read, plus one), then for every tree every
    /// [`LANES`] rows walk side by side for the tree's depth, each step `child + !holds`.
    #[inline(always)]
    fn walk<const W: usize>(
        &self,
        x: &[f32],
        cols: usize,
        rows: usize,
        scratch: &mut Scratch,
        visit: &mut impl FnMut(&[(u32, u32)]),
    ) {
        let lanes = if rows == 1 { 1 } else { LANES };
        let padded = rows.div_ceil(lanes) * lanes;
        scratch.block.clear();
        scratch.block.resize(padded * W, 0.0);
        let block = scratch.block.as_chunks_mut::<W>().0;
        let used = cols.min(W);
        for (to, from) in block.iter_mut().zip(x.chunks_exact(cols.max(1))) {
            to[..used].copy_from_slice(&from[..used]);
        }
        let block = &*block;
        let leaves = &mut scratch.leaves;
        leaves.clear();
        leaves.resize(padded, (0, self.per_leaf as u32));
        for tree in &self.trees {
            let base = tree.base as usize;
            let nodes = &self.nodes[base..base + tree.size as usize];
            match (self.mode, lanes) {
                (Mode::Leq, 1) => {
                    tree_leaves::<W, 1>(nodes, tree.depth, block, leaves, |v, t| v <= t)
                }
                (Mode::Leq, _) => {
                    tree_leaves::<W, LANES>(nodes, tree.depth, block, leaves, |v, t| v <= t)
                }
                (Mode::Lt, 1) => {
                    tree_leaves::<W, 1>(nodes, tree.depth, block, leaves, |v, t| v < t)
                }
                (Mode::Lt, _) => {
                    tree_leaves::<W, LANES>(nodes, tree.depth, block, leaves, |v, t| v < t)
                }
                (Mode::Gte, 1) => {
                    tree_leaves::<W, 1>(nodes, tree.depth, block, leaves, |v, t| v >= t)
                }
                (Mode::Gte, _) => {
                    tree_leaves::<W, LANES>(nodes, tree.depth, block, leaves, |v, t| v >= t)
                }
                (_, 1) => tree_leaves::<W, 1>(nodes, tree.depth, block, leaves, |v, t| v > t),
                (_, _) => tree_leaves::<W, LANES>(nodes, tree.depth, block, leaves, |v, t| v > t),
            }
            visit(&leaves[..rows]);
        }
    }
}

/// The leaf (its first weight) one tree gives every row of `block`, into `leaves[r].0`: `L` rows
/// side by side, `depth` steps each. `nodes.len()` is a power of two and every child index
/// is below it, every feature below `W`: the masks only let the compiler drop bounds checks.
#[inline(always)]
fn tree_leaves<const W: usize, const L: usize>(
    nodes: &[Node],
    depth: u32,
    block: &[[f32; W]],
    leaves: &mut [(u32, u32)],
    cmp: impl Fn(f32, f32) -> bool,
) {
    if nodes.is_empty() {
        return;
    }
    let mask = nodes.len() - 1;
    for (rows, out) in block.chunks_exact(L).zip(leaves.chunks_exact_mut(L)) {
        let mut n = [0u32; L];
        for _ in 0..depth {
            for (i, row) in n.iter_mut().zip(rows) {
                let node = &nodes[*i as usize & mask];
                let v = row[node.feature as usize & (W - 1)];
                *i = node.child.wrapping_add(u32::from(!cmp(v, node.threshold)));
            }
        }
        for (o, &i) in out.iter_mut().zip(&n) {
            o.0 = nodes[i as usize & mask].leaf;
        }
    }
}

/// Scores of one block of rows, `n_targets` per row, with onnxruntime's "has a score" flags.
#[derive(Default)]
pub(super) struct Scores {
    pub(super) value: Vec<f32>,
    pub(super) has: Vec<bool>,
    scratch: Scratch,
}

impl Scores {
    /// Room for `n` scores (a block of rows times the targets) without reallocating.
    pub(super) fn with_capacity(n: usize) -> Scores {
        Scores {
            value: Vec::with_capacity(n),
            has: Vec::with_capacity(n),
            scratch: Scratch::default(),
        }
    }
}

/// Buffers of [`Forest::for_each_tree`], reused from block to block.
#[derive(Default)]
struct Scratch {
    /// The block's rows, padded ([`Fast`]).
    block: Vec<f32>,
    /// One tree's leaf per row: first weight, count.
    leaves: Vec<(u32, u32)>,
}

impl Forest {
    /// Aggregates every tree's leaf for rows `x` (`rows` of `cols` features) into `scores`.
    pub(super) fn accumulate(
        &self,
        x: &[f32],
        cols: usize,
        n_targets: usize,
        agg: Aggregate,
        s: &mut Scores,
    ) {
        let rows = x.len() / cols.max(1);
        s.value.clear();
        s.value.resize(rows * n_targets, 0.0);
        s.has.clear();
        s.has.resize(rows * n_targets, false);
        let Scores {
            value,
            has,
            scratch,
        } = s;
        let (value, has) = (&mut value[..], &mut has[..]);
        let weights = &self.weights[..];
        let uniform = self.fast.as_ref().and_then(|f| f.targets.as_deref());
        if let (Some(targets), Aggregate::Sum | Aggregate::Average) = (uniform, agg) {
            // every leaf adds to the same targets: the flags are known, the sums are plain
            if !self.roots.is_empty() {
                for has in has.chunks_exact_mut(n_targets) {
                    for &t in targets {
                        has[t as usize] = true;
                    }
                }
            }
            self.for_each_tree(x, cols, scratch, |leaves| {
                for (value, &(first, _)) in value.chunks_exact_mut(n_targets).zip(leaves) {
                    let leaf = &weights[first as usize..first as usize + targets.len()];
                    for (&t, &(_, v)) in targets.iter().zip(leaf) {
                        value[t as usize] += v;
                    }
                }
            });
            return;
        }
        self.for_each_tree(x, cols, scratch, |leaves| {
            let rows = value
                .chunks_exact_mut(n_targets)
                .zip(has.chunks_exact_mut(n_targets));
            for ((value, has), &(first, count)) in rows.zip(leaves) {
                let first = first as usize;
                for &(target, v) in &weights[first..first + count as usize] {
                    let k = target as usize;
                    match agg {
                        Aggregate::Sum | Aggregate::Average => value[k] += v,
                        Aggregate::Min => {
                            if !has[k] || v < value[k] {
                                value[k] = v
                            }
                        }
                        Aggregate::Max => {
                            if !has[k] || v > value[k] {
                                value[k] = v
                            }
                        }
                    }
                    has[k] = true;
                }
            }
        });
    }

    /// One-target ensembles, onnxruntime's `*1` path: the first weight of each leaf.
    pub(super) fn accumulate_one(&self, x: &[f32], cols: usize, agg: Aggregate, s: &mut Scores) {
        let rows = x.len() / cols.max(1);
        s.value.clear();
        s.value.resize(rows, 0.0);
        s.has.clear();
        s.has.resize(rows, false);
        let Scores {
            value,
            has,
            scratch,
        } = s;
        let (value, has) = (&mut value[..], &mut has[..]);
        let weights = &self.weights[..];
        self.for_each_tree(x, cols, scratch, |leaves| {
            for ((score, has), &(first, _)) in value.iter_mut().zip(has.iter_mut()).zip(leaves) {
                let v = weights[first as usize].1;
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
        });
    }

    pub(super) fn check_input(&self, cols: usize) -> TractResult<()> {
        if self.max_feature >= cols {
            bail!(
                "the trees read feature {} but the input has {cols} features",
                self.max_feature
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
