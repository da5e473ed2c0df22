// The build of a JS/TS function into a Wafer component:
//
//   1. esbuild bundles the entry (TypeScript is fine) with the SDK into one
//      ES module; `wafer:ai/*` and `wasi:*` imports stay external.
//   2. The WIT world is made from what the bundle imports: the engine's
//      `wasi:http/incoming-handler` export plus only the interfaces the code
//      uses, so a function that never calls the LLM does not import it (a
//      node refuses imports it does not provide).
//   3. componentize-js (StarlingMonkey, pre-initialised with Wizer) turns the
//      bundle into a component.
//
// Nothing is downloaded: everything comes from `npm install`.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The SDK's own folder (the package root). */
export const SDK_DIR = dirname(dirname(fileURLToPath(import.meta.url)));

/**
 * The WASI 0.2 release StarlingMonkey (inside componentize-js 0.23) exports
 * `wasi:http/incoming-handler` at. The world must name this version; the
 * node links any 0.2.x.
 */
export const STARLINGMONKEY_WASI_VERSION = '0.2.10';

/** The world every function is componentized against (generated per build). */
const WORLD = 'wafer-function';

/** Entry files tried in order when neither the caller nor package.json names one. */
const ENTRY_CANDIDATES = ['src/index.ts', 'src/index.js', 'src/index.mts', 'src/index.mjs', 'index.ts', 'index.js'];

/** A build mistake with a message that says what to fix. */
export class BuildError extends Error {}

/**
 * Builds the function in `dir` into a component.
 *
 * @param {object} [options]
 * @param {string} [options.dir]    the function folder (default: the current directory)
 * @param {string} [options.entry]  the entry module, relative to `dir`
 * @param {string} [options.out]    the component to write, relative to `dir`
 *                                  (default: `component` in wafer.toml, else dist/NAME.wasm)
 * @param {boolean} [options.force] componentize even when nothing changed
 * @param {string} [options.cacheDir] a folder of components by content hash, shared
 *                                    between builds (default: $WAFER_JS_CACHE, else none)
 * @param {(line: string) => void} [options.log]
 * @returns {Promise<{component: string, imports: string[], bytes: number, cached: boolean}>}
 */
export async function build(options = {}) {
  const dir = resolve(options.dir ?? '.');
  const log = options.log ?? ((line) => console.error(line));
  if (!existsSync(dir)) throw new BuildError(`${dir} does not exist`);
  const manifest = await readManifest(dir);
  const pkg = await readJson(join(dir, 'package.json'));
  const name = manifest.name ?? pkg?.name?.replace(/^@.*\//, '') ?? 'function';
  const entry = await findEntry(dir, options.entry ?? pkg?.wafer?.entry);
  const out = resolve(dir, options.out ?? manifest.component ?? join('dist', `${name}.wasm`));
  const work = join(dir, '.wafer-build');
  await mkdir(work, { recursive: true });

  const bundle = join(work, 'bundle.js');
  const imports = await bundleEntry(dir, entry, bundle);
  const { interfaces, packageName } = await sdkInterfaces();
  const world = worldFor(imports, interfaces, packageName, relative(dir, entry));

  const { version } = await readJson(join(await componentizeDir(), 'package.json'));
  const stamp = createHash('sha256')
    .update(await readFile(bundle))
    .update(world)
    .update(`componentize-js ${version}`)
    .digest('hex');
  const stampFile = join(work, 'stamp');
  // The same bundle, world and componentize-js give the same component.
  const cacheDir = options.cacheDir ?? process.env.WAFER_JS_CACHE;
  const cached = cacheDir ? join(resolve(cacheDir), `${stamp}.wasm`) : null;
  if (!options.force && existsSync(out) && (await readFile(stampFile, 'utf8').catch(() => '')) === `${stamp} ${out}`) {
    const component = await readFile(out);
    if (cached && !existsSync(cached)) await saveAtomically(cached, component);
    return { component: out, imports, bytes: component.length, cached: true };
  }
  if (!options.force && cached && existsSync(cached)) {
    await mkdir(dirname(out), { recursive: true });
    await cp(cached, out);
    await writeFile(stampFile, `${stamp} ${out}`);
    return { component: out, imports, bytes: (await readFile(out)).length, cached: true };
  }

  // componentize-js reads the WIT and the source from under the current
  // directory (it maps it into the Wizer sandbox), so both live in `work`.
  const wit = join(work, 'wit');
  await rm(wit, { recursive: true, force: true });
  await cp(join(SDK_DIR, 'wit'), wit, { recursive: true });
  await writeFile(join(wit, 'function.wit'), world);

  log(`componentizing ${relative(process.cwd(), entry) || entry} with componentize-js ${version} (imports: ${imports.join(', ') || 'none'})`);
  const { componentize } = await import('@bytecodealliance/componentize-js');
  const cwd = process.cwd();
  let component;
  try {
    process.chdir(work);
    ({ component } = await componentize({ sourcePath: 'bundle.js', witPath: 'wit', worldName: WORLD }));
  } catch (e) {
    throw new BuildError(`componentize-js failed on ${relative(cwd, entry)}:\n${e?.message ?? e}`);
  } finally {
    process.chdir(cwd);
  }
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, component);
  await writeFile(stampFile, `${stamp} ${out}`);
  if (cached) await saveAtomically(cached, component);
  return { component: out, imports, bytes: component.length, cached: false };
}

