//! The key/value cache of a decoder, in fixed-size blocks from one bounded
//! pool per model replica (the paged layout of vLLM). A sequence owns a
//! list of blocks; its position `p` lives in block `p / BLOCK_TOKENS`, slot
//! `p % BLOCK_TOKENS`. Blocks are reserved for a sequence's whole budget
//! (prompt + max tokens) when it is admitted, so a running sequence never
//! waits for memory and nothing has to be preempted.
//!
//! Keys and values are stored as f16, as llama.cpp stores them by default:
//! half the memory per position (twice the sequences in the same budget)
//! and half the bytes attention reads per step, for an error well below the
//! weights' own quantization error.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Positions per block: small enough that little is wasted at the end of a
/// sequence, large enough that block tables stay short.
pub const BLOCK_TOKENS: usize = 16;

/// The cache of one model replica.
pub struct KvCache {
    n_layers: usize,
    kv_dim: usize,
    n_blocks: usize,
    /// `[block][layer][k|v][slot][kv_dim]`.
    data: Vec<f16>,
    free: Vec<u32>,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("blocks", &self.n_blocks)
            .field("free", &self.free.len())
            .finish()
    }
}

/// The blocks a sequence owns.
#[derive(Debug, Default)]
pub struct SeqBlocks {
    blocks: Vec<u32>,
}

impl SeqBlocks {
    /// Positions these blocks can hold.
    pub fn capacity(&self) -> usize {
        self.blocks.len() * BLOCK_TOKENS
    }
}

impl KvCache {
    /// Bytes one position takes in every layer (keys and values, f16).
    pub fn bytes_per_token(n_layers: usize, kv_dim: usize) -> usize {
        n_layers * 2 * kv_dim * std::mem::size_of::<f16>()
    }

    /// A pool of `budget_bytes` (rounded down to whole blocks).
    pub fn new(n_layers: usize, kv_dim: usize, budget_bytes: usize) -> Self {
        let block_bytes = Self::bytes_per_token(n_layers, kv_dim) * BLOCK_TOKENS;
        let n_blocks = (budget_bytes / block_bytes.max(1)).min(u32::MAX as usize);
        KvCache {
            n_layers,
            kv_dim,
            n_blocks,
            data: vec![f16::ZERO; n_blocks * block_bytes / std::mem::size_of::<f16>()],
            free: (0..n_blocks as u32).rev().collect(),
        }
    }

    /// Positions the whole pool holds.
    pub fn capacity_tokens(&self) -> usize {
        self.n_blocks * BLOCK_TOKENS
    }

    /// Positions free now.
    pub fn free_tokens(&self) -> usize {
        self.free.len() * BLOCK_TOKENS
    }

    /// Blocks for `tokens` positions, or `None` when the pool has too few free.
    pub fn reserve(&mut self, tokens: usize) -> Option<SeqBlocks> {
        let n = tokens.div_ceil(BLOCK_TOKENS);
        if n > self.free.len() {
            return None;
        }
        let at = self.free.len() - n;
        Some(SeqBlocks {
            blocks: self.free.split_off(at),
        })
    }

    /// Give a sequence's blocks back.
    pub fn release(&mut self, seq: SeqBlocks) {
        self.free.extend(seq.blocks);
    }

    fn offset(&self, seq: &SeqBlocks, layer: usize, value: bool, pos: usize) -> Option<usize> {
        let block = *seq.blocks.get(pos / BLOCK_TOKENS)? as usize;
        let slot = pos % BLOCK_TOKENS;
        Some((((block * self.n_layers + layer) * 2 + usize::from(value)) * BLOCK_TOKENS + slot) * self.kv_dim)
    }

    /// Store the key and value of `pos`. `false` when `pos` is beyond the
    /// sequence's blocks (a scheduler bug the caller reports).
    pub fn store(&mut self, seq: &SeqBlocks, layer: usize, pos: usize, k: &[f32], v: &[f32]) -> bool {
        let (Some(ko), Some(vo)) = (self.offset(seq, layer, false, pos), self.offset(seq, layer, true, pos)) else {
            return false;
        };
        self.data[ko..ko + self.kv_dim].convert_from_f32_slice(k);
        self.data[vo..vo + self.kv_dim].convert_from_f32_slice(v);
        true
    }

    /// Keys (or values) of positions `0..len` of one layer, block by block:
    /// each item is `[slots][kv_dim]` for up to `BLOCK_TOKENS` positions.
    pub fn blocks<'a>(
        &'a self,
        seq: &'a SeqBlocks,
        layer: usize,
        value: bool,
        len: usize,
    ) -> impl Iterator<Item = &'a [f16]> + 'a {
        let per_block = BLOCK_TOKENS * self.kv_dim;
        seq.blocks
            .iter()
            .take(len.div_ceil(BLOCK_TOKENS))
            .enumerate()
            .map(move |(i, &b)| {
                let start =
                    (((b as usize * self.n_layers + layer) * 2 + usize::from(value)) * BLOCK_TOKENS) * self.kv_dim;
                let slots = (len - i * BLOCK_TOKENS).min(BLOCK_TOKENS);
                &self.data[start..start + per_block][..slots * self.kv_dim]
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_release_are_bounded() {
        let mut kv = KvCache::new(2, 4, KvCache::bytes_per_token(2, 4) * BLOCK_TOKENS * 3);
        assert_eq!(kv.capacity_tokens(), 48);
        let a = kv.reserve(17).unwrap();
        assert_eq!(a.capacity(), 32);
        assert!(kv.reserve(17).is_none(), "only one block is left");
        let b = kv.reserve(16).unwrap();
        assert!(kv.store(&b, 1, 15, &[1.0; 4], &[2.0; 4]));
        assert!(!kv.store(&b, 1, 16, &[1.0; 4], &[2.0; 4]), "beyond the blocks");
        let values: Vec<&[f16]> = kv.blocks(&b, 1, true, 16).collect();
        assert_eq!(&values[0][15 * 4..], &[f16::from_f32(2.0); 4]);
        kv.release(a);
        kv.release(b);
        assert_eq!(kv.free_tokens(), 48);
    }
}
