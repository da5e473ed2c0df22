/**
 * `@wafer/sdk`: write Wafer functions in JavaScript or TypeScript.
 *
 * ```ts
 * import { Router, serve, json, llm, Tensor } from '@wafer/sdk';
 *
 * const app = new Router();
 * app.get('/hello', () => 'Hello from Wafer!\n');
 * serve(app);
 * ```
 *
 * Build with `wafer build` (or `npx wafer-build`): the build bundles the
 * code and imports only the platform interfaces it uses.
 */
/// <reference path="./wit.d.ts" />
export {
  Context,
  HttpError,
  Router,
  errorResponse,
  errorToResponse,
  json,
  readableFrom,
  respond,
  serve,
  sse,
  sseEvent,
  stream,
  text,
  toResponse,
} from './http.js';
export type { Chunk, Handler, HandlerObject, HandlerResult, Method, SseEvent } from './http.js';
export { ConfigError, LlmError, TensorError, WaferError } from './errors.js';
export { Tensor } from './tensor.js';
export type { BinaryOp, Dtype, NestedNumbers, ReduceOp, UnaryOp } from './tensor.js';
export * as llm from './llm.js';
export * as embeddings from './embeddings.js';
export * as config from './config.js';
