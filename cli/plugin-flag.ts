/**
 * `--plugin NAME[=JSON]`: a plugin and, optionally, its options as a JSON object, e.g.
 * `--plugin virtio-net='{"tap":"tap0"}'` or `--plugin ./my-plugin.js`.
 *
 * The split is at the first `=` followed by `{`, so a name may itself contain `=` (a path) and the
 * JSON may contain `=` anywhere.
 */
import type { PluginSpec } from '../plugin-api';
import { ConfigError } from '../core/errors';
import { isPlainObject } from '../core/config';

export function parsePluginFlag(value: string): PluginSpec {
  const split = /=\s*[{[]/.exec(value) ?? /=/.exec(value);
  const name = (split ? value.slice(0, split.index) : value).trim();
  if (name === '') {
    throw new ConfigError(`--plugin '${value}': the plugin name is missing (use --plugin NAME or NAME='{...}')`);
  }
  if (!split) return { name, options: {} };

  const json = value.slice(split.index + 1);
  let options: unknown;
  try {
    options = JSON.parse(json);
  } catch (err) {
    throw new ConfigError(`--plugin '${value}': the options for '${name}' are not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(options)) {
    throw new ConfigError(`--plugin '${value}': the options for '${name}' must be a JSON object, like ${name}='{"key":1}'`);
  }
  return { name, options };
}
