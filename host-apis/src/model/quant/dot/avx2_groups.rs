//! AVX2 kernels for weights interleaved in groups of eight rows (layout in `interleave`).
//!
//! Per group-block and token, each 32-byte weight register (the same four columns of eight
//! rows) is multiplied by those four activation bytes broadcast to every lane, so lane r
//! accumulates row r: the eight dots of a group come out of one accumulator with no
//! horizontal sums, and scales apply as a vector of eight. The weights are unpacked once per
//! group-block and reused for up to [`GROUP_TOKENS`] tokens.
//!
//! On Zen 3 the `maddubs` multiplies are the limit (eight per 256 multiply-adds of a token and
//! group-block); `examples/matmul_bench` reaches about 22 multiply-adds per cycle on one core.
//!
//! Arithmetic intrinsics are safe inside `#[target_feature]` functions; only the unaligned
//! loads and stores need `unsafe`, each on a slice of exactly the accessed width.

use std::arch::x86_64::*;

use super::super::GgmlType;
use super::super::activations::Q8Acts;
use super::super::cpu;
use super::super::interleave::{GROUP, group_block_bytes};
use super::super::types::QK;
use super::avx2::{load16, load32};

/// Most tokens one kernel call handles. At eight some accumulators live on the stack (AVX2 has
/// sixteen registers), but each unpacked weight block serves twice the tokens it would at
/// four: `examples/llm_bench` decodes 8 streams about 5% faster.
pub(crate) const GROUP_TOKENS: usize = 8;

/// One activation row: quants, per block scales, and the per block factor of the weights' min
/// term (`s` for Q4_1, `dsum` for Q4_0, unused for Q8_0).
type Y<'a> = (&'a [i8], &'a [f32], &'a [f32]);

/// Dots of the interleaved groups in `w` (whole groups of `cols` columns) with activation rows
/// `t0..t0 + outs.len()` (at most [`GROUP_TOKENS`]): row `8g + r` of token `t0 + k` goes to
/// `outs[k][at + 8g + r]`. Returns false, writing nothing, when the CPU lacks the features or
/// `ty` has no interleaved layout.
pub(crate) fn dot_groups(
    ty: GgmlType,
    w: &[u8],
    a: &Q8Acts,
    cols: usize,
    t0: usize,
    outs: &mut [&mut [f32]],
    at: usize,
) -> bool {
    let Some(gbb) = group_block_bytes(ty) else {
        return false;
    };
    if !cpu::simd() || cols == 0 {
        return false;
    }
    let nb = cols / QK;
    let group_bytes = nb * gbb;
    let groups = w.len() / group_bytes;
    // Every output slot the kernel will store to must exist: checked once here so the stores
    // inside can stay unchecked-free of panics.
    if outs.iter().any(|o| o.len() < at + groups * GROUP) {
        return false;
    }
    let row = |t: usize| -> Y<'_> {
        let (q, d) = (&a.qs[t * cols..(t + 1) * cols], &a.d[t * nb..(t + 1) * nb]);
        match ty {
            // Q4_1's min term uses ggml's f16-rounded `s`; the others' mins are
            // exact in f32, so they take the exact sum.
            GgmlType::Q4_1 => (q, d, &a.s[t * nb..(t + 1) * nb]),
            _ => (q, d, &a.dsum[t * nb..(t + 1) * nb]),
        }
    };
    macro_rules! run {
        ($kind:expr) => {
            match outs.len() {
                8 => run_n::<$kind, 8>(w, group_bytes, t0, row, outs, at),
                7 => run_n::<$kind, 7>(w, group_bytes, t0, row, outs, at),
                6 => run_n::<$kind, 6>(w, group_bytes, t0, row, outs, at),
                5 => run_n::<$kind, 5>(w, group_bytes, t0, row, outs, at),
                4 => run_n::<$kind, 4>(w, group_bytes, t0, row, outs, at),
                3 => run_n::<$kind, 3>(w, group_bytes, t0, row, outs, at),
                2 => run_n::<$kind, 2>(w, group_bytes, t0, row, outs, at),
                1 => run_n::<$kind, 1>(w, group_bytes, t0, row, outs, at),
                _ => return false,
            }
        };
    }
    match ty {
        GgmlType::Q8_0 => run!(KIND_Q8),
        GgmlType::Q4K => run!(KIND_Q4_F32),
        GgmlType::Q5K => run!(KIND_Q5),
        GgmlType::Q6K => run!(KIND_Q6),
        _ => run!(KIND_Q4),
    }
    true
}

