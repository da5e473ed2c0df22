//! The CUDA backend: cuBLAS for matrix products, NVRTC-compiled kernels
//! (`kernels/tensor.cu`) for everything else.
//!
//! It compiles everywhere: cudarc loads `libcuda`, `libnvrtc` and
//! `libcublas` at run time. cudarc panics when a library is missing, so
//! every entry point first checks the libraries are there ([`probe`]) and
//! wraps its first calls in `catch_unwind` as a last line of defence;
//! without a driver the pool reports "no CUDA driver found" and uses the
//! CPU.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig, sys::cublasOperation_t};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};

use super::{Backend, BinaryOp, DeviceId, DeviceKind, MatmulPlan, NormOp, ReduceOp, Storage, UnaryOp, wrong_device};
use crate::tensor::dtype::DType;
use crate::tensor::error::{Result, TensorError};
use crate::tensor::shape::{MAX_RANK, Shape};

/// The CUDA C source of every kernel.
pub const KERNELS: &str = include_str!("kernels/tensor.cu");

/// Threads per block; the block reductions in the kernels assume 256.
const BLOCK: u32 = 256;
/// Grid cap: kernels loop over the rest (grid-stride loops).
const MAX_GRID: u64 = 65_535 * 16;

/// A device buffer: raw bytes plus the dtype and element count.
pub struct CudaStorage {
    dtype: DType,
    len: usize,
    buf: CudaSlice<u8>,
}

impl CudaStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A GPU found by [`probe`].
#[derive(Debug, Clone)]
pub struct CudaInfo {
    /// CUDA ordinal.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Total device memory in bytes.
    pub memory: u64,
}

fn catch<T>(what: &str, f: impl FnOnce() -> std::result::Result<T, String>) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("{what} failed: {msg}"))
    })
}

/// Whether libnvrtc can be loaded (kernels can be compiled).
pub fn nvrtc_present() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: only tries to dlopen the library by its known names.
    let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    present
}

/// Whether the CUDA driver library (libcuda) can be loaded.
pub fn driver_present() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: only tries to dlopen the library by its known names.
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    present
}

fn cublas_present() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: only tries to dlopen the library by its known names.
    let present = unsafe { cudarc::cublas::sys::is_culib_present() };
    present
}

/// The usable GPUs, or why there are none ("no CUDA driver found ...").
pub fn probe() -> std::result::Result<Vec<CudaInfo>, String> {
    if !driver_present() {
        return Err("no CUDA driver found (libcuda.so could not be loaded)".into());
    }
    if !nvrtc_present() {
        return Err("CUDA driver found but not NVRTC (libnvrtc.so); install the CUDA runtime compiler".into());
    }
    if !cublas_present() {
        return Err("CUDA driver found but not cuBLAS (libcublas.so)".into());
    }
    catch("CUDA discovery", || {
        let n = CudaContext::device_count().map_err(|e| format!("CUDA driver error: {e}"))?;
        if n <= 0 {
            return Err("CUDA driver found but no GPU".into());
        }
        (0..n as usize)
            .map(|ordinal| {
                let ctx = CudaContext::new(ordinal).map_err(|e| format!("cuda:{ordinal}: {e}"))?;
                Ok(CudaInfo {
                    ordinal,
                    name: ctx.name().unwrap_or_else(|_| "CUDA GPU".into()),
                    memory: ctx.total_mem().map_or(0, |m| m as u64),
                })
            })
            .collect()
    })
}

/// Compiles [`KERNELS`] to PTX with NVRTC (no GPU needed).
pub fn compile_kernels() -> std::result::Result<cudarc::nvrtc::Ptx, String> {
    if !nvrtc_present() {
        return Err("NVRTC (libnvrtc.so) could not be loaded".into());
    }
    catch("NVRTC", || {
        let opts = cudarc::nvrtc::CompileOptions {
            name: Some("wafer_tensor.cu".into()),
            ..Default::default()
        };
        cudarc::nvrtc::compile_ptx_with_opts(KERNELS, opts).map_err(|e| format!("NVRTC: {e}"))
    })
}

