// Unit tests of the SDK's JavaScript, run under Node: the modules are bundled
// with esbuild, with the `wafer:ai/*` and `wasi:*` imports replaced by the
// mocks below. The real imports are tested through the node in
// runtime/tests/js.rs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { SDK_DIR, worldFor, BuildError } from '../lib/build.mjs';

// Host mocks: they record calls and throw WIT errors the way the bindings do
// (an exception whose `payload` is the error variant).
const MOCKS = {
  'wafer:ai/llm@0.1.0': `
    export const calls = globalThis.__llmCalls = [];
    const fail = (tag, val) => { const e = new Error(val); e.payload = { tag, val }; throw e; };
    export function infer(model, prompt, params) {
      calls.push({ fn: 'infer', model, prompt, params });
      if (model === 'nope') fail('unknown-model', 'no model nope; loaded: smollm2');
      return { text: 'out', finishReason: 'stop', usage: { promptTokens: 3, completionTokens: 1 } };
    }
    export function chat(model, messages, params) {
      calls.push({ fn: 'chat', model, messages, params });
      return { text: 'hi', finishReason: 'length', usage: { promptTokens: 9, completionTokens: 2 } };
    }
    class Generation {
      constructor(pieces) { this.pieces = pieces; this.dropped = false; }
      next() { return this.pieces.shift(); }
      finish() { return this.pieces.length ? undefined : ['stop', { promptTokens: 5, completionTokens: 3 }]; }
      [Symbol.dispose ?? Symbol.for('dispose')]() { this.dropped = true; globalThis.__dropped = true; }
    }
    export function chatStream(model, messages, params) { calls.push({ fn: 'chatStream', params }); return new Generation(['a', 'b', 'c']); }
    export function inferStream() { return new Generation(['x']); }
  `,
  'wafer:ai/embeddings@0.1.0': `
    export function embed(model, texts) {
      return { vectors: texts.map((t) => Float32Array.from([t.length, 1])), promptTokens: texts.length * 2 };
    }
  `,
  'wafer:ai/tensor@0.1.0': `
    export class Tensor {
      constructor(shape, data) { this._shape = shape; this._data = data; }
      static fromF32(shape, data) {
        if (!(shape instanceof Uint32Array)) throw new TypeError('shape must be a Uint32Array');
        const n = shape.reduce((a, b) => a * b, 1);
        if (n !== data.length) { const e = new Error(); e.payload = { tag: 'invalid-argument', val: 'data has ' + data.length + ' values, shape needs ' + n }; throw e; }
        return new Tensor(Array.from(shape), Float32Array.from(data));
      }
      shape() { return Uint32Array.from(this._shape); }
      dtype() { return 'f32'; }
      device() { return 'mock:0'; }
      toF32() { return this._data; }
    }
    export function binaryScalar(op, x, v) {
      const f = { add: (a) => a + v, mul: (a) => a * v }[op];
      return new Tensor(x._shape, x._data.map(f));
    }
  `,
  'wasi:config/store@0.2.0-rc.1': `
    const values = { GREETING: 'Hi' };
    export function get(key) { return values[key]; }
    export function getAll() { return Object.entries(values); }
  `,
};

async function load() {
  const dir = await mkdtemp(join(tmpdir(), 'wafer-sdk-test-'));
  const outfile = join(dir, 'sdk.mjs');
  await esbuild.build({
    entryPoints: [join(SDK_DIR, 'src/index.ts')],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    logLevel: 'silent',
    plugins: [
      {
        name: 'mock-host',
        setup(b) {
          b.onResolve({ filter: /^(wafer|wasi):/ }, (args) => ({ path: args.path, namespace: 'mock' }));
          b.onLoad({ filter: /.*/, namespace: 'mock' }, (args) => {
            const contents = MOCKS[args.path];
            if (!contents) throw new Error(`no mock for ${args.path}`);
            return { contents, loader: 'js' };
          });
        },
      },
    ],
  });
  return import(pathToFileURL(outfile).href);
}

const sdk = await load();
const req = (method, path, body) => new Request(`http://fn.test${path}`, { method, body });

