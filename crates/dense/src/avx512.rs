//! The AVX-512 kernel: panels of 32 columns (two 16-lane vectors), blocks of 8 rows, 16
//! accumulators.

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
