/**
 * The function's `[config]` table from its wafer.toml, through
 * `wasi:config/store`.
 *
 * ```ts
 * import { config } from '@wafer/sdk';
 * const greeting = config.get('GREETING') ?? 'Hello';
 * ```
 */
import * as store from 'wasi:config/store@0.2.0-rc.1';
import { ConfigError, hostCall } from './errors.js';

/** The value of `key`, or `undefined` when the manifest does not set it. */
export function get(key: string): string | undefined {
  return hostCall(ConfigError, () => store.get(key)) ?? undefined;
}

/** Every key and value. */
export function getAll(): Record<string, string> {
  return Object.fromEntries(hostCall(ConfigError, () => store.getAll()));
}
