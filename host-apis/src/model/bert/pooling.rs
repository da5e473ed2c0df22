//! Pooling token states into one sentence vector, and L2 normalisation.

use super::config::PoolingMode;

/// Pools the `[tokens, width]` row-major hidden states of one sequence.
/// Every token is real (sequences are packed, never padded), so the attention mask is all ones.
pub(crate) fn pool(hidden: &[f32], width: usize, modes: &[PoolingMode]) -> Vec<f32> {
    let rows = || hidden.chunks_exact(width.max(1));
    // sentence-transformers clamps the token count to avoid dividing by zero on an empty sequence.
    let count = rows().len().max(1) as f32;
    let mut out = Vec::with_capacity(width * modes.len());
    for mode in modes {
        match mode {
            PoolingMode::Cls => match rows().next() {
                Some(first) => out.extend_from_slice(first),
                None => out.extend(std::iter::repeat_n(0.0, width)),
            },
            PoolingMode::Max => {
                // An empty sequence has no maximum; report zeros rather than -inf.
                let init = if rows().len() == 0 { 0.0 } else { f32::NEG_INFINITY };
                let mut acc = vec![init; width];
                rows().for_each(|r| acc.iter_mut().zip(r).for_each(|(a, v)| *a = a.max(*v)));
                out.extend(acc);
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                let mut acc = vec![0.0f32; width];
                rows().for_each(|r| acc.iter_mut().zip(r).for_each(|(a, v)| *a += v));
                let div = if *mode == PoolingMode::Mean {
                    count
                } else {
                    count.sqrt()
                };
                out.extend(acc.into_iter().map(|a| a / div));
            }
        }
    }
    out
}

/// Scales `v` to unit L2 norm, leaving an all-zero vector as is (torch's `F.normalize`, eps 1e-12).
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    let inv = (1.0 / norm) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
}
