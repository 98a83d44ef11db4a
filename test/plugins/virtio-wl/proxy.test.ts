/**
 * `vmm wl-proxy` end to end (spec §5.3): `vmm run` boots the bare-metal "compositor" guest
 * guest/build/wl-compositor.elf with the control and virtio-wl plugins (the proxy's notification
 * socket configured as the named socket "wl-proxy"); `vmm wl-proxy` accepts host clients and hands
 * each to the VM with `wl add wl-conn-%d --fd`; Debian's `wayland-info` (wayland-utils) connects
 * to the proxy's socket and prints the guest's globals. All three are child processes through the
 * real entry point.
 */
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { CLI, ROOT } from '../../helpers/guest-run';
import { tempDir } from './driver';
import { until } from '../../helpers/wait';

const COMPOSITOR_GUEST = path.join(ROOT, 'guest', 'build', 'wl-compositor.elf');
const hasWaylandInfo = spawnSync('sh', ['-c', 'command -v wayland-info'], { encoding: 'utf8' }).status === 0;
const maybe = hasWaylandInfo ? test : test.skip;

interface Result { code: number | null; stdout: string; stderr: string }

function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 60_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

const vmm = (args: string[]): Promise<Result> => run(process.execPath, [CLI, ...args]);

class Child {
  output = '';
  readonly exit: Promise<number | null>;
  constructor(readonly process: ChildProcess) {
    process.stdout!.on('data', (d) => { this.output += d; });
    process.stderr!.on('data', (d) => { this.output += d; });
    this.exit = new Promise((resolve) => process.on('exit', (code) => resolve(code)));
  }

