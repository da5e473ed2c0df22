//! Multi-weight matmul: one parallel region splits the union of all weight rows across threads.

use std::cell::RefCell;

use super::activations::{ActKind, act_kind};
use super::dot::{self, GROUP_TOKENS, MAX_TOKENS};
use super::interleave::GROUP;
use super::{Activations, GgmlType, QMatrix, QuantError, cpu, dequantize_row};

/// Weight rows handled per step. A step's rows (at most a few KiB of weights) stay in L1/L2
/// while every token of the batch streams past them, so each weight byte comes from memory once.
const ROW_STEP: usize = 16;

/// Minimum rows per chunk when a batch is split into more chunks than threads.
const MIN_CHUNK_ROWS: usize = 32;

/// Extra chunks per thread for batches, so a thread slowed down by other processes on the
/// machine can hand work to the others. Single-token decode uses exactly one chunk per thread:
/// there the work per call is tiny and scheduling overhead dominates.
const CHUNKS_PER_THREAD_BATCHED: usize = 4;

/// out[i][t * w_i.rows() + r] = dot(w_i row r, x row t), for several weights that share the same
/// input (q/k/v projections; gate/up), in one parallel region on `pool`.
///
/// The union of all rows of all weights is split into contiguous chunks across threads; within a
/// chunk, weight rows are the outer loop and tokens the inner one.
pub fn matmul(
    weights: &[&QMatrix],
    x: &Activations,
    outs: &mut [&mut [f32]],
    pool: &rayon::ThreadPool,
) -> Result<(), QuantError> {
    matmul_with(weights, x, outs, pool, cpu::simd())
}

/// [`matmul`] with the SIMD kernels switched on or off (off is the portable reference path).
pub(crate) fn matmul_with(
    weights: &[&QMatrix],
    x: &Activations,
    outs: &mut [&mut [f32]],
    pool: &rayon::ThreadPool,
    simd: bool,
) -> Result<(), QuantError> {
    validate(weights, x, outs)?;
    let tokens = x.tokens();
    let total_rows: usize = weights.iter().map(|w| w.rows()).sum();
    if tokens == 0 || total_rows == 0 {
        return Ok(());
    }
    let threads = pool.current_num_threads().max(1);
    let nchunks = if tokens == 1 {
        threads
    } else {
        (threads * CHUNKS_PER_THREAD_BATCHED).min(total_rows.div_ceil(MIN_CHUNK_ROWS))
    }
    .clamp(1, total_rows);
    let chunks = split_jobs(weights, outs, tokens, total_rows, nchunks);
    // The calling thread works on the first chunk while the pool takes the rest: one handoff
    // instead of install's two (inject + steal) when called from outside the pool, and a plain
    // scope when called from a pool thread. A single chunk never leaves the calling thread.
    let mut chunks = chunks.into_iter();
    let first = chunks.next();
    pool.in_place_scope(|scope| {
        for chunk in chunks {
            scope.spawn(move |_| run_chunk(chunk, x, simd));
        }
        if let Some(chunk) = first {
            run_chunk(chunk, x, simd);
        }
    });
    Ok(())
}

/// Check every shape up front so the kernels can index without failing.
fn validate(weights: &[&QMatrix], x: &Activations, outs: &[&mut [f32]]) -> Result<(), QuantError> {
    if weights.len() != outs.len() {
        return Err(QuantError::OutCount {
            weights: weights.len(),
            outs: outs.len(),
        });
    }
    for (index, (w, out)) in weights.iter().zip(outs.iter()).enumerate() {
        if w.cols() != x.cols() {
            return Err(QuantError::ColsMismatch {
                index,
                weight_cols: w.cols(),
                act_cols: x.cols(),
            });
        }
        let prepared = match act_kind(w.ty()) {
            ActKind::Q8 => x.q8().is_some(),
            ActKind::F32 => x.f32().is_some(),
        };
        if !prepared {
            return Err(QuantError::NotPrepared { ty: w.ty().name() });
        }
        let expected = w.rows() * x.tokens();
        if out.len() != expected {
            return Err(QuantError::Len {
                what: format!("output {index} of matmul ([{} tokens x {} rows])", x.tokens(), w.rows()),
                expected,
                actual: out.len(),
            });
        }
    }
    Ok(())
}

