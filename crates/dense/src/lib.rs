//! Dense layers over a batch of rows: `y = x W + b`, optionally followed by ReLU, with `x`
//! of `rows × k` and `W` of `k × n`, all row-major `f32`.
//!
//! On a CPU with AVX-512 the weights are packed at construction into panels of 32 columns,
//! and a kernel walks blocks of 8 rows against a panel with 16 vector accumulators:
//! each step broadcasts one input of each row and multiplies it into the panel's row of
//! weights with fused multiply-adds. Activations are read where they lie, never packed. This is
//! onnxruntime's MLAS arrangement; tract's general matrix product packs the activations
//! on every call, which on the bench MLP cost it a fifth of the run.
//!
//! Elsewhere a portable loop runs, one row at a time, that the compiler vectorizes. The two
//! differ only in rounding (fused or separate multiply-add).
//!
//! This crate is the one place the workspace allows `unsafe`: calling the kernel, whose
//! target features are checked at run time, and its unaligned vector loads and stores, each
//! on a slice whose length is checked first. `make miri` runs the tests under Miri with
//! AVX-512 enabled, so the kernel itself is interpreted there.

/// Columns of one packed panel: two 16-lane vectors.
const NR: usize = 32;
/// Layers of at most this many outputs (a classifier's last layer) run as dot products
/// instead: a panel of 16 columns would be mostly padding.
const FEW: usize = 4;
/// Rows walked together against a panel.
const MR: usize = 8;

/// One dense layer, ready to run over any number of rows.
#[derive(Debug, Clone)]
pub struct Dense {
    k: usize,
    n: usize,
    relu: bool,
    /// `W`, `k × n` row-major (the portable path).
    weights: Vec<f32>,
    /// `b`, `n` long (zeros when the layer has none).
    bias: Vec<f32>,
    /// What runs the layer.
    kernel: Kernel,
}

/// The path a layer takes, fixed at construction.
#[derive(Debug, Clone)]
enum Kernel {
    /// The portable loop over `weights`: no AVX-512 here.
    Portable,
    /// The AVX-512 kernel over `W` in panels of [`NR`] columns, `k × NR` each, zero padded.
    Panels(Vec<f32>),
    /// AVX-512 dot products over `W`'s columns, each zero padded to a multiple of 16: for
    /// [`FEW`] outputs or fewer.
    Columns(Vec<f32>),
}

impl Dense {
    /// A layer of `weights` (`k × n`, row-major) and an optional `bias` (`n`).
    ///
    /// # Panics
    /// When the lengths do not make `k × n` weights and `n` biases, or `k` or `n` is zero.
    pub fn new(weights: Vec<f32>, k: usize, n: usize, bias: Option<Vec<f32>>, relu: bool) -> Dense {
        assert!(k > 0 && n > 0, "a dense layer needs k > 0 and n > 0");
        assert_eq!(weights.len(), k * n, "weights are not k × n");
        let bias = bias.unwrap_or_else(|| vec![0.0; n]);
        assert_eq!(bias.len(), n, "the bias is not n long");
        let kernel = match (accelerated(), n <= FEW) {
            (false, _) => Kernel::Portable,
            (true, false) => Kernel::Panels(pack(&weights, k, n)),
            (true, true) => Kernel::Columns(columns(&weights, k, n)),
        };
        Dense {
            k,
            n,
            relu,
            weights,
            bias,
            kernel,
        }
    }

    /// Inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Outputs per row.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Whether ReLU follows.
    pub fn relu(&self) -> bool {
        self.relu
    }

