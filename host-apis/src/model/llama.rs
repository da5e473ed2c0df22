//! Llama-family decoders (llama, qwen2, mistral): grouped-query attention,
//! RoPE (adjacent-pair or NeoX style), optional Q/K/V biases, SwiGLU feed
//! forward, tied or separate output embeddings, weights in any GGML type.
//!
//! [`Llama::forward`] runs one step for a batch of sequences: each brings
//! the tokens it feeds this step (a prompt chunk, or one sampled token) and
//! its cache blocks. All tokens of the step go through every matrix product
//! together, so a weight row read from memory serves the whole batch; that
//! is what makes continuous batching pay on a memory-bound decoder.

use rayon::prelude::*;

use super::ModelError;
use super::gguf::{Gguf, GgufError};
use super::kernels::{self, Rope};
use super::kv_cache::{KvCache, SeqBlocks};
use super::quant::{Activations, QMatrix};

/// Hyper-parameters from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Decoder layers.
    pub n_layers: usize,
    /// Residual stream width.
    pub dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Feed-forward width.
    pub ffn_dim: usize,
    /// Token ids.
    pub vocab: usize,
    /// Positions the model was trained for.
    pub context_length: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_base: f32,
    /// Values of a head that are rotated.
    pub rope_dim: usize,
    /// NeoX-style rotation (qwen2) instead of adjacent pairs (llama).
    pub rope_neox: bool,
}

/// Heads must divide the width, and key/value heads the query heads.
pub(crate) fn check_heads(dim: usize, n_heads: usize, n_kv_heads: usize) -> Result<(), ModelError> {
    if n_heads == 0 || n_kv_heads == 0 || !dim.is_multiple_of(n_heads) || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(ModelError::Invalid(format!(
            "{n_heads} heads, {n_kv_heads} kv heads, width {dim}"
        )));
    }
    Ok(())
}

impl LlamaConfig {
    /// Read from metadata; names the key when one is missing.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, ModelError> {
        let arch = gguf.str("general.architecture")?.to_owned();
        let rope_neox = match arch.as_str() {
            "llama" | "mistral" => false,
            "qwen2" => true,
            other => {
                return Err(ModelError::Unsupported(format!(
                    "architecture `{other}` (supported decoders: llama, mistral, qwen2)"
                )));
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        let int = |k: &str| -> Result<usize, GgufError> { Ok(gguf.u64(&key(k))? as usize) };
        if let Some(scaling) = gguf.opt_str(&key("rope.scaling.type"))
            && scaling != "none"
        {
            return Err(ModelError::Unsupported(format!("RoPE scaling `{scaling}`")));
        }
        let dim = int("embedding_length")?;
        let n_heads = int("attention.head_count")?;
        let n_kv_heads = gguf
            .opt_u64(&key("attention.head_count_kv"))
            .map_or(n_heads, |v| v as usize);
        check_heads(dim, n_heads, n_kv_heads)?;
        let head_dim = gguf
            .opt_u64(&key("attention.key_length"))
            .map_or(dim / n_heads, |v| v as usize);
        let vocab = match gguf.tensors().get("token_embd.weight") {
            // Sampling indexes the logits: an empty vocabulary is refused here.
            Some(info) if info.dims.len() == 2 && info.dims[1] > 0 => info.dims[1] as usize,
            Some(info) if info.dims.len() == 2 => {
                return Err(ModelError::Invalid("token_embd.weight has an empty vocabulary".into()));
            }
            _ => return Err(GgufError::MissingTensor("token_embd.weight".into()).into()),
        };
        let rope_dim = gguf
            .opt_u64(&key("rope.dimension_count"))
            .map_or(head_dim, |v| v as usize);
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(ModelError::Invalid(format!(
                "rope dimension {rope_dim} with heads of {head_dim}"
            )));
        }
        Ok(LlamaConfig {
            n_layers: int("block_count")?,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: int("feed_forward_length")?,
            vocab,
            context_length: int("context_length")?,
            rms_eps: gguf.opt_f64(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f32,
            rope_base: gguf.opt_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            rope_dim,
            rope_neox,
            arch,
        })
    }

    /// Key (or value) width per position.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Query width (all heads).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
}

/// Where a decoder's weights come from, by their GGUF names
/// (`token_embd.weight`, `blk.N.attn_q.weight`, ...), shapes checked.
pub trait DecoderWeights {
    /// A 2-D weight `[rows, cols]` (output features × input features).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, ModelError>;
    /// A 1-D weight as f32.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError>;
    /// Whether the weight exists (optional ones: biases, a separate output).
    fn has(&self, name: &str) -> bool;
    /// Bytes of all weights.
    fn total_bytes(&self) -> usize;
}

impl DecoderWeights for Gguf {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, ModelError> {
        Ok(Gguf::matrix(self, name, rows, cols)?)
    }
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        Ok(Gguf::vector(self, name, len)?)
    }
    fn has(&self, name: &str) -> bool {
        self.tensors().contains_key(name)
    }
    fn total_bytes(&self) -> usize {
        self.tensors().values().map(|t| t.len).sum()
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    bias: Option<[Vec<f32>; 3]>,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// A loaded decoder.
pub struct Llama {
    cfg: LlamaConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    output: QMatrix,
    rope: Rope,
    weight_bytes: usize,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("cfg", &self.cfg)
            .field("weight_bytes", &self.weight_bytes)
            .finish()
    }
}

/// What one sequence feeds in a step.
#[derive(Debug)]
pub struct SeqStep<'a> {
    /// The sequence's cache.
    pub blocks: &'a SeqBlocks,
    /// Positions already in the cache; `tokens` take the next ones.
    pub start: usize,
    /// Tokens to feed.
    pub tokens: &'a [u32],
    /// Whether the logits after the last token are wanted.
    pub logits: bool,
}

