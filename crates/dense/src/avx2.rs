//! The AVX2 + FMA kernel: `avx512`'s arrangement with 8-lane vectors, panels of 16
//! columns and blocks of 6 rows (12 accumulators of the 16 registers, as MLAS's FMA3
//! kernel holds them).

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
