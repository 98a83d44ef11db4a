/**
 * `vmm run [options]` (also the bare `vmm [options]`): build the configuration (config file, then
 * flags on top), load the plugins, boot the VM with its serial console on this terminal, and exit
 * with the VM's exit code (see cli/exit-codes.ts).
 *
 * Everything that can be wrong with the command line, the config file or the plugins is found
 * before anything is started, and exits 2.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command, Option } from 'commander';
import createDebug from 'debug';
import type { VmConfig } from '../../plugin-api';
import { checkConfigFields } from '../../core/config';
import { ConfigError } from '../../core/errors';
import { loadPlugins, type LoadedPlugin } from '../../core/plugins/loader';
import { loadConfigFile, mergeConfig, searchConfigFile, type ConfigFileOptions, type PartialConfig } from '../config-file';
import { EXIT_ERROR, EXIT_USAGE, isUsageError, reportError } from '../exit-codes';
import { parsePluginFlag } from '../plugin-flag';
import { openSerialConsole } from '../serial-console';

const log = createDebug('vmm:cli');

/** The run command's flags as commander parses them: raw strings, checked by checkConfigFields. */
export interface RunFlags {
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  memory?: string;
  cpus?: string;
  plugin?: string[];
  config?: string;
  cpuidMask: boolean;
  unclaimed?: string;
}

/** Each field's flag, so errors name what the user typed ("--memory must be …"). */
const FLAG_FOR: Record<keyof VmConfig, string> = {
  kernel: '--kernel',
  initrd: '--initrd',
  cmdline: '--cmdline',
  memory: '--memory',
  cpus: '--cpus',
  cpuidHide: '--no-cpuid-mask',
  unclaimedAccess: '--unclaimed',
  plugins: '--plugin',
};

