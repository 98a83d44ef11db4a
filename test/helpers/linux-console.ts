/**
 * Drives the shell of the Linux guest (guest/linux/init) through vmm's console, as a person at
 * the terminal would: boots through the CLI, waits for the prompt, then runs one command at a
 * time, each with its own timeout, and returns its output and exit status.
 *
 * How a command's output is found: the first command turns the terminal's echo off
 * (`stty -echo`), after which busybox's line editor falls back to plain line reads, so nothing
 * typed comes back and the console shows only what commands print. Each command then runs as
 *
 *     echo @vmm-begin-N@; {
 *     COMMAND
 *     }; printf '\n@vmm-end-N-%s@\n' "$?"
 *
 * and its output is what lies between the two markers (with the terminal's CR LF made LF, and
 * the one newline the end marker adds removed). A command that outlives its timeout gets Ctrl-C
 * and the call rejects with the console so far.
 *
 * busybox's line editor asks the terminal where the cursor is (ESC [ 6 n) at its prompts; this
 * answers the first one as a terminal would (unanswered, the line editor takes the first keys
 * typed for the answer). With echo off there are no more.
 */
import { bootLinux, LINUX_BOOT_TIMEOUT_MS, type LinuxGuest, type LinuxGuestOptions } from './linux-guest';

/** The line guest/linux/init prints before it starts the shell. */
export const SHELL_BANNER = 'vmm Linux guest: busybox sh on the console.';
/** How long one command may run unless told otherwise. */
export const COMMAND_TIMEOUT_MS = 60_000;

const CURSOR_POSITION_QUERY = '\x1b[6n';
const CTRL_C = '\x03';

export interface CommandResult {
  /** What the command printed (stdout and stderr, in the order the console showed them), LF line ends. */
  output: string;
  /** Its exit status, as `$?` in the shell. */
  status: number;
}

export class CommandError extends Error {}

export class LinuxConsole {
  private commands = 0;

  private constructor(readonly guest: LinuxGuest) {}

  /** Boots the guest (with a stdin pipe), waits for its shell, and readies it for `run`. */
  static async boot(options: LinuxGuestOptions = {}, bootTimeoutMs = LINUX_BOOT_TIMEOUT_MS): Promise<LinuxConsole> {
    const guest = bootLinux({ ...options, input: true });
    const console = new LinuxConsole(guest);
    try {
      await guest.waitFor(SHELL_BANNER, bootTimeoutMs);
      await console.waitForPrompt(60_000);
      // The line editor reads the answer before anything typed after it: answer first, or the
      // answer would arrive as the text of a later command.
      const asked = await guest.waitFor(CURSOR_POSITION_QUERY, 5_000, guest.output().lastIndexOf(SHELL_BANNER)).then(() => true, () => false);
      if (asked) {
        console.answerCursorQuery();
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      // Typed ahead before stty has run, the next line would still be echoed: wait for its prompt.
      const before = guest.output().length;
      guest.write('stty -echo\n');
      await guest.waitFor(/\n[^\n]*# $/, 60_000, before);
      const ready = await console.run('echo ready');
      if (ready.output !== 'ready\n') throw new CommandError(`the shell answered ${JSON.stringify(ready.output)} to "echo ready"`);
    } catch (error) {
      await console.stop(5_000);
      throw error;
    }
    return console;
  }

  /** When the shell's first prompt appeared, in ms since spawn. */
  bootedAt = 0;

  private async waitForPrompt(timeoutMs: number): Promise<void> {
    this.bootedAt = await this.guest.waitFor(new RegExp(`${escapeRegExp(SHELL_BANNER)}[^]*# `), timeoutMs);
  }

  /** Answers as a terminal would: the cursor is after the text on the last line (escapes left out). */
  private answerCursorQuery(): void {
    const out = this.guest.output();
    const line = out.slice(out.lastIndexOf('\n') + 1).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
    this.guest.write(`\x1b[24;${line.length + 1}R`);
  }

  /**
   * Runs one shell command (it may span lines) and resolves with its output and status; rejects
   * with the console so far if it has not finished within `timeoutMs` or vmm exits first.
   */
  async run(command: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<CommandResult> {
    const n = ++this.commands;
    const begin = `@vmm-begin-${n}@\r\n`;
    const end = new RegExp(`\r\n@vmm-end-${n}-(\\d+)@\r\n`);
    const from = this.guest.output().length;
    this.guest.write(`echo @vmm-begin-${n}@; {\n${command}\n}; printf '\\n@vmm-end-${n}-%s@\\n' "$?"\n`);
    try {
      await this.guest.waitFor(end, timeoutMs, from);
    } catch (error) {
      this.guest.write(CTRL_C);
      throw new CommandError(`the guest command ${JSON.stringify(command)} did not finish: ${(error as Error).message}`);
    }
    const out = this.guest.output();
    const start = out.indexOf(begin, from);
    const match = start < 0 ? null : end.exec(out.slice(start + begin.length));
    if (start < 0 || !match) {
      throw new CommandError(`the console lost the markers of ${JSON.stringify(command)}; since it was typed: ${JSON.stringify(out.slice(from, from + 2000))}`);
    }
    return {
      output: out.slice(start + begin.length, start + begin.length + match.index).replace(/\r\n/g, '\n'),
      status: Number(match[1]),
    };
  }

  /** `run`, expecting exit status 0; resolves with the output. */
  async ok(command: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
    const result = await this.run(command, timeoutMs);
    if (result.status !== 0) throw new CommandError(`the guest command ${JSON.stringify(command)} exited with ${result.status}:\n${result.output}`);
    return result.output;
  }

  /** Types a line without waiting for anything (a command that never ends, `reboot -f`). */
  type(line: string): void {
    this.guest.write(`${line}\n`);
  }

  output(): string {
    return this.guest.output();
  }

  async stop(graceMs?: number) {
    return this.guest.stop(graceMs);
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
