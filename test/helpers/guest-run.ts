/**
 * Boots a real VM in-process with one of the test guests and returns how it ended and what it
 * printed on COM1. Serial output goes to a temporary file, written by the vCPU thread.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PassThrough } from 'stream';
import type { Plugin, VmConfig, VmExit } from '../../plugin-api';
import { DEFAULT_CONFIG } from '../../core/config';
import { Vm } from '../../core/vm';

export const ROOT = path.join(__dirname, '..', '..', '..');
export const PROBE_GUEST = path.join(ROOT, 'guest', 'build', 'probe.elf');
export const DEMO_GUEST = path.join(ROOT, 'guest', 'build', 'demo.elf');
export const CLI = path.join(ROOT, 'dist', 'cli', 'vmm.js');

export interface GuestRun {
  vm: Vm;
  /** Feed the guest's serial input. */
  input: PassThrough;
  /** Everything the guest printed so far. */
  output(): string;
  /** Resolves when `text` has appeared in the output. */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<string>;
  exit: Promise<VmExit>;
}

export function startGuest(config: Partial<VmConfig>, plugins: Plugin[] = []): GuestRun {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-test-'));
  const file = path.join(dir, 'serial.out');
  const fd = fs.openSync(file, 'w');
  const input = new PassThrough();
  const vm = new Vm({ ...DEFAULT_CONFIG, memory: 16 * 1024 * 1024, ...config },
    plugins.map((plugin) => ({ plugin, options: {}, source: 'test' })),
    { serialInput: input, serialOutput: fd });
  let final: string | undefined;
  const exit = vm.start()
    .then(() => vm.wait(), () => vm.wait())
    .finally(() => {
      fs.closeSync(fd);
      final = fs.readFileSync(file, 'utf8');
      fs.rmSync(dir, { recursive: true, force: true });
    });
  const output = () => final ?? fs.readFileSync(file, 'utf8');
  const waitFor = async (text: string | RegExp, timeoutMs = 60000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    let ended = false;
    void exit.then(() => { ended = true; });
    for (;;) {
      const out = output();
      if (typeof text === 'string' ? out.includes(text) : text.test(out)) return out;
      if (ended || Date.now() > deadline) throw new Error(`guest output never showed ${String(text)}; it was:\n${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { vm, input, output, waitFor, exit };
}

/** Runs the probe guest with a script of actions to its end. */
export async function runProbe(actions: string, config: Partial<VmConfig> = {}, plugins: Plugin[] = []): Promise<{ exit: VmExit; output: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-probe-'));
  const file = path.join(dir, 'serial.out');
  const fd = fs.openSync(file, 'w');
  try {
    const vm = new Vm({ ...DEFAULT_CONFIG, memory: 16 * 1024 * 1024, kernel: PROBE_GUEST, cmdline: actions, ...config },
      plugins.map((plugin) => ({ plugin, options: {}, source: 'test' })),
      { serialInput: null, serialOutput: fd });
    await vm.start().catch(() => undefined);
    const exit = await vm.wait();
    return { exit, output: fs.readFileSync(file, 'utf8') };
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Threads of this process (vCPU threads are worker threads, so they show up here). */
export function threadCount(): number {
  return fs.readdirSync('/proc/self/task').length;
}