  static vmm(args: string[]): Child {
    return new Child(spawn(globalThis.process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  count(text: string): number { return this.output.split(text).length - 1; }

  async stop(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGTERM');
    await this.exit;
  }
}

describe('vmm wl-proxy: wayland-info on the host talks to a compositor inside the VM', () => {
  let dir: string;
  let control: string;
  let notify: string;
  let listen: string;
  let vm: Child;
  let proxy: Child | undefined;

  beforeAll(async () => {
    dir = tempDir('vmm-wl-proxy-');
    fs.chmodSync(dir, 0o700);
    control = path.join(dir, 'vm.sock');
    notify = path.join(dir, 'notify.sock');
    listen = path.join(dir, 'wayland-vm');
    vm = Child.vmm(['run', '--kernel', COMPOSITOR_GUEST, '--cmdline', 'clients=4',
      '--plugin', `control=${JSON.stringify({ socket: control })}`,
      '--plugin', `virtio-wl=${JSON.stringify({ sockets: { 'wl-proxy': notify } })}`]);
    await until('the control socket', () => fs.existsSync(control) || vm.process.exitCode !== null, 30_000);
    if (!fs.existsSync(control)) throw new Error(`vmm run ended early:\n${vm.output}`);
  }, 40_000);

  afterAll(async () => {
    await proxy?.stop();
    await vm?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function wlList(): Promise<unknown> {
    const r = await vmm(['ctl', '--socket', control, '--json', 'wl', 'list']);
    expect(r.code).toBe(0);
    return (JSON.parse(r.stdout) as { result: { sockets: unknown } }).result.sockets;
  }

  async function waylandInfo(): Promise<Result> {
    return run('wayland-info', [], { ...process.env, XDG_RUNTIME_DIR: dir, WAYLAND_DISPLAY: listen }, 60_000);
  }

  function expectGlobals(r: Result): void {
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/interface: 'wl_compositor',\s+version:\s+4, name:\s+1/);
    expect(r.stdout).toMatch(/interface: 'wl_shm',\s+version:\s+1, name:\s+2/);
    expect(r.stdout).toMatch(/interface: 'vmm_test_global',\s+version:\s+1, name:\s+3/);
  }

  test('start-up errors: no control socket → 3; a listen path in use → 2; a missing option → 2', async () => {
    const missing = await vmm(['wl-proxy', '--socket', path.join(dir, 'nope.sock'), '--listen', path.join(dir, 'l'), '--notify', path.join(dir, 'n')]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^vmm: cannot connect to .*nope\.sock/);
    const inUse = await vmm(['wl-proxy', '--socket', control, '--listen', control, '--notify', path.join(dir, 'n')]);
    expect(inUse.code).toBe(2);
    expect(inUse.stderr).toContain('is in use');
    const regular = path.join(dir, 'file');
    fs.writeFileSync(regular, '');
    const notSocket = await vmm(['wl-proxy', '--socket', control, '--listen', regular, '--notify', path.join(dir, 'n')]);
    expect(notSocket.code).toBe(2);
    expect(notSocket.stderr).toContain('is not a socket');
    expect((await vmm(['wl-proxy', '--socket', control, '--listen', path.join(dir, 'l')])).code).toBe(2);
    expect(fs.existsSync(path.join(dir, 'l'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'n'))).toBe(false);
  });

  test('SIGTERM: exit 0 and both socket files removed', async () => {
    const l = path.join(dir, 'l2');
    const n = path.join(dir, 'n2');
    const p = Child.vmm(['wl-proxy', '--socket', control, '--listen', l, '--notify', n]);
    await until('the proxy to start', () => p.output.includes('accepting on') || p.process.exitCode !== null, 20_000);
    expect(fs.existsSync(l) && fs.existsSync(n)).toBe(true);
    p.process.kill('SIGTERM');
    expect(await p.exit).toBe(0);
    expect(fs.existsSync(l) || fs.existsSync(n)).toBe(false);
  });

  maybe('wayland-info three times (two in sequence, one beside a held connection): each exits 0 with the guest\'s globals, each on its own wl-conn-N, used once', async () => {
    proxy = Child.vmm(['wl-proxy', '-v', '--socket', control, '--listen', listen, '--notify', notify]);
    await until('the proxy socket', () => fs.existsSync(listen) || proxy!.process.exitCode !== null, 20_000);
    expect(proxy.process.exitCode).toBeNull();
    await until(`the guest's notification context (serial: ${vm.output})`, () => vm.output.includes('wl: notify open'), 30_000);

    // 1 and 2: one after the other. The guest closes each context, the VMM forgets the name,
    // and `%d` takes the lowest free number again.
    for (let i = 1; i <= 2; i++) {
      expectGlobals(await waylandInfo());
      await until(`the guest to finish client ${i} (serial: ${vm.output})`, () => vm.count('wl: bye ') >= i, 30_000);
      expect(await wlList()).toEqual([{ name: 'wl-proxy', kind: 'listening', path: notify, consumed: false }]);
    }
    expect(vm.count('wl: client wl-conn-0\n')).toBe(2);

    // 3: a client that stays connected holds wl-conn-0 (consumed: its fd went to one context) …
    const held = net.connect(listen);
    await until(`the guest to open the held connection (serial: ${vm.output})`, () => vm.count('wl: client ') >= 3, 30_000);
    expect(await wlList()).toEqual([
      { name: 'wl-conn-0', kind: 'non-listening', consumed: true },
      { name: 'wl-proxy', kind: 'listening', path: notify, consumed: false },
    ]);
    // … so the next client gets wl-conn-1.
    expectGlobals(await waylandInfo());
    expect(vm.output).toContain('wl: client wl-conn-1\n');
    await until(`the guest to finish wl-conn-1 (serial: ${vm.output})`, () => vm.output.includes('wl: bye wl-conn-1\n'), 30_000);
    expect(proxy.output).toMatch(/new client → wl-conn-0\n.*new client → wl-conn-0\n.*new client → wl-conn-0\n.*new client → wl-conn-1\n/s);
    expect(vm.output).not.toContain('wl: error');

    // The held client leaves: the guest's fourth client is done, and it powers off (clients=4).
    held.destroy();
    expect(await vm.exit).toBe(0);
    // The proxy notices the VMM is gone: exit 1, socket files removed.
    expect(await proxy.exit).toBe(1);
    expect(proxy.output).toContain('the connection to the VMM');
    expect(fs.existsSync(listen) || fs.existsSync(notify)).toBe(false);
  }, 180_000);
});
