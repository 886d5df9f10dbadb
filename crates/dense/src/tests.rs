use super::*;

/// `x W + b` (and ReLU) in `f64`, one output at a time.
fn reference(x: &[f32], w: &[f32], b: &[f32], k: usize, n: usize, relu: bool) -> Vec<f32> {
    let rows = x.len() / k;
    let mut y = vec![0.0; rows * n];
    for r in 0..rows {
        for j in 0..n {
            let s: f64 = b[j] as f64
                + (0..k)
                    .map(|kk| x[r * k + kk] as f64 * w[kk * n + j] as f64)
                    .sum::<f64>();
            y[r * n + j] = if relu { s.max(0.0) } else { s } as f32;
        }
    }
    y
}

fn data(len: usize, seed: f32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as f32 + seed) * 0.618).sin())
        .collect()
}

/// Shapes that hit every edge: rows not a multiple of the block, a partial last panel of
/// one vector or of two, a single column, a single input, few outputs (dot products) with
/// inputs a multiple of 16 or not.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (3, 30, 2),
    (9, 5, 17),
    (8, 7, 32),
    (17, 3, 33),
    (2, 64, 64),
    (11, 64, 2),
    (5, 40, 4),
    (3, 16, 5),
];

/// The kernels this CPU runs, and the portable loop (`None`).
fn paths() -> Vec<Option<Isa>> {
    [None, Some(Isa::Avx512), Some(Isa::Avx2)]
        .into_iter()
        .filter(|isa| isa.is_none_or(Isa::supported))
        .collect()
}

#[test]
fn every_shape_matches_the_reference() {
    for isa in paths() {
        for &(rows, k, n) in SHAPES {
            for relu in [false, true] {
                let x = data(rows * k, 1.0);
                let w = data(k * n, 2.0);
                let b = data(n, 3.0);
                let d = Dense::on(isa, w.clone(), k, n, Some(b.clone()), relu);
                let mut y = vec![f32::NAN; rows * n];
                d.run(&x, &mut y);
                let want = reference(&x, &w, &b, k, n, relu);
                for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{isa:?} rows {rows} k {k} n {n} relu {relu}: y[{i}] = {g}, want {w}"
                    );
                }
                if relu {
                    assert!(y.iter().all(|&v| v >= 0.0));
                }
            }
        }
    }
}

#[test]
fn the_portable_path_agrees_with_the_kernels() {
    for isa in paths() {
        for &(rows, k, n) in SHAPES {
            let x = data(rows * k, 4.0);
            let w = data(k * n, 5.0);
            let d = Dense::on(isa, w, k, n, None, true);
            let mut fast = vec![0.0; rows * n];
            let mut slow = vec![0.0; rows * n];
            d.run(&x, &mut fast);
            d.run_portable(&x, &mut slow);
            for (f, s) in fast.iter().zip(&slow) {
                assert!(
                    (f - s).abs() <= 1e-5 * (1.0 + s.abs()),
                    "{isa:?}: {f} vs {s}"
                );
            }
        }
    }
}

#[test]
fn both_kernels_give_the_same_bits_over_panels() {
    // The same fused multiply-adds in the same order per output: only the width differs.
    if !(Isa::Avx512.supported() && Isa::Avx2.supported()) {
        return;
    }
    for &(rows, k, n) in SHAPES.iter().filter(|s| s.2 > FEW) {
        let x = data(rows * k, 6.0);
        let w = data(k * n, 7.0);
        let b = data(n, 8.0);
        let run = |isa| {
            let d = Dense::on(Some(isa), w.clone(), k, n, Some(b.clone()), true);
            let mut y = vec![0.0; rows * n];
            d.run(&x, &mut y);
            y
        };
        let (wide, narrow) = (run(Isa::Avx512), run(Isa::Avx2));
        assert!(
            wide.iter()
                .zip(&narrow)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "rows {rows} k {k} n {n}"
        );
    }
}

#[test]
fn the_best_kernel_runs_where_the_cpu_has_one() {
    let best = Isa::detected();
    assert_eq!(accelerated(), best.is_some());
    let few = Dense::new(vec![1.0; 4], 2, 2, None, false);
    let many = Dense::new(vec![1.0; 10], 2, 5, None, false);
    match best {
        None => {
            assert!(matches!(few.kernel, Kernel::Portable));
            assert!(matches!(many.kernel, Kernel::Portable));
        }
        Some(isa) => {
            assert!(matches!(few.kernel, Kernel::Columns(i, _) if i == isa));
            assert!(matches!(many.kernel, Kernel::Panels(i, _) if i == isa));
        }
    }
    if cfg!(miri) {
        assert!(
            Isa::Avx512.supported() && Isa::Avx2.supported(),
            "`make miri` enables AVX-512 (which brings AVX2 and FMA) so that Miri runs both kernels"
        );
    }
}

#[test]
fn the_cap_on_the_instruction_set_is_read_as_documented() {
    assert_eq!(Isa::allowed(None).unwrap(), [Isa::Avx512, Isa::Avx2]);
    assert_eq!(
        Isa::allowed(Some("avx512")).unwrap(),
        [Isa::Avx512, Isa::Avx2]
    );
    assert_eq!(Isa::allowed(Some(" avx2 ")).unwrap(), [Isa::Avx2]);
    assert!(Isa::allowed(Some("none")).unwrap().is_empty());
    let why = Isa::allowed(Some("sse4")).unwrap_err();
    assert!(
        why.contains("`sse4`") && why.contains("avx512, avx2 or none"),
        "{why}"
    );
    assert_eq!(check_cap(Some("sse4")), Err(why));
    assert_eq!(check_cap(None), Ok(()));
}

#[test]
fn relu_clears_negatives_and_keeps_the_rest() {
    for isa in paths() {
        let w = vec![1.0, -1.0];
        let d = Dense::on(isa, w, 1, 2, Some(vec![0.0, 0.0]), true);
        let mut y = vec![f32::NAN; 8];
        d.run(&[2.5, -0.0, -3.0, f32::NAN], &mut y);
        // A NaN becomes 0, as onnxruntime's ReLU (max(x, 0)) makes it.
        assert_eq!(y, [2.5, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0], "{isa:?}");
        // And on the panels (more than FEW outputs), where the vector ReLU runs.
        let w = vec![1.0, -1.0, 1.0, -1.0, 1.0, -1.0];
        let d = Dense::on(isa, w, 1, 6, None, true);
        let mut y = vec![f32::NAN; 18];
        d.run(&[-0.0, f32::NAN, -f32::NAN], &mut y);
        assert!(y.iter().all(|v| v.to_bits() == 0), "{isa:?}: {y:?}");
    }
}

#[test]
fn no_rows_give_no_rows() {
    let d = Dense::new(vec![1.0; 6], 3, 2, None, false);
    let mut y = [];
    d.run(&[], &mut y);
}

#[test]
#[should_panic(expected = "whole number of rows")]
fn a_partial_row_is_refused() {
    let d = Dense::new(vec![1.0; 6], 3, 2, None, false);
    d.run(&[1.0; 4], &mut [0.0; 2]);
}