/// Shapes and strides for the strided kernels (`struct Layout` in the CUDA
/// source).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Layout {
    rank: u64,
    dims: [u64; MAX_RANK],
    sa: [u64; MAX_RANK],
    sb: [u64; MAX_RANK],
}

#[allow(unsafe_code)]
// SAFETY: `Layout` is `repr(C)`, plain integers, and matches the CUDA
// struct field for field, so the kernel reads exactly these bytes.
unsafe impl DeviceRepr for Layout {}

impl Layout {
    fn new(out: &Shape, sa: &[usize], sb: &[usize]) -> Result<Self> {
        let mut l = Layout {
            rank: out.rank() as u64,
            ..Default::default()
        };
        if out.rank() > MAX_RANK || sa.len() != out.rank() || sb.len() != out.rank() {
            return Err(TensorError::Device("layout rank".into()));
        }
        for (i, &d) in out.dims().iter().enumerate() {
            l.dims[i] = d as u64;
            l.sa[i] = sa[i] as u64;
            l.sb[i] = sb[i] as u64;
        }
        Ok(l)
    }
}

fn grid(n: u64) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK as u64).clamp(1, MAX_GRID) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn rows_grid(rows: u64) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, MAX_GRID) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn err(e: impl std::fmt::Display) -> TensorError {
    TensorError::Device(format!("CUDA: {e}"))
}

fn ty(d: DType) -> &'static str {
    d.name()
}

fn width(d: DType) -> &'static str {
    match d.size() {
        1 => "b8",
        2 => "b16",
        4 => "b32",
        _ => "b64",
    }
}

/// Launches kernel `$name` with `$cfg` and the arguments in order.
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let f = $dev.function(&$name)?;
        let mut b = $dev.stream.launch_builder(&f);
        $(b.arg($arg);)*
        #[allow(unsafe_code)]
        // SAFETY: each call site passes the arguments in the order and types
        // of the kernel's signature in kernels/tensor.cu, with buffers sized
        // for the element counts it passes.
        let launched = unsafe { b.launch($cfg) };
        launched.map_err(err)?;
    }};
}

/// One GPU: a context, a stream all work is queued on, cuBLAS, and the
/// compiled kernels.
pub struct CudaDevice {
    id: DeviceId,
    name: String,
    stream: Arc<CudaStream>,
    blas: Mutex<CudaBlas>,
    module: Arc<CudaModule>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}, {})", self.id, self.name)
    }
}

