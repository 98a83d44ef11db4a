/**
 * The vmm config file, and how it merges with the command line.
 *
 * Finding it: without `--config`, vmm looks in the working directory, then each parent, for the
 * first of CONFIG_SEARCH_PLACES (`package.json` counts only with a `vmm` key). The walk stops
 * after the project root (the first directory holding a package.json), the user's home directory
 * or the filesystem root, whichever comes first, so a file in a parent project or in / is never
 * picked up by surprise. (cosmiconfig 9's own strategies either look only in one directory
 * ('none'), walk to the filesystem root when there is no package.json ('project'), or add the
 * global ~/.config/vmm ('global'); we walk ourselves, one 'none' search per directory.)
 * `--config FILE` loads exactly that file.
 *
 * The file holds VmConfig fields, with three conveniences:
 *   - `memory` may be a size string ("512M", "2G"; a plain number is bytes, as in VmConfig);
 *   - `plugins` is a list of names or `{ name, options }`, or a map `{ "virtio-net": {…} }`
 *     (a value of `true` or null means no options, `false` leaves the plugin out);
 *   - a top-level section named after a first-party plugin (`"control": { "socket": "…" }`)
 *     enables that plugin with those options, after the `plugins` list (or gives the options of
 *     the entry that names it there).
 * Relative paths (kernel, initrd, plugin files and packages) resolve against the file's directory.
 *
 * Merging: command-line values override the file's; `--plugin` entries come after the file's
 * plugins, except that a `--plugin` with the same name as a file plugin takes its place (and its
 * options win; they are not merged).
 */
import { access } from 'fs/promises';
import * as os from 'os';
import * as path from 'path';
import { cosmiconfig } from 'cosmiconfig';
import type { PluginSpec, VmConfig } from '../plugin-api';
import { CONFIG_KEYS, checkConfigFields, describe, isPlainObject, validateConfig } from '../core/config';
import { ConfigError } from '../core/errors';
import { firstPartyPluginNames, type PluginRequest } from '../core/plugins/loader';

export const CONFIG_SEARCH_PLACES: readonly string[] = Object.freeze([
  'package.json',
  '.vmmrc',
  '.vmmrc.json',
  '.vmmrc.yaml',
  '.vmmrc.yml',
  '.vmmrc.js',
  '.vmmrc.cjs',
  'vmm.config.js',
  'vmm.config.cjs',
  'vmm.config.json',
  'vmm.config.yaml',
  'vmm.config.yml',
]);

/** Part of a configuration, with the plugin requests that go with it. */
export interface PartialConfig {
  config: Partial<VmConfig>;
  plugins: PluginRequest[];
}

export interface FileConfig extends PartialConfig {
  /** Absolute path of the file read. */
  filepath: string;
}

export interface ConfigFileOptions {
  /** Plugin names that may have a top-level section; defaults to the first-party plugins. */
  pluginSections?: readonly string[];
  /** Where the upward search gives up at the latest; defaults to the user's home directory. */
  stopDir?: string;
}

function explorer() {
  return cosmiconfig('vmm', {
    searchPlaces: [...CONFIG_SEARCH_PLACES],
    searchStrategy: 'none',
    // `.vmmrc` without an extension is YAML (JSON is valid YAML), as cosmiconfig does by default.
  });
}

/** Find the config file for `from` (see the module comment); null when there is none. */
export async function searchConfigFile(
  from: string = process.cwd(),
  options: ConfigFileOptions = {},
): Promise<FileConfig | null> {
  const search = explorer();
  const stopDir = path.resolve(options.stopDir ?? os.homedir());
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const found = await readOr(() => search.search(dir), dir);
    if (found) return toFileConfig(found.config, found.filepath, options);
    const parent = path.dirname(dir);
    if (dir === stopDir || parent === dir || (await exists(path.join(dir, 'package.json')))) return null;
  }
}

/** Load exactly `file` (`--config FILE`), relative to the working directory. */
export async function loadConfigFile(file: string, options: ConfigFileOptions = {}): Promise<FileConfig> {
  const filepath = path.resolve(file);
  const found = await readOr(() => explorer().load(filepath), filepath);
  return toFileConfig(found?.config, filepath, options);
}

/**
 * Check a config file's contents and turn them into config fields plus plugin requests. Exposed
 * so the rules can be tested without files.
 */
