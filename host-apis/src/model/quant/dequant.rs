//! Scalar dequantization of one row, bit-exact with ggml's `dequantize_row_*`.
//!
//! The float expressions keep ggml's operation order (`d * q + m`, `(d * sc) * q`, ...) and never
//! fuse multiply-adds, so the results equal ggml's and gguf-py's to the last bit.

use super::types::{QK, QK_K};
use super::{GgmlType, QuantError};

/// Read a little-endian f16 at `b[0..2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Dequantize one row (src holds exactly `row_bytes(dst.len())` bytes).
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let expected = ty.row_bytes(dst.len())?;
    if src.len() != expected {
        return Err(QuantError::DataLength {
            what: format!("{} row of {} elements", ty.name(), dst.len()),
            expected,
            actual: src.len(),
        });
    }
    let bb = ty.block_bytes();
    let bl = ty.block_len();
    match ty {
        GgmlType::F32 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (y, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *y = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        _ => {
            let block_fn: fn(&[u8], &mut [f32]) = match ty {
                GgmlType::Q4_0 => block_q4_0,
                GgmlType::Q4_1 => block_q4_1,
                GgmlType::Q5_0 => block_q5_0,
                GgmlType::Q5_1 => block_q5_1,
                GgmlType::Q8_0 => block_q8_0,
                GgmlType::Q4K => block_q4_k,
                GgmlType::Q5K => block_q5_k,
                _ => block_q6_k,
            };
            for (x, y) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(bl)) {
                block_fn(x, y);
            }
        }
    }
    Ok(())
}

fn block_q4_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let qs = &x[2..2 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + QK / 2] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn block_q4_1(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let m = f16_at(x, 2);
    let qs = &x[4..4 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + QK / 2] = (q >> 4) as f32 * d + m;
    }
}

/// The 5th bits of the 32 values of a Q5 block, as ggml lays them out: bit j of a LE u32.
#[inline(always)]
fn q5_high_bits(x: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([x[at], x[at + 1], x[at + 2], x[at + 3]])
}

fn block_q5_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let qh = q5_high_bits(x, 2);
    let qs = &x[6..6 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((q & 0x0F) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + QK / 2] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

fn block_q5_1(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let m = f16_at(x, 2);
    let qh = q5_high_bits(x, 4);
    let qs = &x[8..8 + QK / 2];
    for (j, &q) in qs.iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((q & 0x0F) as u32 | h0) as f32 * d + m;
        y[j + QK / 2] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

fn block_q8_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for (v, &q) in y.iter_mut().zip(&x[2..2 + QK]) {
        *v = q as i8 as f32 * d;
    }
}

/// Unpack the 6-bit scale and min of sub block `j` (0..8) from the 12 packed bytes
/// (ggml `get_scale_min_k4`): sub blocks 0..4 use the low 6 bits of bytes 0..8, sub blocks
/// 4..8 combine a nibble of bytes 8..12 with the top 2 bits of bytes 0..8.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn block_q4_k(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let dmin = f16_at(x, 2);
    let scales = &x[4..16];
    let qs = &x[16..16 + QK_K / 2];
    // 4 groups of 64 elements; each group's 32 bytes hold two sub blocks (low, high nibbles).
    for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        for (l, &b) in q.iter().enumerate() {
            y[l] = d1 * (b & 0x0F) as f32 - m1;
            y[l + 32] = d2 * (b >> 4) as f32 - m2;
        }
    }
}

fn block_q5_k(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let dmin = f16_at(x, 2);
    let scales = &x[4..16];
    let qh = &x[16..16 + QK_K / 8];
    let qs = &x[16 + QK_K / 8..16 + QK_K / 8 + QK_K / 2];
    // Same grouping as Q4_K; the 5th bit of group g lives in bits 2g and 2g+1 of qh[l].
    for (g, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * g, scales);
        let (sc2, m2) = scale_min_k4(2 * g + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
        for (l, &b) in q.iter().enumerate() {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((b & 0x0F) + h1) as f32 - m1;
            y[l + 32] = d2 * ((b >> 4) + h2) as f32 - m2;
        }
    }
}

fn block_q6_k(x: &[u8], y: &mut [f32]) {
    let ql_all = &x[..QK_K / 2];
    let qh_all = &x[QK_K / 2..QK_K / 2 + QK_K / 4];
    let sc_all = &x[QK_K / 2 + QK_K / 4..QK_K / 2 + QK_K / 4 + QK_K / 16];
    let d = f16_at(x, QK_K / 2 + QK_K / 4 + QK_K / 16);
    // Two halves of 128 elements: 64 bytes of low nibbles, 32 bytes of 2-bit highs, 8 scales.
    for h in 0..2 {
        let ql = &ql_all[64 * h..64 * h + 64];
        let qh = &qh_all[32 * h..32 * h + 32];
        let sc = &sc_all[8 * h..8 * h + 8];
        let y = &mut y[128 * h..128 * h + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | (qh[l] & 3) << 4) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) as i32 - 32;
            let q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) as i32 - 32;
            y[l] = d * sc[is] as i8 as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}
