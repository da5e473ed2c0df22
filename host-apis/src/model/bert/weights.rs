//! Loading the encoder's weights from a memory-mapped safetensors file.
//!
//! The map is only read during [`Weights::load`]: every tensor is decoded into an owned,
//! aligned `Vec<f32>` (f16/bf16 are widened), so the forward pass needs no per-call
//! fallible views and the file can change or vanish after loading. Zero-copy f32 views
//! would need `bytemuck` or an unsafe `align_to`, and the copy costs ~tens of ms once.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::config::{EncoderConfig, io_error};
use super::error::BertError;

/// A dense layer `y = x Wᵀ + b` with `W` stored row-major as `[out, in]` (PyTorch layout).
pub(crate) struct Linear {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub out_features: usize,
    pub in_features: usize,
}

/// Layer-normalisation scale and shift.
pub(crate) struct Norm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// One transformer block. Q, K and V are fused into one `[3·hidden, hidden]` projection
/// so the batch does a single wide matrix product instead of three narrow ones.
pub(crate) struct Layer {
    pub qkv: Linear,
    pub attn_out: Linear,
    pub attn_norm: Norm,
    pub ffn_in: Linear,
    pub ffn_out: Linear,
    pub ffn_norm: Norm,
}

/// Token, position and segment embeddings plus their layer norm.
pub(crate) struct Embeddings {
    pub word: Vec<f32>,
    pub position: Vec<f32>,
    pub token_type: Vec<f32>,
    pub norm: Norm,
}

/// All weights the encoder uses (the pooler head is not needed for sentence embeddings).
pub(crate) struct Weights {
    pub embeddings: Embeddings,
    pub layers: Vec<Layer>,
}

impl Weights {
    /// Total number of parameters held, for `Debug`.
    pub fn parameter_count(&self) -> usize {
        let norm = |n: &Norm| n.weight.len() + n.bias.len();
        let lin = |l: &Linear| l.weight.len() + l.bias.len();
        let e = &self.embeddings;
        e.word.len()
            + e.position.len()
            + e.token_type.len()
            + norm(&e.norm)
            + self
                .layers
                .iter()
                .map(|l| {
                    lin(&l.qkv)
                        + lin(&l.attn_out)
                        + norm(&l.attn_norm)
                        + lin(&l.ffn_in)
                        + lin(&l.ffn_out)
                        + norm(&l.ffn_norm)
                })
                .sum::<usize>()
    }

    /// Memory-maps `path` and decodes the weights `cfg` describes, checking every shape.
    pub fn load(path: &Path, cfg: &EncoderConfig) -> Result<Self, BertError> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        let map = map_file(&file).map_err(|e| io_error(path, e))?;
        let st = SafeTensors::deserialize(&map).map_err(|source| BertError::Safetensors {
            path: path.to_owned(),
            source,
        })?;
        let reader = Reader { st: &st };

        let h = cfg.hidden;
        let embeddings = Embeddings {
            word: reader.get("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?,
            position: reader.get("embeddings.position_embeddings.weight", &[cfg.max_positions, h])?,
            token_type: reader.get("embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, h])?,
            norm: reader.norm("embeddings.LayerNorm", h)?,
        };
        let layers = (0..cfg.layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let q = reader.linear(&format!("{p}.attention.self.query"), h, h)?;
                let k = reader.linear(&format!("{p}.attention.self.key"), h, h)?;
                let v = reader.linear(&format!("{p}.attention.self.value"), h, h)?;
                Ok(Layer {
                    qkv: fuse([q, k, v]),
                    attn_out: reader.linear(&format!("{p}.attention.output.dense"), h, h)?,
                    attn_norm: reader.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                    ffn_in: reader.linear(&format!("{p}.intermediate.dense"), cfg.intermediate, h)?,
                    ffn_out: reader.linear(&format!("{p}.output.dense"), h, cfg.intermediate)?,
                    ffn_norm: reader.norm(&format!("{p}.output.LayerNorm"), h)?,
                })
            })
            .collect::<Result<Vec<_>, BertError>>()?;
        Ok(Self { embeddings, layers })
    }
}

/// Maps the weights file read-only.
#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and lives only for the duration of `Weights::load`, which
    // copies every tensor out before dropping it. Model files are written once and not modified
    // while being loaded; a concurrent truncation is the only hazard and is outside our contract.
    unsafe { Mmap::map(file) }
}

/// Stacks linears with the same input width along the output dimension.
fn fuse<const N: usize>(parts: [Linear; N]) -> Linear {
    let in_features = parts.first().map_or(0, |p| p.in_features);
    let mut weight = Vec::new();
    let mut bias = Vec::new();
    let mut out_features = 0;
    for p in parts {
        weight.extend_from_slice(&p.weight);
        bias.extend_from_slice(&p.bias);
        out_features += p.out_features;
    }
    Linear {
        weight,
        bias,
        out_features,
        in_features,
    }
}

/// Tensor lookup that accepts names with or without the `bert.` prefix
/// (`BertModel` checkpoints have none, `BertFor*` ones have it).
struct Reader<'a, 'data> {
    st: &'a SafeTensors<'data>,
}

impl Reader<'_, '_> {
    fn find(&self, name: &str) -> Option<(String, safetensors::tensor::TensorView<'_>)> {
        [name.to_owned(), format!("bert.{name}")]
            .into_iter()
            .find_map(|n| self.st.tensor(&n).ok().map(|t| (n, t)))
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, BertError> {
        let (found, view) = self
            .find(name)
            .ok_or_else(|| BertError::MissingTensor { name: name.to_owned() })?;
        if view.shape() != shape {
            return Err(BertError::TensorShape {
                name: found,
                expected: shape.to_vec(),
                actual: view.shape().to_vec(),
            });
        }
        decode(&found, view.dtype(), view.data())
    }

    /// Like `get`, but tries legacy aliases (old TF-converted BERT used gamma/beta for LayerNorm).
    fn get_any(&self, names: &[String], shape: &[usize]) -> Result<Vec<f32>, BertError> {
        match names.iter().find(|n| self.find(n).is_some()) {
            Some(n) => self.get(n, shape),
            None => Err(BertError::MissingTensor {
                name: names.first().cloned().unwrap_or_default(),
            }),
        }
    }

    fn linear(&self, prefix: &str, out_features: usize, in_features: usize) -> Result<Linear, BertError> {
        Ok(Linear {
            weight: self.get(&format!("{prefix}.weight"), &[out_features, in_features])?,
            bias: self.get(&format!("{prefix}.bias"), &[out_features])?,
            out_features,
            in_features,
        })
    }

    fn norm(&self, prefix: &str, width: usize) -> Result<Norm, BertError> {
        Ok(Norm {
            weight: self.get_any(&[format!("{prefix}.weight"), format!("{prefix}.gamma")], &[width])?,
            bias: self.get_any(&[format!("{prefix}.bias"), format!("{prefix}.beta")], &[width])?,
        })
    }
}

/// Decodes little-endian tensor bytes (the safetensors byte order) into f32.
fn decode(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, BertError> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|c| f32::from_le_bytes(*c))
            .collect(),
        Dtype::F16 => bytes
            .as_chunks::<2>()
            .0
            .iter()
            .map(|c| half::f16::from_le_bytes(*c).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .as_chunks::<2>()
            .0
            .iter()
            .map(|c| half::bf16::from_le_bytes(*c).to_f32())
            .collect(),
        other => {
            return Err(BertError::UnsupportedDtype {
                name: name.to_owned(),
                dtype: format!("{other:?}"),
            });
        }
    })
}