impl Llama {
    /// Build from a GGUF file; `max_positions` bounds the RoPE table (and so
    /// the longest sequence this replica serves).
    pub fn from_gguf(gguf: &Gguf, max_positions: usize) -> Result<Self, ModelError> {
        Self::from_weights(LlamaConfig::from_gguf(gguf)?, gguf, max_positions)
    }

    /// Build from any source of weights named as in GGUF files (a GGUF file,
    /// or a Hugging Face folder through [`super::hf`]).
    pub fn from_weights(
        cfg: LlamaConfig,
        weights: &dyn DecoderWeights,
        max_positions: usize,
    ) -> Result<Self, ModelError> {
        let (dim, q_dim, kv_dim, ffn) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
        let embed = weights.matrix("token_embd.weight", cfg.vocab, dim)?;
        // Every matrix product gets the interleaved layout of the batched
        // kernels; the embedding table is only read a row at a time and keeps
        // the file's layout.
        let output = match weights.has("output.weight") {
            true => weights.matrix("output.weight", cfg.vocab, dim)?,
            false => embed.clone(),
        }
        .interleaved();
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<QMatrix, ModelError> {
            Ok(weights.matrix(name, rows, cols)?.interleaved())
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}");
            let bias = match weights.has(&name("attn_q.bias")) {
                true => Some([
                    weights.vector(&name("attn_q.bias"), q_dim)?,
                    weights.vector(&name("attn_k.bias"), kv_dim)?,
                    weights.vector(&name("attn_v.bias"), kv_dim)?,
                ]),
                false => None,
            };
            layers.push(Layer {
                attn_norm: weights.vector(&name("attn_norm.weight"), dim)?,
                wq: matrix(&name("attn_q.weight"), q_dim, dim)?,
                wk: matrix(&name("attn_k.weight"), kv_dim, dim)?,
                wv: matrix(&name("attn_v.weight"), kv_dim, dim)?,
                bias,
                wo: matrix(&name("attn_output.weight"), dim, q_dim)?,
                ffn_norm: weights.vector(&name("ffn_norm.weight"), dim)?,
                gate: matrix(&name("ffn_gate.weight"), ffn, dim)?,
                up: matrix(&name("ffn_up.weight"), ffn, dim)?,
                down: matrix(&name("ffn_down.weight"), dim, ffn)?,
            });
        }
        let norm = weights.vector("output_norm.weight", dim)?;
        let positions = max_positions.min(cfg.context_length).max(1);
        let rope = Rope::new(cfg.rope_dim, cfg.rope_base, positions, cfg.rope_neox);
        let weight_bytes = weights.total_bytes();
        Ok(Llama {
            cfg,
            embed,
            layers,
            norm,
            output,
            rope,
            weight_bytes,
        })
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Longest sequence (prompt + generated) this replica serves.
    pub fn max_positions(&self) -> usize {
        self.rope.max_pos()
    }