export function toFileConfig(raw: unknown, filepath: string, options: ConfigFileOptions = {}): FileConfig {
  const source = displayPath(filepath);
  const sections = options.pluginSections ?? firstPartyPluginNames();
  const baseDir = path.dirname(filepath);
  if (raw === undefined || raw === null) return { filepath, config: {}, plugins: [] };
  if (!isPlainObject(raw)) {
    throw new ConfigError(`${source}: the configuration must be an object of settings; got ${describe(raw)}`);
  }

  const fields: Record<string, unknown> = {};
  const sectionSpecs: PluginSpec[] = [];
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if ((CONFIG_KEYS as string[]).includes(key)) fields[key] = value;
    else if (sections.includes(key)) {
      const opts = pluginOptions(value, `${source}: section '${key}'`);
      if (opts) sectionSpecs.push({ name: key, options: opts });
    } else unknown.push(key);
  }
  if (unknown.length > 0) {
    const known = CONFIG_KEYS.join(', ') + (sections.length ? `, and the plugin sections ${sections.join(', ')}` : '');
    throw new ConfigError(
      `${source}: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')}; ` +
        `the known keys are ${known}`,
    );
  }

  if (fields.plugins !== undefined || sectionSpecs.length > 0) {
    fields.plugins = withSections(pluginList(fields.plugins, source), sectionSpecs, source);
  }
  const config = checkConfigFields(fields, source);
  for (const field of ['kernel', 'initrd'] as const) {
    const value = config[field];
    if (typeof value === 'string') config[field] = path.resolve(baseDir, value);
  }
  const plugins = (config.plugins ?? []).map((spec) => ({ spec, baseDir }));
  return { filepath, config, plugins };
}

/**
 * File first, command line on top (see the module comment), checked as a whole: the complete
 * VmConfig and the plugin requests, in order, for the loader.
 */
export function mergeConfig(
  file: PartialConfig | null,
  cli: PartialConfig,
): { config: VmConfig; plugins: PluginRequest[] } {
  const plugins = [...(file?.plugins ?? [])];
  for (const request of cli.plugins) {
    const i = plugins.findIndex((p) => p.spec.name === request.spec.name);
    if (i >= 0) plugins[i] = request;
    else plugins.push(request);
  }
  const config = validateConfig(
    { ...file?.config, ...cli.config, plugins: plugins.map((p) => p.spec) },
    'configuration',
  );
  return { config, plugins };
}

/** `plugins` in any of its forms, as specs (checked in detail by checkConfigFields). */
function pluginList(value: unknown, source: string): unknown[] {
  if (value === undefined) return [];
  if (Array.isArray(value)) return value.map((entry) => (typeof entry === 'string' ? { name: entry } : entry));
  if (isPlainObject(value)) {
    const specs: PluginSpec[] = [];
    for (const [name, opts] of Object.entries(value)) {
      const options = pluginOptions(opts, `${source}: plugins.${name}`);
      if (options) specs.push({ name, options });
    }
    return specs;
  }
  throw new ConfigError(
    `${source}: plugins must be a list of plugin names or { name, options }, or a map of name to options; ` +
      `got ${describe(value)}`,
  );
}

/** A section's or map entry's options: an object, or true/null for none; false disables. */
function pluginOptions(value: unknown, where: string): Record<string, unknown> | null {
  if (value === false) return null;
  if (value === true || value === null) return {};
  if (isPlainObject(value)) return value;
  throw new ConfigError(`${where} must be an object of plugin options (or true, or false to leave it out); got ${describe(value)}`);
}

function withSections(list: unknown[], sections: PluginSpec[], source: string): unknown[] {
  const out = [...list];
  for (const section of sections) {
    const i = out.findIndex((entry) => isPlainObject(entry) && entry.name === section.name);
    if (i < 0) {
      out.push(section);
      continue;
    }
    const listed = out[i] as Record<string, unknown>;
    if (isPlainObject(listed.options) && Object.keys(listed.options).length > 0) {
      throw new ConfigError(
        `${source}: plugin '${section.name}' gets options both in plugins and in its '${section.name}' section; give them in one place`,
      );
    }
    out[i] = { ...listed, options: section.options };
  }
  return out;
}

/** Read through cosmiconfig, turning its errors into one ConfigError sentence. */
async function readOr<T>(read: () => Promise<T>, file: string): Promise<T> {
  try {
    return await read();
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { filepath?: string };
    const where = displayPath(e.filepath ?? file);
    if (e.code === 'ENOENT' && !e.filepath) throw new ConfigError(`${where}: no such config file`, { cause: err });
    if (e.code === 'EISDIR') throw new ConfigError(`${where}: is a directory, not a config file`, { cause: err });
    // cosmiconfig prefixes "JSON Error in /abs/file:\n"; we name the file ourselves.
    const detail = (e.message ?? String(err))
      .replace(/^(JSON|YAML|TypeScript) Error in [^\n]*:\n/, '')
      .split('\n')[0]
      .replace(/ while parsing '.*$/, '');
    const what = /\.(c?js)$/.test(where) ? 'cannot load' : 'cannot parse';
    throw new ConfigError(`${where}: ${what} the config file: ${detail}`, { cause: err });
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Short when under the working directory ("vmm.config.json"), absolute otherwise. */
function displayPath(file: string): string {
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file;
}