/// Group layouts: 4-bit with f16 scales (Q4_0, Q4_1), 4-bit with f32 scales (Q4_K), 8-bit
/// (Q8_0), signed 6-bit with two f32 scales per block (Q6_K), unsigned 5-bit with f32 scale
/// and min (Q5_K).
const KIND_Q4: u8 = 0;
const KIND_Q4_F32: u8 = 1;
const KIND_Q8: u8 = 2;
const KIND_Q6: u8 = 3;
const KIND_Q5: u8 = 4;

#[inline(always)]
fn run_n<'a, const KIND: u8, const N: usize>(
    w: &[u8],
    group_bytes: usize,
    t0: usize,
    row: impl Fn(usize) -> Y<'a>,
    outs: &mut [&mut [f32]],
    at: usize,
) {
    let ys: [Y<'a>; N] = std::array::from_fn(|k| row(t0 + k));
    // SAFETY: only reached after `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    unsafe { groups_kernel::<KIND, N>(w, group_bytes, &ys, outs, at) };
}

/// Every group of `w` against `N` tokens; the group loop sits inside the target-feature
/// function so one call covers a whole chunk of rows (per-call overhead matters at one token).
#[target_feature(enable = "avx2,fma,f16c")]
fn groups_kernel<const KIND: u8, const N: usize>(
    w: &[u8],
    group_bytes: usize,
    ys: &[Y<'_>; N],
    outs: &mut [&mut [f32]],
    at: usize,
) {
    for (g, group) in w.chunks_exact(group_bytes).enumerate() {
        let acc = match KIND {
            KIND_Q8 => q8_group::<N>(group, ys),
            KIND_Q6 => q6_group::<N>(group, ys),
            KIND_Q5 => q5_group::<N>(group, ys),
            KIND_Q4_F32 => q4_group::<N, true>(group, ys),
            _ => q4_group::<N, false>(group, ys),
        };
        for (out, acc) in outs.iter_mut().zip(acc) {
            let dst: &mut [f32; GROUP] = match (&mut out[at + g * GROUP..at + (g + 1) * GROUP]).try_into() {
                Ok(d) => d,
                Err(_) => return,
            };
            // SAFETY: `dst` is exactly 8 writable f32; storeu has no alignment requirement.
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), acc) };
        }
    }
}

/// One group of 4-bit rows (Q4_0/Q4_1 layout, or Q4_K's with f32 scales) against `N` tokens.
///
/// Per block and token the eight `maddubs` products (at most 2 * 15 * 128 = 3840 each) are
/// summed in 16-bit lanes, which cannot overflow (8 * 3840 < 32768), before one widening
/// `madd`: half the instructions of widening each product.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_group<const N: usize, const F32_SCALES: bool>(group: &[u8], ys: &[Y<'_>; N]) -> [__m256; N] {
    let m4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); N];
    // Scales and mins: eight f16 each, or eight f32 each.
    let sb = if F32_SCALES { 32 } else { 16 };
    for (b, blk) in group.chunks_exact(2 * sb + 4 * 32).enumerate() {
        let (d, m) = match F32_SCALES {
            true => (load8_f32(&blk[0..32]), load8_f32(&blk[32..64])),
            false => (
                _mm256_cvtph_ps(load16(&blk[0..16])),
                _mm256_cvtph_ps(load16(&blk[16..32])),
            ),
        };
        let p: [__m256i; 4] = std::array::from_fn(|c| load32(&blk[2 * sb + 32 * c..2 * sb + 32 * (c + 1)]));
        let lo = p.map(|v| _mm256_and_si256(v, m4));
        let hi = p.map(|v| _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        for (acc, &(qs, dy, mf)) in acc.iter_mut().zip(ys) {
            let Some(qy) = qs.get(b * QK..(b + 1) * QK) else { break };
            let mut s16 = _mm256_maddubs_epi16(lo[0], quad(qy, 0));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[1], quad(qy, 1)));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[2], quad(qy, 2)));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[3], quad(qy, 3)));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[0], quad(qy, 4)));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[1], quad(qy, 5)));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[2], quad(qy, 6)));
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[3], quad(qy, 7)));
            let sum = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
            let (dyb, mfb) = (dy.get(b).copied().unwrap_or(0.0), mf.get(b).copied().unwrap_or(0.0));
            *acc = _mm256_fmadd_ps(sum, _mm256_mul_ps(d, _mm256_set1_ps(dyb)), *acc);
            *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(mfb), *acc);
        }
    }
    acc
}

