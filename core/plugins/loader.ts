/**
 * Turns plugin specs (`virtio-net`, `./my-plugin.js`, `vmm-plugin-x`) into plugin objects.
 *
 * Resolution order, stopping at the first hit:
 *   1. a first-party plugin: `plugins/<name>/` of this package, compiled to
 *      `dist/plugins/<name>/index.js` (names like `virtio-net` only);
 *   2. a file, resolved against `baseDir` (the config file's directory for plugins named in a
 *      config file, the working directory for `--plugin`): names starting with `./`, `../` or
 *      `/`, and names that contain a `/` or end in .js/.cjs/.mjs but are not `@scope/` packages;
 *   3. an npm package, resolved from `baseDir` and then from the working directory, the way
 *      stylelint resolves plugins named in config files (so a project-local install is found even
 *      when vmm is installed globally).
 * Names starting with `./`, `../` or `/` are only ever files. A failure lists every place tried.
 *
 * A plugin with a `schema` has its options checked here (options.ts), so that a bad option in a
 * config file or on the command line is found before anything starts (vmm exits 2), and checked
 * by the same code either way.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { OptionsSchema, PluginSpec, Vmm } from '../../plugin-api';
import { PluginError } from '../errors';
import { describe, isPlainObject } from '../config';
import { checkOptions, OptionsError, SchemaError } from './options';

/** A plugin as the core handles it, whatever its options type. */
export interface AnyPlugin {
  readonly name: string;
  readonly schema?: OptionsSchema;
  apply(vmm: Vmm, options: Record<string, unknown>): void;
}

export interface LoadedPlugin {
  plugin: AnyPlugin;
  /** What the user gave, or `{}` (checked against the plugin's schema when it has one). */
  options: Record<string, unknown>;
  /** Where it came from: "first-party virtio-net", "/abs/path.js", "npm package x (/abs/resolved)". */
  source: string;
  /** What relative option paths resolve against (default: the working directory). */
  baseDir?: string;
}

/** A spec together with the directory its relative names resolve against. */
export interface PluginRequest {
  spec: PluginSpec;
  baseDir: string;
}

// This file runs as dist/core/plugins/loader.js; first-party plugins compile to dist/plugins/.
const FIRST_PARTY_DIR = path.join(__dirname, '..', '..', 'plugins');
const PACKAGE_ROOT = path.join(__dirname, '..', '..', '..');
const FIRST_PARTY_NAME = /^[a-z][a-z0-9-]*$/;
const EXPLICIT_PATH = /^(\.{1,2}(\/|$)|\/)/;
const SCRIPT_EXT = /\.(js|cjs|mjs)$/;

/** The names of the first-party plugins this build ships (those with a compiled index.js). */
export function firstPartyPluginNames(): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(FIRST_PARTY_DIR, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isDirectory() && FIRST_PARTY_NAME.test(e.name) && fs.existsSync(firstPartyEntry(e.name)))
    .map((e) => e.name)
    .sort();
}

/** Resolve, load and check one plugin. Throws PluginError (code ERR_PLUGIN). */
export function loadPlugin(spec: PluginSpec, baseDir: string): LoadedPlugin {
  const { plugin, source } = loadPluginModule(spec.name, baseDir);
  const options = spec.options ?? {};
  if (!isPlainObject(options)) {
    throw new PluginError(`plugin '${spec.name}': options must be an object; got ${describe(options)}`);
  }
  const loaded: LoadedPlugin = { plugin, options, source, baseDir };
  loaded.options = checkPluginOptions(loaded);
  return loaded;
}

/**
 * The options `apply` gets: checked against the plugin's schema (defaults filled in, paths
 * resolved against `baseDir`), or as given without one. Throws a PluginError naming the plugin.
 * Idempotent, so the Vm checks again what the loader checked.
 */
export function checkPluginOptions(loaded: LoadedPlugin): Record<string, unknown> {
  const { plugin, options, source } = loaded;
  if (plugin.schema === undefined) return options;
  try {
    return checkOptions(plugin.schema, options, loaded.baseDir ?? process.cwd());
  } catch (error) {
    if (error instanceof OptionsError) throw new PluginError(`plugin '${plugin.name}' (${source}): ${error.message}`, { cause: error });
    if (error instanceof SchemaError) throw new PluginError(`plugin '${plugin.name}' (${source}) is broken: ${error.message}`, { cause: error });
    throw error;
  }
}

/**
 * Resolve and require a plugin and check that it exports one, without options (`vmm help
 * PLUGIN`). Throws PluginError.
 */
