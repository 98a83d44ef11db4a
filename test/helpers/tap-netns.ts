/**
 * A network namespace holding a persistent TAP with an address, for guests that reach the host
 * through it: vmm (or QEMU) runs inside the namespace (`ip netns exec`) and opens the TAP by
 * name, so all guest traffic stays in the namespace. Needs root.
 *
 * Commands run in the namespace asynchronously: a VMM child's console pipe must keep draining
 * while a long ping runs, or a guest printing to its UART would block on a full pipe.
 */
import { execFile, execFileSync, spawnSync } from 'child_process';

export interface CommandResult {
  /** Exit status, or null when the command was killed (timeout). */
  status: number | null;
  stdout: string;
  stderr: string;
}

export class TapNamespace {
  private created = false;

  constructor(readonly name: string, readonly tap: string, readonly hostIp: string, readonly prefixLength = 24) {}

  create(): void {
    spawnSync('ip', ['netns', 'delete', this.name], { stdio: 'ignore' });
    execFileSync('ip', ['netns', 'add', this.name], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.created = true;
    const ipIn = (...args: string[]) => execFileSync('ip', ['-n', this.name, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    ipIn('link', 'set', 'lo', 'up');
    ipIn('tuntap', 'add', 'dev', this.tap, 'mode', 'tap');
    ipIn('addr', 'add', `${this.hostIp}/${this.prefixLength}`, 'dev', this.tap);
    ipIn('link', 'set', this.tap, 'up');
  }

  /** `ip netns exec NAME command args…` for a child that runs in the namespace. */
  wrap(command: string, args: string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', this.name, command, ...args]];
  }

  /** Runs a command in the namespace; never rejects (the status says how it ended). */
  run(command: string, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
    const [file, argv] = this.wrap(command, args);
    return new Promise((resolve) => {
      execFile(file, argv, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
        const code = (error as NodeJS.ErrnoException & { code?: unknown } | null)?.code;
        resolve({ status: error ? (typeof code === 'number' ? code : null) : 0, stdout, stderr });
      });
    });
  }

  delete(): void {
    if (!this.created) return;
    this.created = false;
    spawnSync('ip', ['netns', 'delete', this.name], { stdio: 'ignore' });
  }
}
