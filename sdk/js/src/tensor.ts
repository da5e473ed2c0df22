/**
 * Tensors on the node's devices (`wafer:ai/tensor`): data crosses the wasm
 * boundary only in `from*` and `to*`; every operation runs on the device the
 * invocation was placed on and returns a new tensor. Tensors are freed when
 * the invocation ends, or earlier with {@link Tensor.dispose}.
 *
 * ```ts
 * import { Tensor } from '@wafer/sdk';
 * const x = Tensor.fromF32([1, 4], [5.1, 3.5, 1.4, 0.2]);
 * const w = Tensor.fromF32([4, 3], weights);
 * const probs = x.matmul(w).add(bias).softmax();
 * probs.toF32(); // Float32Array(3)
 * ```
 *
 * Guest mistakes (mismatched shapes, a wrong dtype, a limit) throw a
 * {@link TensorError} whose message names the shapes or the limit.
 */
import * as raw from 'wafer:ai/tensor@0.1.0';
import { TensorError, hostCall } from './errors.js';

/** Element types. */
export type Dtype = raw.Dtype;
/** Element-wise functions of one tensor. */
export type UnaryOp = raw.UnaryOp;
/** Element-wise functions of two tensors. */
export type BinaryOp = raw.BinaryOp;
/** Reductions along an axis. */
export type ReduceOp = raw.ReduceOp;

function call<T>(f: () => T): T {
  return hostCall(TensorError, f);
}

function dims(shape: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(shape.length);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i] as number;
    if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) {
      throw new TensorError('invalid-argument', `shape [${Array.from(shape).join(', ')}]: ${d} is not a dimension`);
    }
    out[i] = d;
  }
  return out;
}

const DISPOSE: symbol = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for('dispose');

/** A tensor on a device. */
export class Tensor {
  /** The `wafer:ai/tensor` resource this wraps. */
  readonly handle: raw.Tensor;

  /** Wraps a raw `wafer:ai/tensor` resource. */
  constructor(handle: raw.Tensor) {
    this.handle = handle;
  }

  /** An `f32` tensor of `shape` from row-major `data`. */
  static fromF32(shape: ArrayLike<number>, data: ArrayLike<number>): Tensor {
    const values = data instanceof Float32Array ? data : Float32Array.from(data);
    return new Tensor(call(() => raw.Tensor.fromF32(dims(shape), values)));
  }

  /** An `i64` tensor (indices for {@link Tensor.gather}). */
  static fromI64(shape: ArrayLike<number>, data: ArrayLike<number | bigint>): Tensor {
    const values = data instanceof BigInt64Array ? data : BigInt64Array.from(Array.from(data), (v) => BigInt(v));
    return new Tensor(call(() => raw.Tensor.fromI64(dims(shape), values)));
  }

  /** A tensor of `dtype` from raw little-endian bytes, row-major. */
  static fromBytes(shape: ArrayLike<number>, dtype: Dtype, data: Uint8Array): Tensor {
    return new Tensor(call(() => raw.Tensor.fromBytes(dims(shape), dtype, data)));
  }

  /** A 0-dimensional tensor holding `value` as `dtype`. */
  static scalar(value: number, dtype: Dtype = 'f32'): Tensor {
    return new Tensor(call(() => raw.Tensor.scalar(dtype, value)));
  }

  /** An `f32` tensor from nested arrays (`[[1, 2], [3, 4]]` is 2×2); rows must be the same length. */
  static from(nested: number | NestedNumbers): Tensor {
    const shape: number[] = [];
    let level: unknown = nested;
    while (Array.isArray(level)) {
      shape.push(level.length);
      level = level[0];
    }
    const flat: number[] = Array.isArray(nested) ? (nested as unknown[]).flat(Infinity as 1) as number[] : [nested];
    const count = shape.reduce((a, b) => a * b, 1);
    if (flat.length !== count) {
      throw new TensorError('invalid-argument', `ragged array: shape [${shape.join(', ')}] needs ${count} values, got ${flat.length}`);
    }
    return Tensor.fromF32(shape, flat);
  }

  /** Tensors joined along `axis`. */
  static concat(tensors: Tensor[], axis = 0): Tensor {
    return new Tensor(call(() => raw.concat(tensors.map((t) => t.handle), axis)));
  }

  /** The shape. */
  get shape(): number[] {
    return Array.from(this.handle.shape());
  }
  /** The element type. */
  get dtype(): Dtype {
    return this.handle.dtype();
  }
  /** The device it lives on, e.g. `cpu:0` or `cuda:1`. */
  get device(): string {
    return this.handle.device();
  }

