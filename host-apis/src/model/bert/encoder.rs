//! The BERT encoder forward pass over a packed batch.
//!
//! Sequences are concatenated token-wise ("packed") instead of padded: every dense layer
//! runs as one matrix product over all tokens of all sequences, and attention runs per
//! (sequence, head) over that sequence's own tokens only. This is exactly what an attention
//! mask over padding computes, without spending any work on padding tokens.

use gemm::Parallelism;
use rayon::prelude::*;

use super::config::EncoderConfig;
use super::error::BertError;
use super::linalg::{Mat, MatMut, matmul};
use super::ops::{activate, layer_norm, softmax};
use super::tokenize::Encoded;
use super::weights::{Linear, Weights};

/// Runs the encoder on `seqs` and returns the last hidden states, `[Σ len, hidden]` row-major,
/// in the order of `seqs`. Must run inside the rayon pool that should do the work.
pub(crate) fn forward(w: &Weights, cfg: &EncoderConfig, seqs: &[&Encoded]) -> Result<Vec<f32>, BertError> {
    let h = cfg.hidden;
    let lens: Vec<usize> = seqs.iter().map(|s| s.ids.len()).collect();
    let tokens: usize = lens.iter().sum();
    let threads = rayon::current_num_threads();
    // gemm splits large products over the current pool itself; below its own size threshold it
    // stays single-threaded, so handing it the pool costs nothing on tiny batches.
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };

    let mut x = embed(w, cfg, seqs, tokens)?;
    let mut qkv = vec![0.0f32; tokens * 3 * h];
    let mut ctx = vec![0.0f32; tokens * h];
    let mut inter = vec![0.0f32; tokens * cfg.intermediate];

    for layer in &w.layers {
        linear(&mut qkv, &x, tokens, &layer.qkv, false, par)?;
        attention(&qkv, &mut ctx, &lens, cfg)?;
        // Residual fused into the product: x ← x + b + ctx·Woᵀ, then normalise.
        linear(&mut x, &ctx, tokens, &layer.attn_out, true, par)?;
        layer_norm(
            &mut x,
            h,
            &layer.attn_norm.weight,
            &layer.attn_norm.bias,
            cfg.layer_norm_eps,
        );
        linear(&mut inter, &x, tokens, &layer.ffn_in, false, par)?;
        activate(&mut inter, cfg.activation);
        linear(&mut x, &inter, tokens, &layer.ffn_out, true, par)?;
        layer_norm(
            &mut x,
            h,
            &layer.ffn_norm.weight,
            &layer.ffn_norm.bias,
            cfg.layer_norm_eps,
        );
    }
    Ok(x)
}

/// `dst = (residual ? dst : 0) + bias + src·Wᵀ` over `tokens` rows.
fn linear(
    dst: &mut [f32],
    src: &[f32],
    tokens: usize,
    lin: &Linear,
    residual: bool,
    par: Parallelism,
) -> Result<(), BertError> {
    let n = lin.out_features;
    // Seeding dst with the bias lets gemm add the product onto it in the same pass.
    for row in dst.chunks_exact_mut(n) {
        if residual {
            row.iter_mut().zip(&lin.bias).for_each(|(d, b)| *d += b);
        } else {
            row.copy_from_slice(&lin.bias);
        }
    }
    matmul(
        MatMut::rows(dst, tokens, n),
        Mat::rows(src, tokens, lin.in_features),
        Mat::transposed(&lin.weight, n, lin.in_features),
        true,
        1.0,
        par,
    )
}

