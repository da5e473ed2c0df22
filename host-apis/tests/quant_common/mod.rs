//! Test helpers: ports of ggml's reference quantizers (legacy types), simple k-quant
//! quantizers, and f64 reference math.
//!
//! Every quantizer returns the raw ggml blocks together with the values ggml's dequantizer must
//! produce for them, computed independently from the integer quants and f16-rounded scales.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use half::{bf16, f16};
use rand::{Rng, SeedableRng, rngs::StdRng};
use wafer_host_apis::model::quant::GgmlType;

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Gaussian-ish values (sum of uniforms) with a few outliers, like real weights/activations.
pub fn random_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let g: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * scale;
            if rng.random::<f32>() < 0.01 { g * 8.0 } else { g }
        })
        .collect()
}

fn h(v: f32) -> f16 {
    f16::from_f32(v)
}
fn push_f16(out: &mut Vec<u8>, v: f16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Quantize rows of `cols` values. Returns (blocks, expected dequantized values).
pub fn quantize(ty: GgmlType, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut raw = Vec::new();
    let mut deq = Vec::new();
    match ty {
        GgmlType::F32 => {
            for &v in x {
                raw.extend_from_slice(&v.to_le_bytes());
                deq.push(v);
            }
        }
        GgmlType::F16 => {
            for &v in x {
                push_f16(&mut raw, h(v));
                deq.push(h(v).to_f32());
            }
        }
        GgmlType::BF16 => {
            for &v in x {
                raw.extend_from_slice(&bf16::from_f32(v).to_le_bytes());
                deq.push(bf16::from_f32(v).to_f32());
            }
        }
        GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
            for b in x.chunks_exact(256) {
                match ty {
                    GgmlType::Q4K => quant_q45_k(b, false, &mut raw, &mut deq),
                    GgmlType::Q5K => quant_q45_k(b, true, &mut raw, &mut deq),
                    _ => quant_q6_k(b, &mut raw, &mut deq),
                }
            }
        }
        _ => {
            for b in x.chunks_exact(32) {
                quant_legacy(ty, b, &mut raw, &mut deq);
            }
        }
    }
    (raw, deq)
}

/// ggml `quantize_row_q{4_0,4_1,5_0,5_1,8_0}_ref` for one block of 32.
fn quant_legacy(ty: GgmlType, x: &[f32], raw: &mut Vec<u8>, deq: &mut Vec<f32>) {
    let mut amax = 0.0f32;
    let mut max_signed = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max_signed = v;
        }
    }
    let min = x.iter().cloned().fold(f32::INFINITY, f32::min);
    let max = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let inv = |d: f32| if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i32; 32];
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 => {
            let (levels, off) = if ty == GgmlType::Q4_0 { (8.0, 8) } else { (16.0, 16) };
            let d = max_signed / -levels;
            let id = inv(d);
            for (qi, &v) in q.iter_mut().zip(x) {
                // C's (int8_t) cast truncates; the argument is >= 0.5 here.
                *qi = ((v * id + off as f32 + 0.5) as i8 as i32).min(2 * off - 1);
            }
            push_f16(raw, h(d));
            let df = h(d).to_f32();
            pack_low_high(ty, &q, raw);
            let mut vals = [0f32; 32];
            for (y, &qi) in vals.iter_mut().zip(&q) {
                *y = (qi - off) as f32 * df;
            }
            deq.extend_from_slice(&vals);
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 => {
            let top = if ty == GgmlType::Q4_1 { 15 } else { 31 };
            let d = (max - min) / top as f32;
            let id = inv(d);
            for (qi, &v) in q.iter_mut().zip(x) {
                *qi = (((v - min) * id + 0.5) as i8 as i32).clamp(0, top);
            }
            push_f16(raw, h(d));
            push_f16(raw, h(min));
            pack_low_high(ty, &q, raw);
            let (df, mf) = (h(d).to_f32(), h(min).to_f32());
            for &qi in &q {
                deq.push(qi as f32 * df + mf);
            }
        }
        _ => {
            let d = amax / 127.0;
            let id = inv(d);
            push_f16(raw, h(d));
            let df = h(d).to_f32();
            for &v in x {
                let qi = (v * id).round() as i8;
                raw.push(qi as u8);
                deq.push(qi as f32 * df);
            }
        }
    }
}

/// Nibbles of elements j and j+16 share byte j; Q5 types put the 5th bits in a u32 first.
fn pack_low_high(ty: GgmlType, q: &[i32; 32], raw: &mut Vec<u8>) {
    if matches!(ty, GgmlType::Q5_0 | GgmlType::Q5_1) {
        let mut qh = 0u32;
        for (j, &qi) in q.iter().enumerate() {
            qh |= (((qi as u32) & 0x10) >> 4) << j;
        }
        raw.extend_from_slice(&qh.to_le_bytes());
    }
    for j in 0..16 {
        raw.push(((q[j] as u8) & 0x0F) | (((q[j + 16] as u8) & 0x0F) << 4));
    }
}