test('router: methods, params, rest, base, 404 and 405', async () => {
  const app = new sdk.Router({ base: '/api' });
  app.get('/users/:id', (_r, ctx) => ({ id: ctx.params.id }));
  app.post('/users', async (_r, ctx) => sdk.json(await ctx.json(), 201));
  app.get('/files/*', (_r, ctx) => ctx.params['*']);
  app.all('/any', (r) => r.method);

  let res = await app.handle(req('GET', '/api/users/a%2Fb/'));
  assert.deepEqual(await res.json(), { id: 'a/b' });
  res = await app.handle(req('POST', '/api/users', '{"n":1}'));
  assert.equal(res.status, 201);
  assert.deepEqual(await res.json(), { n: 1 });
  res = await app.handle(req('GET', '/api/files/x/y.txt'));
  assert.equal(await res.text(), 'x/y.txt');
  assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
  res = await app.handle(req('DELETE', '/api/any'));
  assert.equal(await res.text(), 'DELETE');
  res = await app.handle(req('HEAD', '/api/users/1'));
  assert.equal(res.status, 200);

  res = await app.handle(req('PUT', '/api/users'));
  assert.equal(res.status, 405);
  assert.equal(res.headers.get('allow'), 'POST');
  assert.equal((await res.json()).error.code, 'method_not_allowed');
  res = await app.handle(req('GET', '/users/1'));
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, 'not_found');
  app.notFound(() => sdk.text('custom', 404));
  assert.equal(await (await app.handle(req('GET', '/nowhere'))).text(), 'custom');
  assert.throws(() => app.get('/a/*/b', () => null), /last segment/);
});

test('handler results and errors become responses', async () => {
  const cases = [
    [() => 'hi', 200, 'text/plain; charset=utf-8', 'hi'],
    [() => ({ a: 1 }), 200, 'application/json', '{"a":1}'],
    [() => new Uint8Array([104, 105]), 200, 'application/octet-stream', 'hi'],
    [() => null, 204, null, ''],
    [() => { throw new sdk.HttpError(418, 'teapot', 'short and stout'); }, 418, 'application/json', '{"error":{"code":"teapot","message":"short and stout"}}'],
    [() => { throw new sdk.LlmError('over-quota', 'tokens spent'); }, 429, 'application/json', '{"error":{"code":"over_quota","message":"tokens spent"}}'],
  ];
  for (const [handler, status, type, body] of cases) {
    const res = await sdk.respond(handler, req('GET', '/'));
    assert.equal(res.status, status);
    assert.equal(res.headers.get('content-type'), type);
    assert.equal(await res.text(), body);
  }
  // An unexpected error: a 500 without the detail, which goes to stderr.
  const logged = [];
  const original = console.error;
  console.error = (line) => logged.push(line);
  try {
    const res = await sdk.respond(() => { throw new Error('secret detail'); }, req('GET', '/'));
    assert.equal(res.status, 500);
    const text = await res.text();
    assert.ok(!text.includes('secret detail'), text);
    assert.equal(JSON.parse(text).error.code, 'internal');
  } finally {
    console.error = original;
  }
  assert.ok(logged.some((l) => l.includes('secret detail')), logged.join('\n'));
  // A malformed JSON body is the client's mistake.
  const res = await sdk.respond(async (_r, ctx) => ctx.json(), req('POST', '/', '{oops'));
  assert.equal(res.status, 400);
});

test('stream and sse send each item as it is produced', async () => {
  async function* gen() {
    yield 'a';
    yield '';
    yield new Uint8Array([98]);
  }
  const res = sdk.stream(gen());
  const reader = res.body.getReader();
  const chunks = [];
  for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(new TextDecoder().decode(r.value));
  assert.deepEqual(chunks, ['a', 'b']);

  const events = sdk.sse(['plain', { event: 'done', data: { n: 1 }, id: '7' }, { data: 'two\nlines' }]);
  assert.equal(events.headers.get('content-type'), 'text/event-stream');
  assert.equal(
    await events.text(),
    'data: plain\n\nevent: done\nid: 7\ndata: {"n":1}\n\ndata: two\ndata: lines\n\n',
  );
});

