//! Dense layers over a batch of rows: `y = x W + b`, optionally followed by ReLU, with `x`
//! of `rows × k` and `W` of `k × n`, all row-major `f32`.
//!
//! On a CPU with AVX-512 the weights are packed at construction into panels of 32 columns,
//! and a kernel walks blocks of 8 rows against a panel with 16 vector accumulators:
//! each step broadcasts one input of each row and multiplies it into the panel's row of
//! weights with fused multiply-adds. Activations are read where they lie, never packed. This is
//! onnxruntime's MLAS arrangement; tract's general matrix product packs the activations
//! on every call, which on the bench MLP cost it a fifth of the run. On a CPU with AVX2 and
//! FMA but not AVX-512 (most laptops, AMD before Zen 4), a kernel of the same arrangement
//! runs with 8-lane vectors: panels of 16 columns, blocks of 6 rows, 12 accumulators (MLAS's
//! FMA3 kernel's shape).
//!
//! Elsewhere a portable loop runs, one row at a time, that the compiler vectorizes. The
//! paths differ only in rounding (fused or separate multiply-add, and the order of a dot
//! product's partial sums).
//!
//! `MLOPS_DENSE_MAX_ISA` caps the instruction set (`avx512`, `avx2` or `none`), as oneDNN's
//! `ONEDNN_MAX_CPU_ISA` does: to compare the kernels on one machine, or to rule one out.
//!
//! This crate is the one place the workspace allows `unsafe`: calling a kernel, whose
//! target features are checked at run time, and its unaligned vector loads and stores, each
//! on a slice whose length is checked first. `make miri` runs the tests under Miri with
//! AVX-512 enabled, so both kernels are interpreted there.

use std::sync::OnceLock;

/// Layers of at most this many outputs (a classifier's last layer) run as dot products
/// instead: a panel would be mostly padding.
const FEW: usize = 4;
/// A dot product's columns are zero padded to a multiple of this (both kernels' loads).
const PAD: usize = 16;

/// The vector instruction set a layer's kernel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 16 lanes.
    Avx512,
    /// AVX2 with FMA: 8 lanes.
    Avx2,
}

impl Isa {
    /// Columns of one packed panel: two vectors.
    fn panel(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 => 16,
        }
    }

    /// Whether this CPU runs it.
    fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The best this CPU runs, within `MLOPS_DENSE_MAX_ISA` when it is set (read once).
    ///
    /// # Panics
    /// When `MLOPS_DENSE_MAX_ISA` is set to something other than `avx512`, `avx2` or `none`.
    pub fn detected() -> Option<Isa> {
        static DETECTED: OnceLock<Option<Isa>> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let cap = std::env::var("MLOPS_DENSE_MAX_ISA").ok();
            Isa::allowed(cap.as_deref())
                .unwrap_or_else(|why| panic!("{why}"))
                .iter()
                .copied()
                .find(|isa| isa.supported())
        })
    }

    /// The instruction sets `cap` (`MLOPS_DENSE_MAX_ISA`'s value) allows, best first.
    fn allowed(cap: Option<&str>) -> Result<&'static [Isa], String> {
        match cap.map(str::trim) {
            None | Some("") | Some("avx512") => Ok(&[Isa::Avx512, Isa::Avx2]),
            Some("avx2") => Ok(&[Isa::Avx2]),
            Some("none") => Ok(&[]),
            Some(other) => Err(format!(
                "MLOPS_DENSE_MAX_ISA is `{other}`: give avx512, avx2 or none (or leave it unset)"
            )),
        }
    }
}

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
    /// The portable loop over `weights`: no kernel here.
    Portable,
    /// A kernel over `W` in panels of the ISA's width, `k` rows each, zero padded.
    Panels(Isa, Vec<f32>),
    /// Dot products over `W`'s columns, each zero padded to a multiple of [`PAD`]: for
    /// [`FEW`] outputs or fewer.
    Columns(Isa, Vec<f32>),
}

impl Dense {
    /// A layer of `weights` (`k × n`, row-major) and an optional `bias` (`n`).
    ///
    /// # Panics
    /// When the lengths do not make `k × n` weights and `n` biases, or `k` or `n` is zero.
    pub fn new(weights: Vec<f32>, k: usize, n: usize, bias: Option<Vec<f32>>, relu: bool) -> Dense {
        Dense::on(Isa::detected(), weights, k, n, bias, relu)
    }

