//! Activations prepared once per input, in every form the weight kernels need.

use super::types::QK;
use super::{GgmlType, QuantError};

/// How a weight type consumes activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActKind {
    /// Integer dot against 8-bit blocks of 32 (ggml's `vec_dot_type` Q8_0 / Q8_1).
    Q8,
    /// The weight row is widened to f32 and dotted with the f32 input.
    F32,
}

/// The activation form a weight type is multiplied with.
///
/// The k-quants are `F32` in their GGML layout (rows widened into per-thread scratch and dotted
/// in f32); interleaved (`QMatrix::interleaved`, with SIMD) they multiply 8-bit activations on
/// the group kernels, so `Activations::prepare` makes both forms for them.
pub(crate) fn act_kind(ty: GgmlType) -> ActKind {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => ActKind::Q8,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => ActKind::F32,
    }
}

/// Input rows quantized to 8-bit blocks of 32, laid out as separate arrays so kernels load
/// quants with aligned-stride 32-byte reads.
///
/// One set serves both Q8_0 and Q8_1 consumers: ggml quantizes both identically and Q8_1 only
/// adds the `s` term.
pub(crate) struct Q8Acts {
    /// `tokens * cols` quants, row-major.
    pub qs: Vec<i8>,
    /// Per block scale, rounded through f16 as ggml stores it.
    pub d: Vec<f32>,
    /// Per block `d * sum(q)` (ggml `block_q8_1::s`), rounded through f16 as ggml stores it.
    pub s: Vec<f32>,
    /// Per block `d * sum(q)` in f32: the interleaved Q4_0 kernel applies Q4_0's `-8` offset
    /// through it, where f16 rounding would be an error ggml's Q4_0 kernel does not make.
    pub dsum: Vec<f32>,
}

/// Activations x [tokens, cols] (f32, row-major) prepared once for every weight type that will
/// multiply them: quantized to Q8 blocks for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights, kept f32 for
/// F32/F16/BF16 and the k-quants.
pub struct Activations {
    tokens: usize,
    cols: usize,
    f32: Option<Vec<f32>>,
    q8: Option<Q8Acts>,
}

impl Activations {
    /// Prepare `x` (`tokens * cols` values, row-major) for multiplication with weights of the
    /// given types. Errors when `x` has the wrong length or `cols` is not a whole number of
    /// blocks for a quantized consumer.
    pub fn prepare(x: &[f32], tokens: usize, cols: usize, for_types: &[GgmlType]) -> Result<Self, QuantError> {
        let expected = tokens.checked_mul(cols).ok_or(QuantError::Len {
            what: format!("activations [{tokens} x {cols}] (size overflows)"),
            expected: usize::MAX,
            actual: x.len(),
        })?;
        if x.len() != expected {
            return Err(QuantError::Len {
                what: format!("activations [{tokens} x {cols}]"),
                expected,
                actual: x.len(),
            });
        }
        let mut need_q8 = false;
        let mut need_f32 = false;
        for &ty in for_types {
            // The input must split into whole blocks of every type it will meet.
            ty.row_bytes(cols)?;
            match act_kind(ty) {
                ActKind::Q8 => need_q8 = true,
                ActKind::F32 => need_f32 = true,
            }
            // Interleaved k-quant weights (SIMD only) multiply 8-bit
            // activations; their rows outside whole groups still take the f32 path.
            if matches!(ty, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K) && super::cpu::simd() {
                need_q8 = true;
            }
        }
        Ok(Self {
            tokens,
            cols,
            f32: need_f32.then(|| x.to_vec()),
            q8: need_q8.then(|| quantize_q8(x)),
        })
    }

    /// Number of input rows.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Elements per input row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The f32 form, if prepared.
    pub(crate) fn f32(&self) -> Option<&[f32]> {
        self.f32.as_deref()
    }

    /// The Q8 form, if prepared.
    pub(crate) fn q8(&self) -> Option<&Q8Acts> {
        self.q8.as_ref()
    }
}

