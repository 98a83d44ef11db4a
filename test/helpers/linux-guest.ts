/**
 * Linux guests for tests and benchmarks: locates the tiny kernel + initramfs that
 * scripts/guest-kernel builds (and caches outside the repository), boots it through the real
 * CLI (`node dist/cli/vmm.js`) as a child process, and exposes its serial console.
 *
 * The fixture is not built here: it takes minutes, and CI builds it before the tests
 * (`scripts/guest-kernel` in .ci/run). Set VMM_GUEST_KERNEL and VMM_GUEST_INITRAMFS to use other
 * files; otherwise `scripts/guest-kernel --locate` says where the cached build is, or fails.
 */
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { TapNamespace } from './tap-netns';

export const ROOT = path.join(__dirname, '..', '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'vmm.js');
export const GUEST_KERNEL_SCRIPT = path.join(ROOT, 'scripts', 'guest-kernel');

/** Where the guest's files live: the host-quirk command line, the init script, the recipe. */
export const GUEST_LINUX_DIR = path.join(ROOT, 'guest', 'linux');

/**
 * What the nested KVM on our CI hosts needs to get Linux to /init (shared/notes/machine.md):
 * guest/linux/host-quirks.cmdline, which `npm run linux` (guest/linux/shell) reads too.
 */
export const HOST_QUIRK_CMDLINE = fs.readFileSync(path.join(GUEST_LINUX_DIR, 'host-quirks.cmdline'), 'utf8')
  .split('\n').map((line) => line.replace(/#.*/, '').trim()).filter(Boolean).join(' ');

export const BASE_CMDLINE = `console=ttyS0 ${HOST_QUIRK_CMDLINE} panic=-1`;

/** How long Linux may take to reach /init on the emulated kernel mode of CI hosts. */
export const LINUX_BOOT_TIMEOUT_MS = 6 * 60_000;

export interface LinuxFixture { vmlinux: string; initramfs: string }

export class FixtureMissingError extends Error {}

/**
 * Initramfs profiles (scripts/guest-kernel --profile NAME, guest/linux/initramfs-NAME.list): the
 * base guest plus what some tests need. 'wayland': weston (headless), weston-simple-shm and the
 * guest relay wl-relay.
 */
export type LinuxProfile = 'wayland';

const cached = new Map<string, LinuxFixture>();

/**
 * The kernel and initramfs (of `profile`, or the base one); throws FixtureMissingError saying
 * how to build them. VMM_GUEST_KERNEL / VMM_GUEST_INITRAMFS override the base fixture,
 * VMM_GUEST_INITRAMFS_<PROFILE> (e.g. VMM_GUEST_INITRAMFS_WAYLAND) a profile's initramfs.
 */
export function linuxFixture(profile?: LinuxProfile): LinuxFixture {
  const key = profile ?? '';
  const known = cached.get(key);
  if (known) return known;
  const fixture = profile ? profileFixture(profile) : baseFixture();
  cached.set(key, fixture);
  return fixture;
}

function baseFixture(): LinuxFixture {
  const fromEnv = process.env.VMM_GUEST_KERNEL;
  if (fromEnv) {
    const initramfs = process.env.VMM_GUEST_INITRAMFS ?? path.join(path.dirname(fromEnv), 'initramfs.cpio');
    for (const file of [fromEnv, initramfs]) {
      if (!fs.existsSync(file)) throw new FixtureMissingError(`the Linux guest fixture ${file} (from VMM_GUEST_KERNEL/VMM_GUEST_INITRAMFS) does not exist.`);
    }
    return { vmlinux: fromEnv, initramfs };
  }
  return locate([]);
}

function profileFixture(profile: LinuxProfile): LinuxFixture {
  const variable = `VMM_GUEST_INITRAMFS_${profile.toUpperCase()}`;
  const fromEnv = process.env[variable];
  if (fromEnv) {
    if (!fs.existsSync(fromEnv)) throw new FixtureMissingError(`the Linux guest initramfs ${fromEnv} (from ${variable}) does not exist.`);
    const vmlinux = process.env.VMM_GUEST_KERNEL ?? locate(['--profile', profile]).vmlinux;
    return { vmlinux, initramfs: fromEnv };
  }
  const located = locate(['--profile', profile]);
  return { vmlinux: process.env.VMM_GUEST_KERNEL ?? located.vmlinux, initramfs: located.initramfs };
}

/** `scripts/guest-kernel --locate ARGS`: the cached build's paths, or FixtureMissingError. */
function locate(args: string[]): LinuxFixture {
  const located = spawnSync(GUEST_KERNEL_SCRIPT, ['--locate', ...args], { encoding: 'utf8' });
  const lines = (located.stdout ?? '').trim().split('\n');
  const value = (key: string) => lines.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);
  const vmlinux = value('vmlinux');
  const initramfs = value('initramfs');
  if (located.status !== 0 || !vmlinux || !initramfs) {
    const why = (located.stderr ?? '').trim() || located.error?.message || `exit status ${located.status}`;
    const build = ['scripts/guest-kernel', ...args].join(' ');
    throw new FixtureMissingError(
      `the Linux guest fixture is not built: run ${build} first (CI runs it in .ci/run); ` +
        `${build.replace('guest-kernel', 'guest-kernel --locate')} said: ${why}`,
    );
  }
  return { vmlinux, initramfs };
}

export interface LinuxGuestOptions {
  /** Appended to BASE_CMDLINE. */
  cmdline?: string;
  memory?: string;
  /** Extra vmm flags (e.g. ['--plugin', 'virtio-net={"tap":"vmmt0"}']). */
  args?: string[];
  /** Run vmm inside this namespace (its `wrap`: `ip netns exec NS node …`). */
  namespace?: Pick<TapNamespace, 'wrap'>;
  /** Which initramfs to boot when `fixture` is not given (default: the base one). */
  profile?: LinuxProfile;
  fixture?: LinuxFixture;
  /** Tee the console to this stream as it arrives (e.g. process.stderr when debugging). */
  echo?: NodeJS.WritableStream;
  /** Give vmm a stdin pipe (the guest's keyboard on COM1) instead of none: see `write`. */
  input?: boolean;
}

export interface ChildExit { code: number | null; signal: NodeJS.Signals | null }

export interface LinuxGuest {
  child: ChildProcess;
  /** When the child was spawned (performance.now() milliseconds). */
  startedAt: number;
  /** Everything vmm printed on stdout (the guest's COM1) so far. */
  output(): string;
  stderr(): string;
  /** Types into the guest's console (needs `input`). */
  write(text: string): void;
  /**
   * Resolves with the milliseconds since spawn at which `text` first appeared (at or after
   * offset `from` of the output); rejects with the console so far if vmm exits or the timeout
   * passes first.
   */
  waitFor(text: string | RegExp, timeoutMs?: number, from?: number): Promise<number>;
  /** Resolves when the child has exited. */
  exited: Promise<ChildExit>;
  /** SIGTERM, then SIGKILL after `graceMs` if it is still running; resolves with the exit. */
  stop(graceMs?: number): Promise<ChildExit>;
}

export function bootLinux(options: LinuxGuestOptions = {}): LinuxGuest {
  const fixture = options.fixture ?? linuxFixture(options.profile);
  const cmdline = [BASE_CMDLINE, options.cmdline ?? ''].join(' ').trim();
  const vmmArgs = [
    CLI, '--kernel', fixture.vmlinux, '--initrd', fixture.initramfs, '--memory', options.memory ?? '128M',
    '--cmdline', cmdline, ...(options.args ?? []),
  ];
  const [command, args] = options.namespace?.wrap(process.execPath, vmmArgs) ?? [process.execPath, vmmArgs];
  return spawnGuest(command, args, options.echo, options.input);
}

/** Spawns any VMM (vmm, or QEMU for comparisons) whose stdout is the guest console, and watches it. */
export function spawnGuest(command: string, args: string[], echo?: NodeJS.WritableStream, input = false): LinuxGuest {
  const options = { echo };
  const startedAt = performance.now();
  const child = spawn(command, args, { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  // A guest that exits while we type must not turn into an unhandled EPIPE.
  child.stdin?.on('error', () => {});
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const wake = () => { for (const w of [...waiters]) w(); };
  // [end offset in `out`, ms since spawn] per chunk, to time when a text arrived.
  const arrivals: [number, number][] = [];
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    out += chunk;
    arrivals.push([out.length, performance.now() - startedAt]);
    options.echo?.write(chunk);
    wake();
  });
  child.stderr!.on('data', (chunk: string) => { err += chunk; options.echo?.write(chunk); });
  let exit: ChildExit | undefined;
  const exited = new Promise<ChildExit>((resolve) => {
    child.on('error', (e) => { err += `\nspawn failed: ${e.message}`; exit = { code: null, signal: null }; wake(); resolve(exit); });
    child.on('close', (code, signal) => { exit = { code, signal }; wake(); resolve(exit); });
  });

  /** Offset just past the first match at or after `from`, or -1. */
  const matchEnd = (text: string | RegExp, from: number): number => {
    if (typeof text === 'string') { const i = out.indexOf(text, from); return i < 0 ? -1 : i + text.length; }
    const re = new RegExp(text.source, text.flags.includes('g') ? text.flags : `${text.flags}g`);
    re.lastIndex = from;
    const m = re.exec(out);
    return m ? m.index + m[0].length : -1;
  };
  const arrivedAt = (end: number) => arrivals.find(([e]) => e >= end)?.[1] ?? performance.now() - startedAt;
  const waitFor = (text: string | RegExp, timeoutMs = LINUX_BOOT_TIMEOUT_MS, from = 0): Promise<number> => new Promise((resolve, reject) => {
    const key = String(text);
    const check = () => {
      const end = matchEnd(text, from);
      if (end >= 0) {
        finish(); resolve(arrivedAt(end));
      } else if (exit) {
        finish();
        reject(new Error(`vmm exited (${exit.signal ?? `code ${exit.code}`}) before the console showed ${key}.\n${describe()}`));
      }
    };
    const timer = setTimeout(() => { finish(); reject(new Error(`the console did not show ${key} within ${timeoutMs} ms.\n${describe()}`)); }, timeoutMs);
    const finish = () => { clearTimeout(timer); waiters.delete(check); };
    waiters.add(check);
    check();
  });
  const describe = () => `--- console (last 40 lines) ---\n${out.split('\n').slice(-40).join('\n')}\n--- vmm stderr ---\n${err.slice(-4000)}`;

  const stop = async (graceMs = 20_000): Promise<ChildExit> => {
    if (!exit) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => { if (!exit) child.kill('SIGKILL'); }, graceMs);
      await exited;
      clearTimeout(timer);
    }
    return exited;
  };

  const write = (text: string) => {
    if (!child.stdin) throw new Error('this guest was started without input (pass input: true)');
    if (!exit) child.stdin.write(text);
  };

  return { child, startedAt, output: () => out, stderr: () => err, write, waitFor, exited, stop };
}