impl CudaDevice {
    /// Opens GPU `ordinal` and compiles the kernels for it.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_present() {
            return Err(TensorError::Device("no CUDA driver found".into()));
        }
        let ptx = compile_kernels().map_err(TensorError::Device)?;
        catch("opening the GPU", || {
            let ctx = CudaContext::new(ordinal).map_err(|e| e.to_string())?;
            let stream = ctx.default_stream();
            let blas = CudaBlas::new(stream.clone()).map_err(|e| e.to_string())?;
            let module = ctx.load_module(ptx).map_err(|e| e.to_string())?;
            Ok(CudaDevice {
                id: DeviceId {
                    kind: DeviceKind::Cuda,
                    ordinal,
                },
                name: ctx.name().unwrap_or_else(|_| "CUDA GPU".into()),
                stream,
                blas: Mutex::new(blas),
                module,
                functions: Mutex::default(),
            })
        })
        .map_err(TensorError::Device)
    }

    fn get<'a>(&self, s: &'a Storage) -> Result<&'a CudaStorage> {
        match s {
            Storage::Cuda(c) => Ok(c),
            Storage::Cpu(_) => Err(wrong_device(self.id)),
        }
    }

    fn function(&self, name: &str) -> Result<CudaFunction> {
        let mut cache = self.functions.lock().map_err(|_| err("kernel cache poisoned"))?;
        if let Some(f) = cache.get(name) {
            return Ok(f.clone());
        }
        let f = self.module.load_function(name).map_err(err)?;
        cache.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// An uninitialised buffer for `len` elements that a kernel will fill.
    fn alloc(&self, dtype: DType, len: usize) -> Result<CudaStorage> {
        let bytes = len
            .checked_mul(dtype.size())
            .ok_or_else(|| TensorError::invalid("buffer size overflows"))?;
        #[allow(unsafe_code)]
        // SAFETY: the buffer is only read after a kernel has written every
        // element, or by `download`, which callers reach only after that.
        let buf = unsafe { self.stream.alloc::<u8>(bytes.max(1)) }.map_err(err)?;
        Ok(CudaStorage { dtype, len, buf })
    }

    fn gemm_typed<T>(
        &self,
        lhs: &CudaSlice<u8>,
        rhs: &CudaSlice<u8>,
        out: &mut CudaSlice<u8>,
        plan: &MatmulPlan,
        one: T,
        zero: T,
    ) -> Result<()>
    where
        CudaBlas: Gemm<T>,
        T: DeviceRepr + Copy,
    {
        let (m, n, k) = (plan.m, plan.n, plan.k);
        let int = |v: usize| i32::try_from(v).map_err(|_| TensorError::invalid("matmul dimension over 2^31"));
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: swap the operands.
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: int(n)?,
            n: int(m)?,
            k: int(k)?,
            alpha: one,
            lda: int(n.max(1))?,
            ldb: int(k.max(1))?,
            beta: zero,
            ldc: int(n.max(1))?,
        };
        let size = std::mem::size_of::<T>();
        let blas = self.blas.lock().map_err(|_| err("cuBLAS handle poisoned"))?;
        #[allow(unsafe_code)]
        // SAFETY: the byte buffers hold `T` elements (checked dtypes), the
        // element counts passed to `transmute` are the buffers' byte lengths
        // divided by `size_of::<T>()`, and every matrix a batch touches lies
        // inside its buffer (offsets come from validated shapes).
        unsafe {
            let a = lhs.transmute::<T>(lhs.len() / size).ok_or_else(|| err("lhs view"))?;
            let b = rhs.transmute::<T>(rhs.len() / size).ok_or_else(|| err("rhs view"))?;
            let out_len = out.len() / size;
            let mut c = out.transmute_mut::<T>(out_len).ok_or_else(|| err("out view"))?;
            if let Some((sa, sb)) = plan.uniform_strides() {
                let batched = StridedBatchedConfig {
                    gemm: cfg,
                    batch_size: int(plan.batch())?,
                    stride_a: sb as i64,
                    stride_b: sa as i64,
                    stride_c: (m * n) as i64,
                };
                let (lo, ro) = (
                    plan.lhs_offsets.first().copied().unwrap_or(0),
                    plan.rhs_offsets.first().copied().unwrap_or(0),
                );
                blas.gemm_strided_batched(batched, &b.slice(ro..), &a.slice(lo..), &mut c)
                    .map_err(err)?;
            } else {
                for (i, (&lo, &ro)) in plan.lhs_offsets.iter().zip(&plan.rhs_offsets).enumerate() {
                    let mut ci = c.slice_mut(i * m * n..(i + 1) * m * n);
                    blas.gemm(cfg, &b.slice(ro..ro + k * n), &a.slice(lo..lo + m * k), &mut ci)
                        .map_err(err)?;
                }
            }
        }
        Ok(())
    }
}

