//! AVX2 + FMA + F16C kernels (ports of ggml's x86 `ggml_vec_dot_*` paths).
//!
//! Each kernel takes one weight row and up to four activation rows: a weight block is unpacked
//! to 32 bytes once and then multiplied with every token, which is what makes small batches
//! cheaper per token than single-token decode.
//!
//! Arithmetic intrinsics are safe to call inside `#[target_feature]` functions; only the
//! unaligned loads need `unsafe`, and each one reads from a slice of exactly the loaded width.

use std::arch::x86_64::*;

use half::f16;

use super::super::GgmlType;
use super::super::activations::Q8Acts;
use super::super::cpu;
use super::super::types::QK;

const K_Q4_0: u8 = 0;
const K_Q4_1: u8 = 1;
const K_Q5_0: u8 = 2;
const K_Q5_1: u8 = 3;
const K_Q8_0: u8 = 4;

/// SIMD dots of consecutive legacy-quant weight rows (`w` = whole rows of `cols` elements) with
/// activation rows `t0..t0 + n` (`n` <= 4): `res[i * n + k] = dot(row i, token t0 + k)`.
/// Returns false, leaving `res` untouched, when the CPU lacks the features or the type has no
/// SIMD kernel, so the caller falls back to scalar.
pub(crate) fn dot_q8_rows(
    ty: GgmlType,
    w: &[u8],
    a: &Q8Acts,
    cols: usize,
    t0: usize,
    n: usize,
    res: &mut [f32],
) -> bool {
    if !cpu::simd() {
        return false;
    }
    let nb = cols / QK;
    let row = |t: usize| {
        (
            &a.qs[t * cols..(t + 1) * cols],
            &a.d[t * nb..(t + 1) * nb],
            &a.s[t * nb..(t + 1) * nb],
        )
    };
    let row_bytes = nb * ty.block_bytes();
    macro_rules! run {
        ($k:expr) => {
            match n {
                4 => run_n::<$k, 4>(w, row_bytes, t0, row, res),
                3 => run_n::<$k, 3>(w, row_bytes, t0, row, res),
                2 => run_n::<$k, 2>(w, row_bytes, t0, row, res),
                _ => run_n::<$k, 1>(w, row_bytes, t0, row, res),
            }
        };
    }
    match ty {
        GgmlType::Q4_0 => run!(K_Q4_0),
        GgmlType::Q4_1 => run!(K_Q4_1),
        GgmlType::Q5_0 => run!(K_Q5_0),
        GgmlType::Q5_1 => run!(K_Q5_1),
        GgmlType::Q8_0 => run!(K_Q8_0),
        _ => return false,
    }
    true
}

type Q8Slices<'a> = (&'a [i8], &'a [f32], &'a [f32]);

