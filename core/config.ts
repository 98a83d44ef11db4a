/**
 * VM configuration: the defaults, size parsing, and the one validator every configuration goes
 * through (config file, command line, API). `validateConfig` checks each field's type and range
 * and throws a ConfigError whose message names where the value came from, the field, why it is
 * wrong and what was given: "vmm.config.json: memory must be at least 4 MiB; got 1 KiB".
 */
import * as os from 'os';
import type { PluginSpec, UnclaimedPolicy, VmConfig } from '../plugin-api';
import { ConfigError } from './errors';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * CPUID features hidden from the guest by default. The KVM on our CI hosts is nested and runs
 * guests under its instruction emulator, which fails on these instructions ("KVM internal
 * error. Suberror: 1 / emulation failure"): `lock cmpxchg16b` (cx16), `xsave`/`xrstor(s)`,
 * `clac`/`stac` (smap), `popcnt`, `movbe`, `rd/wrfsbase` (fsgsbase), `rdrand`, `rdseed`,
 * `invpcid`; smep and pcid are hidden with them because guests that see them take the same
 * unemulated paths. Measured booting Linux there (shared/notes/machine.md).
 *
 * `tsc_deadline_timer` is hidden although the emulator runs it: with it Linux drives its periodic
 * tick through the one-shot deadline timer and, after falling behind, replays every missed tick
 * in a loop (tick_handle_periodic). A tick costs about 2 ms of emulated kernel mode (half the
 * 4 ms period at 250 Hz), so after a burst of interrupts (a ping flood) the guest was found
 * replaying ticks for good. Without it the tick comes from a periodic timer, whose missed ticks
 * simply coalesce.
 *
 * `--no-cpuid-mask` (`cpuidHide: []`) passes everything KVM supports.
 */
export const DEFAULT_CPUID_HIDE: readonly string[] = Object.freeze([
  'cx16',
  'xsave',
  'smap',
  'smep',
  'popcnt',
  'movbe',
  'fsgsbase',
  'rdrand',
  'rdseed',
  'invpcid',
  'pcid',
  'tsc_deadline_timer',
]);

/** What a VM gets for every field nobody set: the built-in demo guest with 64 MiB and 1 vCPU. */
export const DEFAULT_CONFIG: Readonly<VmConfig> = Object.freeze({
  kernel: null,
  initrd: null,
  cmdline: '',
  memory: 64 * MiB,
  cpus: 1,
  cpuidHide: DEFAULT_CPUID_HIDE as string[],
  unclaimedAccess: 'stop' as UnclaimedPolicy,
  plugins: [] as PluginSpec[],
});

/** Smallest guest RAM: room for the boot structures, page tables and a small kernel. */
export const VMM_MIN_MEMORY = 4 * MiB;
/** Largest guest RAM vmm accepts, whatever the host has (a local choice, not a KVM limit). */
export const VMM_MAX_MEMORY = 64 * GiB;
/** Guest RAM is mapped in whole pages. */
export const VMM_MEMORY_ALIGN = 4 * KiB;
/** Most vCPUs vmm accepts (a local choice: each is a worker thread). */
export const VMM_MAX_CPUS = 64;

const UNCLAIMED_POLICIES: readonly UnclaimedPolicy[] = ['stop', 'ignore'];

/** The keys a configuration may have, in VmConfig order (shown when a key is unknown). */
export const CONFIG_KEYS: readonly (keyof VmConfig)[] = Object.freeze([
  'kernel',
  'initrd',
  'cmdline',
  'memory',
  'cpus',
  'cpuidHide',
  'unclaimedAccess',
  'plugins',
]);

/** The most guest RAM this host allows: its total RAM, capped at VMM_MAX_MEMORY. */
export function maxMemory(): number {
  return Math.min(os.totalmem(), VMM_MAX_MEMORY);
}

const SIZE_UNITS: Record<string, number> = { '': MiB, b: 1, k: KiB, m: MiB, g: GiB, t: 1024 * GiB };

/**
 * Parse a memory size into bytes. A plain number means MiB (`512` = 512 MiB, as with QEMU's
 * `-m`); suffixes K, M, G, T (binary: 1K = 1024 bytes), optionally followed by `iB` or `B`, in
 * any case (`512M`, `1G`, `64MiB`, `1.5GiB`); `B` alone means bytes (`4194304B`). Throws a
 * RangeError with a plain sentence when the text is not a size or is not a whole number of bytes.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*$/i.exec(text);
  if (!match) {
    throw new RangeError(`'${text}' is not a size (a number of MiB, or a number with K, M, G or T)`);
  }
  const unit = (match[2] ?? match[3] ?? '').toLowerCase();
  const bytes = Number(match[1]) * SIZE_UNITS[unit];
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`'${text}' is not a whole number of bytes`);
  }
  return bytes;
}

/**
 * Bytes for people: exact in the largest unit that divides them ("64 MiB", "100 TiB"), else one
 * decimal of the largest unit that fits, rounded down ("23.5 GiB") so a limit shown is never
 * above the real one.
 */
export function formatSize(bytes: number): string {
  const units: [number, string][] = [
    [1024 * GiB, 'TiB'],
    [GiB, 'GiB'],
    [MiB, 'MiB'],
    [KiB, 'KiB'],
  ];
  for (const [size, name] of units) {
    if (bytes < size) continue;
    if (bytes % size === 0) return `${bytes / size} ${name}`;
    return `${(Math.floor((bytes / size) * 10) / 10).toFixed(1)} ${name}`;
  }
  return `${bytes} B`;
}

/** How to name fields in messages; the command line names them after their flags. */
export interface ValidateOptions {
  /** e.g. `memory` → `--memory`. Defaults to the field's own name. */
  fieldLabel?: (field: keyof VmConfig) => string;
}

/**
 * Check the fields that are present in `input` (a VmConfig, or part of one as read from a config
 * file or flags) and return them normalised: `memory` may also be a size string (see parseSize),
 * plugin options default to `{}`. Missing fields stay missing. `source` names where the input
 * came from ("vmm.config.json") and starts every error message; '' leaves it out (the command
 * line, whose field labels are flags, "--memory must be …").
 */
export function checkConfigFields(
  input: unknown,
  source: string,
  options: ValidateOptions = {},
): Partial<VmConfig> {
  const label = options.fieldLabel ?? ((field: keyof VmConfig) => field);
  if (!isPlainObject(input)) {
    throw new ConfigError(`${at(source)}the configuration must be an object; got ${describe(input)}`);
  }
  const unknown = Object.keys(input).filter((key) => !(CONFIG_KEYS as string[]).includes(key));
  if (unknown.length > 0) {
    const keys = unknown.map((key) => `'${key}'`).join(', ');
    throw new ConfigError(
      `${at(source)}unknown key${unknown.length > 1 ? 's' : ''} ${keys}; the known keys are ` +
        `${CONFIG_KEYS.join(', ')}`,
    );
  }

  const fail = (field: keyof VmConfig, problem: string): never => {
    throw new ConfigError(`${at(source)}${label(field)} ${problem}`);
  };
  const out: Partial<VmConfig> = {};
  const has = (field: keyof VmConfig) => input[field] !== undefined;

  for (const field of ['kernel', 'initrd'] as const) {
    if (!has(field)) continue;
    const value = input[field];
    if (value !== null && (typeof value !== 'string' || value === '')) {
      fail(field, `must be a file path or null; got ${describe(value)}`);
    }
    out[field] = value as string | null;
  }

  if (has('cmdline')) {
    if (typeof input.cmdline !== 'string') fail('cmdline', `must be a string; got ${describe(input.cmdline)}`);
    out.cmdline = input.cmdline as string;
  }

  if (has('memory')) out.memory = checkMemory(input.memory, (problem) => fail('memory', problem));

  if (has('cpus')) {
    const cpus = input.cpus;
    if (typeof cpus !== 'number' || !Number.isInteger(cpus) || cpus < 1 || cpus > VMM_MAX_CPUS) {
      fail('cpus', `must be a whole number from 1 to ${VMM_MAX_CPUS}; got ${describe(cpus)}`);
    }
    out.cpus = cpus as number;
  }

  if (has('cpuidHide')) {
    const hide = input.cpuidHide;
    if (!Array.isArray(hide) || !hide.every((name) => typeof name === 'string' && /^[a-z0-9_.]+$/i.test(name))) {
      fail('cpuidHide', `must be a list of CPUID feature names (e.g. ["xsave", "smap"]); got ${describe(hide)}`);
    }
    out.cpuidHide = (hide as string[]).map((name) => name.toLowerCase());
  }

  if (has('unclaimedAccess')) {
    const policy = input.unclaimedAccess;
    if (!UNCLAIMED_POLICIES.includes(policy as UnclaimedPolicy)) {
      fail('unclaimedAccess', `must be ${UNCLAIMED_POLICIES.map((p) => `'${p}'`).join(' or ')}; got ${describe(policy)}`);
    }
    out.unclaimedAccess = policy as UnclaimedPolicy;
  }

  if (has('plugins')) out.plugins = checkPluginSpecs(input.plugins, (problem) => fail('plugins', problem));

  return out;
}

/** Check a complete or partial configuration and return a complete one (defaults filled in). */
export function validateConfig(input: unknown, source: string, options: ValidateOptions = {}): VmConfig {
  const fields = checkConfigFields(input, source, options);
  return {
    ...DEFAULT_CONFIG,
    cpuidHide: [...DEFAULT_CONFIG.cpuidHide],
    plugins: [],
    ...fields,
  };
}

function checkMemory(value: unknown, fail: (problem: string) => never): number {
  let bytes: number;
  if (typeof value === 'string') {
    try {
      bytes = parseSize(value);
    } catch {
      return fail(`must be a size such as 512M or 2G (a plain number is MiB); got ${describe(value)}`);
    }
  } else if (typeof value === 'number' && Number.isSafeInteger(value)) {
    bytes = value;
  } else {
    return fail(`must be a size such as "512M" or a number of bytes; got ${describe(value)}`);
  }
  const max = maxMemory();
  if (bytes < VMM_MIN_MEMORY || bytes > max) {
    // A small bare number in a file was almost certainly meant as MiB.
    const hint = typeof value === 'number' && value < VMM_MIN_MEMORY ? ` (a number is bytes; write "${value}M" for MiB)` : '';
    return fail(
      `must be between ${formatSize(VMM_MIN_MEMORY)} and ${formatSize(max)} ` +
        `(host has ${formatSize(os.totalmem())}); got ${formatSize(bytes)}${hint}`,
    );
  }
  if (bytes % VMM_MEMORY_ALIGN !== 0) {
    return fail(`must be a whole number of 4 KiB pages; got ${bytes} bytes`);
  }
  return bytes;
}

function checkPluginSpecs(value: unknown, fail: (problem: string) => never): PluginSpec[] {
  if (!Array.isArray(value)) return fail(`must be a list of plugin specs; got ${describe(value)}`);
  const seen = new Set<string>();
  return value.map((spec: unknown, i): PluginSpec => {
    const where = `[${i}]`;
    if (!isPlainObject(spec) || typeof spec.name !== 'string' || spec.name === '') {
      return fail(`${where} must be { name, options? } with a non-empty name; got ${describe(spec)}`);
    }
    const extra = Object.keys(spec).filter((key) => key !== 'name' && key !== 'options');
    if (extra.length > 0) fail(`${where} (${spec.name}) has unknown key '${extra[0]}'; a plugin spec has name and options`);
    if (spec.options !== undefined && !isPlainObject(spec.options)) {
      fail(`${where} (${spec.name}): options must be an object; got ${describe(spec.options)}`);
    }
    if (seen.has(spec.name)) fail(`lists '${spec.name}' twice; give each plugin once`);
    seen.add(spec.name);
    return { name: spec.name, options: (spec.options as Record<string, unknown> | undefined) ?? {} };
  });
}

/**
 * A kernel command line as entries, split the way Linux's next_arg() does: at blanks, except
 * inside double quotes (`guest_cmd="echo a; echo b"` is one entry, quotes kept).
 */
export function splitKernelCmdline(line: string): string[] {
  const entries: string[] = [];
  let entry = '';
  let quoted = false;
  for (const ch of line) {
    if (ch === '"') quoted = !quoted;
    if (!quoted && KERNEL_BLANKS.has(ch)) {
      if (entry !== '') entries.push(entry);
      entry = '';
    } else {
      entry += ch;
    }
  }
  if (entry !== '') entries.push(entry);
  return entries;
}

/** What the kernel's isspace() calls blank. */
const KERNEL_BLANKS: ReadonlySet<string> = new Set([' ', '\t', '\n', '\v', '\f', '\r']);

function at(source: string): string {
  return source ? `${source}: ` : '';
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A short rendering of a bad value for an error message. */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'function') return 'a function';
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    json = undefined;
  }
  return json !== undefined && json.length <= 60 ? json : `an ${typeof value}`;
}