/// Rows `r0..r0 + outs[t].len()` of one weight, with the output slice of each token.
struct Job<'a> {
    w: &'a QMatrix,
    r0: usize,
    outs: Vec<&'a mut [f32]>,
}

/// Cut the global row range into `nchunks` near-equal pieces and hand each piece the disjoint
/// output sub-slices it writes, so threads need no synchronisation (and no unsafe).
fn split_jobs<'a>(
    weights: &[&'a QMatrix],
    outs: &'a mut [&mut [f32]],
    tokens: usize,
    total_rows: usize,
    nchunks: usize,
) -> Vec<Vec<Job<'a>>> {
    // Inner bounds fall on multiples of eight rows so interleaved groups are never split.
    let bound = |c: usize| match c >= nchunks {
        true => total_rows,
        false => c * total_rows / nchunks / GROUP * GROUP,
    };
    let mut chunks: Vec<Vec<Job<'a>>> = (0..nchunks).map(|_| Vec::new()).collect();
    let mut base = 0;
    for (&w, out) in weights.iter().zip(outs.iter_mut()) {
        let rows = w.rows();
        if rows == 0 {
            continue;
        }
        // Chunks overlapping [base, base + rows), as (chunk, local row range).
        let first = (0..nchunks).position(|c| bound(c + 1) > base).unwrap_or(nchunks);
        let mut segs: Vec<(usize, usize, usize)> = Vec::new();
        for c in first..nchunks {
            let (lo, hi) = (bound(c).max(base), bound(c + 1).min(base + rows));
            if lo >= base + rows {
                break;
            }
            if lo < hi {
                segs.push((c, lo - base, hi - base));
            }
        }
        let mut jobs: Vec<Job<'a>> = segs
            .iter()
            .map(|&(_, r0, _)| Job {
                w,
                r0,
                outs: Vec::with_capacity(tokens),
            })
            .collect();
        for token_out in out.chunks_exact_mut(rows) {
            let mut rest = token_out;
            for (job, &(_, r0, r1)) in jobs.iter_mut().zip(&segs) {
                let (piece, tail) = std::mem::take(&mut rest).split_at_mut(r1 - r0);
                job.outs.push(piece);
                rest = tail;
            }
        }
        for (job, &(c, _, _)) in jobs.into_iter().zip(&segs) {
            chunks[c].push(job);
        }
        base += rows;
    }
    chunks.retain(|c| !c.is_empty());
    chunks
}

