use super::*;
use tract_onnx::pb::{AttributeProto, NodeProto};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn float(&mut self) -> f32 {
        (self.below(2001) as f32 - 1000.0) / 100.0
    }
}

/// Node attributes of random trees: `n_trees` trees of depth at most `depth`, reading
/// features below `n_features`, all with `mode`; every leaf weighs targets 0 and 1, or,
/// with `mixed_targets`, one of them at random.
fn random_forest(
    rng: &mut Rng,
    n_trees: i64,
    depth: u32,
    n_features: u64,
    mode: &str,
    mixed_targets: bool,
) -> NodeProto {
    let mut a: HashMap<&str, AttributeProto> = HashMap::new();
    let push_i = |a: &mut HashMap<&str, AttributeProto>, k: &'static str, v: i64| {
        a.entry(k).or_default().ints.push(v)
    };
    let mut floats: HashMap<&str, Vec<f32>> = HashMap::new();
    let mut modes = Vec::new();
    for tree in 0..n_trees {
        // nodes numbered in creation order; (id, depth) to expand
        let mut next_id = 1i64;
        let mut stack = vec![(0i64, 0u32)];
        while let Some((id, d)) = stack.pop() {
            push_i(&mut a, "nodes_treeids", tree);
            push_i(&mut a, "nodes_nodeids", id);
            let leaf = d >= depth || (d > 0 && rng.below(4) == 0);
            if leaf {
                modes.push(b"LEAF".to_vec());
                push_i(&mut a, "nodes_featureids", 0);
                floats.entry("nodes_values").or_default().push(0.0);
                push_i(&mut a, "nodes_truenodeids", 0);
                push_i(&mut a, "nodes_falsenodeids", 0);
                let targets: &[i64] = match (mixed_targets, rng.below(2)) {
                    (true, 0) => &[0],
                    (true, _) => &[1],
                    _ => &[0, 1],
                };
                for &t in targets {
                    push_i(&mut a, "target_treeids", tree);
                    push_i(&mut a, "target_nodeids", id);
                    push_i(&mut a, "target_ids", t);
                    floats
                        .entry("target_weights")
                        .or_default()
                        .push(rng.float());
                }
            } else {
                modes.push(mode.as_bytes().to_vec());
                push_i(&mut a, "nodes_featureids", rng.below(n_features) as i64);
                floats.entry("nodes_values").or_default().push(rng.float());
                push_i(&mut a, "nodes_truenodeids", next_id);
                push_i(&mut a, "nodes_falsenodeids", next_id + 1);
                stack.push((next_id, d + 1));
                stack.push((next_id + 1, d + 1));
                next_id += 2;
            }
        }
    }
    let mut node = NodeProto {
        op_type: "TreeEnsembleRegressor".into(),
        ..NodeProto::default()
    };
    for (name, mut attr) in a {
        attr.name = name.into();
        node.attribute.push(attr);
    }
    for (name, values) in floats {
        node.attribute.push(AttributeProto {
            name: name.into(),
            floats: values,
            ..AttributeProto::default()
        });
    }
    node.attribute.push(AttributeProto {
        name: "nodes_modes".into(),
        strings: modes,
        ..AttributeProto::default()
    });
    node
}

fn leaves(forest: &Forest, x: &[f32], cols: usize) -> Vec<Vec<(u32, u32)>> {
    let mut all = Vec::new();
    forest.for_each_tree(x, cols, &mut Scratch::default(), |l| all.push(l.to_vec()));
    all
}

/// The compact branch-free walk reaches the same leaves as the general one, for every
/// order comparison, feature widths needing wider row blocks, one row and many, NaNs.
#[test]
fn the_compact_walk_reaches_the_general_walks_leaves() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (mode, n_features, mixed) in [
        ("BRANCH_LEQ", 30, false),
        ("BRANCH_LT", 5, true),
        ("BRANCH_GTE", 70, false),
        ("BRANCH_GT", 200, true),
    ] {
        let node = random_forest(&mut rng, 7, 6, n_features, mode, mixed);
        let attrs = Attrs::new(&node);
        let fast = Forest::parse(&attrs, "target", 2).unwrap();
        assert!(fast.fast.is_some(), "{mode}: no compact layout");
        assert_eq!(fast.fast.as_ref().unwrap().targets.is_some(), !mixed);
        let mut general = Forest::parse(&attrs, "target", 2).unwrap();
        general.fast = None;
        let cols = n_features as usize + 3;
        for rows in [1usize, 7, 8, 37] {
            let x: Vec<f32> = (0..rows * cols)
                .map(|_| match rng.below(20) {
                    0 => f32::NAN,
                    _ => rng.float(),
                })
                .collect();
            assert_eq!(
                leaves(&fast, &x, cols),
                leaves(&general, &x, cols),
                "{mode}, {rows} rows"
            );
            for agg in [Aggregate::Sum, Aggregate::Min, Aggregate::Max] {
                let (mut a, mut b) = (Scores::default(), Scores::default());
                fast.accumulate(&x, cols, 2, agg, &mut a);
                general.accumulate(&x, cols, 2, agg, &mut b);
                assert_eq!(a.has, b.has, "{mode}, {rows} rows, {agg:?}");
                let bits = |s: &Scores| s.value.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{mode}, {rows} rows, {agg:?}");
            }
        }
    }
}