    /// A layer as [`Dense::new`] makes it, on `isa`'s kernel (`None`: the portable loop).
    ///
    /// # Panics
    /// As [`Dense::new`], and when this CPU does not run `isa`.
    pub fn on(
        isa: Option<Isa>,
        weights: Vec<f32>,
        k: usize,
        n: usize,
        bias: Option<Vec<f32>>,
        relu: bool,
    ) -> Dense {
        assert!(k > 0 && n > 0, "a dense layer needs k > 0 and n > 0");
        assert_eq!(weights.len(), k * n, "weights are not k × n");
        let bias = bias.unwrap_or_else(|| vec![0.0; n]);
        assert_eq!(bias.len(), n, "the bias is not n long");
        if let Some(isa) = isa {
            assert!(isa.supported(), "this CPU does not run {isa:?}");
        }
        let kernel = match (isa, n <= FEW) {
            (None, _) => Kernel::Portable,
            (Some(isa), false) => Kernel::Panels(isa, pack(&weights, k, n, isa.panel())),
            (Some(isa), true) => Kernel::Columns(isa, columns(&weights, k, n)),
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
            // SAFETY: a kernel of `Isa::Avx512` is only built where `Isa::supported` found
            // AVX-512F on this CPU (`Dense::on` asserts it); the kernel needs nothing else.
            Kernel::Panels(Isa::Avx512, panels) => unsafe { avx512::run(self, panels, x, y) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Columns(Isa::Avx512, columns) => unsafe {
                avx512::run_columns(self, columns, x, y)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a kernel of `Isa::Avx2` is only built where `Isa::supported` found AVX2
            // and FMA on this CPU (`Dense::on` asserts it); the kernel needs nothing else.
            Kernel::Panels(Isa::Avx2, panels) => unsafe { avx2::run(self, panels, x, y) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Columns(Isa::Avx2, columns) => unsafe {
                avx2::run_columns(self, columns, x, y)
            },
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Panels(..) | Kernel::Columns(..) => unreachable!("built only on x86-64"),
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

/// Checks a value of `MLOPS_DENSE_MAX_ISA` (`None`: unset), with a message naming the values
/// allowed when it is none of them. A service calls this at start, so that a wrong value
/// stops it there rather than in [`Isa::detected`] at its first model load.
pub fn check_cap(value: Option<&str>) -> Result<(), String> {
    Isa::allowed(value).map(|_| ())
}

/// Whether a kernel runs on this CPU ([`Isa::detected`]). Without one a [`Dense`] runs a
/// portable loop that the compiler vectorizes only as far as the build's baseline (SSE2 on
/// x86-64): slower than a general matrix product that picks its kernel at run time, so a
/// caller with one should keep it there.
pub fn accelerated() -> bool {
    Isa::detected().is_some()
}

/// `W` (`k × n`) as panels of `nr` columns: panel `p` holds `k` rows of `nr` weights,
/// columns `p·nr ..`, zero past `n`.
fn pack(weights: &[f32], k: usize, n: usize, nr: usize) -> Vec<f32> {
    let panels = n.div_ceil(nr);
    let mut packed = vec![0.0; panels * k * nr];
    for (kk, row) in weights.chunks_exact(n).enumerate() {
        for (j, &w) in row.iter().enumerate() {
            packed[(j / nr) * k * nr + kk * nr + j % nr] = w;
        }
    }
    packed
}

/// `W`'s columns (`k × n` row-major in), each zero padded to a multiple of [`PAD`].
fn columns(weights: &[f32], k: usize, n: usize) -> Vec<f32> {
    let kp = k.next_multiple_of(PAD);
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

    use super::{Dense, PAD};

    /// Columns of one panel: two vectors.
    const NR: usize = 32;
    /// Rows walked together against a panel.
    const MR: usize = 8;

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
        let kp = k.next_multiple_of(PAD);
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

/// The AVX2 + FMA kernel: [`avx512`]'s arrangement with 8-lane vectors, panels of 16
/// columns and blocks of 6 rows (12 accumulators of the 16 registers, as MLAS's FMA3
/// kernel holds them).
#[cfg(target_arch = "x86_64")]
// As in `avx512`: indexed loops of constant bounds keep the accumulators in registers.
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_and_ps, _mm256_and_si256, _mm256_castps_si256, _mm256_castsi256_ps,
        _mm256_cmpgt_epi32, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_epi32, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };

    use super::{Dense, PAD};

    /// Columns of one panel: two vectors.
    const NR: usize = 16;
    /// Rows walked together against a panel.
    const MR: usize = 6;

    /// `max(x, 0)` lane by lane as `avx512::relu_lanes` gives it (negatives, -0 and NaNs
    /// become 0): a lane is kept when its bits, read signed, lie in `0..=+inf`.
    #[target_feature(enable = "avx2,fma")]
    fn relu_lanes(x: __m256) -> __m256 {
        let bits = _mm256_castps_si256(x);
        let not_negative = _mm256_cmpgt_epi32(bits, _mm256_set1_epi32(-1));
        let not_nan = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x7f80_0001), bits);
        _mm256_and_ps(
            x,
            _mm256_castsi256_ps(_mm256_and_si256(not_negative, not_nan)),
        )
    }

    /// Eight lanes from the start of `s`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(unsafe_code)]
    fn load(s: &[f32]) -> __m256 {
        assert!(s.len() >= 8);
        // SAFETY: the assert above: `s` holds the 8 `f32` the unaligned load reads.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }

    /// Eight lanes to the start of `s`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(unsafe_code)]
    fn store(s: &mut [f32], v: __m256) {
        assert!(s.len() >= 8);
        // SAFETY: the assert above: `s` holds the 8 `f32` the unaligned store writes.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }

    /// The layer over all rows of `x`, panel by panel, [`MR`] rows at a time.
    #[target_feature(enable = "avx2,fma")]
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
                if cols <= 8 {
                    block::<1>(xs, k, panel, &bias, d.relu, out, n, cols);
                } else {
                    block::<2>(xs, k, panel, &bias, d.relu, out, n, cols);
                }
                r0 += rr;
            }
        }
    }

    /// The layer as `n` dot products a row, 8 lanes at a time (two to a padded 16).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn run_columns(d: &Dense, columns: &[f32], x: &[f32], y: &mut [f32]) {
        let (k, n) = (d.k, d.n);
        let kp = k.next_multiple_of(PAD);
        let full = k / 8;
        let rest = k - full * 8;
        // The last `rest` inputs of a row, zero padded to one vector.
        let mut tail = [0.0f32; 8];
        let mut lanes = [0.0f32; 8];
        for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
            if rest > 0 {
                tail[..rest].copy_from_slice(&xr[full * 8..]);
            }
            for (j, o) in yr.iter_mut().enumerate() {
                let w = &columns[j * kp..][..kp];
                let mut acc = _mm256_setzero_ps();
                for c in 0..full {
                    acc = _mm256_fmadd_ps(load(&xr[c * 8..]), load(&w[c * 8..]), acc);
                }
                if rest > 0 {
                    acc = _mm256_fmadd_ps(load(&tail), load(&w[full * 8..]), acc);
                }
                store(&mut lanes, acc);
                let s = lanes.iter().sum::<f32>() + d.bias[j];
                *o = if d.relu { s.max(0.0) } else { s };
            }
        }
    }

