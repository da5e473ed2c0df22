// Kernels of the CUDA tensor backend, compiled at run time by NVRTC.
// No headers: f16/bf16 are raw 16-bit values converted by hand, so the
// source compiles with a bare libnvrtc (as in CI, without a toolkit).
// Every float op computes in f32. Shapes arrive in a Layout of at most 8
// dims (shape::MAX_RANK). Every kernel is a grid-stride loop, so any grid
// size is correct.

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

struct Layout {
    u64 rank;
    u64 dims[8];
    u64 sa[8];
    u64 sb[8];
};

#define LOOP(i, n) for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < (n); i += (u64)blockDim.x * gridDim.x)

__device__ __forceinline__ float ld_f32(float x) { return x; }
__device__ __forceinline__ float st_f32(float x) { return x; }
__device__ __forceinline__ float ld_f16(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ u16 st_f16(float f) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
__device__ __forceinline__ float ld_bf16(u16 h) { return __uint_as_float(((u32)h) << 16); }
__device__ __forceinline__ u16 st_bf16(float f) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u16)((u >> 16) | 0x40u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                        // round to nearest even
    return (u16)(u >> 16);
}

// Offsets of element i of the output in a and b, through broadcast strides.
__device__ __forceinline__ void offsets(const Layout& l, u64 i, u64& oa, u64& ob) {
    oa = 0; ob = 0;
    for (int d = (int)l.rank - 1; d >= 0; --d) {
        u64 n = l.dims[d];
        u64 idx = i % n;
        i /= n;
        oa += idx * l.sa[d];
        ob += idx * l.sb[d];
    }
}