thread_local! {
    /// Per-thread f32 rows for the dequantize-then-dot path, kept across calls so decode does
    /// not allocate.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` on a zeroed-or-stale scratch buffer of `len` f32s.
fn with_scratch<R>(len: usize, mut f: impl FnMut(&mut [f32]) -> R) -> R {
    let r = SCRATCH.try_with(|cell| {
        cell.try_borrow_mut().ok().map(|mut v| {
            if v.len() < len {
                v.resize(len, 0.0);
            }
            f(&mut v[..len])
        })
    });
    match r {
        Ok(Some(r)) => r,
        // Thread-local torn down or re-entered: fall back to a fresh buffer.
        _ => f(&mut vec![0.0; len]),
    }
}

fn run_chunk(jobs: Vec<Job<'_>>, x: &Activations, simd: bool) {
    for mut job in jobs {
        match act_kind(job.w.ty()) {
            ActKind::Q8 => run_q8(&mut job, x, simd),
            ActKind::F32 => {
                // Interleaved k-quants take the group kernels when the chunk is whole groups
                // (always, unless a weight before this one in the call has rows that are not
                // a multiple of 8) and the 8-bit activations were prepared.
                let nrows = job.outs.first().map_or(0, |o| o.len());
                let whole = job.r0.is_multiple_of(GROUP) && nrows.is_multiple_of(GROUP);
                if simd && job.w.is_interleaved() && whole && run_groups(&mut job, x, 0, nrows / GROUP) {
                    continue;
                }
                let len = ROW_STEP * x.cols();
                with_scratch(len, |scratch| run_f32(&mut job, x, simd, scratch));
            }
        }
    }
}

/// Q8-activation weights: whole interleaved groups through the group kernels where the matrix
/// has them (and SIMD is on), everything else through the GGML-layout row kernels.
fn run_q8(job: &mut Job<'_>, x: &Activations, simd: bool) {
    let nrows = job.outs.first().map_or(0, |o| o.len());
    if simd && job.w.is_interleaved() {
        let head = ((GROUP - job.r0 % GROUP) % GROUP).min(nrows);
        let groups = (nrows - head) / GROUP;
        if groups > 0 && run_groups(job, x, head, groups) {
            run_rows(job, x, simd, 0, head);
            run_rows(job, x, simd, head + groups * GROUP, nrows);
            return;
        }
    }
    run_rows(job, x, simd, 0, nrows);
}

/// Groups of eight rows per step when a batch needs several token tiles: the step's weights
/// (at most ~30 KiB) stay in L1/L2 while every tile streams past them.
const GROUP_STEP: usize = 4;

/// `groups` interleaved groups starting at the job's local row `at` (a group boundary).
/// False when no kernel took them (nothing written).
fn run_groups(job: &mut Job<'_>, x: &Activations, at: usize, groups: usize) -> bool {
    let Some(q8) = x.q8() else { return false };
    let (ty, cols, tokens) = (job.w.ty(), x.cols(), x.tokens());
    let g0 = (job.r0 + at) / GROUP;
    // One tile of tokens: all groups in one call. Several: a few groups at a time.
    let step = if tokens <= GROUP_TOKENS { groups } else { GROUP_STEP };
    for s0 in (0..groups).step_by(step) {
        let s1 = (s0 + step).min(groups);
        let Some(w) = job.w.groups_data(g0 + s0, g0 + s1) else {
            return false;
        };
        for t0 in (0..tokens).step_by(GROUP_TOKENS) {
            let n = GROUP_TOKENS.min(tokens - t0);
            let outs = &mut job.outs[t0..t0 + n];
            if !dot::q8_groups(ty, w, q8, cols, t0, outs, at + s0 * GROUP) {
                return false;
            }
        }
    }
    true
}

/// GGML-layout rows `lo..hi` (local to the job) through the row kernels.
fn run_rows(job: &mut Job<'_>, x: &Activations, simd: bool, lo: usize, hi: usize) {
    let Some(q8) = x.q8() else { return };
    let (ty, cols, tokens) = (job.w.ty(), x.cols(), x.tokens());
    let mut res = [0.0f32; ROW_STEP * MAX_TOKENS];
    for s0 in (lo..hi).step_by(ROW_STEP) {
        let s1 = (s0 + ROW_STEP).min(hi);
        let w = job.w.rows_data(job.r0 + s0, job.r0 + s1);
        for t0 in (0..tokens).step_by(MAX_TOKENS) {
            let n = MAX_TOKENS.min(tokens - t0);
            dot::q8_rows(ty, simd, w, q8, cols, t0, n, &mut res[..(s1 - s0) * n]);
            for (i, r) in res[..(s1 - s0) * n].chunks_exact(n).enumerate() {
                for (k, &v) in r.iter().enumerate() {
                    job.outs[t0 + k][s0 + i] = v;
                }
            }
        }
    }
}

/// Dequantize-then-dot path (F32/F16/BF16, and k-quants not interleaved): a step of rows is
/// widened into `scratch` once and dotted with every token.
fn run_f32(job: &mut Job<'_>, x: &Activations, simd: bool, scratch: &mut [f32]) {
    let Some(xs) = x.f32() else { return };
    let (ty, cols) = (job.w.ty(), x.cols());
    let nrows = job.outs.first().map_or(0, |o| o.len());
    for s0 in (0..nrows).step_by(ROW_STEP) {
        let s1 = (s0 + ROW_STEP).min(nrows);
        for (i, dst) in (s0..s1).zip(scratch.chunks_exact_mut(cols)) {
            let src = job.w.row_data(job.r0 + i);
            if !(ty == GgmlType::F16 && dot::f16_row(simd, src, dst)) {
                // Shapes were validated, so this cannot fail; a failure would leave stale data,
                // never a panic.
                let _ = dequantize_row(ty, src, dst);
            }
        }
        for (t, out) in job.outs.iter_mut().enumerate() {
            let xt = &xs[t * cols..(t + 1) * cols];
            for (i, wrow) in (s0..s1).zip(scratch.chunks_exact(cols)) {
                out[i] = dot::f32_dot(simd, wrow, xt);
            }
        }
    }
}