/** Writes then renames, so a concurrent build never reads half a file. */
async function saveAtomically(path, bytes) {
  await mkdir(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  await writeFile(partial, bytes);
  await rename(partial, path);
}

/** The `name` and `component` of a function's wafer.toml, if it has one. */
async function readManifest(dir) {
  const text = await readFile(join(dir, 'wafer.toml'), 'utf8').catch(() => null);
  if (text === null) return {};
  const value = (key) => {
    // Top-level keys only: stop at the first table header.
    const top = text.split(/^\s*\[/m)[0];
    const m = top.match(new RegExp(`^\\s*${key}\\s*=\\s*"([^"]*)"`, 'm'));
    return m ? m[1] : undefined;
  };
  return { name: value('name'), component: value('component') };
}

async function readJson(path) {
  const text = await readFile(path, 'utf8').catch(() => null);
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BuildError(`${path} is not valid JSON: ${e.message}`);
  }
}

async function findEntry(dir, entry) {
  if (entry) {
    const path = isAbsolute(entry) ? entry : join(dir, entry);
    if (!existsSync(path)) throw new BuildError(`the entry module ${path} does not exist`);
    return path;
  }
  for (const candidate of ENTRY_CANDIDATES) {
    if (existsSync(join(dir, candidate))) return join(dir, candidate);
  }
  throw new BuildError(
    `no entry module in ${dir}: create one of ${ENTRY_CANDIDATES.join(', ')}, or set "wafer": {"entry": "..."} in package.json`,
  );
}

async function componentizeDir() {
  try {
    // The package's exports name only its module; its package.json is two levels up.
    return dirname(dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/componentize-js'))));
  } catch {
    throw new BuildError(
      `@bytecodealliance/componentize-js is not installed next to the SDK: run \`npm install\` in ${SDK_DIR}`,
    );
  }
}

/** Bundles `entry` into `outfile`; returns the external imports it keeps. */
async function bundleEntry(dir, entry, outfile) {
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    throw new BuildError(`esbuild is not installed next to the SDK: run \`npm install\` in ${SDK_DIR}`);
  }
  let result;
  try {
    result = await esbuild.build({
      absWorkingDir: dir,
      entryPoints: [entry],
      outfile,
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      target: 'es2022',
      // The function always gets the SDK that builds it, wherever it sits.
      alias: { '@wafer/sdk': join(SDK_DIR, 'src/index.ts') },
      external: ['wafer:*', 'wasi:*'],
      metafile: true,
      legalComments: 'none',
      logLevel: 'silent',
    });
  } catch (e) {
    const messages = (e.errors ?? []).map((m) =>
      m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ${m.text}` : m.text,
    );
    throw new BuildError(`bundling ${relative(dir, entry)} failed:\n  ${messages.join('\n  ') || e.message}`);
  }
  const output = Object.values(result.metafile.outputs)[0];
  const imports = new Set();
  for (const i of output?.imports ?? []) {
    if (i.external) imports.add(i.path);
  }
  return [...imports].sort();
}

/** The interfaces of the SDK's `wafer:ai` package and the package name. */
async function sdkInterfaces() {
  const dir = join(SDK_DIR, 'wit');
  const interfaces = new Set();
  let packageName;
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.wit')) continue;
    const text = await readFile(join(dir, name), 'utf8');
    packageName ??= text.match(/^package\s+([^;]+);/m)?.[1];
    for (const m of text.matchAll(/^interface\s+([a-z0-9-]+)\s*\{/gm)) interfaces.add(m[1]);
  }
  if (!packageName) throw new BuildError(`${dir} has no package line; reinstall @wafer/sdk`);
  return { interfaces, packageName };
}

/**
 * The world for a bundle with these external imports.
 *
 * @param {string[]} imports
 * @param {Set<string>} interfaces
 * @param {string} packageName e.g. `wafer:ai@0.1.0`
 * @param {string} entry for the header comment
 */
export function worldFor(imports, interfaces, packageName, entry) {
  const [pkg, version] = packageName.split('@');
  const lines = [];
  for (const spec of imports) {
    const m = spec.match(/^([a-z0-9-]+:[a-z0-9-]+)\/([a-z0-9-]+)(?:@(.+))?$/);
    if (!m) throw new BuildError(`cannot import ${JSON.stringify(spec)}: expected namespace:package/interface@version`);
    const [, importPkg, iface, importVersion] = m;
    if (importPkg === pkg) {
      if (!interfaces.has(iface)) {
        throw new BuildError(`${spec}: ${pkg} has no interface ${iface} (it has ${[...interfaces].sort().join(', ')})`);
      }
      if (importVersion !== version) {
        throw new BuildError(`${spec}: this SDK provides ${pkg}@${version}; import ${pkg}/${iface}@${version}`);
      }
      lines.push(`  import ${iface};`);
    } else if (importPkg.startsWith('wasi:')) {
      if (importPkg === 'wasi:http' && iface === 'incoming-handler') {
        throw new BuildError(`${spec} is an export, not an import: handle requests with the SDK's serve()`);
      }
      lines.push(`  import ${spec};`);
    } else {
      throw new BuildError(`cannot import ${spec}: a function may import ${pkg} and WASI interfaces only`);
    }
  }
  return [
    // No `package` line: the folder's package.wit has it (and only one file may).
    `// Generated by @wafer/sdk for ${entry}: the engine's HTTP export and the imports the code uses.`,
    `world ${WORLD} {`,
    `  export wasi:http/incoming-handler@${STARLINGMONKEY_WASI_VERSION};`,
    ...lines,
    '}',
    '',
  ].join('\n');
}
