/**
 * Errors from the platform's imports. A WIT `result` error arrives as an
 * exception carrying the variant (`{tag, val}`); the SDK rethrows it as one of
 * these, so `catch (e) { if (e instanceof LlmError && e.code === 'unknown-model') ... }`.
 */

/** Base class of every error the SDK raises for a host call. */
export class WaferError extends Error {
  /** The WIT error variant's case, e.g. `shape-mismatch` or `unknown-model`. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A `wafer:ai/tensor` error (`shape-mismatch`, `unsupported-dtype`, `out-of-memory`, `over-quota`, `invalid-argument`). */
export class TensorError extends WaferError {}

/** A `wafer:ai/llm` or `wafer:ai/embeddings` error (`unknown-model`, `model-not-allowed`, `invalid-params`, `over-quota`, `timeout`, `overloaded`, `internal`). */
export class LlmError extends WaferError {}

/** A `wasi:config/store` error (`upstream`, `io`). */
export class ConfigError extends WaferError {}

type Variant = { tag: string; val?: unknown };

function isVariant(v: unknown): v is Variant {
  return typeof v === 'object' && v !== null && typeof (v as Variant).tag === 'string';
}

/**
 * Runs a host call, turning a WIT error variant into `Kind`. Anything else
 * (a bug, a trap) passes through unchanged.
 */
export function hostCall<T>(Kind: new (code: string, message: string) => WaferError, call: () => T): T {
  try {
    return call();
  } catch (e) {
    const payload = (e as { payload?: unknown })?.payload ?? e;
    if (isVariant(payload)) {
      const message = typeof payload.val === 'string' ? payload.val : payload.tag;
      throw new Kind(payload.tag, message);
    }
    throw e;
  }
}
