//! Portable reference dot products (ggml's `ggml_vec_dot_*_generic`).
//!
//! Used on non-x86 CPUs, when SIMD is disabled, and by tests as the ground truth the SIMD
//! kernels are compared against. Integer sums per block are exact; only the per block scaling
//! is in f32, in ggml's order.

use super::super::GgmlType;
use super::super::dequant::f16_at;
use super::super::types::QK;

/// One Q8 activation row: quants, per block scales and per block `d * sum(q)`.
pub(crate) struct Q8Row<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

/// Dot of one weight row of a legacy quant type with one Q8 activation row.
pub(crate) fn dot_q8(ty: GgmlType, w: &[u8], y: &Q8Row<'_>) -> f32 {
    let bb = ty.block_bytes();
    let mut sumf = 0.0f32;
    for (b, (blk, qy)) in w.chunks_exact(bb).zip(y.qs.chunks_exact(QK)).enumerate() {
        let dy = y.d[b];
        sumf += match ty {
            GgmlType::Q4_0 => {
                let mut sumi = 0i32;
                for (j, &q) in blk[2..18].iter().enumerate() {
                    sumi += ((q & 0x0F) as i32 - 8) * qy[j] as i32 + ((q >> 4) as i32 - 8) * qy[j + 16] as i32;
                }
                f16_at(blk, 0) * dy * sumi as f32
            }
            GgmlType::Q4_1 => {
                let mut sumi = 0i32;
                for (j, &q) in blk[4..20].iter().enumerate() {
                    sumi += (q & 0x0F) as i32 * qy[j] as i32 + (q >> 4) as i32 * qy[j + 16] as i32;
                }
                f16_at(blk, 0) * dy * sumi as f32 + f16_at(blk, 2) * y.s[b]
            }
            GgmlType::Q5_0 => {
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                let mut sumi = 0i32;
                for (j, &q) in blk[6..22].iter().enumerate() {
                    let h0 = (((qh >> j) << 4) & 0x10) as i32;
                    let h1 = ((qh >> (j + 12)) & 0x10) as i32;
                    sumi += (((q & 0x0F) as i32 | h0) - 16) * qy[j] as i32
                        + (((q >> 4) as i32 | h1) - 16) * qy[j + 16] as i32;
                }
                f16_at(blk, 0) * dy * sumi as f32
            }
            GgmlType::Q5_1 => {
                let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
                let mut sumi = 0i32;
                for (j, &q) in blk[8..24].iter().enumerate() {
                    let h0 = (((qh >> j) << 4) & 0x10) as i32;
                    let h1 = ((qh >> (j + 12)) & 0x10) as i32;
                    sumi += ((q & 0x0F) as i32 | h0) * qy[j] as i32 + ((q >> 4) as i32 | h1) * qy[j + 16] as i32;
                }
                f16_at(blk, 0) * dy * sumi as f32 + f16_at(blk, 2) * y.s[b]
            }
            // Q8_0; the dispatcher only sends legacy types here.
            _ => {
                let sumi: i32 = blk[2..34]
                    .iter()
                    .zip(qy)
                    .map(|(&q, &v)| q as i8 as i32 * v as i32)
                    .sum();
                f16_at(blk, 0) * dy * sumi as f32
            }
        };
    }
    sumf
}

/// Plain f32 dot with 8 independent partial sums, which LLVM vectorizes for the baseline ISA.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.split_at(a.len() - a.len() % 8);
    let (bc, br) = b.split_at(ac.len().min(b.len()));
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}