#[inline(always)]
fn run_n<'a, const K: u8, const N: usize>(
    w: &[u8],
    row_bytes: usize,
    t0: usize,
    row: impl Fn(usize) -> Q8Slices<'a>,
    res: &mut [f32],
) {
    let ys: [Q8Slices<'a>; N] = std::array::from_fn(|i| row(t0 + i));
    // SAFETY: only reached after `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    unsafe { rows_kernel::<K, N>(w, row_bytes, &ys, res) };
}

/// Bytes per block for kernel kind `K`.
const fn block_bytes(k: u8) -> usize {
    match k {
        K_Q4_0 => 18,
        K_Q4_1 => 20,
        K_Q5_0 => 22,
        K_Q5_1 => 24,
        _ => 34,
    }
}

/// All rows of `w` against `N` tokens. The row loop lives inside the target-feature function so
/// the per-row work is just the inlined block loop: with one token a row is only ~20 blocks, and
/// per-call overhead outside the kernel used to cost as much as the dot itself.
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_kernel<const K: u8, const N: usize>(w: &[u8], row_bytes: usize, ys: &[Q8Slices<'_>; N], res: &mut [f32]) {
    if row_bytes == 0 {
        return;
    }
    for (wr, out) in w.chunks_exact(row_bytes).zip(res.chunks_exact_mut(N)) {
        out.copy_from_slice(&dot_kernel::<K, N>(wr, ys));
    }
}

/// Dot of one weight row (kind `K`) with `N` Q8 activation rows.
///
/// Signed kinds use ggml's `mul_sum_i8_pairs` trick (|x| times y with x's sign moved onto y, so
/// `maddubs` can take an unsigned first operand); the offset kinds (Q4_1/Q5_1) have unsigned
/// quants already and add `m * s` per block separately.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_kernel<const K: u8, const N: usize>(w: &[u8], ys: &[Q8Slices<'_>; N]) -> [f32; N] {
    let signed = matches!(K, K_Q4_0 | K_Q5_0 | K_Q8_0);
    let has_min = matches!(K, K_Q4_1 | K_Q5_1);
    let ones = _mm256_set1_epi16(1);
    // Two accumulator sets (even / odd blocks) so consecutive FMAs do not wait on each other's
    // latency. The loop is unrolled by hand (macro) so both sets stay in registers.
    let mut acc0 = [_mm256_setzero_ps(); N];
    let mut acc1 = [_mm256_setzero_ps(); N];
    // Same for the scalar `m * s` sums of the offset kinds.
    let mut summ0 = [0.0f32; N];
    let mut summ1 = [0.0f32; N];
    macro_rules! block {
        ($b:expr, $blk:expr, $acc:ident, $summ:ident) => {{
            let (b, blk): (usize, &[u8]) = ($b, $blk);
            let (dx, mx) = f16_pair(blk);
            let qx = match K {
                K_Q4_0 => _mm256_sub_epi8(nibbles(&blk[2..18]), _mm256_set1_epi8(8)),
                K_Q4_1 => nibbles(&blk[4..20]),
                // High bit clear means value - 16 < 0: OR 0xF0 into those bytes to sign-extend.
                K_Q5_0 => _mm256_or_si256(
                    nibbles(&blk[6..22]),
                    _mm256_andnot_si256(bit_bytes(&blk[2..6]), _mm256_set1_epi8(0xF0u8 as i8)),
                ),
                K_Q5_1 => _mm256_or_si256(
                    nibbles(&blk[8..24]),
                    _mm256_and_si256(bit_bytes(&blk[4..8]), _mm256_set1_epi8(0x10)),
                ),
                _ => load32(&blk[2..34]),
            };
            let ax = if signed { _mm256_sign_epi8(qx, qx) } else { qx };
            for j in 0..N {
                let (qs, d, s) = ys[j];
                let qy = load32(&qs[b * QK..(b + 1) * QK]);
                let qy = if signed { _mm256_sign_epi8(qy, qx) } else { qy };
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, qy), ones);
                $acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dx * d[b]), _mm256_cvtepi32_ps(p), $acc[j]);
                if has_min {
                    $summ[j] += mx * s[b];
                }
            }
        }};
    }
    let mut blocks = w.chunks_exact(block_bytes(K)).enumerate();
    while let Some((b, blk)) = blocks.next() {
        block!(b, blk, acc0, summ0);
        if let Some((b, blk)) = blocks.next() {
            block!(b, blk, acc1, summ1);
        }
    }
    let mut out = [0.0f32; N];
    for j in 0..N {
        out[j] = hsum(_mm256_add_ps(acc0[j], acc1[j])) + (summ0[j] + summ1[j]);
    }
    out
}

/// The block's leading f16 pair as f32 (`d`, and `m` for the offset kinds; garbage otherwise).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_pair(blk: &[u8]) -> (f32, f32) {
    let bits = u32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
}