/// One block on the AVX2 kernel (bit-identical to the scalar loop), or None.
#[cfg(target_arch = "x86_64")]
fn simd_block(xb: &[f32], qb: &mut [i8]) -> Option<(f32, i32)> {
    super::dot::avx2::quantize_block_q8(xb, qb)
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_block(_: &[f32], _: &mut [i8]) -> Option<(f32, i32)> {
    None
}

/// `v.round()` (half away from zero, as C's `roundf`) without the libm call that baseline
/// x86-64 makes of it, which cost as much as the rest of the quantization. Exact for
/// |v| < 2^23: the fraction `v - trunc(v)` is computed without rounding there.
#[inline]
fn round_half_away(v: f32) -> f32 {
    let t = v as i32 as f32;
    let frac = v - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// Quantize whole rows (length a multiple of 32) exactly like ggml's `quantize_row_q8_1_ref`
/// (and, for `qs`/`d`, `quantize_row_q8_0_ref`): `d = amax / 127`, `q = round(x / d)` with
/// round-half-away-from-zero, scales stored as f16.
pub(crate) fn quantize_q8(x: &[f32]) -> Q8Acts {
    let nb = x.len() / QK;
    let mut qs = vec![0i8; x.len()];
    let mut d = Vec::with_capacity(nb);
    let mut s = Vec::with_capacity(nb);
    let mut dsum = Vec::with_capacity(nb);
    for (xb, qb) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
        let (db, sum) = match simd_block(xb, qb) {
            Some(r) => r,
            None => {
                let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let db = amax / 127.0;
                let id = if db != 0.0 { 1.0 / db } else { 0.0 };
                let mut sum = 0i32;
                for (q, &v) in qb.iter_mut().zip(xb) {
                    // |v * id| <= 127 (up to rounding), so the cast never saturates in practice.
                    *q = round_half_away(v * id) as i8;
                    sum += *q as i32;
                }
                (db, sum)
            }
        };
        let d_stored = half::f16::from_f32(db).to_f32();
        d.push(d_stored);
        s.push(half::f16::from_f32(sum as f32 * db).to_f32());
        dsum.push(sum as f32 * d_stored);
    }
    Q8Acts { qs, d, s, dsum }
}

#[cfg(test)]
mod tests {
    use super::{QK, round_half_away};

    #[test]
    fn rounding_equals_roundf() {
        let probes = [
            0.0f32,
            0.49999997,
            0.5,
            1.5,
            2.5,
            -0.5,
            -2.5,
            -0.49999997,
            126.5,
            -127.49,
            3.0000002,
        ];
        for v in probes
            .into_iter()
            .chain((0..20_000).map(|i| (i as f32 - 10_000.0) * 0.0127))
        {
            assert_eq!(round_half_away(v), v.round(), "{v}");
        }
    }

    /// The AVX2 block kernel gives the scalar loop's quants, scale and sum
    /// bit for bit, ties and zero blocks included.
    #[test]
    fn simd_blocks_equal_the_scalar_loop() {
        let mut blocks: Vec<[f32; QK]> = vec![[0.0; QK], [1.0; QK], [-3.5; QK]];
        let mut ties = [0.0f32; QK];
        for (i, t) in ties.iter_mut().enumerate() {
            *t = (i as f32 - 16.0) + 0.5; // amax 15.5: x / d lands on many .5s
        }
        ties[0] = 127.0;
        blocks.push(ties);
        for seed in 0..200u32 {
            let mut b = [0.0f32; QK];
            for (i, v) in b.iter_mut().enumerate() {
                let h = (seed.wrapping_mul(2_654_435_761) ^ (i as u32).wrapping_mul(40_503)) as f32;
                *v = (h / u32::MAX as f32 - 0.5) * (1.0 + seed as f32);
            }
            blocks.push(b);
        }
        for b in &blocks {
            let mut simd_q = [0i8; QK];
            let Some((d, sum)) = super::simd_block(b, &mut simd_q) else {
                return; // no AVX2 here
            };
            let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let db = amax / 127.0;
            let id = if db != 0.0 { 1.0 / db } else { 0.0 };
            let scalar_q: Vec<i8> = b.iter().map(|&v| round_half_away(v * id) as i8).collect();
            assert_eq!(simd_q.as_slice(), scalar_q.as_slice(), "{b:?}");
            assert_eq!(d.to_bits(), db.to_bits());
            assert_eq!(sum, scalar_q.iter().map(|&q| q as i32).sum::<i32>());
        }
    }
}
