#!/usr/bin/env node
// wafer-build [DIR] [--entry FILE] [--out FILE] [--force] [--json]
// Bundles a JS/TS Wafer function and componentizes it (see lib/build.mjs).
import { build, BuildError } from '../lib/build.mjs';

const usage = `usage: wafer-build [DIR] [--entry FILE] [--out FILE] [--force] [--json]

Builds the function in DIR (default .) into a WebAssembly component:
  --entry FILE   the entry module (default: package.json "wafer.entry", else src/index.ts or src/index.js)
  --out FILE     where to write the component (default: \`component\` in wafer.toml, else dist/NAME.wasm)
  --force        componentize even if nothing changed since the last build
  --json         print the result as JSON ({"component", "imports", "bytes", "cached"})

WAFER_JS_CACHE=DIR keeps every component built by content hash in DIR and reuses it.`;

const options = {};
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  const value = () => {
    const v = args[++i];
    if (v === undefined) fail(`${arg} needs a value\n\n${usage}`);
    return v;
  };
  if (arg === '--entry') options.entry = value();
  else if (arg === '--out') options.out = value();
  else if (arg === '--force') options.force = true;
  else if (arg === '--json') options.json = true;
  else if (arg === '-h' || arg === '--help') {
    console.log(usage);
    process.exit(0);
  } else if (arg.startsWith('-')) fail(`unknown option ${arg}\n\n${usage}`);
  else if (options.dir === undefined) options.dir = arg;
  else fail(`one folder at a time\n\n${usage}`);
}

function fail(message) {
  console.error(`wafer-build: ${message}`);
  process.exit(1);
}

try {
  const started = Date.now();
  const result = await build(options);
  if (options.json) {
    console.log(JSON.stringify(result));
    process.exit(0);
  }
  const mb = (result.bytes / 1e6).toFixed(1);
  const how = result.cached ? 'unchanged' : `built in ${((Date.now() - started) / 1000).toFixed(1)} s`;
  console.log(`${result.component} (${mb} MB, ${how}; imports: ${result.imports.join(', ') || 'none'})`);
} catch (e) {
  if (e instanceof BuildError) fail(e.message);
  throw e;
}
