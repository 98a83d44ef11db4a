/**
 * Shared pieces of the control-channel tests: a real VM (the built-in demo guest, which waits
 * forever for a line on COM1) with the first-party control plugin loaded through the plugin
 * loader, a test plugin that adds commands through the controlCommand hook, and a raw
 * SEQPACKET client for sending what a well-behaved client never would.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Plugin, Vmm, VmExit } from '../../../plugin-api';
import { DEFAULT_CONFIG } from '../../../core/config';
import { connect, type UnixMessage, type UnixMessageSocket } from '../../../core/net/unix-socket';
import { loadPlugin, type LoadedPlugin } from '../../../core/plugins/loader';
import { Vm } from '../../../core/vm';
import { ControlClient } from '../../../plugins/control/client';
import { takeFd } from '../../../plugins/control/fds';
import { sleep, until } from '../../helpers/wait';

export const ROOT = path.join(__dirname, '..', '..', '..', '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'vmm.js');
export const MiB = 1024 * 1024;

export interface ControlVm {
  vm: Vm;
  socket: string;
  dir: string;
  exit: Promise<VmExit>;
  /** Stop the VM (if it still runs) and remove the temporary directory. */
  cleanup(): Promise<void>;
}

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-control-'));
}

export function loadControlPlugin(options: Record<string, unknown>): LoadedPlugin {
  return loadPlugin({ name: 'control', options }, ROOT);
}

