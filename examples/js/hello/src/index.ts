// Run with: wafer build examples/js/hello && wafer deploy examples/js/hello && curl localhost:8080/hello-js
// A small Wafer function in TypeScript: a greeting, JSON in and out, a
// streamed response, and what an uncaught error looks like.
import { Router, config, json, serve, stream } from '@wafer/sdk';

const app = new Router({ base: '/hello-js' });

// GET /hello-js[/anything]: the greeting (from the manifest's [config]) and the path.
const greet = (req: Request) => {
  const greeting = config.get('GREETING') ?? 'Hello';
  return `${greeting} from Wafer (JavaScript)! path=${new URL(req.url).pathname}\n`;
};
app.get('/', greet);

// POST /hello-js/echo with JSON: the same JSON back, with what was received.
app.post('/echo', async (req, ctx) => {
  const body = await ctx.json<Record<string, unknown>>();
  return json({ received: body, method: req.method, query: Object.fromEntries(ctx.query) });
});

// GET /hello-js/stream?n=5: n lines, each sent as soon as it is made.
app.get('/stream', async function (_req, ctx) {
  const n = Math.min(Number(ctx.query.get('n') ?? 5) || 5, 1000);
  return stream(
    (async function* () {
      for (let i = 0; i < n; i++) {
        yield `line ${i}\n`;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })(),
  );
});

// GET /hello-js/users/:id: a path parameter.
app.get('/users/:id', (_req, ctx) => ({ id: ctx.params.id }));

// GET /hello-js/fail: an uncaught error is a JSON 500; the stack goes to `wafer logs hello-js`.
app.get('/fail', () => {
  throw new Error('this handler fails on purpose');
});

app.get('/*', greet);

serve(app);
