/**
 * HTTP handlers on top of `wasi:http/incoming-handler`, through
 * StarlingMonkey's `fetch` event: a handler takes a standard `Request` and
 * returns a `Response` (or a string, bytes or a JSON-able value).
 *
 * ```ts
 * import { Router, serve, json } from '@wafer/sdk';
 *
 * const app = new Router();
 * app.get('/hello', () => 'Hello!\n');
 * app.post('/hello/echo', async (req, ctx) => json({ got: await ctx.json() }));
 * serve(app);
 * ```
 */
import { ConfigError, LlmError, TensorError, WaferError } from './errors.js';

/** What a handler may return; anything but a `Response` is converted (see {@link toResponse}). */
export type HandlerResult = Response | string | Uint8Array | ArrayBuffer | object | null | undefined;

/** A request handler. */
export type Handler = (request: Request, ctx: Context) => HandlerResult | Promise<HandlerResult>;

/** Something with a `handle` method, such as a {@link Router}. */
export interface HandlerObject {
  handle(request: Request, ctx?: Context): Promise<Response>;
}

/** Per-request details a handler gets with the request. */
export class Context {
  /** The request's URL, parsed. */
  readonly url: URL;
  /** Path parameters of the matched route (`:name` segments, `*` for the rest). */
  params: Record<string, string> = {};

  constructor(readonly request: Request) {
    this.url = new URL(request.url);
  }

  /** The request path, e.g. `/hello/world`. */
  get path(): string {
    return this.url.pathname;
  }

  /** The query string's parameters. */
  get query(): URLSearchParams {
    return this.url.searchParams;
  }

  /** The route prefix the node matched (the `x-wafer-route` header), e.g. `/hello`. */
  get route(): string | null {
    return this.request.headers.get('x-wafer-route');
  }

  /** The path below the route prefix (the `x-wafer-path-info` header). */
  get pathInfo(): string | null {
    return this.request.headers.get('x-wafer-path-info');
  }

  /** The body parsed as JSON; a malformed body is a 400 {@link HttpError}. */
  async json<T = unknown>(): Promise<T> {
    const text = await this.request.text();
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new HttpError(400, 'bad_request', `the request body is not JSON: ${(e as Error).message}`);
    }
  }

  /** The body as text. */
  text(): Promise<string> {
    return this.request.text();
  }
}

/**
 * An error with an HTTP status: thrown from a handler, it becomes
 * `{"error": {"code", "message"}}` with that status.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

function withDefaults(init: number | ResponseInit | undefined, contentType: string): ResponseInit {
  const options: ResponseInit = typeof init === 'number' ? { status: init } : { ...init };
  const headers = new Headers(options.headers);
  if (!headers.has('content-type')) headers.set('content-type', contentType);
  options.headers = headers;
  return options;
}

/** A JSON response. */
export function json(value: unknown, init?: number | ResponseInit): Response {
  return new Response(JSON.stringify(value), withDefaults(init, 'application/json'));
}

/** A plain-text response. */
export function text(body: string, init?: number | ResponseInit): Response {
  return new Response(body, withDefaults(init, 'text/plain; charset=utf-8'));
}

/** `{"error": {"code", "message"}}`, the shape the node's own errors have. */
export function errorResponse(status: number, code: string, message: string, headers?: Record<string, string>): Response {
  return json({ error: { code, message } }, { status, headers });
}

/** Chunks a streamed body may be made of. */
export type Chunk = string | Uint8Array;

type Source<T> = AsyncIterable<T> | Iterable<T>;

function iterate<T>(source: Source<T>): AsyncIterator<T> | Iterator<T> {
  const asyncIt = (source as AsyncIterable<T>)[Symbol.asyncIterator];
  return asyncIt ? asyncIt.call(source) : (source as Iterable<T>)[Symbol.iterator]();
}

/**
 * A `ReadableStream` that pulls from an iterator, one chunk at a time, so
 * each chunk goes to the client as soon as it is produced (e.g. tokens from
 * {@link llm.chatStream}).
 */
