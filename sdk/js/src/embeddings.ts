/**
 * Sentence embeddings (`wafer:ai/embeddings`): mean-pooled, L2-normalised
 * vectors, so the dot product of two is their cosine similarity.
 *
 * ```ts
 * import { embeddings } from '@wafer/sdk';
 * const { vectors } = embeddings.embed('all-minilm-l6-v2', ['a cat', 'a dog']);
 * embeddings.cosine(vectors[0], vectors[1]);
 * ```
 */
import * as raw from 'wafer:ai/embeddings@0.1.0';
import { LlmError, hostCall } from './errors.js';

/** The vectors, one per text in order, and the tokens the host counted. */
export interface EmbeddingBatch {
  vectors: Float32Array[];
  promptTokens: number;
}

/** Embeds each text with `model`. */
export function embed(model: string, texts: string[]): EmbeddingBatch {
  if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
    throw new LlmError('invalid-params', 'texts must be an array of strings');
  }
  const batch = hostCall(LlmError, () => raw.embed(model, texts));
  return { vectors: batch.vectors, promptTokens: batch.promptTokens };
}

/** The cosine similarity of two vectors (1 for the same direction). */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`vectors of different lengths: ${a.length} and ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}
