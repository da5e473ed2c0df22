/**
 * Text generation on the node's models (`wafer:ai/llm`). Requests from every
 * invocation share the model (the host batches them), so a call may wait for
 * a slot. The host counts the tokens and bills them.
 *
 * ```ts
 * import { llm } from '@wafer/sdk';
 * const reply = llm.chat('smollm2-135m-instruct', [{ role: 'user', content: 'Hi!' }], { maxTokens: 64 });
 * reply.text; reply.usage.completionTokens;
 *
 * for (const piece of llm.chatStream('smollm2-135m-instruct', messages)) send(piece);
 * ```
 *
 * The model must be allowed in the function's manifest (`models = [...]`);
 * errors throw {@link LlmError} with the WIT error's case as `code`.
 */
import * as raw from 'wafer:ai/llm@0.1.0';
import { LlmError, hostCall } from './errors.js';

/** One turn of a conversation. */
export interface Message {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}
/** Tokens the host counted for a request. */
export type Usage = raw.Usage;
/** Why generation ended: `stop` (end of turn or a stop string) or `length`. */
export type FinishReason = raw.FinishReason;
/** A finished generation. */
export type Completion = raw.Completion;

/** Sampling options; each defaults to the model's (see host-apis/wit/llm.wit). */
export interface GenerateOptions {
  /** 0 picks the most likely token (greedy). */
  temperature?: number;
  /** Sample among the k most likely tokens; 0 means no limit. */
  topK?: number;
  /** Sample among the most likely tokens whose probability sums to p. */
  topP?: number;
  /** Penalise tokens already in the context (1.0 = off). */
  repeatPenalty?: number;
  /** The same seed, prompt and options give the same text. */
  seed?: number | bigint;
  /** The most tokens to generate. */
  maxTokens?: number;
  /** Generation stops before any of these strings; they are not returned. */
  stop?: string[];
}

function call<T>(f: () => T): T {
  return hostCall(LlmError, f);
}

/** The WIT `params` record for `options`. */
export function toParams(options: GenerateOptions = {}): raw.Params {
  const { temperature, topK, topP, repeatPenalty, seed, maxTokens, stop = [] } = options;
  const check = (name: string, v: number | undefined, integer: boolean) => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v))) {
      throw new LlmError('invalid-params', `${name} must be a ${integer ? 'non-negative integer' : 'non-negative number'}, not ${v}`);
    }
  };
  check('temperature', temperature, false);
  check('topK', topK, true);
  check('topP', topP, false);
  check('repeatPenalty', repeatPenalty, false);
  check('maxTokens', maxTokens, true);
  if (seed !== undefined && typeof seed !== 'bigint') check('seed', seed, true);
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string')) {
    throw new LlmError('invalid-params', 'stop must be an array of strings');
  }
  return {
    temperature,
    topK,
    topP,
    repeatPenalty,
    seed: seed === undefined ? undefined : BigInt(seed),
    maxTokens,
    stop,
  };
}

function toMessages(messages: Message[]): raw.Message[] {
  if (!Array.isArray(messages)) throw new LlmError('invalid-params', 'messages must be an array of {role, content}');
  return messages.map((m, i) => {
    if (typeof m?.role !== 'string' || typeof m?.content !== 'string') {
      throw new LlmError('invalid-params', `messages[${i}] must be {role: string, content: string}`);
    }
    return { role: m.role, content: m.content };
  });
}

/** Continues `prompt` (raw text) and returns the whole completion. */
export function infer(model: string, prompt: string, options?: GenerateOptions): Completion {
  const params = toParams(options);
  return call(() => raw.infer(model, prompt, params));
}

/** Answers a conversation, formatted with the model's chat template. */
export function chat(model: string, messages: Message[], options?: GenerateOptions): Completion {
  const params = toParams(options);
  const msgs = toMessages(messages);
  return call(() => raw.chat(model, msgs, params));
}

/** {@link infer}, streamed: iterate the result for pieces of text as the model produces them. */
export function inferStream(model: string, prompt: string, options?: GenerateOptions): Generation {
  const params = toParams(options);
  return new Generation(call(() => raw.inferStream(model, prompt, params)));
}

/** {@link chat}, streamed. */
export function chatStream(model: string, messages: Message[], options?: GenerateOptions): Generation {
  const params = toParams(options);
  const msgs = toMessages(messages);
  return new Generation(call(() => raw.chatStream(model, msgs, params)));
}

const DISPOSE: symbol = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for('dispose');

/**
 * A generation in progress: iterate it (with `for` or `for await`) for the
 * pieces of text; afterwards {@link Generation.result} has the finish reason
 * and the usage. {@link Generation.cancel} (or breaking out of the loop)
 * stops the model; usage then counts the tokens sampled until then.
 */
export class Generation implements Iterable<string>, AsyncIterable<string> {
  private done = false;
  private final: { finishReason: FinishReason; usage: Usage } | undefined;

  constructor(readonly handle: raw.Generation) {}

  /** The next piece of text, or `undefined` once generation has finished. Blocks until the model produces it. */
  nextText(): string | undefined {
    if (this.done) return undefined;
    const piece = call(() => this.handle.next());
    if (piece === undefined) this.finishNow();
    return piece;
  }

  private finishNow(): void {
    this.done = true;
    const f = call(() => this.handle.finish());
    if (f) this.final = { finishReason: f[0], usage: f[1] };
  }

  /** Why generation ended and what it used; `undefined` while it runs or after {@link cancel}. */
  get result(): { finishReason: FinishReason; usage: Usage } | undefined {
    return this.final;
  }

  /** Reads the rest and returns it as one string. */
  text(): string {
    let out = '';
    for (let p = this.nextText(); p !== undefined; p = this.nextText()) out += p;
    return out;
  }

  /** Stops generating. */
  cancel(): void {
    if (this.done) return;
    this.done = true;
    const drop = (this.handle as unknown as Record<symbol, (() => void) | undefined>)[DISPOSE];
    drop?.call(this.handle);
  }

  *[Symbol.iterator](): Iterator<string> {
    try {
      for (let p = this.nextText(); p !== undefined; p = this.nextText()) yield p;
    } finally {
      if (!this.done) this.cancel();
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (const piece of this) yield piece;
  }
}
