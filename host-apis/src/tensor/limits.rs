//! Limits on what one invocation can ask of the tensor API.
//!
//! Each limit is a config key (under `[tensor]` in `wafer.toml`) with a
//! default and the reason for it; each has a test just inside and just
//! outside it (`tests/limits.rs`).

use serde::{Deserialize, Serialize};

use super::error::{Result, TensorError};
use super::shape::MAX_RANK;

/// Per-invocation and per-tenant bounds on tensors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TensorLimits {
    /// Highest tensor rank. Default 8: every model layer we know of needs at
    /// most 5 (batch, heads, sequence, head dim, plus one for grouping), and
    /// the CUDA kernels take shapes in fixed arrays of [`MAX_RANK`] = 8.
    pub max_rank: usize,
    /// Most elements in one tensor. Default 2^28 (1 GiB of `f32`): a 4096²
    /// activation times 16 fits; beyond it one op would hold a core for
    /// seconds, so bigger work belongs to a model, not to a guest's tensors.
    pub max_elements: u64,
    /// Most live tensors one invocation holds. Default 4096: a transformer
    /// forward pass written by hand keeps a few hundred alive; the table is
    /// a guest-growable structure and needs a bound of its own, apart from
    /// memory, because empty tensors cost host memory but no tensor bytes.
    pub max_live_tensors: usize,
    /// Tensor bytes one invocation may hold at once. Default 2 GiB: twice the
    /// largest single tensor, so a binary op on two of them fits.
    pub max_bytes_per_invocation: u64,
    /// Tensor bytes all of one tenant's invocations may hold at once on this
    /// node. Default 8 GiB: four full invocations, so one tenant cannot take
    /// a device's memory from everyone else.
    pub max_bytes_per_tenant: u64,
    /// Most floating-point operations (`2·batch·m·n·k`) in one `matmul`.
    /// Default 2^34 (a 2048³ product): about 0.15 s at the ~100 GFLOP/s of
    /// a many-core CPU, a few ms on a GPU. Each op runs synchronously inside
    /// one host call, where neither epoch interruption nor fuel can stop it,
    /// so this bounds how long one call can hold a thread; bigger products
    /// belong to a model, or to several calls over slices.
    pub max_matmul_flops: u64,
}

impl Default for TensorLimits {
    fn default() -> Self {
        TensorLimits {
            max_rank: MAX_RANK,
            max_elements: 1 << 28,
            max_live_tensors: 4096,
            max_bytes_per_invocation: 2 << 30,
            max_bytes_per_tenant: 8 << 30,
            max_matmul_flops: 1 << 34,
        }
    }
}

impl TensorLimits {
    /// Checks the values make sense (rank within what the kernels handle).
    pub fn validate(&self) -> Result<()> {
        if self.max_rank > MAX_RANK {
            return Err(TensorError::invalid(format!(
                "tensor.max_rank = {} is over the supported {MAX_RANK}",
                self.max_rank
            )));
        }
        Ok(())
    }

    /// Checks a new tensor's rank and element count.
    pub fn check_tensor(&self, dims: &[usize]) -> Result<()> {
        if dims.len() > self.max_rank {
            return Err(TensorError::invalid(format!(
                "rank {} is over the limit of {} (tensor.max_rank)",
                dims.len(),
                self.max_rank
            )));
        }
        let n = super::shape::checked_numel(dims)? as u64;
        if n > self.max_elements {
            return Err(TensorError::invalid(format!(
                "{n} elements is over the limit of {} (tensor.max_elements)",
                self.max_elements
            )));
        }
        Ok(())
    }

    /// Checks one matmul's work, `2·batch·m·n·k` floating-point operations
    /// (an overflow counts as over the limit).
    pub fn check_matmul(&self, batch: usize, m: usize, n: usize, k: usize) -> Result<()> {
        let flops = [batch, m, n, k]
            .iter()
            .try_fold(2u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?));
        match flops {
            Some(f) if f <= self.max_matmul_flops => Ok(()),
            _ => Err(TensorError::OverQuota {
                what: "matmul work per call in flops (tensor.max_matmul_flops)",
                limit: self.max_matmul_flops,
                used: 0,
                requested: flops.unwrap_or(u64::MAX),
            }),
        }
    }
}
