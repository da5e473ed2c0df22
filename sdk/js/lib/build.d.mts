/** The SDK's own folder. */
export const SDK_DIR: string;
/** The WASI 0.2 release the JS engine exports `wasi:http/incoming-handler` at. */
export const STARLINGMONKEY_WASI_VERSION: string;
/** A build mistake with a message that says what to fix. */
export class BuildError extends Error {}
export interface BuildOptions {
  /** The function folder (default: the current directory). */
  dir?: string;
  /** The entry module, relative to `dir`. */
  entry?: string;
  /** The component to write, relative to `dir`. */
  out?: string;
  /** Componentize even when nothing changed. */
  force?: boolean;
  /** A folder of components by content hash shared between builds (default: $WAFER_JS_CACHE). */
  cacheDir?: string;
  log?: (line: string) => void;
}
export interface BuildResult {
  component: string;
  imports: string[];
  bytes: number;
  cached: boolean;
}
/** Bundles, picks the world from the imports used, and componentizes. */
export function build(options?: BuildOptions): Promise<BuildResult>;
/** The WIT world for a bundle with these external imports. */
export function worldFor(imports: string[], interfaces: Set<string>, packageName: string, entry: string): string;
