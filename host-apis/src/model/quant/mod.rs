//! Quantized CPU matrix kernels for GGML/GGUF weights.
//!
//! - [`GgmlType`]: block geometry of the supported ggml tensor types.
//! - [`dequantize_row`]: bit-exact ggml dequantization (embeddings, tests, slow paths).
//! - [`QMatrix`] + [`Activations`] + [`matmul`]: `y = W x` for one or more weights sharing an
//!   input, with ggml-compatible Q8 activation quantization and AVX2 integer dot products for the
//!   legacy quant types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0). [`QMatrix::interleaved`] repacks
//!   Q4_0, Q4_1, Q8_0 and the k-quants in groups of eight rows for the batched group kernels.
//!   F32/F16/BF16 (and k-quants left in GGML layout) are widened to f32 per row and dotted in
//!   f32.

mod activations;
mod cpu;
mod dequant;
mod dot;
mod error;
mod interleave;
mod matmul;
mod matrix;
mod types;

pub use activations::Activations;
pub use dequant::dequantize_row;
pub use error::QuantError;
pub use matmul::matmul;
pub use matrix::QMatrix;
pub use types::GgmlType;

/// f32 dot product on the SIMD kernels where the CPU has them (the decoder's attention).
pub(crate) fn f32_dot(a: &[f32], b: &[f32]) -> f32 {
    dot::f32_dot(cpu::simd(), a, b)
}

/// `out += w * v` on the SIMD kernels where the CPU has them (the decoder's attention).
pub(crate) fn f32_axpy(out: &mut [f32], w: f32, v: &[f32]) {
    dot::f32_axpy(cpu::simd(), out, w, v)
}

/// Attention scores on the SIMD kernel (see `dot::avx2::attn_scores`); false where the CPU or
/// the head width has none and the caller computes them itself.
#[cfg(target_arch = "x86_64")]
pub(crate) use dot::avx2::{attn_scores, attn_values};

/// Without x86 there is no SIMD attention; the caller computes it.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn attn_scores(
    _: &[f32],
    _: &[&[half::f16]],
    _: (usize, usize, usize),
    _: usize,
    _: f32,
    _: &mut [f32],
) -> bool {
    false
}

/// Without x86 there is no SIMD attention; the caller computes it.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn attn_values(_: &[f32], _: &[&[half::f16]], _: (usize, usize, usize), _: usize, _: &mut [f32]) -> bool {
    false
}

/// Hooks for tests and benchmarks; not part of the engine-facing API.
#[doc(hidden)]
pub mod testing {
    use super::{Activations, QMatrix, QuantError};

    /// [`super::matmul`] forced onto the SIMD kernels (`simd = true`, when the CPU has them) or
    /// onto the portable scalar kernels (`simd = false`), to compare the two.
    pub fn matmul_with(
        weights: &[&QMatrix],
        x: &Activations,
        outs: &mut [&mut [f32]],
        pool: &rayon::ThreadPool,
        simd: bool,
    ) -> Result<(), QuantError> {
        super::matmul::matmul_with(weights, x, outs, pool, simd && super::cpu::simd())
    }

    /// Whether this CPU runs the SIMD kernels.
    pub fn simd_available() -> bool {
        super::cpu::simd()
    }
}