export function loadPluginModule(name: string, baseDir: string): { plugin: AnyPlugin; source: string } {
  const { file, source } = resolvePlugin(name, baseDir);
  let exported: unknown;
  try {
    exported = require(file);
  } catch (err) {
    // The user needs the plugin's name and the cause, not our stack (that is for --verbose).
    throw new PluginError(`failed to load plugin '${name}' (${source}): ${firstLine(err)}`, { cause: err });
  }
  const plugin = pluginFrom(exported);
  if (!plugin) {
    throw new PluginError(
      `plugin '${name}' (${source}) does not export a plugin: expected an object with a ` +
        `string 'name' and an 'apply' function (module.exports or default), found ${describeExport(exported)}`,
    );
  }
  if (plugin.schema !== undefined && (typeof plugin.schema !== 'object' || plugin.schema === null)) {
    throw new PluginError(`plugin '${name}' (${source}) is broken: its 'schema' must be a JSON Schema object; got ${describe(plugin.schema)}`);
  }
  return { plugin, source };
}

/** Load plugins in order; two plugins with the same `name` in one VM are refused. */
export function loadPlugins(requests: readonly PluginRequest[]): LoadedPlugin[] {
  const loaded: LoadedPlugin[] = [];
  for (const { spec, baseDir } of requests) {
    const next = loadPlugin(spec, baseDir);
    const clash = loaded.find((p) => p.plugin.name === next.plugin.name);
    if (clash) {
      throw new PluginError(
        `two plugins are named '${next.plugin.name}': ${clash.source} and ${next.source}; a VM can use each plugin once`,
      );
    }
    loaded.push(next);
  }
  return loaded;
}

/**
 * Where `name` would load from, without loading it: the module file and the `source` shown in
 * messages. Throws PluginError listing every place tried.
 */
export function resolvePlugin(name: string, baseDir: string): { file: string; source: string } {
  const tried: string[] = [];

  if (FIRST_PARTY_NAME.test(name)) {
    const entry = firstPartyEntry(name);
    if (fs.existsSync(entry)) return { file: entry, source: `first-party ${name}` };
    tried.push(`first-party plugin ${path.relative(PACKAGE_ROOT, path.dirname(entry))}`);
  }

  const explicitPath = EXPLICIT_PATH.test(name);
  if (explicitPath || (!name.startsWith('@') && (name.includes('/') || SCRIPT_EXT.test(name)))) {
    const file = path.resolve(baseDir, name);
    const resolved = tryResolve(file);
    if (resolved) return { file: resolved, source: resolved };
    tried.push(`file ${file}`);
  }

  if (!explicitPath) {
    const from = [...new Set([baseDir, process.cwd()])];
    const resolved = tryResolve(name, from);
    if (resolved) return { file: resolved, source: `npm package ${name} (${resolved})` };
    tried.push(`npm package '${name}' from ${from.join(' and ')}`);
  }

  throw new PluginError(`cannot find plugin '${name}': tried ${tried.join(', ')}`);
}

function tryResolve(request: string, paths?: string[]): string | null {
  try {
    return require.resolve(request, paths ? { paths } : undefined);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return null;
    throw new PluginError(`cannot resolve plugin '${request}': ${firstLine(err)}`, { cause: err });
  }
}

function firstPartyEntry(name: string): string {
  return path.join(FIRST_PARTY_DIR, name, 'index.js');
}

function isPlugin(value: unknown): value is AnyPlugin {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as AnyPlugin).name === 'string' &&
    (value as AnyPlugin).name !== '' &&
    typeof (value as AnyPlugin).apply === 'function'
  );
}

/** `module.exports = plugin`, or `export default plugin` compiled to CommonJS or loaded as ESM. */
function pluginFrom(exported: unknown): AnyPlugin | null {
  if (isPlugin(exported)) return exported;
  const fallback = (exported as { default?: unknown } | null | undefined)?.default;
  return isPlugin(fallback) ? fallback : null;
}

function describeExport(exported: unknown): string {
  if (typeof exported === 'function') {
    return `a function${exported.name ? ` '${exported.name}'` : ''} (export an instance, not a class or factory)`;
  }
  if (isPlainObject(exported) || (typeof exported === 'object' && exported !== null)) {
    const keys = Object.keys(exported);
    return keys.length === 0 ? 'an empty object' : `an object with keys ${keys.slice(0, 8).join(', ')}`;
  }
  return describe(exported);
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0];
}