    /// Bytes of weights in the file.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Bytes of weights read to decode one token (every matrix once; the
    /// embedding lookup reads one row).
    pub fn bytes_per_decode(&self) -> usize {
        let m = |q: &QMatrix| q.ty().row_bytes(q.cols()).unwrap_or(0) * q.rows();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| m(&l.wq) + m(&l.wk) + m(&l.wv) + m(&l.wo) + m(&l.gate) + m(&l.up) + m(&l.down))
            .sum();
        layers + m(&self.output)
    }

    /// A cache sized for this model.
    pub fn new_cache(&self, budget_bytes: usize) -> KvCache {
        KvCache::new(self.cfg.n_layers, self.cfg.kv_dim(), budget_bytes)
    }

    /// Bytes one cached position takes.
    pub fn kv_bytes_per_token(&self) -> usize {
        KvCache::bytes_per_token(self.cfg.n_layers, self.cfg.kv_dim())
    }

    /// One step. Returns the logits (`vocab` values each) for every sequence
    /// that asked for them, in order.
    pub fn forward(
        &self,
        kv: &mut KvCache,
        batch: &[SeqStep<'_>],
        pool: &rayon::ThreadPool,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let c = &self.cfg;
        let (dim, q_dim, kv_dim, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim);
        // Where each token of the step belongs: (sequence, position).
        let mut owners = Vec::new();
        for (s, step) in batch.iter().enumerate() {
            let end = step.start + step.tokens.len();
            if end > self.max_positions() || end > step.blocks.capacity() {
                return Err(ModelError::Invalid(format!(
                    "sequence of {end} positions exceeds its cache ({}) or the model's limit ({})",
                    step.blocks.capacity(),
                    self.max_positions()
                )));
            }
            owners.extend((step.start..end).map(|p| (s, p)));
        }
        let n = owners.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut x = vec![0f32; n * dim];
        for (row, &id) in x.chunks_exact_mut(dim).zip(batch.iter().flat_map(|s| s.tokens)) {
            self.embed.row_into(id as usize, row)?;
        }
        let mut h = vec![0f32; n * dim];
        let mut q = vec![0f32; n * q_dim];
        let mut k = vec![0f32; n * kv_dim];
        let mut v = vec![0f32; n * kv_dim];
        let mut attn = vec![0f32; n * q_dim];
        let mut o = vec![0f32; n * dim];
        let mut gate = vec![0f32; n * c.ffn_dim];
        let mut up = vec![0f32; n * c.ffn_dim];
        for (li, layer) in self.layers.iter().enumerate() {
            kernels::rms_norm(&x, &layer.attn_norm, c.rms_eps, &mut h);
            let acts = Activations::prepare(&h, n, dim, &[layer.wq.ty(), layer.wk.ty(), layer.wv.ty()])?;
            super::quant::matmul(
                &[&layer.wq, &layer.wk, &layer.wv],
                &acts,
                &mut [&mut q, &mut k, &mut v],
                pool,
            )?;
            if let Some([bq, bk, bv]) = &layer.bias {
                add_rows(&mut q, bq);
                add_rows(&mut k, bk);
                add_rows(&mut v, bv);
            }
            for (t, &(s, pos)) in owners.iter().enumerate() {
                self.rope.apply(&mut q[t * q_dim..(t + 1) * q_dim], hd, pos);
                let kt = &mut k[t * kv_dim..(t + 1) * kv_dim];
                self.rope.apply(kt, hd, pos);
                if !kv.store(batch[s].blocks, li, pos, kt, &v[t * kv_dim..(t + 1) * kv_dim]) {
                    return Err(ModelError::Invalid(format!(
                        "position {pos} is outside the sequence's cache"
                    )));
                }
            }
            self.attention(kv, batch, &owners, li, &q, &mut attn, pool);
            let acts = Activations::prepare(&attn, n, q_dim, &[layer.wo.ty()])?;
            super::quant::matmul(&[&layer.wo], &acts, &mut [&mut o], pool)?;
            add_in_place(&mut x, &o);

            kernels::rms_norm(&x, &layer.ffn_norm, c.rms_eps, &mut h);
            let acts = Activations::prepare(&h, n, dim, &[layer.gate.ty(), layer.up.ty()])?;
            super::quant::matmul(&[&layer.gate, &layer.up], &acts, &mut [&mut gate, &mut up], pool)?;
            kernels::swiglu(&mut gate, &up);
            let acts = Activations::prepare(&gate, n, c.ffn_dim, &[layer.down.ty()])?;
            super::quant::matmul(&[&layer.down], &acts, &mut [&mut o], pool)?;
            add_in_place(&mut x, &o);
        }
        // Logits only where asked: the last token of each such sequence.
        let mut last = Vec::new();
        let mut t = 0;
        for step in batch {
            t += step.tokens.len();
            if step.logits && !step.tokens.is_empty() {
                last.extend_from_slice(&x[(t - 1) * dim..t * dim]);
            }
        }
        let rows = last.len() / dim;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let mut normed = vec![0f32; last.len()];
        kernels::rms_norm(&last, &self.norm, c.rms_eps, &mut normed);
        let acts = Activations::prepare(&normed, rows, dim, &[self.output.ty()])?;
        let mut logits = vec![0f32; rows * c.vocab];
        super::quant::matmul(&[&self.output], &acts, &mut [&mut logits], pool)?;
        Ok(logits.chunks_exact(c.vocab).map(<[f32]>::to_vec).collect())
    }

    /// Causal attention of every token of the step over its sequence's
    /// cache, one task per (token, key/value head): the query heads that
    /// share a key/value head (grouped-query attention) read each cached
    /// key and value once.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        kv: &KvCache,
        batch: &[SeqStep<'_>],
        owners: &[(usize, usize)],
        layer: usize,
        q: &[f32],
        out: &mut [f32],
        pool: &rayon::ThreadPool,
    ) {
        let c = &self.cfg;
        let (hd, kv_dim) = (c.head_dim, c.kv_dim());
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        pool.install(|| {
            out.par_chunks_mut(group * hd).enumerate().for_each(|(i, out)| {
                let (t, kvh) = (i / c.n_kv_heads, i % c.n_kv_heads);
                let (s, pos) = owners[t];
                let len = pos + 1;
                let blocks = batch[s].blocks;
                let keys: Vec<&[half::f16]> = kv.blocks(blocks, layer, false, len).collect();
                let values: Vec<&[half::f16]> = kv.blocks(blocks, layer, true, len).collect();
                // The query heads of this group are consecutive (head = kvh * group + g).
                let qg = &q[t * c.q_dim() + kvh * group * hd..][..group * hd];
                let head = (kv_dim, kvh * hd, hd);
                let mut scores = vec![0f32; group * len];
                // Where there is no SIMD kernel: plain loops over the widened cache rows.
                let widen = |row: &[half::f16]| -> Vec<f32> {
                    row[kvh * hd..(kvh + 1) * hd].iter().map(|h| h.to_f32()).collect()
                };
                if !super::quant::attn_scores(qg, &keys, head, len, scale, &mut scores) {
                    let positions = keys.iter().flat_map(|b| b.chunks_exact(kv_dim)).take(len);
                    for (p, key) in positions.enumerate() {
                        let key = widen(key);
                        for (g, qh) in qg.chunks_exact(hd).enumerate() {
                            scores[g * len + p] = kernels::dot(qh, &key) * scale;
                        }
                    }
                }
                scores.chunks_exact_mut(len).for_each(kernels::softmax);
                if !super::quant::attn_values(&scores, &values, head, len, out) {
                    out.fill(0.0);
                    let positions = values.iter().flat_map(|b| b.chunks_exact(kv_dim)).take(len);
                    for (p, value) in positions.enumerate() {
                        let value = widen(value);
                        for (g, og) in out.chunks_exact_mut(hd).enumerate() {
                            kernels::axpy(og, scores[g * len + p], &value);
                        }
                    }
                }
            });
        });
    }
}

fn add_rows(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_in_place(row, bias);
    }
}

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