impl Backend for CudaDevice {
    fn id(&self) -> DeviceId {
        self.id
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn upload(&self, dtype: DType, bytes: &[u8]) -> Result<Storage> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(TensorError::invalid("bytes are not a whole number of elements"));
        }
        let len = bytes.len() / dtype.size();
        let buf = if bytes.is_empty() {
            self.stream.alloc_zeros::<u8>(1).map_err(err)?
        } else {
            self.stream.clone_htod(bytes).map_err(err)?
        };
        Ok(Storage::Cuda(CudaStorage { dtype, len, buf }))
    }

    fn download(&self, x: &Storage) -> Result<Vec<u8>> {
        let x = self.get(x)?;
        let mut v = self.stream.clone_dtoh(&x.buf).map_err(err)?;
        v.truncate(x.len * x.dtype.size());
        Ok(v)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &Storage,
        sa: &[usize],
        b: &Storage,
        sb: &[usize],
        out: &Shape,
    ) -> Result<Storage> {
        let (a, b) = (self.get(a)?, self.get(b)?);
        let n = out.numel();
        let mut o = self.alloc(a.dtype, n)?;
        if n > 0 {
            let layout = Layout::new(out, sa, sb)?;
            let op = match op {
                BinaryOp::Add => "add",
                BinaryOp::Sub => "sub",
                BinaryOp::Mul => "mul",
                BinaryOp::Div => "div",
            };
            let n64 = n as u64;
            launch!(
                self,
                format!("{op}_{}", ty(a.dtype)),
                grid(n64),
                &a.buf,
                &b.buf,
                &mut o.buf,
                &n64,
                &layout
            );
        }
        Ok(Storage::Cuda(o))
    }

    fn unary(&self, op: UnaryOp, x: &Storage) -> Result<Storage> {
        let x = self.get(x)?;
        if !x.dtype.is_float() {
            return Err(TensorError::dtype("unary op", x.dtype));
        }
        let mut o = self.alloc(x.dtype, x.len)?;
        let name = match op {
            UnaryOp::Relu => "relu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Silu => "silu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
        };
        let n = x.len as u64;
        if n > 0 {
            launch!(self, format!("{name}_{}", ty(x.dtype)), grid(n), &x.buf, &mut o.buf, &n);
        }
        Ok(Storage::Cuda(o))
    }

    fn matmul(&self, lhs: &Storage, rhs: &Storage, plan: &MatmulPlan) -> Result<Storage> {
        let (a, b) = (self.get(lhs)?, self.get(rhs)?);
        let n = plan.batch() * plan.m * plan.n;
        let mut o = self.alloc(a.dtype, n)?;
        if n == 0 {
            return Ok(Storage::Cuda(o));
        }
        if plan.k == 0 {
            self.stream.memset_zeros(&mut o.buf).map_err(err)?;
            return Ok(Storage::Cuda(o));
        }
        match a.dtype {
            DType::F32 => self.gemm_typed::<f32>(&a.buf, &b.buf, &mut o.buf, plan, 1.0, 0.0)?,
            DType::F16 => {
                self.gemm_typed::<half::f16>(&a.buf, &b.buf, &mut o.buf, plan, half::f16::ONE, half::f16::ZERO)?
            }
            DType::Bf16 => {
                self.gemm_typed::<half::bf16>(&a.buf, &b.buf, &mut o.buf, plan, half::bf16::ONE, half::bf16::ZERO)?
            }
            other => return Err(TensorError::dtype("matmul", other)),
        }
        Ok(Storage::Cuda(o))
    }

    fn softmax(&self, x: &Storage, (outer, len, inner): (usize, usize, usize), log: bool) -> Result<Storage> {
        let x = self.get(x)?;
        let mut o = self.alloc(x.dtype, x.len)?;
        let rows = (outer * inner) as u64;
        if x.len > 0 {
            let (outer, len, inner, log) = (outer as u64, len as u64, inner as u64, i32::from(log));
            launch!(
                self,
                format!("softmax_{}", ty(x.dtype)),
                rows_grid(rows),
                &x.buf,
                &mut o.buf,
                &outer,
                &len,
                &inner,
                &log
            );
        }
        Ok(Storage::Cuda(o))
    }

    fn norm(
        &self,
        op: NormOp,
        x: &Storage,
        cols: usize,
        weight: Option<&Storage>,
        bias: Option<&Storage>,
    ) -> Result<Storage> {
        let x = self.get(x)?;
        let w = weight.map(|w| self.get(w)).transpose()?;
        let b = bias.map(|b| self.get(b)).transpose()?;
        let mut o = self.alloc(x.dtype, x.len)?;
        if x.len > 0 && cols > 0 {
            let rows = (x.len / cols) as u64;
            let (eps, rms) = match op {
                NormOp::Layer { eps } => (eps, 0i32),
                NormOp::Rms { eps } => (eps, 1i32),
            };
            let cols = cols as u64;
            let (has_w, has_b) = (i32::from(w.is_some()), i32::from(b.is_some()));
            // A missing weight or bias is passed as `x` and never read.
            let wb = w.map_or(&x.buf, |w| &w.buf);
            let bb = b.map_or(&x.buf, |b| &b.buf);
            launch!(
                self,
                format!("norm_{}", ty(x.dtype)),
                rows_grid(rows),
                &x.buf,
                wb,
                bb,
                &mut o.buf,
                &rows,
                &cols,
                &eps,
                &rms,
                &has_w,
                &has_b
            );
        }
        Ok(Storage::Cuda(o))
    }

    fn reduce(&self, op: ReduceOp, x: &Storage, (outer, len, inner): (usize, usize, usize)) -> Result<Storage> {
        let x = self.get(x)?;
        let n = outer * inner;
        let n64 = n as u64;
        let (o64, l64, i64_) = (outer as u64, len as u64, inner as u64);
        let t = ty(x.dtype);
        match op {
            ReduceOp::Sum | ReduceOp::Mean => {
                if op == ReduceOp::Mean && !x.dtype.is_float() {
                    return Err(TensorError::dtype("mean", x.dtype));
                }
                let mut o = self.alloc(x.dtype, n)?;
                let mean = i32::from(op == ReduceOp::Mean);
                if n > 0 {
                    launch!(
                        self,
                        format!("sum_{t}"),
                        grid(n64),
                        &x.buf,
                        &mut o.buf,
                        &o64,
                        &l64,
                        &i64_,
                        &mean
                    );
                }
                Ok(Storage::Cuda(o))
            }
            ReduceOp::Max | ReduceOp::ArgMax => {
                let (dtype, want_idx) = if op == ReduceOp::ArgMax {
                    (DType::I64, true)
                } else {
                    (x.dtype, false)
                };
                let mut o = self.alloc(dtype, n)?;
                let null = 0u64;
                if n > 0 {
                    let name = format!("max_{t}");
                    if want_idx {
                        launch!(self, name, grid(n64), &x.buf, &null, &mut o.buf, &o64, &l64, &i64_);
                    } else {
                        launch!(self, name, grid(n64), &x.buf, &mut o.buf, &null, &o64, &l64, &i64_);
                    }
                }
                Ok(Storage::Cuda(o))
            }
        }
    }

    fn copy_strided(&self, x: &Storage, offset: usize, strides: &[usize], out: &Shape) -> Result<Storage> {
        let x = self.get(x)?;
        let n = out.numel();
        let mut o = self.alloc(x.dtype, n)?;
        if n > 0 {
            let layout = Layout::new(out, strides, strides)?;
            let (n64, off) = (n as u64, offset as u64);
            launch!(
                self,
                format!("copy_strided_{}", width(x.dtype)),
                grid(n64),
                &x.buf,
                &mut o.buf,
                &n64,
                &off,
                &layout
            );
        }
        Ok(Storage::Cuda(o))
    }

    fn concat(&self, parts: &[(&Storage, usize)], outer: usize) -> Result<Storage> {
        let parts = parts
            .iter()
            .map(|(s, bl)| Ok((self.get(s)?, *bl)))
            .collect::<Result<Vec<_>>>()?;
        let first = parts
            .first()
            .ok_or_else(|| TensorError::invalid("concat of no tensors"))?
            .0;
        let total: usize = parts.iter().map(|p| p.1).sum();
        let mut o = self.alloc(first.dtype, total * outer)?;
        let mut at = 0u64;
        let (outer64, total64) = (outer as u64, total as u64);
        for (p, bl) in parts {
            let bl64 = bl as u64;
            if bl > 0 && outer > 0 {
                launch!(
                    self,
                    format!("concat_part_{}", width(p.dtype)),
                    grid(outer64 * bl64),
                    &p.buf,
                    &mut o.buf,
                    &outer64,
                    &bl64,
                    &total64,
                    &at
                );
            }
            at += bl64;
        }
        Ok(Storage::Cuda(o))
    }

    fn gather(&self, table: &Storage, rows: usize, row_len: usize, indices: &Storage) -> Result<Storage> {
        let (t, idx) = (self.get(table)?, self.get(indices)?);
        let n = idx.len * row_len;
        let mut o = self.alloc(t.dtype, n)?;
        let mut flag = self.stream.alloc_zeros::<i32>(1).map_err(err)?;
        if n > 0 {
            let (ni, rl, r) = (idx.len as u64, row_len as u64, rows as u64);
            let kind = match idx.dtype {
                DType::I32 => "i32",
                DType::I64 => "i64",
                other => return Err(TensorError::dtype("gather indices", other)),
            };
            launch!(
                self,
                format!("gather_{kind}_{}", width(t.dtype)),
                grid(n as u64),
                &t.buf,
                &idx.buf,
                &mut o.buf,
                &ni,
                &rl,
                &r,
                &mut flag
            );
            let bad = self.stream.clone_dtoh(&flag).map_err(err)?;
            if bad.first().copied().unwrap_or(0) != 0 {
                return Err(TensorError::invalid(format!(
                    "gather: an index is out of range for {rows} rows"
                )));
            }
        }
        Ok(Storage::Cuda(o))
    }

    fn top_k(&self, x: &Storage, rows: usize, len: usize, k: usize) -> Result<(Storage, Storage)> {
        let x = self.get(x)?;
        let mut v = self.alloc(x.dtype, rows * k)?;
        let mut i = self.alloc(DType::I64, rows * k)?;
        if rows * k > 0 {
            let (r, l64, k64) = (rows as u64, len as u64, k as u64);
            launch!(
                self,
                format!("topk_{}", ty(x.dtype)),
                grid(r),
                &x.buf,
                &mut v.buf,
                &mut i.buf,
                &r,
                &l64,
                &k64
            );
        }
        Ok((Storage::Cuda(v), Storage::Cuda(i)))
    }

    fn cast(&self, x: &Storage, to: DType) -> Result<Storage> {
        let x = self.get(x)?;
        let mut o = self.alloc(to, x.len)?;
        let n = x.len as u64;
        if n > 0 {
            launch!(
                self,
                format!("cast_{}_{}", ty(x.dtype), ty(to)),
                grid(n),
                &x.buf,
                &mut o.buf,
                &n
            );
        }
        Ok(Storage::Cuda(o))
    }

    fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(err)
    }
}

/// Every kernel name the backend launches (the NVRTC test checks each is
/// in the compiled PTX).
pub fn kernel_names() -> Vec<String> {
    let floats = ["f32", "f16", "bf16"];
    let all = ["f32", "f16", "bf16", "i32", "i64", "u8"];
    let widths = ["b8", "b16", "b32", "b64"];
    let mut names = Vec::new();
    for t in all {
        for op in ["add", "sub", "mul", "div", "sum", "max", "topk"] {
            names.push(format!("{op}_{t}"));
        }
        for to in all {
            names.push(format!("cast_{t}_{to}"));
        }
    }
    for t in floats {
        for op in ["relu", "gelu", "silu", "sigmoid", "tanh", "exp", "softmax", "norm"] {
            names.push(format!("{op}_{t}"));
        }
    }
    for w in widths {
        for k in ["copy_strided", "concat_part", "gather_i32", "gather_i64"] {
            names.push(format!("{k}_{w}"));
        }
    }
    names
}
