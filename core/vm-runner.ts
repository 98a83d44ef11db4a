/**
 * runVm: apply the plugins, boot, run until the VM ends, and resolve with how it ended. It
 * resolves (never rejects) for every VM outcome, errors included; `exitCode` is what `vmm` exits
 * with (0 poweroff/reset, 1 vmm or plugin error, 2 a plugin refused its options before anything
 * started, 3 guest crash, 4 guest-reported failure, 130/143 stopped by SIGINT/SIGTERM).
 *
 * Stopping from outside: when `io.stopSignal` aborts, the VM stops with reason 'stopped'.
 * `io.stopSignal.reason` is the signal the CLI got ('SIGINT', also sent for Ctrl-A x, or
 * 'SIGTERM'), and the exit code becomes 128 + its number (130, 143); the Vm already gives that
 * code to the shutdown taps, this only makes sure of it. runVm installs no signal handlers
 * itself; the CLI owns the terminal and stdin.
 */
import * as os from 'os';
import type { VmConfig, VmExit } from '../plugin-api';
import type { LoadedPlugin } from './plugins/loader';
import { messageOf } from './errors';
import { EXIT_CODES, Vm, type VmIo } from './vm';

export type { VmIo };

export async function runVm(config: VmConfig, plugins: LoadedPlugin[], io: VmIo): Promise<VmExit> {
  let vm: Vm;
  try {
    vm = new Vm(config, plugins, io);
  } catch (error) {
    // A plugin refused its options (schema, apply() or a configure tap): a configuration error,
    // found before anything was started, so exit 2 like every other (README, exit codes).
    return { reason: 'error', exitCode: EXIT_CODES.usage, message: messageOf(error) };
  }
  try {
    await vm.start();
  } catch {
    // start() has already torn the VM down with an 'error' exit naming the step or plugin.
  }
  const exit = await vm.wait();
  if (exit.reason === 'stopped' && io.stopSignal?.aborted) {
    const signal = io.stopSignal.reason as NodeJS.Signals;
    const number = os.constants.signals[signal];
    if (typeof number === 'number') return { ...exit, exitCode: 128 + number, message: `stopped by ${signal}.` };
  }
  return exit;
}
