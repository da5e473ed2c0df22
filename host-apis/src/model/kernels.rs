//! The f32 pieces of a decoder step that are not matrix products:
//! RMS normalisation, rotary embeddings, SwiGLU, attention scores. (The
//! encoder's layer norm and GELU live in `bert/ops.rs`.) Written so the
//! compiler vectorises them; they are a small share of a step next to the
//! quantized matrix products.

/// `out = x / rms(x) * weight`, row by row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (row, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// Precomputed rotary angles: `cos`/`sin` of `pos * base^(-2i/dim)`.
#[derive(Debug, Clone)]
pub struct Rope {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// GPT-NeoX style rotates `(x[i], x[i + half])`; the original llama
    /// style (GGUF llama files, whose Q/K rows the converter permuted)
    /// rotates adjacent pairs `(x[2i], x[2i + 1])`.
    neox: bool,
}

impl Rope {
    /// Angles for positions `0..max_pos` over the first `dim` values of a head.
    pub fn new(dim: usize, base: f32, max_pos: usize, neox: bool) -> Self {
        let half = dim / 2;
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for pos in 0..max_pos {
            for i in 0..half {
                // f64 angles: f32 loses precision at positions in the thousands.
                let theta = pos as f64 * (base as f64).powf(-2.0 * i as f64 / dim as f64);
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        Rope { half, cos, sin, neox }
    }

    /// Positions covered.
    pub fn max_pos(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Rotate every head of `x` (`heads * head_dim` values) for `pos`.
    /// The caller keeps `pos < max_pos()`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let cos = &self.cos[pos * self.half..(pos + 1) * self.half];
        let sin = &self.sin[pos * self.half..(pos + 1) * self.half];
        for head in x.chunks_exact_mut(head_dim) {
            if self.neox {
                let (a, b) = head.split_at_mut(self.half);
                for i in 0..self.half {
                    let (x0, x1) = (a[i], b[i]);
                    a[i] = x0 * cos[i] - x1 * sin[i];
                    b[i] = x0 * sin[i] + x1 * cos[i];
                }
            } else {
                for (i, pair) in head[..2 * self.half].chunks_exact_mut(2).enumerate() {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * cos[i] - x1 * sin[i];
                    pair[1] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
    }
}

/// `gate = silu(gate) * up`, in place.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Softmax in place; returns nothing for an empty slice.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    if sum > 0.0 {
        for v in x.iter_mut() {
            *v /= sum;
        }
    }
}

/// Dot product (AVX2 + FMA where the CPU has them: this crate is built for baseline x86-64,
/// where the compiler alone only reaches 4-wide SSE).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    super::quant::f32_dot(a, b)
}

/// `out += weight * v` (AVX2 + FMA where the CPU has them).
#[inline]
pub fn axpy(out: &mut [f32], weight: f32, v: &[f32]) {
    super::quant::f32_axpy(out, weight, v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_axpy_match_plain_loops_at_every_length() {
        for n in 0..41 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() <= 1e-5 * (1.0 + want.abs()), "n {n}");
            let mut out = b.clone();
            axpy(&mut out, 0.5, &a);
            for i in 0..n {
                assert!((out[i] - (b[i] + 0.5 * a[i])).abs() <= 1e-6, "n {n} i {i}");
            }
        }
    }

    /// The SIMD attention kernels equal plain loops over blocked keys and values (the decoder
    /// takes plain loops itself where they return false, as for head widths not a multiple
    /// of 8).
    #[test]
    fn simd_attention_matches_plain_loops() {
        let (kv_dim, hd, group, len) = (48, 16, 3, 21);
        let off = 2 * hd;
        let wave = |n: usize, f: f32| (0..n).map(|i| (i as f32 * f).sin()).collect::<Vec<f32>>();
        let (keys, values, q) = (wave(32 * kv_dim, 0.13), wave(32 * kv_dim, 0.07), wave(group * hd, 0.31));
        // The cache holds f16: the reference uses the same rounded values.
        let round = |d: &[f32]| -> Vec<f32> { d.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect() };
        let (keys, values) = (round(&keys), round(&values));
        let blocks = |d: &[f32]| -> Vec<Vec<half::f16>> {
            d.chunks(16 * kv_dim)
                .map(|b| b.iter().map(|v| half::f16::from_f32(*v)).collect())
                .collect()
        };
        let (kb, vb) = (blocks(&keys[..len * kv_dim]), blocks(&values[..len * kv_dim]));
        let kr: Vec<&[half::f16]> = kb.iter().map(Vec::as_slice).collect();
        let vr: Vec<&[half::f16]> = vb.iter().map(Vec::as_slice).collect();
        let mut scores = vec![0.0; group * len];
        if !crate::model::quant::attn_scores(&q, &kr, (kv_dim, off, hd), len, 0.5, &mut scores) {
            return; // no SIMD on this CPU
        }
        let mut out = vec![0.0; group * hd];
        assert!(crate::model::quant::attn_values(
            &scores,
            &vr,
            (kv_dim, off, hd),
            len,
            &mut out
        ));
        for g in 0..group {
            let mut want = vec![0.0f32; hd];
            for p in 0..len {
                let k = &keys[p * kv_dim + off..][..hd];
                let v = &values[p * kv_dim + off..][..hd];
                let sc: f32 = q[g * hd..][..hd].iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * 0.5;
                assert!((scores[g * len + p] - sc).abs() < 1e-5, "score g {g} p {p}");
                for (w, x) in want.iter_mut().zip(v) {
                    *w += scores[g * len + p] * x;
                }
            }
            for (a, b) in out[g * hd..][..hd].iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "g {g}: {a} vs {b}");
            }
        }
        assert!(!crate::model::quant::attn_scores(
            &q[..6],
            &kr,
            (kv_dim, 0, 6),
            len,
            1.0,
            &mut scores
        ));
    }

    #[test]
    fn rope_styles_rotate_different_pairs() {
        let rope = Rope::new(4, 10000.0, 4, false);
        let mut x = [1.0, 0.0, 1.0, 0.0];
        rope.apply(&mut x, 4, 1);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        let neox = Rope::new(4, 10000.0, 4, true);
        let mut y = [1.0, 1.0, 0.0, 0.0];
        neox.apply(&mut y, 4, 1);
        assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[2] - 1f32.sin()).abs() < 1e-6);
    }
}
