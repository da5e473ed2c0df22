// Run with: wafer build examples/js/semantic-search && wafer deploy examples/js/semantic-search && curl 'localhost:8080/search-js?q=kittens&k=3'
// Semantic search over a small corpus with the node's embedding model
// (wafer:ai/embeddings): the corpus and the query are embedded in one host
// call, and documents are ranked by cosine similarity.
//
// GET /search-js?q=QUERY&k=3, or POST /search-js {"query", "k"?, "documents"?}
// (your own documents instead of the built-in corpus) answers
// {"query", "results": [{"document", "score"}, ...], "usage": {"prompt_tokens"}}.
import { HttpError, LlmError, config, embeddings, errorResponse, json, serve } from '@wafer/sdk';
import { CORPUS } from './corpus.js';

/** Bounds on one request: the texts are embedded in a single host call. */
const MAX_DOCUMENTS = 256;
const MAX_CHARS = 2_000;

function parse(query, k, documents) {
  if (typeof query !== 'string' || query.trim() === '' || query.length > MAX_CHARS) {
    throw new HttpError(400, 'bad_request', `give a query of 1 to ${MAX_CHARS} characters (?q=... or {"query": ...})`);
  }
  const docs = documents ?? CORPUS;
  if (!Array.isArray(docs) || docs.length === 0 || docs.length > MAX_DOCUMENTS) {
    throw new HttpError(400, 'bad_request', `documents must be an array of 1 to ${MAX_DOCUMENTS} strings`);
  }
  if (!docs.every((d) => typeof d === 'string' && d.length > 0 && d.length <= MAX_CHARS)) {
    throw new HttpError(400, 'bad_request', `each document is a string of 1 to ${MAX_CHARS} characters`);
  }
  const n = k === undefined || k === null ? 3 : Number(k);
  if (!Number.isInteger(n) || n < 1) throw new HttpError(400, 'bad_request', 'k must be a positive integer');
  return { query, k: Math.min(n, docs.length), documents: docs };
}

/** The `k` documents nearest to the query, best first. */
export function rank(queryVector, documentVectors, documents, k) {
  return documentVectors
    .map((v, i) => ({ document: documents[i], score: embeddings.cosine(queryVector, v) }))
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
}

serve(async (req, ctx) => {
  let input;
  if (req.method === 'GET') input = parse(ctx.query.get('q'), ctx.query.get('k') ?? undefined);
  else if (req.method === 'POST') {
    const body = await ctx.json();
    input = parse(body?.query, body?.k, body?.documents);
  } else {
    throw new HttpError(405, 'method_not_allowed', 'use GET ?q=... or POST {"query": ...}', { allow: 'GET, POST' });
  }
  const model = config.get('MODEL') ?? 'all-minilm-l6-v2';
  try {
    const { vectors, promptTokens } = embeddings.embed(model, [input.query, ...input.documents]);
    const [queryVector, ...documentVectors] = vectors;
    const results = rank(queryVector, documentVectors, input.documents, input.k);
    return json({ query: input.query, model, results, usage: { prompt_tokens: promptTokens } });
  } catch (e) {
    if (!(e instanceof LlmError)) throw e;
    const status = { 'invalid-params': 400, 'over-quota': 429, overloaded: 503, timeout: 504 }[e.code] ?? 500;
    if (status === 500) console.error(`semantic-search-js: ${e.code}: ${e.message}`);
    return errorResponse(status, e.code.replaceAll('-', '_'), e.message);
  }
});