// ---- binary ----------------------------------------------------------------
#define BINARY_F(name, T, LD, ST, EXPR)                                                   \
extern "C" __global__ void name(const T* a, const T* b, T* out, u64 n, Layout l) {      \
    LOOP(i, n) { u64 oa, ob; offsets(l, i, oa, ob); float x = LD(a[oa]); float y = LD(b[ob]); out[i] = ST(EXPR); } \
}
#define BINARY_I(name, T, EXPR)                                                            \
extern "C" __global__ void name(const T* a, const T* b, T* out, u64 n, Layout l) {      \
    LOOP(i, n) { u64 oa, ob; offsets(l, i, oa, ob); T x = a[oa]; T y = b[ob]; out[i] = (T)(EXPR); } \
}
#define BINARY_FLOATS(ty, T, LD, ST)            \
    BINARY_F(add_##ty, T, LD, ST, x + y)        \
    BINARY_F(sub_##ty, T, LD, ST, x - y)        \
    BINARY_F(mul_##ty, T, LD, ST, x * y)        \
    BINARY_F(div_##ty, T, LD, ST, x / y)
// Integers wrap (computed unsigned, so no signed overflow); x / 0 is 0.
#define BINARY_INTS(ty, T, U, SIGNED)                                       \
    BINARY_I(add_##ty, T, (U)x + (U)y)                                \
    BINARY_I(sub_##ty, T, (U)x - (U)y)                                \
    BINARY_I(mul_##ty, T, (U)x * (U)y)                                \
    BINARY_I(div_##ty, T, y == 0 ? (T)0 : ((SIGNED && y == (T)-1) ? (T)(0 - (U)x) : (T)(x / y)))
BINARY_FLOATS(f32, float, ld_f32, st_f32)
BINARY_FLOATS(f16, u16, ld_f16, st_f16)
BINARY_FLOATS(bf16, u16, ld_bf16, st_bf16)
BINARY_INTS(i32, int, u32, 1)
BINARY_INTS(i64, i64, u64, 1)
BINARY_INTS(u8, u8, u32, 0)

// ---- unary -----------------------------------------------------------------
__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float geluf(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
}
#define UNARY(name, T, LD, ST, EXPR) \
extern "C" __global__ void name(const T* in, T* out, u64 n) { LOOP(i, n) { float x = LD(in[i]); out[i] = ST(EXPR); } }
#define UNARY_ALL(ty, T, LD, ST)                          \
    UNARY(relu_##ty, T, LD, ST, x > 0.0f ? x : 0.0f)      \
    UNARY(gelu_##ty, T, LD, ST, geluf(x))                 \
    UNARY(silu_##ty, T, LD, ST, x * sigmoidf(x))          \
    UNARY(sigmoid_##ty, T, LD, ST, sigmoidf(x))           \
    UNARY(tanh_##ty, T, LD, ST, tanhf(x))                 \
    UNARY(exp_##ty, T, LD, ST, expf(x))
UNARY_ALL(f32, float, ld_f32, st_f32)
UNARY_ALL(f16, u16, ld_f16, st_f16)
UNARY_ALL(bf16, u16, ld_bf16, st_bf16)

// ---- block reductions (blockDim.x == 256) ------------------------------------
__device__ float block_max(float v, float* sh) {
    sh[threadIdx.x] = v; __syncthreads();
    for (u32 s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    float r = sh[0]; __syncthreads(); return r;
}
__device__ float block_sum(float v, float* sh) {
    sh[threadIdx.x] = v; __syncthreads();
    for (u32 s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    float r = sh[0]; __syncthreads(); return r;
}

// ---- softmax: one block per (outer, inner) row --------------------------------
#define SOFTMAX(ty, T, LD, ST)                                                              \
extern "C" __global__ void softmax_##ty(const T* x, T* y, u64 outer, u64 len, u64 inner, int log) { \
    __shared__ float sh[256];                                                               \
    for (u64 row = blockIdx.x; row < outer * inner; row += gridDim.x) {                     \
        u64 o = row / inner, j = row % inner;                                               \
        const T* src = x + o * len * inner + j; T* dst = y + o * len * inner + j;           \
        float m = __int_as_float(0xff800000);                                                                \
        for (u64 i = threadIdx.x; i < len; i += blockDim.x) m = fmaxf(m, LD(src[i * inner])); \
        m = block_max(m, sh);                                                               \
        float s = 0.0f;                                                                     \
        for (u64 i = threadIdx.x; i < len; i += blockDim.x) s += expf(LD(src[i * inner]) - m); \
        s = block_sum(s, sh);                                                               \
        float ls = logf(s), inv = 1.0f / s;                                                 \
        for (u64 i = threadIdx.x; i < len; i += blockDim.x) {                               \
            float v = LD(src[i * inner]) - m;                                               \
            dst[i * inner] = ST(log ? v - ls : expf(v) * inv);                              \
        }                                                                                   \
    }                                                                                       \
}
SOFTMAX(f32, float, ld_f32, st_f32)
SOFTMAX(f16, u16, ld_f16, st_f16)
SOFTMAX(bf16, u16, ld_bf16, st_bf16)

// ---- layer / rms norm: one block per row -------------------------------------
#define NORM(ty, T, LD, ST)                                                                 \
extern "C" __global__ void norm_##ty(const T* x, const T* w, const T* b, T* y, u64 rows, u64 cols, \
                                     float eps, int rms, int has_w, int has_b) {            \
    __shared__ float sh[256];                                                               \
    for (u64 r = blockIdx.x; r < rows; r += gridDim.x) {                                    \
        const T* src = x + r * cols; T* dst = y + r * cols;                                 \
        float inv_n = 1.0f / (float)(cols > 0 ? cols : 1);                                  \
        float mean = 0.0f;                                                                  \
        if (!rms) {                                                                         \
            float s = 0.0f;                                                                 \
            for (u64 i = threadIdx.x; i < cols; i += blockDim.x) s += LD(src[i]);           \
            mean = block_sum(s, sh) * inv_n;                                                \
        }                                                                                   \
        float q = 0.0f;                                                                     \
        for (u64 i = threadIdx.x; i < cols; i += blockDim.x) { float d = LD(src[i]) - mean; q += d * d; } \
        float scale = rsqrtf(block_sum(q, sh) * inv_n + eps);                               \
        for (u64 i = threadIdx.x; i < cols; i += blockDim.x) {                              \
            float v = (LD(src[i]) - mean) * scale;                                          \
            if (has_w) v *= LD(w[i]);                                                       \
            if (has_b) v += LD(b[i]);                                                       \
            dst[i] = ST(v);                                                                 \
        }                                                                                   \
    }                                                                                       \
}
NORM(f32, float, ld_f32, st_f32)
NORM(f16, u16, ld_f16, st_f16)
NORM(bf16, u16, ld_bf16, st_bf16)

// ---- reductions along an axis: one thread per output ---------------------------
// Max/argmax skip NaNs unless all are NaN, and take the first of equal maxima.
#define REDUCE_F(ty, T, LD, ST)                                                             \
extern "C" __global__ void sum_##ty(const T* x, T* y, u64 outer, u64 len, u64 inner, int mean) { \
    LOOP(p, outer * inner) {                                                                \
        u64 o = p / inner, j = p % inner; double s = 0.0;                                   \
        for (u64 i = 0; i < len; ++i) s += (double)LD(x[(o * len + i) * inner + j]);       \
        y[p] = ST((float)(mean ? s / (double)len : s));                                     \
    }                                                                                       \
}                                                                                           \
extern "C" __global__ void max_##ty(const T* x, T* y, i64* idx, u64 outer, u64 len, u64 inner) { \
    LOOP(p, outer * inner) {                                                                \
        u64 o = p / inner, j = p % inner;                                                   \
        float best = LD(x[o * len * inner + j]); i64 bi = 0;                                \
        for (u64 i = 1; i < len; ++i) {                                                     \
            float v = LD(x[(o * len + i) * inner + j]);                                     \
            if (v > best || (best != best && v == v)) { best = v; bi = (i64)i; }            \
        }                                                                                   \
        if (y) y[p] = ST(best);                                                             \
        if (idx) idx[p] = bi;                                                               \
    }                                                                                       \
}
#define REDUCE_I(ty, T, U)                                                                  \
extern "C" __global__ void sum_##ty(const T* x, T* y, u64 outer, u64 len, u64 inner, int mean) { \
    LOOP(p, outer * inner) {                                                                \
        u64 o = p / inner, j = p % inner; U s = 0;                                          \
        for (u64 i = 0; i < len; ++i) s += (U)x[(o * len + i) * inner + j];                \
        y[p] = (T)s;                                                                        \
    }                                                                                       \
}                                                                                           \
extern "C" __global__ void max_##ty(const T* x, T* y, i64* idx, u64 outer, u64 len, u64 inner) { \
    LOOP(p, outer * inner) {                                                                \
        u64 o = p / inner, j = p % inner;                                                   \
        T best = x[o * len * inner + j]; i64 bi = 0;                                        \
        for (u64 i = 1; i < len; ++i) {                                                     \
            T v = x[(o * len + i) * inner + j];                                             \
            if (v > best) { best = v; bi = (i64)i; }                                        \
        }                                                                                   \
        if (y) y[p] = best;                                                                 \
        if (idx) idx[p] = bi;                                                               \
    }                                                                                       \
}
REDUCE_F(f32, float, ld_f32, st_f32)
REDUCE_F(f16, u16, ld_f16, st_f16)
REDUCE_F(bf16, u16, ld_bf16, st_bf16)
REDUCE_I(i32, int, u32)
REDUCE_I(i64, i64, u64)
REDUCE_I(u8, u8, u32)

// ---- layout: by element width ---------------------------------------------------
#define LAYOUT(w, T)                                                                        \
extern "C" __global__ void copy_strided_##w(const T* x, T* y, u64 n, u64 offset, Layout l) { \
    LOOP(i, n) { u64 oa, ob; offsets(l, i, oa, ob); y[i] = x[offset + oa]; }               \
}                                                                                           \
extern "C" __global__ void concat_part_##w(const T* x, T* y, u64 outer, u64 block, u64 total, u64 at) { \
    LOOP(i, outer * block) { u64 o = i / block, t = i % block; y[o * total + at + t] = x[i]; } \
}                                                                                           \
extern "C" __global__ void gather_i32_##w(const T* table, const int* idx, T* y, u64 n_idx, u64 row_len, u64 rows, int* err) { \
    LOOP(i, n_idx * row_len) {                                                              \
        u64 r = i / row_len, c = i % row_len; i64 k = (i64)idx[r];                          \
        if (k < 0 || (u64)k >= rows) { *err = 1; y[i] = (T)0; } else y[i] = table[(u64)k * row_len + c]; \
    }                                                                                       \
}                                                                                           \
extern "C" __global__ void gather_i64_##w(const T* table, const i64* idx, T* y, u64 n_idx, u64 row_len, u64 rows, int* err) { \
    LOOP(i, n_idx * row_len) {                                                              \
        u64 r = i / row_len, c = i % row_len; i64 k = idx[r];                               \
        if (k < 0 || (u64)k >= rows) { *err = 1; y[i] = (T)0; } else y[i] = table[(u64)k * row_len + c]; \
    }                                                                                       \
}
LAYOUT(b8, u8)
LAYOUT(b16, u16)
LAYOUT(b32, u32)
LAYOUT(b64, u64)

// ---- top-k: one thread per row, k passes in (value desc, index asc) order ---------
// Keys: IEEE total order (as Rust's total_cmp), so NaN sorts as largest.
__device__ __forceinline__ i64 key_f(float f) { int b = __float_as_int(f); return (i64)(b ^ ((b >> 31) & 0x7fffffff)); }
#define TOPK(ty, T, KEY, VAL)                                                               \
extern "C" __global__ void topk_##ty(const T* x, T* vals, i64* idxs, u64 rows, u64 len, u64 k) { \
    LOOP(r, rows) {                                                                         \
        const T* row = x + r * len;                                                         \
        i64 pk = 0; i64 pi = -1; /* previous pick */                                        \
        for (u64 t = 0; t < k; ++t) {                                                       \
            i64 bk = 0; i64 bi = -1;                                                        \
            for (u64 i = 0; i < len; ++i) {                                                 \
                i64 kk = KEY(row[i]);                                                       \
                bool after = pi < 0 || kk < pk || (kk == pk && (i64)i > pi);               \
                bool better = bi < 0 || kk > bk;                                            \
                if (after && better) { bk = kk; bi = (i64)i; }                              \
            }                                                                               \
            if (bi < 0) bi = 0;                                                             \
            vals[r * k + t] = row[bi]; idxs[r * k + t] = bi; pk = bk; pi = bi;              \
        }                                                                                   \
    }                                                                                       \
}
#define KEY_F32(v) key_f(v)
#define KEY_F16(v) key_f(ld_f16(v))
#define KEY_BF16(v) key_f(ld_bf16(v))
#define KEY_INT(v) ((i64)(v))
TOPK(f32, float, KEY_F32, 0)
TOPK(f16, u16, KEY_F16, 0)
TOPK(bf16, u16, KEY_BF16, 0)
TOPK(i32, int, KEY_INT, 0)
TOPK(u8, u8, KEY_INT, 0)
// i64 keys use the full range, so they need their own kernel.
extern "C" __global__ void topk_i64(const i64* x, i64* vals, i64* idxs, u64 rows, u64 len, u64 k) {
    LOOP(r, rows) {
        const i64* row = x + r * len;
        i64 pk = 0; i64 pi = -1;
        for (u64 t = 0; t < k; ++t) {
            i64 bk = 0; i64 bi = -1;
            for (u64 i = 0; i < len; ++i) {
                i64 kk = row[i];
                bool after = pi < 0 || kk < pk || (kk == pk && (i64)i > pi);
                bool better = bi < 0 || kk > bk;
                if (after && better) { bk = kk; bi = (i64)i; }
            }
            if (bi < 0) bi = 0;
            vals[r * k + t] = row[bi]; idxs[r * k + t] = bi; pk = bk; pi = bi;
        }
    }
}

// ---- casts: through f32 (floats) or i64 (ints) ------------------------------------
// Float to int truncates and saturates, NaN is 0 (as Rust's `as`).
__device__ __forceinline__ i64 sat_i64(float v, float lo, float hi, i64 ilo, i64 ihi) {
    if (v != v) return 0;
    if (v <= lo) return ilo;
    if (v >= hi) return ihi;
    return (i64)v;
}
#define FROM_F32_f32(v) (v)
#define FROM_F32_f16(v) st_f16(v)
#define FROM_F32_bf16(v) st_bf16(v)
#define FROM_F32_i32(v) (int)sat_i64(v, -2147483648.0f, 2147483647.0f, -2147483647LL - 1, 2147483647LL)
#define FROM_F32_i64(v) sat_i64(v, -9223372036854775808.0f, 9223372036854775807.0f, (-9223372036854775807LL - 1), 9223372036854775807LL)
#define FROM_F32_u8(v) (u8)sat_i64(v, 0.0f, 255.0f, 0, 255)
#define FROM_I64_f32(v) ((float)(v))
#define FROM_I64_f16(v) st_f16((float)(v))
#define FROM_I64_bf16(v) st_bf16((float)(v))
#define FROM_I64_i32(v) ((int)(u32)(u64)(v))
#define FROM_I64_i64(v) (v)
#define FROM_I64_u8(v) ((u8)(u64)(v))
#define CAST_F(from, FT, LD, to, TT) \
extern "C" __global__ void cast_##from##_##to(const FT* x, TT* y, u64 n) { LOOP(i, n) { float v = LD(x[i]); y[i] = FROM_F32_##to(v); } }
#define CAST_I(from, FT, to, TT) \
extern "C" __global__ void cast_##from##_##to(const FT* x, TT* y, u64 n) { LOOP(i, n) { i64 v = (i64)x[i]; y[i] = FROM_I64_##to(v); } }
#define CAST_FROM_F(from, FT, LD) \
    CAST_F(from, FT, LD, f32, float) CAST_F(from, FT, LD, f16, u16) CAST_F(from, FT, LD, bf16, u16) \
    CAST_F(from, FT, LD, i32, int) CAST_F(from, FT, LD, i64, i64) CAST_F(from, FT, LD, u8, u8)
#define CAST_FROM_I(from, FT) \
    CAST_I(from, FT, f32, float) CAST_I(from, FT, f16, u16) CAST_I(from, FT, bf16, u16) \
    CAST_I(from, FT, i32, int) CAST_I(from, FT, i64, i64) CAST_I(from, FT, u8, u8)
CAST_FROM_F(f32, float, ld_f32)
CAST_FROM_F(f16, u16, ld_f16)
CAST_FROM_F(bf16, u16, ld_bf16)
CAST_FROM_I(i32, int)
CAST_FROM_I(i64, i64)
CAST_FROM_I(u8, u8)
