// The official `openai` npm client against a Wafer node.
// Run by runtime/tests/openai.rs (which starts the node and makes the key):
//   WAFER_URL=http://127.0.0.1:PORT WAFER_KEY=wk_... WAFER_ADMIN_TOKEN=... node client.mjs
// The same checks as client.py; prints 'N passed, N failed' at the end.
import assert from "node:assert/strict";
import OpenAI from "openai";

const URL = process.env.WAFER_URL;
const KEY = process.env.WAFER_KEY;
const ADMIN = process.env.WAFER_ADMIN_TOKEN;
const LLM = process.env.WAFER_LLM ?? "smollm2-135m-instruct";
const EMBED = process.env.WAFER_EMBED ?? "all-minilm-l6-v2";

const client = new OpenAI({ baseURL: `${URL}/v1`, apiKey: KEY, maxRetries: 0 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function adminGet(path) {
  const response = await fetch(URL + path, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(response.status, 200);
  return response.json();
}

// The model record of one request; polls, since a stream's record may land
// after its client is gone.
async function ledgerRecord(invocation) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const rows = (await adminGet("/v1/ledger")).filter((r) => r.invocation_id === invocation);
    if (rows.length) {
      assert.equal(rows.length, 2);
      return rows.find((r) => r.seq === 1);
    }
    assert.ok(Date.now() < deadline, `no ledger record for ${invocation}`);
    await sleep(50);
  }
}

const invocationOf = (id) => id.slice(id.indexOf("-") + 1);

async function modelStats() {
  const models = (await adminGet("/v1/models")).data;
  const w = models.find((m) => m.id === LLM).wafer;
  return [w.generated_tokens, w.running + w.waiting];
}

const messages = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Name a colour." },
];
let chatText;

const checks = {
  async models() {
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    assert.ok(ids.includes(LLM) && ids.includes(EMBED), String(ids));
  },

  async chat() {
    const r = await client.chat.completions.create({ model: LLM, messages, max_tokens: 8, temperature: 0, seed: 4 });
    assert.equal(r.object, "chat.completion");
    assert.ok(r.id.startsWith("chatcmpl-"));
    assert.equal(r.choices[0].message.role, "assistant");
    assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    const record = await ledgerRecord(invocationOf(r.id));
    assert.equal(record.tokens_in, r.usage.prompt_tokens);
    assert.equal(record.tokens_out, r.usage.completion_tokens);
    chatText = r.choices[0].message.content;
  },

  async "streamed chat"() {
    const stream = await client.chat.completions.create({
      model: LLM,
      messages,
      max_tokens: 8,
      temperature: 0,
      seed: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage);
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const text = chunks
      .slice(0, -1)
      .map((c) => c.choices[0].delta.content ?? "")
      .join("");
    assert.equal(text, chatText);
    const record = await ledgerRecord(invocationOf(last.id));
    assert.equal(record.tokens_in, last.usage.prompt_tokens);
    assert.equal(record.tokens_out, last.usage.completion_tokens);
  },

  async completions() {
    const r = await client.completions.create({ model: LLM, prompt: "The capital of Italy is", max_tokens: 6, temperature: 0 });
    assert.equal(r.object, "text_completion");
    const record = await ledgerRecord(invocationOf(r.id));
    assert.equal(record.tokens_out, r.usage.completion_tokens);
    const stream = await client.completions.create({
      model: LLM,
      prompt: "The capital of Italy is",
      max_tokens: 6,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    assert.equal(text, r.choices[0].text);
  },

  async embeddings() {
    const input = ["A red apple.", "Interest rates rose."];
    const { data: b64, response } = await client.embeddings.create({ model: EMBED, input }).withResponse();
    const floats = await client.embeddings.create({ model: EMBED, input, encoding_format: "float" });
    assert.equal(b64.data.length, 2);
    for (let i = 0; i < 2; i++) {
      assert.equal(b64.data[i].embedding.length, 384);
      const diff = Math.max(...b64.data[i].embedding.map((x, j) => Math.abs(x - floats.data[i].embedding[j])));
      assert.ok(diff < 1e-6, `base64 and float differ by ${diff}`);
    }
    const record = await ledgerRecord(response.headers.get("x-wafer-invocation-id"));
    assert.equal(record.embedding_tokens, b64.usage.prompt_tokens);
  },

  async "disconnect mid-stream"() {
    const [before, busy] = await modelStats();
    assert.equal(busy, 0, "the model must be idle for this check");
    const maxTokens = 300;
    const { data: stream, response } = await client.chat.completions
      .create({
        model: LLM,
        messages: [{ role: "user", content: "Write a long story about a lighthouse keeper." }],
        max_tokens: maxTokens,
        temperature: 0.8,
        seed: 6,
        stream: true,
      })
      .withResponse();
    const invocation = response.headers.get("x-wafer-invocation-id");
    let received = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) received += 1;
      if (received === 5) break; // leaving the loop aborts the request
    }
    const record = await ledgerRecord(invocation);
    const deadline = Date.now() + 30_000;
    while ((await modelStats())[1] > 0) {
      assert.ok(Date.now() < deadline, "the generation was not cancelled");
      await sleep(50);
    }
    const sampled = (await modelStats())[0] - before;
    const billed = record.tokens_out;
    console.log(`  disconnect: received ${received} chunks, billed ${billed}, sampled ${sampled}`);
    assert.ok(received <= billed && billed < maxTokens, `received ${received}, billed ${billed}`);
    assert.ok(sampled === billed || sampled === billed + 1, `sampled ${sampled}, billed ${billed}`);
  },

  async errors() {
    const expectError = async (status, code, call, param) => {
      try {
        await call();
      } catch (e) {
        assert.ok(e instanceof OpenAI.APIError, String(e));
        assert.equal(e.status, status, String(e));
        assert.equal(e.code, code, String(e));
        assert.ok(e.type, "error.type");
        if (param !== undefined) assert.equal(e.param, param);
        return e;
      }
      assert.fail(`expected a ${status}`);
    };
    const msgs = [{ role: "user", content: "hi" }];
    const e404 = await expectError(404, "model_not_found", () =>
      client.chat.completions.create({ model: "gpt-4o", messages: msgs }), "model");
    assert.ok(e404 instanceof OpenAI.NotFoundError);
    await expectError(400, "invalid_value", () =>
      client.chat.completions.create({ model: LLM, messages: msgs, top_p: 1.5 }), "top_p");
    await expectError(400, "invalid_type", () =>
      client.chat.completions.create({ model: LLM, messages: msgs, stop: 3 }), "stop");
    await expectError(413, "request_too_large", () =>
      client.completions.create({ model: LLM, prompt: "x".repeat(3 << 20) }));
    await expectError(400, "context_length_exceeded", () =>
      client.completions.create({ model: LLM, prompt: "word ".repeat(6000) }), "prompt");
    const bad = new OpenAI({ baseURL: `${URL}/v1`, apiKey: "wk_bad_key", maxRetries: 0 });
    const e401 = await expectError(401, "invalid_api_key", () =>
      bad.chat.completions.create({ model: LLM, messages: msgs }));
    assert.ok(e401 instanceof OpenAI.AuthenticationError);
  },
};

let passed = 0;
let failed = 0;
for (const [name, check] of Object.entries(checks)) {
  try {
    await check();
    console.log(`ok   js: ${name}`);
    passed += 1;
  } catch (e) {
    console.log(`FAIL js: ${name}\n${e?.stack ?? e}`);
    failed += 1;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
