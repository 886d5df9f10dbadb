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
    pub(crate) fn on(
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

// Indexed loops of constant bounds over the accumulators: written with iterators or slice
// copies, the compiler kept them in memory and stored them back on every step.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)]
mod avx2;
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)]
mod avx512;

#[cfg(test)]
mod tests;