    /// Computes `y` (`rows × n`) from `x` (`rows × k`).
    ///
    /// # Panics
    /// When `x` is not a whole number of rows or `y` does not hold as many rows of `n`.
    #[allow(unsafe_code)]
    pub fn run(&self, x: &[f32], y: &mut [f32]) {
        assert!(
            x.len().is_multiple_of(self.k),
            "x is not a whole number of rows"
        );
        let rows = x.len() / self.k;
        assert_eq!(y.len(), rows * self.n, "y does not hold rows × n");
        match &self.kernel {
            Kernel::Portable => self.run_portable(x, y),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::Panels` is only built when `accelerated()` found AVX-512F on
            // this CPU; the kernel needs nothing else.
            Kernel::Panels(panels) => unsafe { avx512::run(self, panels, x, y) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for `Kernel::Columns`.
            Kernel::Columns(columns) => unsafe { avx512::run_columns(self, columns, x, y) },
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Panels(_) | Kernel::Columns(_) => unreachable!("built only with AVX-512"),
        }
    }

    fn run_portable(&self, x: &[f32], y: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
            yr.copy_from_slice(&self.bias);
            for (&a, w) in xr.iter().zip(self.weights.chunks_exact(n)) {
                for (o, &w) in yr.iter_mut().zip(w) {
                    *o += a * w;
                }
            }
            if self.relu {
                yr.iter_mut().for_each(|o| *o = o.max(0.0));
            }
        }
    }
}

/// Whether the AVX-512 kernel runs on this CPU. Without it a [`Dense`] runs a portable loop
/// that the compiler vectorizes only as far as the build's baseline (SSE2 on x86-64): slower
/// than a general matrix product that picks its kernel at run time, so a caller with one
/// should keep it there.
pub fn accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `W` (`k × n`) as panels of [`NR`] columns: panel `p` holds `k` rows of `NR` weights,
/// columns `p·NR ..`, zero past `n`.
fn pack(weights: &[f32], k: usize, n: usize) -> Vec<f32> {
    let panels = n.div_ceil(NR);
    let mut packed = vec![0.0; panels * k * NR];
    for (kk, row) in weights.chunks_exact(n).enumerate() {
        for (j, &w) in row.iter().enumerate() {
            packed[(j / NR) * k * NR + kk * NR + j % NR] = w;
        }
    }
    packed
}

/// `W`'s columns (`k × n` row-major in), each zero padded to a multiple of 16.
fn columns(weights: &[f32], k: usize, n: usize) -> Vec<f32> {
    let kp = k.next_multiple_of(16);
    let mut columns = vec![0.0; n * kp];
    for (kk, row) in weights.chunks_exact(n).enumerate() {
        for (j, &w) in row.iter().enumerate() {
            columns[j * kp + kk] = w;
        }
    }
    columns
}

#[cfg(target_arch = "x86_64")]
// Indexed loops of constant bounds over the accumulators: written with iterators or slice
// copies, the compiler kept them in memory and stored them back on every step.
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_castps_si512, _mm512_cmple_epu32_mask, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_maskz_mov_ps, _mm512_reduce_add_ps, _mm512_set1_epi32, _mm512_set1_ps,
        _mm512_setzero_ps, _mm512_storeu_ps,
    };

    use super::{Dense, MR, NR};

    /// `max(x, 0)` lane by lane, as MLAS's ReLU (`maxps(x, 0)`) gives it: a lane is kept
    /// when its bits, read unsigned, are at most +inf's, which leaves out the negatives (sign
    /// bit set) and the NaNs (which become 0), and -0 becomes 0. Integer compares rather than
    /// `vmaxps`, so that Miri, which cannot run the latter, runs this too.
    #[target_feature(enable = "avx512f")]
    fn relu_lanes(x: __m512) -> __m512 {
        let bits = _mm512_castps_si512(x);
        let keep = _mm512_cmple_epu32_mask(bits, _mm512_set1_epi32(0x7f80_0000));
        _mm512_maskz_mov_ps(keep, x)
    }

    /// Sixteen lanes from the start of `s`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    fn load(s: &[f32]) -> __m512 {
        assert!(s.len() >= 16);
        // SAFETY: the assert above: `s` holds the 16 `f32` the unaligned load reads.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }

    /// Sixteen lanes to the start of `s`.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    fn store(s: &mut [f32], v: __m512) {
        assert!(s.len() >= 16);
        // SAFETY: the assert above: `s` holds the 16 `f32` the unaligned store writes.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }

    /// The layer over all rows of `x`, panel by panel, [`MR`] rows at a time.
    #[target_feature(enable = "avx512f")]
    pub(super) fn run(d: &Dense, panels: &[f32], x: &[f32], y: &mut [f32]) {
        let (k, n) = (d.k, d.n);
        let rows = x.len() / k;
        for p in 0..n.div_ceil(NR) {
            let panel = &panels[p * k * NR..][..k * NR];
            let cols = (n - p * NR).min(NR);
            let mut bias = [0.0f32; NR];
            bias[..cols].copy_from_slice(&d.bias[p * NR..][..cols]);
            let mut r0 = 0;
            while r0 < rows {
                let rr = (rows - r0).min(MR);
                let xs = &x[r0 * k..][..rr * k];
                let out = &mut y[r0 * n + p * NR..];
                if cols <= 16 {
                    block::<1>(xs, k, panel, &bias, d.relu, out, n, cols);
                } else {
                    block::<2>(xs, k, panel, &bias, d.relu, out, n, cols);
                }
                r0 += rr;
            }
        }
    }

    /// The layer as `n` dot products a row, 16 lanes at a time, for [`FEW`] outputs or fewer.
    #[target_feature(enable = "avx512f")]
    pub(super) fn run_columns(d: &Dense, columns: &[f32], x: &[f32], y: &mut [f32]) {
        let (k, n) = (d.k, d.n);
        let kp = k.next_multiple_of(16);
        let full = k / 16;
        let rest = k - full * 16;
        // The last `rest` inputs of a row, zero padded to one vector.
        let mut tail = [0.0f32; 16];
        for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
            if rest > 0 {
                tail[..rest].copy_from_slice(&xr[full * 16..]);
            }
            for (j, o) in yr.iter_mut().enumerate() {
                let w = &columns[j * kp..][..kp];
                let mut acc = _mm512_setzero_ps();
                for c in 0..full {
                    acc = _mm512_fmadd_ps(load(&xr[c * 16..]), load(&w[c * 16..]), acc);
                }
                if rest > 0 {
                    acc = _mm512_fmadd_ps(load(&tail), load(&w[full * 16..]), acc);
                }
                let s = _mm512_reduce_add_ps(acc) + d.bias[j];
                *o = if d.relu { s.max(0.0) } else { s };
            }
        }
    }

    /// Up to [`MR`] rows (`x`, `k` each) against one panel, `NV` vectors of it wide, into
    /// `out` (rows `ld` apart, `cols` of them written).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    fn block<const NV: usize>(
        x: &[f32],
        k: usize,
        panel: &[f32],
        bias: &[f32; NR],
        relu: bool,
        out: &mut [f32],
        ld: usize,
        cols: usize,
    ) {
        let rows = x.len() / k;
        let b = [load(&bias[..16]), load(&bias[16..])];
        // Indexed loops of constant bounds throughout (see the module's lints).
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for r in 0..MR {
            for v in 0..NV {
                acc[r][v] = b[v];
            }
        }
        if rows == MR {
            // Each row's slice spelled out with length `k`: built through `array::from_fn`,
            // which was not inlined, they lost their lengths and every read was checked.
            let row = |r: usize| &x[r * k..][..k];
            let xr: [&[f32]; MR] = [
                row(0),
                row(1),
                row(2),
                row(3),
                row(4),
                row(5),
                row(6),
                row(7),
            ];
            for kk in 0..k {
                let w = &panel[kk * NR..][..NR];
                let mut wv = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    wv[v] = load(&w[v * 16..]);
                }
                for r in 0..MR {
                    let a = _mm512_set1_ps(xr[r][kk]);
                    for v in 0..NV {
                        acc[r][v] = _mm512_fmadd_ps(a, wv[v], acc[r][v]);
                    }
                }
            }
        } else {
            for kk in 0..k {
                let w = &panel[kk * NR..][..NR];
                let mut wv = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    wv[v] = load(&w[v * 16..]);
                }
                for r in 0..rows {
                    let a = _mm512_set1_ps(x[r * k + kk]);
                    for v in 0..NV {
                        acc[r][v] = _mm512_fmadd_ps(a, wv[v], acc[r][v]);
                    }
                }
            }
        }
        // ReLU on the registers: clamping the stored row instead made the compiler keep
        // `acc` in memory through the loop above.
        if relu {
            for r in 0..MR {
                for v in 0..NV {
                    acc[r][v] = relu_lanes(acc[r][v]);
                }
            }
        }
        for r in 0..rows {
            let row = &mut out[r * ld..][..cols];
            if cols == NV * 16 {
                for v in 0..NV {
                    store(&mut row[v * 16..], acc[r][v]);
                }
            } else {
                let mut tile = [0.0f32; NR];
                for v in 0..NV {
                    store(&mut tile[v * 16..], acc[r][v]);
                }
                row.copy_from_slice(&tile[..cols]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn every_shape_matches_the_reference() {
        for &(rows, k, n) in SHAPES {
            for relu in [false, true] {
                let x = data(rows * k, 1.0);
                let w = data(k * n, 2.0);
                let b = data(n, 3.0);
                let d = Dense::new(w.clone(), k, n, Some(b.clone()), relu);
                let mut y = vec![f32::NAN; rows * n];
                d.run(&x, &mut y);
                let want = reference(&x, &w, &b, k, n, relu);
                for (i, (g, w)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "rows {rows} k {k} n {n} relu {relu}: y[{i}] = {g}, want {w}"
                    );
                }
                if relu {
                    assert!(y.iter().all(|&v| v >= 0.0));
                }
            }
        }
    }

    #[test]
    fn the_portable_path_agrees_with_the_kernel() {
        for &(rows, k, n) in SHAPES {
            let x = data(rows * k, 4.0);
            let w = data(k * n, 5.0);
            let d = Dense::new(w, k, n, None, true);
            let mut fast = vec![0.0; rows * n];
            let mut slow = vec![0.0; rows * n];
            d.run(&x, &mut fast);
            d.run_portable(&x, &mut slow);
            for (f, s) in fast.iter().zip(&slow) {
                assert!((f - s).abs() <= 1e-5 * (1.0 + s.abs()), "{f} vs {s}");
            }
        }
    }

    #[test]
    fn the_kernel_runs_where_the_cpu_has_accelerated() {
        let few = Dense::new(vec![1.0; 4], 2, 2, None, false);
        assert_eq!(matches!(few.kernel, Kernel::Columns(_)), accelerated());
        let many = Dense::new(vec![1.0; 10], 2, 5, None, false);
        assert_eq!(matches!(many.kernel, Kernel::Panels(_)), accelerated());
        if cfg!(miri) {
            assert!(
                accelerated(),
                "`make miri` enables AVX-512 so that Miri runs the kernel"
            );
        }
    }

    #[test]
    fn relu_clears_negatives_and_keeps_the_rest() {
        let w = vec![1.0, -1.0];
        let d = Dense::new(w, 1, 2, Some(vec![0.0, 0.0]), true);
        let mut y = vec![f32::NAN; 8];
        d.run(&[2.5, -0.0, -3.0, f32::NAN], &mut y);
        // A NaN becomes 0, as onnxruntime's ReLU (max(x, 0)) makes it.
        assert_eq!(y, [2.5, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0]);
        let mut slow = vec![f32::NAN; 8];
        d.run_portable(&[2.5, -0.0, -3.0, f32::NAN], &mut slow);
        assert_eq!(slow, y);
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
}