  /** The data converted to `f32`, row-major. */
  toF32(): Float32Array {
    return call(() => this.handle.toF32());
  }
  /** The raw little-endian bytes, row-major. */
  toBytes(): Uint8Array {
    return call(() => this.handle.toBytes());
  }
  /** The data as nested arrays of numbers following the shape (a number for a scalar). */
  toArray(): number | NestedNumbers {
    const data = Array.from(this.toF32());
    const shape = this.shape;
    if (shape.length === 0) return data[0] as number;
    const build = (axis: number, offset: number): NestedNumbers => {
      const n = shape[axis] as number;
      if (axis === shape.length - 1) return data.slice(offset, offset + n);
      const stride = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: n }, (_, i) => build(axis + 1, offset + i * stride)) as NestedNumbers;
    };
    return build(0, 0);
  }

  /** Matrix product over the last two axes (batch axes broadcast). */
  matmul(other: Tensor): Tensor {
    return new Tensor(call(() => raw.matmul(this.handle, other.handle)));
  }

  private binary(op: BinaryOp, other: Tensor | number): Tensor {
    if (typeof other === 'number') return new Tensor(call(() => raw.binaryScalar(op, this.handle, other)));
    return new Tensor(call(() => raw.binary(op, this.handle, other.handle)));
  }
  /** `this + other`, element-wise with broadcasting. */
  add(other: Tensor | number): Tensor {
    return this.binary('add', other);
  }
  /** `this - other`. */
  sub(other: Tensor | number): Tensor {
    return this.binary('sub', other);
  }
  /** `this * other`. */
  mul(other: Tensor | number): Tensor {
    return this.binary('mul', other);
  }
  /** `this / other`. */
  div(other: Tensor | number): Tensor {
    return this.binary('div', other);
  }

  /** `op(this)`, element-wise. */
  unary(op: UnaryOp): Tensor {
    return new Tensor(call(() => raw.unary(op, this.handle)));
  }
  relu(): Tensor {
    return this.unary('relu');
  }
  /** GELU, tanh approximation. */
  gelu(): Tensor {
    return this.unary('gelu');
  }
  silu(): Tensor {
    return this.unary('silu');
  }
  sigmoid(): Tensor {
    return this.unary('sigmoid');
  }
  tanh(): Tensor {
    return this.unary('tanh');
  }
  exp(): Tensor {
    return this.unary('exp');
  }

  /** Softmax along `axis` (default the last). */
  softmax(axis = -1): Tensor {
    return new Tensor(call(() => raw.softmax(this.handle, axis)));
  }
  /** Log-softmax along `axis`. */
  logSoftmax(axis = -1): Tensor {
    return new Tensor(call(() => raw.logSoftmax(this.handle, axis)));
  }
  /** Layer normalisation over the last axis. */
  layerNorm(options: { weight?: Tensor; bias?: Tensor; eps?: number } = {}): Tensor {
    const { weight, bias, eps = 1e-5 } = options;
    return new Tensor(call(() => raw.layerNorm(this.handle, weight?.handle, bias?.handle, eps)));
  }
  /** RMS normalisation over the last axis. */
  rmsNorm(options: { weight?: Tensor; eps?: number } = {}): Tensor {
    const { weight, eps = 1e-6 } = options;
    return new Tensor(call(() => raw.rmsNorm(this.handle, weight?.handle, eps)));
  }

  /** The same data with another shape of the same element count. */
  reshape(shape: ArrayLike<number>): Tensor {
    return new Tensor(call(() => raw.reshape(this.handle, dims(shape))));
  }
  /** Axes reordered: axis `i` of the result is axis `perm[i]`. */
  permute(perm: ArrayLike<number>): Tensor {
    return new Tensor(call(() => raw.permute(this.handle, dims(perm))));
  }
  /** Two axes swapped (default the last two). */
  transpose(a = -2, b = -1): Tensor {
    return new Tensor(call(() => raw.transpose(this.handle, a, b)));
  }
  /** Elements `start..end` along `axis`. */
  slice(axis: number, start: number, end: number): Tensor {
    return new Tensor(call(() => raw.slice(this.handle, axis, start, end)));
  }
  /** Rows of this table picked by integer `indices`. */
  gather(indices: Tensor): Tensor {
    return new Tensor(call(() => raw.gather(this.handle, indices.handle)));
  }

  /** A reduction along `axis`. */
  reduce(op: ReduceOp, axis = -1, keepDims = false): Tensor {
    return new Tensor(call(() => raw.reduce(op, this.handle, axis, keepDims)));
  }
  sum(axis = -1, keepDims = false): Tensor {
    return this.reduce('sum', axis, keepDims);
  }
  mean(axis = -1, keepDims = false): Tensor {
    return this.reduce('mean', axis, keepDims);
  }
  max(axis = -1, keepDims = false): Tensor {
    return this.reduce('max', axis, keepDims);
  }
  /** Indices (`i64`) of the largest values along `axis`. */
  argmax(axis = -1, keepDims = false): Tensor {
    return this.reduce('argmax', axis, keepDims);
  }
  /** The `k` largest values along the last axis, descending, and their `i64` indices. */
  topK(k: number): { values: Tensor; indices: Tensor } {
    const [values, indices] = call(() => raw.topK(this.handle, k));
    return { values: new Tensor(values), indices: new Tensor(indices) };
  }
  /** Elements converted to `dtype`. */
  cast(dtype: Dtype): Tensor {
    return new Tensor(call(() => raw.cast(this.handle, dtype)));
  }

  /** Frees the tensor's device memory now rather than at the end of the invocation. */
  dispose(): void {
    const drop = (this.handle as unknown as Record<symbol, (() => void) | undefined>)[DISPOSE];
    drop?.call(this.handle);
  }

  /** Sizes only, never the data. */
  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device})`;
  }
}

/** Nested arrays of numbers. */
export type NestedNumbers = number[] | NestedNumbers[];