/// 16 bytes of packed nibbles -> 32 bytes: low nibbles (elements 0..16) in the low lane,
/// high nibbles (elements 16..32) in the high lane, as ggml orders them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nibbles(src: &[u8]) -> __m256i {
    let src: &[u8; 16] = match src.try_into() {
        Ok(a) => a,
        Err(_) => return _mm256_setzero_si256(),
    };
    // SAFETY: `src` is exactly 16 readable bytes; loadu has no alignment requirement.
    let bytes = unsafe { _mm_loadu_si128(src.as_ptr().cast()) };
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(bytes, m4);
    let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), m4);
    _mm256_set_m128i(hi, lo)
}

/// 4 bytes of bit flags -> 32 bytes, byte j = 0xFF iff bit j is set (ggml `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bit_bytes(src: &[u8]) -> __m256i {
    let x32 = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
    let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x32 as i32), shuf);
    // Every byte gets all bits set except the one selecting its element.
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// 16 bytes as a 128-bit register (zeros for a slice of another length).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load16(src: &[u8]) -> __m128i {
    let src: &[u8; 16] = match src.try_into() {
        Ok(a) => a,
        Err(_) => return _mm_setzero_si128(),
    };
    // SAFETY: `src` is exactly 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(src.as_ptr().cast()) }
}

/// Byte-sized element types a 32-byte register can be loaded from.
pub(super) trait Byte: Copy {}
impl Byte for u8 {}
impl Byte for i8 {}

/// 32 bytes (quant bytes or i8 activations) as a 256-bit register (zeros for a slice of
/// another length).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load32<T: Byte>(src: &[T]) -> __m256i {
    let src: &[T; 32] = match src.try_into() {
        Ok(a) => a,
        Err(_) => return _mm256_setzero_si256(),
    };
    // SAFETY: `src` is exactly 32 one-byte elements (`Byte` is only u8 and i8); loadu has no
    // alignment requirement.
    unsafe { _mm256_loadu_si256(src.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// f32 dot product with four 8-wide FMA accumulators. Returns None without AVX2.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> Option<f32> {
    if !cpu::simd() {
        return None;
    }
    // SAFETY: `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    Some(unsafe { dot_f32_kernel(a, b) })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32_kernel(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [_mm256_setzero_ps(); 4];
    let full = n - n % 8;
    for (i, (x, y)) in a[..full].chunks_exact(8).zip(b[..full].chunks_exact(8)).enumerate() {
        // SAFETY: `x` and `y` are exactly 8 f32 each; loadu has no alignment requirement.
        let (xv, yv) = unsafe { (_mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(y.as_ptr())) };
        acc[i % 4] = _mm256_fmadd_ps(xv, yv, acc[i % 4]);
    }
    let tail: f32 = a[full..].iter().zip(&b[full..]).map(|(x, y)| x * y).sum();
    hsum(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    )) + tail
}

/// Whether the attention kernels take a head of width `hd` at `off` in rows
/// of `kv_dim` (AVX2 present, whole 8-wide vectors, inside the row).
fn simd_head((kv_dim, off, hd): (usize, usize, usize)) -> bool {
    cpu::simd() && hd > 0 && hd.is_multiple_of(8) && off + hd <= kv_dim
}

/// Attention scores of `group` query heads (`q`: `group * hd` values) against positions
/// `0..len` of one key/value head: `keys` are cache blocks of `kv_dim`-wide positions and the
/// head's keys sit at `off..off + hd` of each. Writes `scores[g * len + p] = scale * q_g . k_p`.
/// One call per (token, key/value head) keeps the per-position work inside one target-feature
/// function; each key is loaded once for every query head of its group. Returns false (writing
/// nothing) without AVX2 or when `hd` is not a multiple of 8.
pub(crate) fn attn_scores(
    q: &[f32],
    keys: &[&[f16]],
    (kv_dim, off, hd): (usize, usize, usize),
    len: usize,
    scale: f32,
    scores: &mut [f32],
) -> bool {
    if !simd_head((kv_dim, off, hd)) || scores.len() < q.len() / hd * len {
        return false;
    }
    // SAFETY: `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    unsafe { attn_scores_kernel(q, keys, (kv_dim, off, hd), len, scale, scores) };
    true
}