export function readableFrom<T>(source: Source<T>, encode: (item: T) => Uint8Array | null): ReadableStream<Uint8Array> {
  const it = iterate(source);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const { value, done } = await it.next();
          if (done) {
            controller.close();
            return;
          }
          const bytes = encode(value);
          if (bytes && bytes.length > 0) {
            controller.enqueue(bytes);
            return;
          }
        }
      } catch (e) {
        console.error(`stream failed: ${describe(e)}`);
        controller.error(e);
      }
    },
    async cancel(reason) {
      await it.return?.(reason);
    },
  });
}

/** A response whose body is streamed from strings or bytes as they come. */
export function stream(source: Source<Chunk>, init?: number | ResponseInit): Response {
  const encoder = new TextEncoder();
  const body = readableFrom(source, (chunk) => (typeof chunk === 'string' ? encoder.encode(chunk) : chunk));
  return new Response(body, withDefaults(init, 'text/plain; charset=utf-8'));
}

/** One server-sent event; `data` that is not a string is sent as JSON. */
export interface SseEvent {
  event?: string;
  data: unknown;
  id?: string;
}

/** Encodes one server-sent event (a string is a `data`-only event). */
export function sseEvent(item: SseEvent | string): string {
  const event: SseEvent = typeof item === 'string' ? { data: item } : item;
  let out = '';
  if (event.event) out += `event: ${event.event}\n`;
  if (event.id) out += `id: ${event.id}\n`;
  const data = typeof event.data === 'string' ? event.data : JSON.stringify(event.data);
  for (const line of data.split('\n')) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A `text/event-stream` response, each item sent as one event as soon as it is produced. */
export function sse(source: Source<SseEvent | string>, init?: number | ResponseInit): Response {
  const encoder = new TextEncoder();
  const body = readableFrom(source, (item) => encoder.encode(sseEvent(item)));
  const options = withDefaults(init, 'text/event-stream');
  (options.headers as Headers).set('cache-control', 'no-cache');
  return new Response(body, options);
}

/**
 * What a handler's return value becomes: a `Response` as is, a string as
 * text, bytes as `application/octet-stream`, `null`/`undefined` as 204, and
 * anything else as JSON.
 */
export function toResponse(result: HandlerResult): Response {
  if (result instanceof Response) return result;
  if (result === null || result === undefined) return new Response(null, { status: 204 });
  if (typeof result === 'string') return text(result);
  if (result instanceof Uint8Array || result instanceof ArrayBuffer) {
    return new Response(result as BodyInit, { headers: { 'content-type': 'application/octet-stream' } });
  }
  return json(result);
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.stack ? `${e.name}: ${e.message}\n${e.stack}` : `${e.name}: ${e.message}`;
  return String(e);
}

/** The status an uncaught platform error gets. */
function statusOf(e: WaferError): number {
  switch (e.code) {
    case 'invalid-params':
    case 'invalid-argument':
    case 'shape-mismatch':
    case 'unsupported-dtype':
      return 400;
    case 'over-quota':
      return 429;
    case 'overloaded':
    case 'out-of-memory':
      return 503;
    case 'timeout':
      return 504;
    default:
      return 500;
  }
}

/**
 * The response for an error a handler threw: an {@link HttpError} as its
 * status; a platform error with a status that fits its code; anything else
 * a 500 whose detail goes to the function's logs (`wafer logs NAME`), not
 * to the client.
 */
export function errorToResponse(e: unknown): Response {
  if (e instanceof HttpError) return errorResponse(e.status, e.code, e.message, e.headers);
  if (e instanceof TensorError || e instanceof LlmError || e instanceof ConfigError) {
    console.error(`${e.name} (${e.code}): ${e.message}`);
    return errorResponse(statusOf(e), e.code.replaceAll('-', '_'), e.message);
  }
  console.error(`unhandled error: ${describe(e)}`);
  return errorResponse(500, 'internal', 'the function failed; its logs have the details');
}

/** Runs a handler for one request, converting its result and its errors. */
export async function respond(handler: Handler | HandlerObject, request: Request): Promise<Response> {
  try {
    if (typeof handler === 'function') return toResponse(await handler(request, new Context(request)));
    return await handler.handle(request);
  } catch (e) {
    return errorToResponse(e);
  }
}

type FetchEvent = { request: Request; respondWith(response: Response | Promise<Response>): void };

/**
 * Serves HTTP requests with `handler` (a function or a {@link Router}).
 * Call it once, at the top level of the entry module.
 */
export function serve(handler: Handler | HandlerObject): void {
  const target = globalThis as unknown as {
    addEventListener?: (type: 'fetch', listener: (event: FetchEvent) => void) => void;
  };
  if (typeof target.addEventListener !== 'function') {
    throw new Error('serve() needs the fetch event: build the function with wafer-build (componentize-js)');
  }
  target.addEventListener('fetch', (event) => event.respondWith(respond(handler, event.request)));
}

/** HTTP methods a route can name; `*` is any. */
export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS' | '*';

interface Route {
  method: Method;
  pattern: string;
  segments: string[];
  handler: Handler;
}

function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

/** Matches `segments` against a route's; the parameters, or null. */
function matchSegments(route: string[], path: string[]): Record<string, string> | null {
  const params: Record<string, string> = {};
  for (let i = 0; i < route.length; i++) {
    const want = route[i] as string;
    if (want === '*') {
      params['*'] = path.slice(i).map(decodeSegment).join('/');
      return params;
    }
    const got = path[i];
    if (got === undefined) return null;
    if (want.startsWith(':')) params[want.slice(1)] = decodeSegment(got);
    else if (want !== got) return null;
  }
  return route.length === path.length ? params : null;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * Routes requests by method and path. Patterns are whole segments:
 * `/users/:id` captures `id`, a final `*` captures the rest of the path
 * (`ctx.params['*']`), and a trailing slash does not matter. Routes are
 * tried in the order they were added. A path that matches with another
 * method answers 405 with `Allow`; no match answers 404 (or the
 * {@link notFound} handler).
 */
export class Router implements HandlerObject {
  private readonly routes: Route[] = [];
  private readonly base: string[];
  private fallback: Handler | null = null;

  /** `base` is prefixed to every pattern, e.g. the function's route `/api`. */
  constructor(options: { base?: string } = {}) {
    this.base = splitPath(options.base ?? '');
  }

  /** Adds a route for `method` (`*` for any). */
  on(method: Method, pattern: string, handler: Handler): this {
    const segments = [...this.base, ...splitPath(pattern)];
    const star = segments.indexOf('*');
    if (star !== -1 && star !== segments.length - 1) throw new Error(`route ${pattern}: '*' must be the last segment`);
    this.routes.push({ method, pattern, segments, handler });
    return this;
  }

  get(pattern: string, handler: Handler): this {
    return this.on('GET', pattern, handler);
  }
  post(pattern: string, handler: Handler): this {
    return this.on('POST', pattern, handler);
  }
  put(pattern: string, handler: Handler): this {
    return this.on('PUT', pattern, handler);
  }
  patch(pattern: string, handler: Handler): this {
    return this.on('PATCH', pattern, handler);
  }
  delete(pattern: string, handler: Handler): this {
    return this.on('DELETE', pattern, handler);
  }
  /** Any method. */
  all(pattern: string, handler: Handler): this {
    return this.on('*', pattern, handler);
  }

  /** The handler for requests no route matches (default: a JSON 404). */
  notFound(handler: Handler): this {
    this.fallback = handler;
    return this;
  }

  /** Answers one request. Never throws: errors become responses. */
  async handle(request: Request, ctx: Context = new Context(request)): Promise<Response> {
    try {
      const path = splitPath(ctx.path);
      const method = request.method.toUpperCase();
      const allowed = new Set<string>();
      for (const route of this.routes) {
        const params = matchSegments(route.segments, path);
        if (!params) continue;
        const methodMatches =
          route.method === '*' || route.method === method || (method === 'HEAD' && route.method === 'GET');
        if (!methodMatches) {
          allowed.add(route.method);
          continue;
        }
        ctx.params = params;
        return toResponse(await route.handler(request, ctx));
      }
      if (allowed.size > 0) {
        const allow = [...allowed].sort().join(', ');
        return errorResponse(405, 'method_not_allowed', `${method} is not allowed here; use ${allow}`, { allow });
      }
      if (this.fallback) return toResponse(await this.fallback(request, ctx));
      return errorResponse(404, 'not_found', `nothing here: ${method} ${ctx.path}`);
    } catch (e) {
      return errorToResponse(e);
    }
  }
}