    /// Up to [`MR`] rows (`x`, `k` each) against one panel, `NV` vectors of it wide, into
    /// `out` (rows `ld` apart, `cols` of them written).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
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
        let b = [load(&bias[..8]), load(&bias[8..])];
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        for r in 0..MR {
            for v in 0..NV {
                acc[r][v] = b[v];
            }
        }
        if rows == MR {
            // Each row's slice spelled out with its length (see `avx512::block`).
            let row = |r: usize| &x[r * k..][..k];
            let xr: [&[f32]; MR] = [row(0), row(1), row(2), row(3), row(4), row(5)];
            for kk in 0..k {
                let w = &panel[kk * NR..][..NR];
                let mut wv = [_mm256_setzero_ps(); NV];
                for v in 0..NV {
                    wv[v] = load(&w[v * 8..]);
                }
                for r in 0..MR {
                    let a = _mm256_set1_ps(xr[r][kk]);
                    for v in 0..NV {
                        acc[r][v] = _mm256_fmadd_ps(a, wv[v], acc[r][v]);
                    }
                }
            }
        } else {
            for kk in 0..k {
                let w = &panel[kk * NR..][..NR];
                let mut wv = [_mm256_setzero_ps(); NV];
                for v in 0..NV {
                    wv[v] = load(&w[v * 8..]);
                }
                for r in 0..rows {
                    let a = _mm256_set1_ps(x[r * k + kk]);
                    for v in 0..NV {
                        acc[r][v] = _mm256_fmadd_ps(a, wv[v], acc[r][v]);
                    }
                }
            }
        }
        if relu {
            for r in 0..MR {
                for v in 0..NV {
                    acc[r][v] = relu_lanes(acc[r][v]);
                }
            }
        }
        for r in 0..rows {
            let row = &mut out[r * ld..][..cols];
            if cols == NV * 8 {
                for v in 0..NV {
                    store(&mut row[v * 8..], acc[r][v]);
                }
            } else {
                let mut tile = [0.0f32; NR];
                for v in 0..NV {
                    store(&mut tile[v * 8..], acc[r][v]);
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
}
