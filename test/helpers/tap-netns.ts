/**
 * A network namespace holding a persistent TAP with an address, for guests that reach the host
 * through it: vmm (or QEMU) runs inside the namespace (`ip netns exec`) and opens the TAP by
 * name, so all guest traffic stays in the namespace. Needs root.
 *
 * Commands run in the namespace asynchronously: a VMM child's console pipe must keep draining
 * while a long ping runs, or a guest printing to its UART would block on a full pipe.
 */
import { execFile, execFileSync, spawnSync, type ExecFileException } from 'child_process';

export interface CommandResult {
  /** Exit status, or null when it did not exit by itself (see `error`). */
  status: number | null;
  stdout: string;
  stderr: string;
  /** Why there is no status: it could not start, was killed (timeout: `killed`), overflowed. */
  error?: string;
}

export class TapNamespace {
  private created = false;

  constructor(readonly name: string, readonly tap: string, readonly hostIp: string, readonly prefixLength = 24) {}

  create(): void {
    spawnSync('ip', ['netns', 'delete', this.name], { stdio: 'ignore' });
    this.deleteStale();
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
      execFile(file, argv, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 }, (error: ExecFileException | null, stdout, stderr) => {
        if (!error) return resolve({ status: 0, stdout, stderr });
        // A non-zero exit puts the status in `code`; a spawn failure puts an errno name there.
        const code: unknown = error.code;
        if (typeof code === 'number' && !error.killed) return resolve({ status: code, stdout, stderr });
        resolve({ status: null, stdout, stderr, error: `${error.message}${error.killed ? ' (killed)' : ''}${error.signal ? ` by ${error.signal}` : ''}` });
      });
    });
  }

  /**
   * Namespaces named like this one (PREFIX-PID) whose process is gone: left by a run that was
   * killed before its cleanup.
   */
  private deleteStale(): void {
    const own = /^(.*-)(\d+)$/.exec(this.name);
    if (!own) return;
    const listed = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
    for (const line of listed.split('\n')) {
      const m = /^(\S*-)(\d+)\b/.exec(line);
      if (!m || m[1] !== own[1] || m[2] === own[2] || processAlive(Number(m[2]))) continue;
      spawnSync('ip', ['netns', 'delete', `${m[1]}${m[2]}`], { stdio: 'ignore' });
    }
  }

  delete(): void {
    if (!this.created) return;
    this.created = false;
    spawnSync('ip', ['netns', 'delete', this.name], { stdio: 'ignore' });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
