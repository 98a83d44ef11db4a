/**
 * `vmm ctl` against `vmm run --plugin control=…`, both as child processes through the real
 * entry point (dist/cli/vmm.js): output, --json, --fd, exit codes, an events stream, and a stop
 * that ends the run process with exit code 0.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { CLI, tempDir } from './control-fixture';
import { until } from '../../helpers/wait';

interface Result { code: number | null; stdout: string; stderr: string }

function vmm(args: string[], options: { stdio3?: number } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const stdio: ('pipe' | 'ignore' | number)[] = ['ignore', 'pipe', 'pipe'];
    if (options.stdio3 !== undefined) stdio.push(options.stdio3);
    const child = spawn(process.execPath, [CLI, ...args], { stdio });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)));
}

describe('vmm ctl against vmm run --plugin control', () => {
  let dir: string;
  let socket: string;
  let run: ChildProcess;
  let runOutput = '';
  let runExit: Promise<number | null>;

  beforeAll(async () => {
    dir = tempDir();
    socket = path.join(dir, 'vm.sock');
    // stdin stays open (a pipe we never end), so the demo guest keeps waiting for its line.
    run = spawn(process.execPath, [CLI, 'run', '--plugin', `control=${JSON.stringify({ socket })}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    run.stdout!.on('data', (d) => { runOutput += d; });
    run.stderr!.on('data', (d) => { runOutput += d; });
    runExit = exited(run);
    await until('the control socket', () => fs.existsSync(socket) || run.exitCode !== null, 30000);
    if (!fs.existsSync(socket)) throw new Error(`vmm run ended early:\n${runOutput}`);
    // The socket is served from beforeBoot on, while the VM is still booting; the tests below
    // talk to a running VM.
    for (let tries = 0; ; tries++) {
      const status = JSON.parse((await vmm(['ctl', '--socket', socket, '--json', 'status'])).stdout);
      if (status.result?.state === 'running') break;
      if (tries > 300 || run.exitCode !== null) throw new Error(`the VM never reached running:\n${runOutput}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  afterAll(async () => {
    if (run && run.exitCode === null) {
      run.kill('SIGTERM');
      await runExit;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('status: a readable table, exit 0', async () => {
    const r = await vmm(['ctl', '--socket', socket, 'status']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^state\s+running$/m);
    expect(r.stdout).toMatch(/^vCPUs\s+1$/m);
    expect(r.stdout).toMatch(/^memory\s+64 MiB$/m);
    expect(r.stdout).toMatch(/^plugins\s+control \(first-party control\)$/m);
    expect(r.stdout).toMatch(/^DEVICE\s+BUS\s+BASE\s+LENGTH$/m);
    expect(r.stdout).toMatch(/^serial \(COM1\)\s+pio\s+0x3f8\s+0x8$/m);
  });

  test('--json prints the response as the protocol has it', async () => {
    const r = await vmm(['ctl', '--socket', socket, '--json', 'status']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ version: 1, id: 1, result: { state: 'running', vcpus: 1, memory: 64 * 1024 * 1024 } });
  });

  test('an error from the server: message and code on stderr, exit 1', async () => {
    const r = await vmm(['ctl', '--socket', socket, 'frobnicate', 'now']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("vmm ctl: unknown command 'frobnicate'; the built-in commands are status, pause, resume, stop, events, and no plugin answers 'frobnicate'. (ERR_UNKNOWN_COMMAND)\n");
    const json = await vmm(['ctl', '--socket', socket, '--json', 'resume']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: 'ERR_VM_STATE', message: 'cannot resume a VM that is running.' } });
  });

  test('usage errors exit 2: no --socket, a bad --timeout, an --fd that is not open', async () => {
    const noSocket = await vmm(['ctl', 'status']);
    expect(noSocket.code).toBe(2);
    expect(noSocket.stderr).toContain("required option '--socket <path>' not specified");
    const timeout = await vmm(['ctl', '--socket', socket, '--timeout', 'soon', 'status']);
    expect(timeout.code).toBe(2);
    expect(timeout.stderr).toContain("--timeout must be a whole number of milliseconds (at least 1); got 'soon'");
    const closed = await vmm(['ctl', '--socket', socket, 'status', '--fd', '200']);
    expect(closed.code).toBe(2);
    expect(closed.stderr).toContain('--fd 200: file descriptor 200 is not open in this process; open it in the shell, e.g. --fd 200 200<>FILE');
    const stdin = await vmm(['ctl', '--socket', socket, 'status', '--fd', '0']);
    expect(stdin.code).toBe(2);
    expect(stdin.stderr).toContain('--fd 0: stdin, stdout and stderr cannot be passed');
  });

  test('--fd passes an inherited descriptor with the request (a command that does not take it closes it)', async () => {
    const file = fs.openSync('/dev/null', 'r');
    try {
      const r = await vmm(['ctl', '--socket', socket, '--json', 'status', '--fd', '3'], { stdio3: file });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ result: { state: 'running' } });
    } finally {
      fs.closeSync(file);
    }
  });

  test('cannot connect: exit 3', async () => {
    const r = await vmm(['ctl', '--socket', path.join(dir, 'nothing.sock'), 'status']);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(`vmm: cannot connect to ${path.join(dir, 'nothing.sock')}: no such socket (is the VM running with the control plugin?)\n`);
  });

  test('events, pause, resume, stop: the stream shows every change in order; run exits 0', async () => {
    const events = spawn(process.execPath, [CLI, 'ctl', '--socket', socket, 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let lines = '';
    events.stdout!.on('data', (d) => { lines += d; });
    events.stderr!.on('data', (d) => { lines += d; });
    const eventsExit = exited(events);
    // Subscribed once the server counts its connection next to ours.
    for (let tries = 0; ; tries++) {
      const status = JSON.parse((await vmm(['ctl', '--socket', socket, '--json', 'status'])).stdout);
      if (status.result.connections >= 2) break;
      if (tries > 100) throw new Error('the events client never connected');
    }

    const pause = await vmm(['ctl', '--socket', socket, 'pause']);
    expect(pause).toMatchObject({ code: 0, stdout: 'state  paused\n' });
    const again = await vmm(['ctl', '--socket', socket, 'pause']);
    expect(again).toMatchObject({ code: 1, stderr: 'vmm ctl: cannot pause a VM that is paused. (ERR_VM_STATE)\n' });
    expect((await vmm(['ctl', '--socket', socket, 'resume'])).code).toBe(0);
    const stop = await vmm(['ctl', '--socket', socket, 'stop']);
    expect(stop).toMatchObject({ code: 0, stdout: 'state  stopping\n' });

    expect(await runExit).toBe(0);
    expect(await eventsExit).toBe(0);
    expect(lines).toBe([
      'state running -> paused',
      'state paused -> running',
      'state running -> stopping',
      'state stopping -> stopped',
      '',
    ].join('\n'));
    expect(fs.existsSync(socket)).toBe(false);
  });
});