/** Boot the demo guest with the control plugin on `<tmp>/control.sock` (or options.socket). */
export async function startControlVm(options: Record<string, unknown> = {}, extra: Plugin[] = []): Promise<ControlVm> {
  const dir = tempDir();
  const socket = (options.socket as string | undefined) ?? path.join(dir, 'control.sock');
  const plugins = [loadControlPlugin({ socket, ...options }), ...extra.map((plugin) => ({ plugin, options: {}, source: 'test' }))];
  const serialOutput = fs.openSync('/dev/null', 'w');
  let vm: Vm;
  try {
    vm = new Vm({ ...DEFAULT_CONFIG, memory: 64 * MiB }, plugins, { serialInput: null, serialOutput });
    await vm.start();
  } catch (error) {
    fs.closeSync(serialOutput);
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const exit = vm.wait().finally(() => fs.closeSync(serialOutput));
  return {
    vm, socket, dir, exit,
    async cleanup() {
      await vm.stop();
      await exit;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** The fd count once it has stopped changing (the server closes its side of a connection asynchronously). */
export async function settledFdCount(quietMs = 100): Promise<number> {
  let count = openFdCount();
  let since = Date.now();
  const deadline = Date.now() + 5000;
  while (Date.now() - since < quietMs && Date.now() < deadline) {
    await sleep(10);
    const now = openFdCount();
    if (now !== count) {
      count = now;
      since = Date.now();
    }
  }
  return count;
}

/** Waits until the process has `expected` fds open again (closing is asynchronous for the server side). */
export async function expectFdCount(expected: number): Promise<void> {
  await until(`${expected} open fds (now ${openFdCount()})`, () => openFdCount() === expected).catch(() => undefined);
  if (openFdCount() !== expected) {
    const list = fs.readdirSync('/proc/self/fd').map((fd) => { try { return `${fd}→${fs.readlinkSync(`/proc/self/fd/${fd}`)}`; } catch { return fd; } });
    throw new Error(`expected ${expected} open fds, found ${openFdCount()}: ${list.join(', ')}`);
  }
}

// --- a plugin that adds commands -----------------------------------------------------------------

export interface TestPluginState {
  /** fds the take-socket command kept (the test closes them). */
  kept: number[];
  /** Handlers that are running now (slow). */
  running: number;
}

/**
 * Commands: `echo ARGS…` → { args }; `emit N [BYTES]` → N device events in batches, each with a
 * BYTES-long payload; `take-socket` → keeps fd 0 if it is a socket; `slow MS` → answers after MS;
 * `bigint` → a reply JSON cannot carry; `big N` → { data } with N characters; `deep N` → a reply
 * nested N lists deep.
 */
export function testPlugin(state: TestPluginState = { kept: [], running: 0 }): Plugin & { state: TestPluginState } {
  const NAME = 'control-test';
  return {
    name: NAME,
    state,
    apply(vmm: Vmm) {
      vmm.hooks.controlCommand.tapPromise(NAME, async (request, context) => {
        switch (request.command) {
          case 'echo':
            return { args: request.args };
          case 'emit': {
            const count = Number(request.args[0] ?? 1);
            const payload = 'x'.repeat(Number(request.args[1] ?? 0));
            for (let i = 0; i < count; i++) {
              vmm.hooks.deviceEvent.call({ device: 'test-device', type: 'ping', n: i, payload });
              // Let readers run between batches, as a real device's events would.
              if (i % 50 === 49) await new Promise((resolve) => setImmediate(resolve));
            }
            return { emitted: count };
          }
          case 'take-socket': {
            const fd = takeFd(context, 'socket', 'the socket');
            state.kept.push(fd);
            return { taken: true };
          }
          case 'slow': {
            state.running++;
            try {
              await sleep(Number(request.args[0] ?? 100));
            } finally {
              state.running--;
            }
            return { slept: true };
          }
          case 'bigint':
            return { value: 1n };
          case 'big':
            return { data: 'x'.repeat(Number(request.args[0] ?? 0)) };
          case 'deep': {
            let value: unknown[] = [];
            for (let i = 1; i < Number(request.args[0] ?? 1); i++) value = [value];
            return { value };
          }
          default:
            return undefined;
        }
      });
    },
  };
}

// --- a raw client ----------------------------------------------------------------------------------

/** A SEQPACKET client that sends anything and reads datagrams as they come. */
export class RawClient {
  readonly messages: UnixMessage[] = [];
  readonly closed: Promise<void>;
  private wake: (() => void) | undefined;

  constructor(readonly socket: UnixMessageSocket) {
    socket.on('message', (m: UnixMessage) => { this.messages.push(m); this.wake?.(); });
    this.closed = new Promise((resolve) => socket.on('close', () => { this.wake?.(); resolve(); }));
  }

  static connect(path: string): RawClient {
    return new RawClient(connect(path, 'seqpacket', { maxMessageBytes: 256 * 1024, maxFds: 16 }));
  }

  send(data: Buffer | string | object, fds: number[] = []): void {
    const bytes = Buffer.isBuffer(data) ? data : Buffer.from(typeof data === 'string' ? data : JSON.stringify(data));
    this.socket.send(bytes, fds);
  }

  /** The next datagram, parsed. */
  async next(timeoutMs = 5000): Promise<Record<string, any>> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length === 0) {
      if (this.socket.closed) throw new Error('the connection closed');
      if (Date.now() > deadline) throw new Error('no datagram came');
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    const m = this.messages.shift()!;
    for (const fd of m.fds) fs.closeSync(fd);
    return JSON.parse(m.data.toString('utf8'));
  }

  async request(data: Buffer | string | object, fds: number[] = []): Promise<Record<string, any>> {
    this.send(data, fds);
    return this.next();
  }

  close(): void {
    this.socket.close();
  }
}

// --- `vmm run` as a child process ----------------------------------------------------------------

export interface VmmRun {
  child: ChildProcess;
  socket: string;
  dir: string;
  /** How the process ended, and everything it wrote to stderr. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  /** Kill it if it still runs (SIGKILL) and remove the temporary directory. */
  cleanup(): Promise<void>;
}

/**
 * `node dist/cli/vmm.js run --plugin control=… [extra]` with the built-in demo guest, which
 * idles waiting for a line on stdin (a pipe kept open). Resolves once `status` says running.
 * `node` flags (e.g. --expose-gc) go before the script.
 */
export async function startVmmRun(options: { plugins?: string[]; nodeArgs?: string[]; control?: Record<string, unknown> } = {}): Promise<VmmRun> {
  const dir = tempDir();
  const socket = path.join(dir, 'control.sock');
  const args = [
    ...(options.nodeArgs ?? []), CLI, 'run',
    ...(options.plugins ?? []).flatMap((p) => ['--plugin', p]),
    '--plugin', `control=${JSON.stringify({ socket, ...options.control })}`,
  ];
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    // 'close': after the exit and the end of stderr, whichever comes last.
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exit;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const running = async (): Promise<boolean> => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`vmm run ended early: ${stderr}`);
    if (!fs.existsSync(socket)) return false;
    let client: ControlClient;
    try {
      client = await ControlClient.connect(socket);
    } catch {
      return false; // bound but not listening yet
    }
    try {
      const status = await client.request('status');
      return 'result' in status && status.result.state === 'running';
    } finally {
      client.close();
    }
  };
  try {
    const deadline = Date.now() + 30000;
    while (!(await running())) {
      if (Date.now() > deadline) throw new Error(`the VM did not reach running within 30 s: ${stderr}`);
      await sleep(20);
    }
  } catch (error) {
    await cleanup();
    throw error;
  }
  return { child, socket, dir, exit, cleanup };
}