#[target_feature(enable = "avx2,fma,f16c")]
fn attn_scores_kernel(
    q: &[f32],
    keys: &[&[f16]],
    (kv_dim, off, hd): (usize, usize, usize),
    len: usize,
    scale: f32,
    scores: &mut [f32],
) {
    let positions = keys.iter().flat_map(|b| b.chunks_exact(kv_dim)).take(len);
    for (p, key) in positions.enumerate() {
        let key = &key[off..off + hd];
        for (g, qg) in q.chunks_exact(hd).enumerate() {
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (i, (k, x)) in key.chunks_exact(8).zip(qg.chunks_exact(8)).enumerate() {
                let kv = load8_f16(k);
                // SAFETY: `x` is exactly 8 f32; loadu has no alignment requirement.
                let xv = unsafe { _mm256_loadu_ps(x.as_ptr()) };
                match i % 2 {
                    0 => a0 = _mm256_fmadd_ps(kv, xv, a0),
                    _ => a1 = _mm256_fmadd_ps(kv, xv, a1),
                }
            }
            scores[g * len + p] = hsum(_mm256_add_ps(a0, a1)) * scale;
        }
    }
}

/// The attention output of `group` heads: `out[g * hd..][..hd] = sum_p w[g * len + p] * v_p`,
/// values laid out as in [`attn_scores`]. Returns false (writing nothing) where that does.
pub(crate) fn attn_values(
    w: &[f32],
    values: &[&[f16]],
    (kv_dim, off, hd): (usize, usize, usize),
    len: usize,
    out: &mut [f32],
) -> bool {
    if !simd_head((kv_dim, off, hd)) || w.len() < out.len() / hd * len {
        return false;
    }
    // SAFETY: `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    unsafe { attn_values_kernel(w, values, (kv_dim, off, hd), len, out) };
    true
}

#[target_feature(enable = "avx2,fma,f16c")]
fn attn_values_kernel(
    w: &[f32],
    values: &[&[f16]],
    (kv_dim, off, hd): (usize, usize, usize),
    len: usize,
    out: &mut [f32],
) {
    out.fill(0.0);
    let positions = values.iter().flat_map(|b| b.chunks_exact(kv_dim)).take(len);
    for (p, value) in positions.enumerate() {
        let value = &value[off..off + hd];
        for (g, og) in out.chunks_exact_mut(hd).enumerate() {
            let wv = _mm256_set1_ps(w[g * len + p]);
            for (o, v) in og.chunks_exact_mut(8).zip(value.chunks_exact(8)) {
                let vv = load8_f16(v);
                // SAFETY: `o` is exactly 8 f32; loadu/storeu have no alignment requirement.
                unsafe {
                    let r = _mm256_fmadd_ps(wv, vv, _mm256_loadu_ps(o.as_ptr()));
                    _mm256_storeu_ps(o.as_mut_ptr(), r);
                }
            }
        }
    }
}

