// The host interfaces a function imports, as StarlingMonkey binds them.
// wafer:ai: generated from host-apis/wit (scripts/gen.mjs).
/// <reference path="../types/interfaces/wafer-ai-tensor.d.ts" />
/// <reference path="../types/interfaces/wafer-ai-llm.d.ts" />
/// <reference path="../types/interfaces/wafer-ai-embeddings.d.ts" />

// wasi:config/store, the function's `[config]` (host-apis/wit/deps/config).
declare module 'wasi:config/store@0.2.0-rc.1' {
  export type Error = { tag: 'upstream'; val: string } | { tag: 'io'; val: string };
  export function get(key: string): string | undefined;
  export function getAll(): Array<[string, string]>;
}