/// A simple (not ggml's iterative) Q4_K/Q5_K quantizer: per 32-element sub block an affine
/// scale/min, 6-bit quantized against the super block's f16 `d`/`dmin`.
fn quant_q45_k(x: &[f32], five: bool, raw: &mut Vec<u8>, deq: &mut Vec<f32>) {
    let top = if five { 31.0 } else { 15.0 };
    let mins: Vec<f32> = x
        .chunks(32)
        .map(|c| (-c.iter().cloned().fold(f32::INFINITY, f32::min)).max(0.0))
        .collect();
    let dmin = h(mins.iter().cloned().fold(0.0, f32::max) / 63.0).to_f32();
    let mq: Vec<u8> = mins
        .iter()
        .map(|&m| {
            if dmin > 0.0 {
                (m / dmin).ceil().min(63.0) as u8
            } else {
                0
            }
        })
        .collect();
    let ranges: Vec<f32> = x
        .chunks(32)
        .zip(&mq)
        .map(|(c, &m)| (c.iter().cloned().fold(f32::NEG_INFINITY, f32::max) + dmin * m as f32).max(0.0) / top)
        .collect();
    let d = h(ranges.iter().cloned().fold(0.0, f32::max) / 63.0 * 1.002).to_f32();
    let sq: Vec<u8> = ranges
        .iter()
        .map(|&r| if d > 0.0 { (r / d).ceil().min(63.0) as u8 } else { 0 })
        .collect();
    push_f16(raw, h(d));
    push_f16(raw, h(dmin));
    let mut scales = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            scales[j] = sq[j];
            scales[j + 4] = mq[j];
        } else {
            scales[j + 4] = (sq[j] & 0x0F) | ((mq[j] & 0x0F) << 4);
            scales[j - 4] |= (sq[j] >> 4) << 6;
            scales[j] |= (mq[j] >> 4) << 6;
        }
    }
    raw.extend_from_slice(&scales);
    let mut q = [0u8; 256];
    let mut vals = [0f32; 256];
    for (j, c) in x.chunks(32).enumerate() {
        let d1 = d * sq[j] as f32;
        let m1 = dmin * mq[j] as f32;
        for (l, &v) in c.iter().enumerate() {
            let qi = if d1 > 0.0 {
                ((v + m1) / d1).round().clamp(0.0, top) as u8
            } else {
                0
            };
            q[32 * j + l] = qi;
            vals[32 * j + l] = d1 * qi as f32 - m1;
        }
    }
    if five {
        let mut qh = [0u8; 32];
        for g in 0..4 {
            for l in 0..32 {
                qh[l] |= ((q[64 * g + l] >> 4) & 1) << (2 * g);
                qh[l] |= ((q[64 * g + 32 + l] >> 4) & 1) << (2 * g + 1);
            }
        }
        raw.extend_from_slice(&qh);
    }
    for g in 0..4 {
        for l in 0..32 {
            raw.push((q[64 * g + l] & 0x0F) | ((q[64 * g + 32 + l] & 0x0F) << 4));
        }
    }
    deq.extend_from_slice(&vals);
}

/// A simple Q6_K quantizer: per 16-element sub block a symmetric scale, 8-bit quantized
/// against the super block's f16 `d`.
fn quant_q6_k(x: &[f32], raw: &mut Vec<u8>, deq: &mut Vec<f32>) {
    let sub: Vec<f32> = x
        .chunks(16)
        .map(|c| c.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 31.0)
        .collect();
    let d = h(sub.iter().cloned().fold(0.0, f32::max) / 127.0 * 1.002).to_f32();
    let sc: Vec<i8> = sub
        .iter()
        .map(|&s| if d > 0.0 { (s / d).ceil().min(127.0) as i8 } else { 0 })
        .collect();
    let mut q = [0i32; 256];
    let mut vals = [0f32; 256];
    for (e, &v) in x.iter().enumerate() {
        let d1 = d * sc[e / 16] as f32;
        let qi = if d1 > 0.0 {
            (v / d1).round().clamp(-32.0, 31.0) as i32
        } else {
            0
        };
        q[e] = qi + 32;
        vals[e] = d * sc[e / 16] as f32 * qi as f32;
    }
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for n in 0..2 {
        for l in 0..32 {
            let at = |k: usize| q[128 * n + l + 32 * k] as u8;
            ql[64 * n + l] = (at(0) & 0x0F) | ((at(2) & 0x0F) << 4);
            ql[64 * n + l + 32] = (at(1) & 0x0F) | ((at(3) & 0x0F) << 4);
            qh[32 * n + l] = (at(0) >> 4) | ((at(1) >> 4) << 2) | ((at(2) >> 4) << 4) | ((at(3) >> 4) << 6);
        }
    }
    raw.extend_from_slice(&ql);
    raw.extend_from_slice(&qh);
    raw.extend(sc.iter().map(|&s| s as u8));
    push_f16(raw, h(d));
    deq.extend_from_slice(&vals);
}

pub const ALL_TYPES: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

pub fn is_legacy(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0
    )
}

pub fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}
