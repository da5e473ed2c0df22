//! Weight rows interleaved in groups of eight, the layout of the batched AVX2 kernels.
//!
//! In GGML's layout a row's blocks are contiguous, so a kernel computes one row's dot at a
//! time and finishes with a horizontal sum. Here the blocks of eight rows that cover the same
//! 32 columns sit together, four quant bytes of each row side by side, so one 32-byte register
//! holds the same four columns of eight rows. Multiplying it by those four activation bytes,
//! broadcast, leaves each row's partial sum in its own lane: eight dots come out of one
//! accumulator, scales apply as a vector of eight, and (for 4-bit weights) the products of a
//! whole block sum in 16-bit lanes before one widening step. This is the layout llama.cpp's
//! "repacked" CPU kernels use for the same reason.
//!
//! Group-block layouts (`g` = group of rows `8g..8g+8`, `b` = block of columns `32b..32b+32`;
//! group-blocks are stored group-major, `(g * blocks_per_row + b) * group_block_bytes`):
//!
//! - Q4_1: `d[8]` f16, `m[8]` f16, then four 32-byte registers `P_c` (c = 0..4) where bytes
//!   `4r..4r+4` of `P_c` are bytes `4c..4c+4` of row r's 16 quant bytes. A quant byte holds
//!   element i in its low nibble and element i + 16 in its high one, so the low nibbles of
//!   `P_c` are columns `4c..4c+4` and the high nibbles columns `16+4c..16+4c+4`.
//! - Q4_0: the same, with `m = -8 d` (Q4_0's `(q - 8) d` is Q4_1's `q d + m`). Multiplying
//!   by 8 is exact in f16; a scale that would overflow leaves the matrix in GGML layout.
//! - Q8_0: `d[8]` f16, then eight registers `P_c` (c = 0..8): bytes `4r..4r+4` of `P_c` are
//!   quants `4c..4c+4` of row r.
//! - Q4_K: each 32-column sub-block of a 256-column super-block is a Q4_1 block whose scale
//!   `d * sc` and min `-dmin * m` are exact only in f32, so the layout is Q4_1's with `d[8]`
//!   and `m[8]` as f32 (the nibbles repacked into Q4_1's order). The kernels then multiply
//!   Q4_K weights with 8-bit activations like the legacy types, exactly.
//! - Q5_K: like Q4_K (scale and min per 32 columns, as f32), but the 5-bit values do not
//!   fit nibbles: eight registers of u8 values laid out as Q8_0's.
//! - Q6_K: each 32-column block holds signed 6-bit values (`q - 32`) with one scale per 16
//!   columns: `d1[8]` and `d2[8]` as f32 (`d * sc` for columns 0..16 and 16..32), then eight
//!   registers of the values as i8, laid out as Q8_0's.

use super::GgmlType;
use super::dequant::{f16_at, scale_min_k4};
use super::types::{QK, QK_K};

/// Rows per group.
pub(crate) const GROUP: usize = 8;

/// Bytes of one group-block for `ty`, or None when `ty` has no interleaved layout.
pub(crate) fn group_block_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => Some(2 * 16 + 4 * 32),
        GgmlType::Q8_0 => Some(16 + 8 * 32),
        GgmlType::Q4K => Some(2 * 32 + 4 * 32),
        GgmlType::Q5K | GgmlType::Q6K => Some(2 * 32 + 8 * 32),
        _ => None,
    }
}