/// Quantize one block of 32 activations to 8 bits exactly as the scalar
/// `quantize_q8` does (`d = amax / 127`, `q = round-half-away(x / d)`):
/// writes `qs` and returns `(d, sum of qs)` (`d` before f16 rounding), or
/// `None` without AVX2 or for a block of another size.
pub(crate) fn quantize_block_q8(x: &[f32], qs: &mut [i8]) -> Option<(f32, i32)> {
    let (x, qs): (&[f32; 32], &mut [i8; 32]) = (x.try_into().ok()?, qs.try_into().ok()?);
    if !cpu::simd() {
        return None;
    }
    // SAFETY: `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    Some(unsafe { quantize_block_q8_kernel(x, qs) })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_block_q8_kernel(x: &[f32; 32], qs: &mut [i8; 32]) -> (f32, i32) {
    // SAFETY (all loads): `x` is exactly 32 f32, read 8 at a time at offsets 0, 8, 16, 24.
    let v: [__m256; 4] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(x[8 * i..].as_ptr()) });
    let sign = _mm256_set1_ps(-0.0);
    let abs = v.map(|a| _mm256_andnot_ps(sign, a));
    let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (idv, half, one) = (_mm256_set1_ps(id), _mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
    let q = v.map(|a| {
        // Round half away from zero: the fraction after truncation is exact.
        let y = _mm256_mul_ps(a, idv);
        let t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        let f = _mm256_sub_ps(y, t);
        let up = _mm256_and_ps(_mm256_cmp_ps(f, half, _CMP_GE_OQ), one);
        let down = _mm256_and_ps(
            _mm256_cmp_ps(f, _mm256_sub_ps(_mm256_setzero_ps(), half), _CMP_LE_OQ),
            one,
        );
        _mm256_cvtps_epi32(_mm256_sub_ps(_mm256_add_ps(t, up), down))
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let sum = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b01_00_11_10));
    let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01)));
    // Pack 4 x 8 i32 to 32 i8; packs work per 128-bit lane, so undo the
    // lane interleave with a final dword permutation.
    let p16a = _mm256_packs_epi32(q[0], q[1]);
    let p16b = _mm256_packs_epi32(q[2], q[3]);
    let p8 = _mm256_packs_epi16(p16a, p16b);
    let p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `qs` is exactly 32 writable bytes; storeu has no alignment requirement.
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), p8) };
    (d, sum)
}

/// Eight f16 values widened to f32 (zeros for a slice of another length).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8_f16(src: &[f16]) -> __m256 {
    let src: &[f16; 8] = match src.try_into() {
        Ok(a) => a,
        Err(_) => return _mm256_setzero_ps(),
    };
    // SAFETY: `src` is exactly 16 readable bytes (f16 is a transparent u16); loadu has no
    // alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(src.as_ptr().cast()) })
}

/// `out += w * v` with 8-wide FMAs. Returns false without AVX2.
pub(crate) fn axpy_f32(out: &mut [f32], w: f32, v: &[f32]) -> bool {
    if !cpu::simd() {
        return false;
    }
    // SAFETY: `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    unsafe { axpy_f32_kernel(out, w, v) };
    true
}

#[target_feature(enable = "avx2,fma,f16c")]
fn axpy_f32_kernel(out: &mut [f32], w: f32, v: &[f32]) {
    let n = out.len().min(v.len());
    let full = n - n % 8;
    let wv = _mm256_set1_ps(w);
    for (o, x) in out[..full].chunks_exact_mut(8).zip(v[..full].chunks_exact(8)) {
        // SAFETY: `o` and `x` are exactly 8 f32 each; loadu/storeu have no alignment requirement.
        unsafe {
            let r = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr()), _mm256_loadu_ps(o.as_ptr()));
            _mm256_storeu_ps(o.as_mut_ptr(), r);
        }
    }
    for (o, x) in out[full..n].iter_mut().zip(&v[full..n]) {
        *o += w * x;
    }
}

/// Widen little-endian f16 values to f32 with F16C. Returns false without it.
pub(crate) fn f16_to_f32(src: &[u8], dst: &mut [f32]) -> bool {
    if !cpu::simd() {
        return false;
    }
    // SAFETY: `cpu::simd()` confirmed AVX2, FMA and F16C at runtime.
    unsafe { f16_to_f32_kernel(src, dst) };
    true
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32_kernel(src: &[u8], dst: &mut [f32]) {
    let n = dst.len().min(src.len() / 2);
    let full = n - n % 8;
    for (s, d) in src[..2 * full].chunks_exact(16).zip(dst[..full].chunks_exact_mut(8)) {
        // SAFETY: `s` is exactly 16 readable bytes and `d` exactly 8 writable f32.
        unsafe { _mm256_storeu_ps(d.as_mut_ptr(), _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast()))) };
    }
    for (s, d) in src[2 * full..2 * n].chunks_exact(2).zip(&mut dst[full..n]) {
        *d = half::f16::from_le_bytes([s[0], s[1]]).to_f32();
    }
}