/// Word + position + token-type embeddings, then layer norm. Positions restart at 0 per sequence.
fn embed(w: &Weights, cfg: &EncoderConfig, seqs: &[&Encoded], tokens: usize) -> Result<Vec<f32>, BertError> {
    let h = cfg.hidden;
    let e = &w.embeddings;
    let mut x = vec![0.0f32; tokens * h];
    let mut out_rows = x.chunks_exact_mut(h);
    for seq in seqs {
        if seq.ids.len() > cfg.max_positions {
            return Err(BertError::InputTooLong {
                tokens: seq.ids.len(),
                limit: cfg.max_positions,
            });
        }
        for (pos, (&id, &tt)) in seq.ids.iter().zip(&seq.type_ids).enumerate() {
            let word = row(&e.word, id as usize, h).ok_or(BertError::TokenOutOfRange {
                id,
                vocab_size: cfg.vocab_size,
            })?;
            let position = row(&e.position, pos, h).ok_or(BertError::InputTooLong {
                tokens: seq.ids.len(),
                limit: cfg.max_positions,
            })?;
            let kind = row(&e.token_type, tt as usize, h).ok_or_else(|| BertError::Internal {
                op: "embed",
                detail: format!("token type {tt} ≥ type_vocab_size {}", cfg.type_vocab_size),
            })?;
            let out = out_rows.next().ok_or_else(|| BertError::Internal {
                op: "embed",
                detail: "more tokens than the packed buffer holds".to_owned(),
            })?;
            for (((o, a), b), c) in out.iter_mut().zip(word).zip(position).zip(kind) {
                *o = a + b + c;
            }
        }
    }
    layer_norm(&mut x, h, &e.norm.weight, &e.norm.bias, cfg.layer_norm_eps);
    Ok(x)
}

/// Row `i` of a `[_, width]` table, or `None` past its end.
fn row(table: &[f32], i: usize, width: usize) -> Option<&[f32]> {
    table.get(i * width..(i + 1) * width)
}

/// Multi-head self-attention: `ctx[seq] = softmax(Q Kᵀ/√d) V`, per sequence and head.
/// `qkv` is `[tokens, 3·hidden]` (Q | K | V), `ctx` is `[tokens, hidden]`.
fn attention(qkv: &[f32], ctx: &mut [f32], lens: &[usize], cfg: &EncoderConfig) -> Result<(), BertError> {
    let h = cfg.hidden;
    let dh = cfg.head_dim();
    let ld = 3 * h;
    let scale = 1.0 / (dh as f32).sqrt();

    // Split ctx into one disjoint slice per sequence so sequences can run in parallel.
    let mut parts = Vec::with_capacity(lens.len());
    let mut rest = ctx;
    let mut offset = 0;
    for &len in lens {
        let (head, tail) = rest.split_at_mut_checked(len * h).ok_or_else(|| BertError::Internal {
            op: "attention",
            detail: "sequence lengths exceed the context buffer".to_owned(),
        })?;
        parts.push((offset, len, head));
        rest = tail;
        offset += len;
    }

    parts.into_par_iter().try_for_each(|(offset, len, seq_ctx)| {
        if len == 0 {
            return Ok(());
        }
        // Each head writes a private [len, dh] block; they are interleaved into seq_ctx afterwards,
        // because a head's columns are not a contiguous (splittable) region of the row-major ctx.
        let heads: Vec<Vec<f32>> = (0..cfg.heads)
            .into_par_iter()
            .map(|head| {
                let view = |which: usize| {
                    qkv.get(offset * ld + which * h + head * dh..)
                        .ok_or_else(|| BertError::Internal {
                            op: "attention",
                            detail: "head view outside the qkv buffer".to_owned(),
                        })
                };
                let (q, k, v) = (view(0)?, view(1)?, view(2)?);
                let mut scores = vec![0.0f32; len * len];
                matmul(
                    MatMut::rows(&mut scores, len, len),
                    Mat {
                        data: q,
                        rows: len,
                        cols: dh,
                        row_stride: ld,
                        col_stride: 1,
                    },
                    Mat {
                        data: k,
                        rows: dh,
                        cols: len,
                        row_stride: 1,
                        col_stride: ld,
                    },
                    false,
                    scale,
                    Parallelism::None,
                )?;
                scores.chunks_exact_mut(len.max(1)).for_each(softmax);
                let mut out = vec![0.0f32; len * dh];
                matmul(
                    MatMut::rows(&mut out, len, dh),
                    Mat::rows(&scores, len, len),
                    Mat {
                        data: v,
                        rows: len,
                        cols: dh,
                        row_stride: ld,
                        col_stride: 1,
                    },
                    false,
                    1.0,
                    Parallelism::None,
                )?;
                Ok(out)
            })
            .collect::<Result<_, BertError>>()?;
        for (head, out) in heads.iter().enumerate() {
            for (ctx_row, head_row) in seq_ctx.chunks_exact_mut(h).zip(out.chunks_exact(dh)) {
                if let Some(dst) = ctx_row.get_mut(head * dh..(head + 1) * dh) {
                    dst.copy_from_slice(head_row);
                }
            }
        }
        Ok(())
    })
}