export function addRunCommand(program: Command, verbose: () => boolean): Command {
  return program
    .command('run', { isDefault: true })
    .description('boot a VM with its serial console on this terminal (the default command)')
    .option('--kernel <path>', 'kernel (vmlinux, bzImage) or guest ELF image (default: the built-in demo guest)')
    .option('--initrd <path>', 'initial ramdisk for a Linux kernel')
    .option('--cmdline <string>', 'kernel command line')
    .option('--memory <size>', 'guest RAM: a number of MiB, or a size with K, M or G (512M, 2G) (default: 64M)')
    .option('--cpus <n>', 'number of vCPUs, 1 to 64 (default: 1)')
    .option(
      '--plugin <name[=json]>',
      'use a plugin (first-party name, file or npm package), with options as a JSON object; repeatable',
      // No default value: commander would print "(default: [])" in the help.
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('--config <file>', 'read this config file instead of looking for vmm.config.* / .vmmrc* / package.json')
    .option('--no-cpuid-mask', "pass all CPUID features KVM supports (default: hide those the emulated KVM of our CI hosts cannot run, or runs too slowly)")
    .addOption(
      new Option('--unclaimed <policy>', 'guest access to an unclaimed port or address: stop the VM, or ignore it').choices([
        'stop',
        'ignore',
      ]),
    )
    // Extra words get our own message in the action, not commander's "too many arguments".
    .allowExcessArguments(true)
    .action(async (flags: RunFlags, command: Command) => {
      if (command.args.length > 0) {
        const commands = program.commands.map((c) => c.name()).join(', ');
        command.error(`unexpected argument '${command.args[0]}' (commands: ${commands}; options start with --)`, {
          exitCode: EXIT_USAGE,
          code: 'vmm.unexpectedArgument',
        });
      }
      process.exitCode = await runCommand(flags, verbose());
    });
}

/** Prepare and run; returns the exit code. */
export async function runCommand(flags: RunFlags, verbose: boolean): Promise<number> {
  let prepared: { config: VmConfig; plugins: LoadedPlugin[] };
  try {
    prepared = await prepareRun(flags);
  } catch (err) {
    reportError(err, verbose);
    return isUsageError(err) ? EXIT_USAGE : EXIT_ERROR;
  }
  return runPrepared(prepared.config, prepared.plugins, verbose);
}

/** Flags + config file → the final VmConfig and loaded plugins. Throws ConfigError/PluginError. */
export async function prepareRun(
  flags: RunFlags,
  cwd: string = process.cwd(),
  fileOptions: ConfigFileOptions = {},
): Promise<{ config: VmConfig; plugins: LoadedPlugin[] }> {
  // Flags first: a typo on the command line is reported before anything is read.
  const cli = flagsToConfig(flags, cwd);
  const file =
    flags.config !== undefined
      ? await loadConfigFile(path.resolve(cwd, flags.config), fileOptions)
      : await searchConfigFile(cwd, fileOptions);
  log('config file: %s', file?.filepath ?? 'none');
  const { config, plugins } = mergeConfig(file, cli);
  checkImages(config);
  const loaded = loadPlugins(plugins);
  log('config: %O', config);
  log('plugins: %s', loaded.map((p) => `${p.plugin.name} (${p.source})`).join(', ') || 'none');
  return { config, plugins: loaded };
}

/** The flags that were given, as config fields; relative paths resolve against `cwd`. */
export function flagsToConfig(flags: RunFlags, cwd: string): PartialConfig {
  const raw: Record<string, unknown> = {};
  if (flags.kernel !== undefined) raw.kernel = flags.kernel === '' ? '' : path.resolve(cwd, flags.kernel);
  if (flags.initrd !== undefined) raw.initrd = flags.initrd === '' ? '' : path.resolve(cwd, flags.initrd);
  if (flags.cmdline !== undefined) raw.cmdline = flags.cmdline;
  if (flags.memory !== undefined) raw.memory = flags.memory;
  // Only digits become a number; anything else stays a string for the checker to show back.
  if (flags.cpus !== undefined) raw.cpus = /^\s*\d+\s*$/.test(flags.cpus) ? Number(flags.cpus) : flags.cpus;
  if (flags.cpuidMask === false) raw.cpuidHide = [];
  if (flags.unclaimed !== undefined) raw.unclaimedAccess = flags.unclaimed;
  if (flags.plugin !== undefined) raw.plugins = flags.plugin.map(parsePluginFlag);

  const config = checkConfigFields(raw, '', { fieldLabel: (field) => FLAG_FOR[field] });
  const plugins = (config.plugins ?? []).map((spec) => ({ spec, baseDir: cwd }));
  return { config, plugins };
}

/** A missing kernel is a configuration mistake: say so now rather than after KVM is set up. */
function checkImages(config: VmConfig): void {
  for (const field of ['kernel', 'initrd'] as const) {
    const file = config[field];
    if (file === null) continue;
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new ConfigError(`${field} ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
    if (!stat.isFile()) throw new ConfigError(`${field} ${file}: not a file`);
  }
}

/**
 * Boot and wait. SIGINT/SIGTERM (and Ctrl-A x, as SIGINT) ask the VM to stop; a second one
 * exits at once, for a VM that does not stop (the terminal is restored first, and plugins
 * clean up in their process 'exit' listeners, e.g. the control socket file goes). Both ways the
 * exit code is 128 + the signal's number (130, 143), as documented; `timeout(1)` sends its
 * SIGTERM twice, so the second path is a common one.
 *
 * The handlers stay installed after the VM has ended: with the default action restored, a
 * signal in the last moments before the process exits would kill it, which a parent sees as a
 * death by signal instead of the documented exit code. Signal handlers do not keep the event
 * loop alive.
 */
async function runPrepared(config: VmConfig, plugins: LoadedPlugin[], verbose: boolean): Promise<number> {
  const controller = new AbortController();
  const stop = (signal: 'SIGINT' | 'SIGTERM') => {
    if (controller.signal.aborted) {
      serial.close();
      log('%s again: exiting without waiting for the VM to stop', signal);
      process.stderr.write(`vmm: stopped by ${signal} (a second signal: not waiting for the VM to finish stopping).\n`);
      process.exit(128 + os.constants.signals[signal]);
    }
    log('%s: stopping the VM', signal);
    controller.abort(signal);
  };
  const onSigint = () => stop('SIGINT');
  const onSigterm = () => stop('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  const serial = openSerialConsole(process.stdin, onSigint);

  try {
    // Loaded only now: it pulls in the native addon, which --help, --version and configuration
    // errors must not need.
    const { runVm } = await import('../../core/vm-runner').catch((err: Error) => {
      throw new Error(`cannot load the VM runner: ${err.message}`, { cause: err });
    });
    const exit = await runVm(config, plugins, {
      serialInput: serial.input,
      serialOutput: 1,
      stopSignal: controller.signal,
    });
    log('VM ended: %s (exit code %d): %s', exit.reason, exit.exitCode, exit.message);
    if (exit.exitCode !== 0) process.stderr.write(`vmm: ${exit.message}\n`);
    return exit.exitCode;
  } catch (err) {
    // runVm resolves for every VM outcome; a rejection is a bug or a missing piece of vmm.
    reportError(err, verbose);
    return EXIT_ERROR;
  } finally {
    serial.close();
  }
}