test('llm: params, errors, and streaming as an iterator', async () => {
  const out = sdk.llm.infer('smollm2', 'Once', { maxTokens: 4, seed: 7, stop: ['\n'] });
  assert.equal(out.text, 'out');
  const call = globalThis.__llmCalls.at(-1);
  assert.deepEqual(call.params, {
    temperature: undefined, topK: undefined, topP: undefined, repeatPenalty: undefined,
    seed: 7n, maxTokens: 4, stop: ['\n'],
  });
  assert.deepEqual(sdk.llm.toParams().stop, []);
  assert.throws(() => sdk.llm.infer('smollm2', 'x', { maxTokens: 1.5 }), (e) => e instanceof sdk.LlmError && e.code === 'invalid-params');
  assert.throws(() => sdk.llm.chat('smollm2', [{ role: 'user' }]), /messages\[0\]/);
  assert.throws(
    () => sdk.llm.infer('nope', 'x'),
    (e) => e instanceof sdk.LlmError && e.code === 'unknown-model' && /loaded: smollm2/.test(e.message),
  );

  const g = sdk.llm.chatStream('smollm2', [{ role: 'user', content: 'hi' }]);
  assert.equal(g.result, undefined);
  const pieces = [];
  for await (const p of g) pieces.push(p);
  assert.deepEqual(pieces, ['a', 'b', 'c']);
  assert.deepEqual(g.result, { finishReason: 'stop', usage: { promptTokens: 5, completionTokens: 3 } });

  // Leaving the loop early drops the generation (the host stops the model).
  globalThis.__dropped = false;
  const early = sdk.llm.chatStream('smollm2', [{ role: 'user', content: 'hi' }]);
  for (const p of early) {
    assert.equal(p, 'a');
    break;
  }
  assert.equal(globalThis.__dropped, true);
  assert.equal(sdk.llm.inferStream('m', 'p').text(), 'x');
});

test('embeddings and cosine', () => {
  const { vectors, promptTokens } = sdk.embeddings.embed('minilm', ['ab', 'abcd']);
  assert.equal(vectors.length, 2);
  assert.equal(promptTokens, 4);
  assert.ok(Math.abs(sdk.embeddings.cosine([1, 0], [1, 0]) - 1) < 1e-12);
  assert.equal(sdk.embeddings.cosine([1, 0], [0, 1]), 0);
  assert.throws(() => sdk.embeddings.cosine([1], [1, 2]), RangeError);
  assert.throws(() => sdk.embeddings.embed('m', 'not a list'), sdk.LlmError);
});

test('tensor wrapper: shapes, nested arrays, errors', () => {
  const t = sdk.Tensor.from([[1, 2], [3, 4]]);
  assert.deepEqual(t.shape, [2, 2]);
  assert.equal(t.device, 'mock:0');
  assert.deepEqual(t.add(1).mul(2).toArray(), [[4, 6], [8, 10]]);
  assert.equal(String(t), 'Tensor(f32, [2, 2], mock:0)');
  assert.throws(() => sdk.Tensor.from([[1, 2], [3]]), (e) => e instanceof sdk.TensorError && /ragged/.test(e.message));
  assert.throws(() => sdk.Tensor.fromF32([2, -1], []), (e) => e.code === 'invalid-argument');
  assert.throws(
    () => sdk.Tensor.fromF32([3], [1, 2]),
    (e) => e instanceof sdk.TensorError && e.code === 'invalid-argument' && /shape needs 3/.test(e.message),
  );
});

test('config', () => {
  assert.equal(sdk.config.get('GREETING'), 'Hi');
  assert.equal(sdk.config.get('MISSING'), undefined);
  assert.deepEqual(sdk.config.getAll(), { GREETING: 'Hi' });
});

test('build: the world imports exactly what the bundle uses', () => {
  const ifaces = new Set(['tensor', 'llm', 'embeddings']);
  const world = worldFor(['wafer:ai/tensor@0.1.0', 'wasi:config/store@0.2.0-rc.1'], ifaces, 'wafer:ai@0.1.0', 'src/index.js');
  assert.match(world, /export wasi:http\/incoming-handler@0\.2\.10;/);
  assert.match(world, /^ {2}import tensor;$/m);
  assert.match(world, /^ {2}import wasi:config\/store@0\.2\.0-rc\.1;$/m);
  assert.doesNotMatch(world, /import llm/);
  assert.doesNotMatch(world, /^package/m);
  assert.throws(() => worldFor(['wafer:ai/vision@0.1.0'], ifaces, 'wafer:ai@0.1.0', 'x'), (e) => e instanceof BuildError && /no interface vision/.test(e.message));
  assert.throws(() => worldFor(['wafer:ai/llm@0.2.0'], ifaces, 'wafer:ai@0.1.0', 'x'), /import wafer:ai\/llm@0\.1\.0/);
  assert.throws(() => worldFor(['acme:x/y@1.0.0'], ifaces, 'wafer:ai@0.1.0', 'x'), /WASI interfaces only/);
});
