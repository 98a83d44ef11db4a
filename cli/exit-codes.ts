/**
 * What `vmm` exits with, and how errors reach the user.
 *
 *   code  meaning
 *   ----  ---------------------------------------------------------------------------------
 *     0   the guest powered off (or reset) cleanly; also --help and --version
 *     1   vmm or a plugin failed at run time (KVM error, a plugin's hook or device threw,
 *         an internal error)
 *     2   usage or configuration error: unknown flag or command, bad flag or config value,
 *         unreadable config file, plugin not found or not loadable, a plugin refusing its
 *         options (its schema, its apply or a configure tap); nothing was started
 *     3   the guest crashed (triple fault, KVM emulation failure, an unclaimed access under
 *         --unclaimed stop)
 *     4   the guest reported failure (a non-zero status written to the exit port)
 *   130   stopped by SIGINT (Ctrl-C, or Ctrl-A x on a terminal)
 *   143   stopped by SIGTERM
 *
 * For a VM that ran, VmExit.exitCode (decided by the VM runner) is authoritative; the CLI
 * decides 2 for what it finds itself, and 1 for errors that escape the runner.
 *
 * Errors are one plain sentence on stderr, prefixed "vmm: ". The stack trace is only shown with
 * --verbose, because a stack helps whoever debugs vmm, not whoever runs a VM.
 */
import { ConfigError, PluginError } from '../core/errors';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_GUEST_CRASH = 3;
export const EXIT_GUEST_FAILURE = 4;
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;

/** Errors raised while building the configuration and loading plugins, which the user fixes. */
export function isUsageError(err: unknown): boolean {
  return err instanceof ConfigError || err instanceof PluginError;
}

/** Print `vmm: <message>` (and the stack with --verbose) to stderr. */
export function reportError(err: unknown, verbose: boolean): void {
  const message = err instanceof Error ? err.message : String(err);
  // Node's own errors can run to several lines (a require stack); the first says what happened.
  const text = verbose ? message : message.split('\n')[0];
  process.stderr.write(`vmm: ${text.replace(/^vmm: /, '')}\n`);
  if (verbose && err instanceof Error && err.stack) {
    process.stderr.write(`${err.stack}\n`);
    if (err.cause instanceof Error && err.cause.stack) process.stderr.write(`caused by: ${err.cause.stack}\n`);
  }
}
