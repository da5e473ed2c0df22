//! Row-times-activations dot products, dispatched to SIMD or scalar kernels.

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2_groups;
mod scalar;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2_groups::GROUP_TOKENS;
/// Without x86 there are no group kernels; the constant only sizes loops that never run.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const GROUP_TOKENS: usize = 4;

use super::GgmlType;
use super::activations::Q8Acts;
use super::types::QK;

/// Most tokens one kernel call handles; the weight block is unpacked once for all of them.
pub(crate) const MAX_TOKENS: usize = 4;

/// Dots of consecutive weight rows `w` (whole rows of `cols` elements, legacy quant type) with
/// activation rows `t0..t0 + n` (`n` <= [`MAX_TOKENS`]): `res[i * n + k] = dot(row i, token
/// t0 + k)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn q8_rows(
    ty: GgmlType,
    simd: bool,
    w: &[u8],
    a: &Q8Acts,
    cols: usize,
    t0: usize,
    n: usize,
    res: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if simd && avx2::dot_q8_rows(ty, w, a, cols, t0, n, res) {
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    let nb = cols / QK;
    let row_bytes = nb * ty.block_bytes();
    if row_bytes == 0 || n == 0 {
        return;
    }
    for (wr, out) in w.chunks_exact(row_bytes).zip(res.chunks_exact_mut(n)) {
        for (k, o) in out.iter_mut().enumerate() {
            let t = t0 + k;
            let row = scalar::Q8Row {
                qs: &a.qs[t * cols..(t + 1) * cols],
                d: &a.d[t * nb..(t + 1) * nb],
                s: &a.s[t * nb..(t + 1) * nb],
            };
            *o = scalar::dot_q8(ty, wr, &row);
        }
    }
}

/// Dots of interleaved row groups `w` (whole groups of eight rows, `cols` columns) with
/// activation rows `t0..t0 + outs.len()` (at most [`GROUP_TOKENS`]): row `8g + r` of token
/// `t0 + k` goes to `outs[k][at + 8g + r]`. Returns false, writing nothing, where there is no
/// SIMD kernel for it; the caller then uses the GGML-layout rows.
pub(crate) fn q8_groups(
    ty: GgmlType,
    w: &[u8],
    a: &Q8Acts,
    cols: usize,
    t0: usize,
    outs: &mut [&mut [f32]],
    at: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx2_groups::dot_groups(ty, w, a, cols, t0, outs, at);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ty, w, a, cols, t0, outs, at);
        false
    }
}

/// f32 dot product.
pub(crate) fn f32_dot(simd: bool, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd && let Some(v) = avx2::dot_f32(a, b) {
        return v;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    scalar::dot_f32(a, b)
}

/// `out += w * v`.
pub(crate) fn f32_axpy(simd: bool, out: &mut [f32], w: f32, v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd && avx2::axpy_f32(out, w, v) {
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    for (o, x) in out.iter_mut().zip(v) {
        *o += w * x;
    }
}

/// Widen an F16 row to f32 with F16C when allowed; false means the caller must do it.
pub(crate) fn f16_row(simd: bool, src: &[u8], dst: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if simd {
        return avx2::f16_to_f32(src, dst);
    }
    let _ = (simd, src, dst);
    false
}