/// `data` (`rows` GGML rows of `cols` elements) interleaved in groups of eight rows, or None
/// when the type has no interleaved layout, `rows` is not a multiple of eight, or a Q4_0 scale
/// would overflow as `-8 d`.
pub(crate) fn interleave(ty: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Option<Vec<u8>> {
    let gbb = group_block_bytes(ty)?;
    if rows == 0 || !rows.is_multiple_of(GROUP) || !cols.is_multiple_of(QK) {
        return None;
    }
    match ty {
        GgmlType::Q4K => return interleave_q4_k(rows, cols, data),
        GgmlType::Q5K => return interleave_q5_k(rows, cols, data),
        GgmlType::Q6K => return interleave_q6_k(rows, cols, data),
        _ => {}
    }
    let (nb, bb) = (cols / QK, ty.block_bytes());
    let row_bytes = nb * bb;
    if data.len() != rows * row_bytes {
        return None;
    }
    let mut out = Vec::with_capacity(rows / GROUP * nb * gbb);
    for g in 0..rows / GROUP {
        for b in 0..nb {
            let block = |r: usize| {
                let at = (g * GROUP + r) * row_bytes + b * bb;
                &data[at..at + bb]
            };
            match ty {
                GgmlType::Q4_1 => {
                    (0..GROUP).for_each(|r| out.extend_from_slice(&block(r)[0..2]));
                    (0..GROUP).for_each(|r| out.extend_from_slice(&block(r)[2..4]));
                    push_quads(&mut out, 4, &block, 4);
                }
                GgmlType::Q4_0 => {
                    (0..GROUP).for_each(|r| out.extend_from_slice(&block(r)[0..2]));
                    for r in 0..GROUP {
                        let d = half::f16::from_le_bytes([block(r)[0], block(r)[1]]);
                        let m = half::f16::from_f32(-8.0 * d.to_f32());
                        if m.is_infinite() && !d.is_infinite() {
                            return None;
                        }
                        out.extend_from_slice(&m.to_le_bytes());
                    }
                    push_quads(&mut out, 4, &block, 2);
                }
                // Q8_0 (the only other type with a layout).
                _ => {
                    (0..GROUP).for_each(|r| out.extend_from_slice(&block(r)[0..2]));
                    push_quads(&mut out, 8, &block, 2);
                }
            }
        }
    }
    Some(out)
}

/// K-quant rows (256-column super-blocks) in groups of eight: per 32-column block and row,
/// `block(super_block_bytes, j)` gives two f32 (scale and min, or two half-block scales) and
/// `V` value bytes, stored as two `[f32; 8]` then `V / 4` registers of four bytes per row.
fn interleave_k<const V: usize>(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: &[u8],
    block: impl Fn(&[u8], usize) -> (f32, f32, [u8; V]),
) -> Option<Vec<u8>> {
    if !cols.is_multiple_of(QK_K) {
        return None;
    }
    let bb = ty.block_bytes();
    let row_bytes = cols / QK_K * bb;
    if data.len() != rows * row_bytes {
        return None;
    }
    let nb = cols / QK;
    let mut out = Vec::with_capacity(rows / GROUP * nb * group_block_bytes(ty)?);
    for g in 0..rows / GROUP {
        for b in 0..nb {
            let blocks: [(f32, f32, [u8; V]); GROUP] = std::array::from_fn(|r| {
                let x = &data[(g * GROUP + r) * row_bytes + (b / 8) * bb..][..bb];
                block(x, b % 8)
            });
            blocks
                .iter()
                .for_each(|(a, _, _)| out.extend_from_slice(&a.to_le_bytes()));
            blocks
                .iter()
                .for_each(|(_, c, _)| out.extend_from_slice(&c.to_le_bytes()));
            push_quads(&mut out, V / 4, &|r| &blocks[r].2[..], 0);
        }
    }
    Some(out)
}

/// Q4_K rows as Q4_1 blocks with f32 scales (see the module docs).
fn interleave_q4_k(rows: usize, cols: usize, data: &[u8]) -> Option<Vec<u8>> {
    interleave_k::<16>(GgmlType::Q4K, rows, cols, data, |x, j| {
        let (d, dmin) = (f16_at(x, 0), f16_at(x, 2));
        let (sc, m) = scale_min_k4(j, &x[4..16]);
        // Sub-blocks 2g and 2g + 1 share bytes 32g..32g+32: low and high nibbles.
        let q = &x[16 + 32 * (j / 2)..][..32];
        let e = |l: usize| if j.is_multiple_of(2) { q[l] & 0x0F } else { q[l] >> 4 };
        let packed = std::array::from_fn(|i| e(i) | (e(i + 16) << 4));
        (d * sc as f32, -(dmin * m as f32), packed)
    })
}

/// Q5_K rows as 32-column blocks of u8 values with f32 scale and min (see the module docs).
fn interleave_q5_k(rows: usize, cols: usize, data: &[u8]) -> Option<Vec<u8>> {
    // As ggml's `dequantize_row_q5_K`: sub-blocks 2g and 2g + 1 share 32 nibble bytes, and
    // their fifth bits are bits 2g and 2g + 1 of the 32 `qh` bytes.
    interleave_k::<32>(GgmlType::Q5K, rows, cols, data, |x, j| {
        let (d, dmin) = (f16_at(x, 0), f16_at(x, 2));
        let (sc, m) = scale_min_k4(j, &x[4..16]);
        let qh = &x[16..16 + QK_K / 8];
        let q = &x[16 + QK_K / 8 + 32 * (j / 2)..][..32];
        let values = std::array::from_fn(|l| {
            let low = if j.is_multiple_of(2) { q[l] & 0x0F } else { q[l] >> 4 };
            low | (((qh[l] >> j) & 1) << 4)
        });
        (d * sc as f32, -(dmin * m as f32), values)
    })
}

/// Q6_K rows as 32-column blocks of i8 values with two f32 scales (see the module docs).
fn interleave_q6_k(rows: usize, cols: usize, data: &[u8]) -> Option<Vec<u8>> {
    // As ggml's `dequantize_row_q6_K` reads them: 128-column halves h, in them quarters k of
    // 32 columns.
    interleave_k::<32>(GgmlType::Q6K, rows, cols, data, |x, j| {
        let d = f16_at(x, QK_K / 2 + QK_K / 4 + QK_K / 16);
        let (h, k) = (j / 4, j % 4);
        let ql = &x[64 * h..][..64];
        let qh = &x[QK_K / 2 + 32 * h..][..32];
        let sc = &x[QK_K / 2 + QK_K / 4 + 8 * h..][..8];
        let values = std::array::from_fn(|l| {
            let low = match k {
                0 => ql[l] & 0x0F,
                1 => ql[l + 32] & 0x0F,
                2 => ql[l] >> 4,
                _ => ql[l + 32] >> 4,
            };
            let high = (qh[l] >> (2 * k)) & 3;
            ((low | (high << 4)) as i8 - 32) as u8
        });
        let scale = |half: usize| d * sc[2 * k + half] as i8 as f32;
        (scale(0), scale(1), values)
    })
}

/// Append `registers` 32-byte registers: register c holds bytes `4c..4c+4` of each row's
/// quants (which start `quants_at` bytes into its block), rows in order.
fn push_quads<'a>(out: &mut Vec<u8>, registers: usize, block: &impl Fn(usize) -> &'a [u8], quants_at: usize) {
    for c in 0..registers {
        for r in 0..GROUP {
            let q = &block(r)[quants_at..];
            out.extend_from_slice(&q[4 * c..4 * c + 4]);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Row r's block b of a Q8_0 matrix, with quant j = (r * 31 + b * 7 + j) as i8 and d = r.
    fn q8_matrix(rows: usize, cols: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for r in 0..rows {
            for b in 0..cols / QK {
                data.extend_from_slice(&half::f16::from_f32(r as f32).to_le_bytes());
                data.extend((0..QK).map(|j| (r * 31 + b * 7 + j) as u8));
            }
        }
        data
    }

    #[test]
    fn q8_0_quants_land_where_the_kernels_read_them() {
        let (rows, cols) = (16, 64);
        let packed = interleave(GgmlType::Q8_0, rows, cols, &q8_matrix(rows, cols)).unwrap();
        let gbb = group_block_bytes(GgmlType::Q8_0).unwrap();
        assert_eq!(packed.len(), rows / GROUP * (cols / QK) * gbb);
        for g in 0..2 {
            for b in 0..2 {
                let blk = &packed[(g * 2 + b) * gbb..][..gbb];
                for r in 0..GROUP {
                    let row = g * GROUP + r;
                    let d = half::f16::from_le_bytes([blk[2 * r], blk[2 * r + 1]]).to_f32();
                    assert_eq!(d, row as f32);
                    for j in 0..QK {
                        let (c, k) = (j / 4, j % 4);
                        assert_eq!(blk[16 + 32 * c + 4 * r + k], (row * 31 + b * 7 + j) as u8);
                    }
                }
            }
        }
    }

    #[test]
    fn q4_0_min_is_minus_eight_d_and_overflow_refuses() {
        let mut data = Vec::new();
        for r in 0..GROUP {
            data.extend_from_slice(&half::f16::from_f32(0.5 + r as f32).to_le_bytes());
            data.extend([0x21u8; 16]);
        }
        let packed = interleave(GgmlType::Q4_0, GROUP, QK, &data).unwrap();
        for r in 0..GROUP {
            let m = half::f16::from_le_bytes([packed[16 + 2 * r], packed[17 + 2 * r]]).to_f32();
            assert_eq!(m, -8.0 * (0.5 + r as f32));
        }
        data[0..2].copy_from_slice(&half::f16::from_f32(10_000.0).to_le_bytes());
        assert!(interleave(GgmlType::Q4_0, GROUP, QK, &data).is_none());
    }

    #[test]
    fn shapes_without_a_layout_stay_in_ggml_order() {
        assert!(interleave(GgmlType::Q8_0, 12, 64, &q8_matrix(12, 64)).is_none());
        assert!(interleave(GgmlType::F32, 8, 32, &[0; 8 * 32 * 4]).is_none());
        assert!(interleave(GgmlType::Q8_0, 8, 64, &[0; 3]).is_none());
    }
}