/// One group of Q8_0 rows against `N` tokens. Signed weights use ggml's sign trick (|w| times
/// y with w's sign moved onto y, so `maddubs` gets an unsigned first operand); its products
/// reach 2 * 127 * 127, so each is widened on its own.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_group<const N: usize>(group: &[u8], ys: &[Y<'_>; N]) -> [__m256; N] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); N];
    for (b, blk) in group.chunks_exact(16 + 8 * 32).enumerate() {
        let d = _mm256_cvtph_ps(load16(&blk[0..16]));
        let w: [__m256i; 8] = std::array::from_fn(|c| load32(&blk[16 + 32 * c..48 + 32 * c]));
        let aw = w.map(|v| _mm256_sign_epi8(v, v));
        for (acc, &(qs, dy, _)) in acc.iter_mut().zip(ys) {
            let Some(qy) = qs.get(b * QK..(b + 1) * QK) else { break };
            let mut s32 = _mm256_setzero_si256();
            for c in 0..8 {
                let y = _mm256_sign_epi8(quad(qy, c), w[c]);
                s32 = _mm256_add_epi32(s32, _mm256_madd_epi16(_mm256_maddubs_epi16(aw[c], y), ones));
            }
            let dyb = dy.get(b).copied().unwrap_or(0.0);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_mul_ps(d, _mm256_set1_ps(dyb)), *acc);
        }
    }
    acc
}

/// Eight little-endian f32 (zeros for a slice of another length).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8_f32(src: &[u8]) -> __m256 {
    _mm256_castsi256_ps(load32(src))
}

/// One group of Q5_K rows (u8 values 0..32, f32 scale and min per block) against `N` tokens.
/// Values are unsigned, so `maddubs` takes them directly; four products (at most
/// 4 * 2 * 31 * 128 = 31744) sum in 16-bit lanes, two such sums per block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_group<const N: usize>(group: &[u8], ys: &[Y<'_>; N]) -> [__m256; N] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); N];
    for (b, blk) in group.chunks_exact(2 * 32 + 8 * 32).enumerate() {
        let (d, m) = (load8_f32(&blk[0..32]), load8_f32(&blk[32..64]));
        let w: [__m256i; 8] = std::array::from_fn(|c| load32(&blk[64 + 32 * c..96 + 32 * c]));
        for (acc, &(qs, dy, mf)) in acc.iter_mut().zip(ys) {
            let Some(qy) = qs.get(b * QK..(b + 1) * QK) else { break };
            let half = |c0: usize| {
                let mut s16 = _mm256_setzero_si256();
                for (c, &wc) in (c0..).zip(&w[c0..c0 + 4]) {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(wc, quad(qy, c)));
                }
                _mm256_madd_epi16(s16, ones)
            };
            let sum = _mm256_cvtepi32_ps(_mm256_add_epi32(half(0), half(4)));
            let (dyb, mfb) = (dy.get(b).copied().unwrap_or(0.0), mf.get(b).copied().unwrap_or(0.0));
            *acc = _mm256_fmadd_ps(sum, _mm256_mul_ps(d, _mm256_set1_ps(dyb)), *acc);
            *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(mfb), *acc);
        }
    }
    acc
}

/// One group of Q6_K rows (values `q - 32` as i8, a scale per 16 columns) against `N` tokens.
/// Sign trick as for Q8_0; |value| <= 32 and |activation| <= 127, so four `maddubs` products
/// (at most 4 * 2 * 32 * 127 = 32512) sum in 16-bit lanes: one sum per 16-column half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_group<const N: usize>(group: &[u8], ys: &[Y<'_>; N]) -> [__m256; N] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); N];
    for (b, blk) in group.chunks_exact(2 * 32 + 8 * 32).enumerate() {
        let (d1, d2) = (load8_f32(&blk[0..32]), load8_f32(&blk[32..64]));
        let w: [__m256i; 8] = std::array::from_fn(|c| load32(&blk[64 + 32 * c..96 + 32 * c]));
        let aw = w.map(|v| _mm256_sign_epi8(v, v));
        for (acc, &(qs, dy, _)) in acc.iter_mut().zip(ys) {
            let Some(qy) = qs.get(b * QK..(b + 1) * QK) else { break };
            let half = |c0: usize| {
                let mut s16 = _mm256_setzero_si256();
                for c in c0..c0 + 4 {
                    let y = _mm256_sign_epi8(quad(qy, c), w[c]);
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(aw[c], y));
                }
                _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones))
            };
            let dyv = _mm256_set1_ps(dy.get(b).copied().unwrap_or(0.0));
            *acc = _mm256_fmadd_ps(half(0), _mm256_mul_ps(d1, dyv), *acc);
            *acc = _mm256_fmadd_ps(half(4), _mm256_mul_ps(d2, dyv), *acc);
        }
    }
    acc
}

/// Activation bytes `4c..4c+4` of a 32-byte block, broadcast to all eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quad(qy: &[i8], c: usize) -> __m256i {
    let q = &qy[4 * c..4 * c + 4];
    _mm256_set1_epi32(i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]))
}
