// Run with: wafer build examples/js/tensor-mlp && wafer deploy examples/js/tensor-mlp && curl -d '{"inputs":[[5.1,3.5,1.4,0.2]]}' localhost:8080/mlp-js
// An Iris classifier whose forward pass runs on the platform's tensor
// devices (wafer:ai/tensor): the JavaScript twin of examples/tensor-mlp.
//
// POST /mlp-js with {"inputs": [[sepal length, sepal width, petal length,
// petal width], ...]} (cm) answers {"classes", "probabilities", "engine",
// "device"}. ?engine=wasm computes the same MLP in plain JS instead.
// GET /mlp-js prints usage.
import { HttpError, TensorError, errorResponse, json, serve, text } from '@wafer/sdk';
import { FEATURES, Mlp, argmax } from './model.js';

/** The most rows one request may classify: keeps the tensors and the response small. */
const MAX_ROWS = 1024;

const USAGE = `Iris classifier (4 -> 16 -> 3 MLP) running on Wafer's tensor devices, in JavaScript.

POST /mlp-js with {"inputs": [[sepal_length, sepal_width, petal_length, petal_width], ...]} (cm, at most ${MAX_ROWS} rows)
  -> {"classes": [...], "probabilities": [[setosa, versicolor, virginica], ...], "engine": "host", "device": "cpu:0"}
  ?engine=wasm computes the same MLP inside the component instead of on host tensors.
  The x-forward-ns header is the forward pass's time inside the function.

curl -d '{"inputs":[[5.1,3.5,1.4,0.2]]}' localhost:8080/mlp-js
`;

const mlp = Mlp.shipped();

function parseInputs(body) {
  const inputs = body?.inputs;
  const shape = `expected {"inputs": [[${FEATURES} numbers], ...]}`;
  if (!Array.isArray(inputs)) throw new HttpError(400, 'bad_request', shape);
  if (inputs.length === 0 || inputs.length > MAX_ROWS) {
    throw new HttpError(400, 'bad_request', `inputs must have 1 to ${MAX_ROWS} rows, not ${inputs.length}`);
  }
  for (const row of inputs) {
    if (!Array.isArray(row) || row.length !== FEATURES) throw new HttpError(400, 'bad_request', shape);
    if (!row.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw new HttpError(400, 'bad_request', 'inputs must be finite numbers');
    }
  }
  return inputs;
}

async function classify(req) {
  const engine = new URL(req.url).searchParams.get('engine') ?? 'host';
  if (engine !== 'host' && engine !== 'wasm') {
    throw new HttpError(400, 'bad_request', `engine must be host or wasm, not ${JSON.stringify(engine)}`);
  }
  let body;
  try {
    body = await req.json();
  } catch (e) {
    throw new HttpError(400, 'bad_request', `expected {"inputs": [[4 numbers], ...]}: ${e.message}`);
  }
  const inputs = parseInputs(body);

  const start = performance.now();
  let probabilities;
  let device;
  if (engine === 'host') {
    try {
      ({ probabilities, device } = mlp.forwardTensor(inputs));
    } catch (e) {
      if (!(e instanceof TensorError)) throw e;
      // The inputs were checked, so a tensor error is ours or the platform's:
      // log the detail, send a stable code.
      console.error(`tensor-mlp-js: forward pass failed: ${e.code}: ${e.message}`);
      if (e.code === 'over-quota' || e.code === 'out-of-memory') {
        return errorResponse(503, 'device_busy', 'the tensor device is out of capacity; try again later');
      }
      return errorResponse(500, 'forward_failed', 'the forward pass failed');
    }
  } else {
    probabilities = mlp.forwardReference(inputs);
  }
  const forwardNs = Math.round((performance.now() - start) * 1e6);
  const classes = probabilities.map((p) => mlp.classes[argmax(p)] ?? '?');
  const out = { classes, probabilities, engine, ...(device ? { device } : {}) };
  return json(out, { headers: { 'x-forward-ns': String(forwardNs) } });
}

serve(async (req) => {
  switch (req.method) {
    case 'GET':
      return text(USAGE);
    case 'POST':
      return classify(req);
    default:
      return text('use GET for usage or POST to classify\n', { status: 405, headers: { allow: 'GET, POST' } });
  }
});
