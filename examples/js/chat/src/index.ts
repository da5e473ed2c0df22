// Run with: wafer build examples/js/chat && wafer deploy examples/js/chat && curl -N -d '{"messages":[{"role":"user","content":"Hi!"}]}' localhost:8080/chat-js
// A chat endpoint on the node's shared LLM (wafer:ai/llm): the reply is
// streamed to the client as server-sent events while the model generates
// it, and ends with the tokens the host counted.
//
// POST /chat-js with {"messages": [{"role", "content"}, ...], "max_tokens"?,
// "temperature"?, "seed"?, "stream"? (default true)}.
//   stream: `data: {"delta": "..."}` events, then `event: done` with
//           {"finish_reason", "usage": {"prompt_tokens", "completion_tokens"}}
//           (or `event: error` with {"code", "message"} if the model stops early)
//   "stream": false: one JSON object {"reply", "finish_reason", "usage"}.
import { HttpError, LlmError, config, errorResponse, json, llm, serve, sse, text, type SseEvent } from '@wafer/sdk';

/** Bounds on what one request may ask for: a conversation, not a document. */
const MAX_MESSAGES = 64;
const MAX_CHARS = 16_000;

const USAGE = `Chat with the node's LLM, streamed.

POST /chat-js {"messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 128}
  -> text/event-stream: data: {"delta": "..."} ... then event: done, data: {"finish_reason", "usage"}
  "stream": false answers one JSON object {"reply", "finish_reason", "usage"}.

curl -N -d '{"messages":[{"role":"user","content":"Hi!"}]}' localhost:8080/chat-js
`;

interface ChatRequest {
  messages: llm.Message[];
  max_tokens?: number;
  temperature?: number;
  seed?: number;
  stream?: boolean;
}

function parse(body: unknown): ChatRequest {
  const req = body as Partial<ChatRequest> | null;
  const messages = req?.messages;
  if (!Array.isArray(messages) || messages.length === 0 || messages.length > MAX_MESSAGES) {
    throw new HttpError(400, 'bad_request', `messages must be an array of 1 to ${MAX_MESSAGES} {role, content}`);
  }
  let chars = 0;
  for (const m of messages) {
    if (!['system', 'user', 'assistant'].includes(m?.role) || typeof m?.content !== 'string') {
      throw new HttpError(400, 'bad_request', 'each message is {"role": "system"|"user"|"assistant", "content": string}');
    }
    chars += m.content.length;
  }
  if (chars > MAX_CHARS) throw new HttpError(400, 'bad_request', `the conversation is over ${MAX_CHARS} characters`);
  return req as ChatRequest;
}

/** The usage in the snake_case the rest of the API speaks. */
function usageJson(usage: llm.Usage) {
  return { prompt_tokens: usage.promptTokens, completion_tokens: usage.completionTokens };
}

/** An LLM refusal as an HTTP error the client can act on. */
function llmError(e: LlmError): Response {
  const status: Record<string, number> = {
    'invalid-params': 400,
    'over-quota': 429,
    overloaded: 503,
    timeout: 504,
    'unknown-model': 500,
    'model-not-allowed': 500,
  };
  if ((status[e.code] ?? 500) === 500) console.error(`chat-js: ${e.code}: ${e.message}`);
  return errorResponse(status[e.code] ?? 500, e.code.replaceAll('-', '_'), e.message);
}

serve(async (req, ctx) => {
  if (req.method === 'GET') return text(USAGE);
  if (req.method !== 'POST') {
    return text('use GET for usage or POST to chat\n', { status: 405, headers: { allow: 'GET, POST' } });
  }
  const body = parse(await ctx.json());
  const model = config.get('MODEL') ?? 'smollm2-135m-instruct';
  const options: llm.GenerateOptions = { maxTokens: body.max_tokens, temperature: body.temperature, seed: body.seed };
  try {
    if (body.stream === false) {
      const reply = llm.chat(model, body.messages, options);
      return json({ reply: reply.text, finish_reason: reply.finishReason, usage: usageJson(reply.usage) });
    }
    // Errors before the first token (unknown model, bad params) still get a status.
    const generation = llm.chatStream(model, body.messages, options);
    return sse(
      (function* (): Generator<SseEvent> {
        try {
          for (const delta of generation) yield { data: { delta } };
        } catch (e) {
          // Headers are gone: the error becomes the stream's last event.
          if (!(e instanceof LlmError)) throw e;
          console.error(`chat-js: generation stopped: ${e.code}: ${e.message}`);
          yield { event: 'error', data: { code: e.code.replaceAll('-', '_'), message: e.message } };
          return;
        }
        const result = generation.result;
        if (result) {
          yield { event: 'done', data: { finish_reason: result.finishReason, usage: usageJson(result.usage) } };
        }
      })(),
    );
  } catch (e) {
    if (e instanceof LlmError) return llmError(e);
    throw e;
  }
});
