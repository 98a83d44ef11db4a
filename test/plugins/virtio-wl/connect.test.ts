/**
 * NEW_CTX against a listener whose backlog is full (issue 10, item 6). The connect used to be a
 * blocking connect(2) on the main thread: the event loop stopped, SIGTERM went unhandled and
 * only SIGKILL ended vmm. Now the connect never blocks; the NEW_CTX reply waits (the commands
 * behind it too) until the compositor accepts, for at most connectTimeoutMs, then RESP_ERR.
 * A listen(2) backlog of 0 with one connection queued is "full" on Linux: the next connect
 * would wait.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../../native';
import { CLI, ROOT } from '../../helpers/guest-run';
import {
  ctrlVfd, HostConn, HostListener, openFdCount, respType, startWlVm, tempDir, vfdNew, vfdSend, type WlVm,
} from './driver';
import { sleep, until } from '../../helpers/wait';

const OK = 0x1000, RESP_VFD_NEW = 0x1001, ERR = 0x1100;
const CLOSE = 0x101, NEW_CTX = 0x104, NEW_PIPE = 0x105;
const WL_CLIENT_GUEST = path.join(ROOT, 'guest', 'build', 'wl-client.elf');

/** A client connection that takes the backlog's only place (connect without waiting). */
function takeBacklog(socketPath: string): number {
  const fd = native.unixConnect(socketPath, native.SOCK_STREAM, false);
  if (fd === null) throw new Error(`the backlog of ${socketPath} is full already`);
  return fd;
}

/** How late a 50 ms timer fires: the event loop's responsiveness. */
async function timerLateness(): Promise<number> {
  const start = Date.now();
  await sleep(50);
  return Date.now() - start - 50;
}

describe('native unixConnect(path, type, wait = false): the connect that never blocks', () => {
  const connect = native.unixConnect as unknown as (p: string, type: number, wait?: unknown) => number | null;

  test('connects when the backlog has room, null when it is full (no fd left open), errors as before', () => {
    const dir = tempDir();
    const listener = new HostListener(path.join(dir, 'l'), 0);
    try {
      const first = connect(listener.path, native.SOCK_STREAM, false);
      expect(typeof first).toBe('number');
      const before = openFdCount();
      expect(connect(listener.path, native.SOCK_STREAM, false)).toBeNull();
      expect(openFdCount()).toBe(before);
      native.close(first!);
      expect(() => connect(path.join(dir, 'nobody'), native.SOCK_STREAM, false)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
      expect(() => connect(listener.path, native.SOCK_STREAM, 1)).toThrow(/Usage: unixConnect\(path, type, wait\?\): wait must be a boolean/);
    } finally {
      listener.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('NEW_CTX on a listener with a full backlog (in-process VM)', () => {
  let dir: string;
  let listener: HostListener;
  let wl: WlVm;

  beforeAll(async () => {
    dir = tempDir();
    listener = new HostListener(path.join(dir, 'busy'), 0);
    wl = await startWlVm({ sockets: { '': listener.path }, connectTimeoutMs: 1000 });
  });

  afterAll(async () => {
    await wl?.stop();
    listener?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the reply waits while the event loop runs on; commands behind it wait their turn; the compositor accepts → RESP_VFD_NEW on a working context', async () => {
    const d = wl.driver;
    const filler = takeBacklog(listener.path);
    const ctx = d.submit(vfdNew(NEW_CTX, 1, 3));
    const next = d.submit(vfdNew(NEW_PIPE, 2, 1));
    for (let i = 0; i < 4; i++) expect(await timerLateness()).toBeLessThan(100);
    expect(d.usedLen(ctx.head)).toBeUndefined();
    expect(d.usedLen(next.head)).toBeUndefined();
    // The compositor gets round to it: the queued connection is accepted, the device's gets in.
    const first = await listener.accept();
    expect(await until('the NEW_CTX reply', () => d.usedLen(ctx.head), 2000)).toBe(32);
    expect(d.memory.readU32(ctx.replyAt)).toBe(RESP_VFD_NEW);
    expect(await until('the NEW_PIPE reply', () => d.usedLen(next.head))).toBe(32);
    const peer = await listener.accept();
    expect(respType(await d.command(vfdSend(1, [], 'hello'), { replyLen: 8 }))).toBe(OK);
    expect((await peer.recv(5)).data.toString()).toBe('hello');
    for (const id of [1, 2]) expect(respType(await d.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
    for (const c of [first, peer, new HostConn(filler)]) c.close();
  });

  test('a backlog that stays full: RESP_ERR after connectTimeoutMs (1 s here), no fd left behind, the device goes on', async () => {
    const d = wl.driver;
    const filler = takeBacklog(listener.path);
    const before = openFdCount();
    const started = Date.now();
    const ctx = d.submit(vfdNew(NEW_CTX, 3, 3));
    expect(await until('the NEW_CTX reply', () => d.usedLen(ctx.head), 5000)).toBe(4);
    const waited = Date.now() - started;
    expect(d.memory.readU32(ctx.replyAt)).toBe(ERR);
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(3000);
    expect(openFdCount()).toBe(before);
    expect(wl.device.vfdCount).toBe(0);
    expect(respType(await d.command(vfdNew(NEW_PIPE, 3, 1)))).toBe(RESP_VFD_NEW);
    expect(respType(await d.command(ctrlVfd(CLOSE, 3), { replyLen: 8 }))).toBe(OK);
    // The queued client is still there for the compositor: nothing of the device's was.
    const queued = await listener.accept();
    expect(native.unixAccept(listener.fd)).toBeNull();
    queued.close();
    native.close(filler);
  });
});

describe('vmm run with a compositor whose backlog is full (the real entry point)', () => {
  test('the guest\'s NEW_CTX waits, `vmm ctl status` still answers at once, and SIGTERM stops vmm (exit 143)', async () => {
    const dir = tempDir('vmm-wl-busy-');
    const control = path.join(dir, 'vm.sock');
    const listener = new HostListener(path.join(dir, 'busy'), 0);
    const filler = takeBacklog(listener.path);
    const vm = spawn(process.execPath, [CLI, 'run', '--kernel', WL_CLIENT_GUEST, '--memory', '64M',
      '--plugin', `control=${JSON.stringify({ socket: control })}`,
      '--plugin', `virtio-wl=${JSON.stringify({ sockets: { '': listener.path }, connectTimeoutMs: 60_000 })}`],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    vm.stdout!.on('data', (c) => { output += c; });
    vm.stderr!.on('data', (c) => { output += c; });
    const exit = new Promise<number | null>((resolve) => vm.on('exit', (code) => resolve(code)));
    try {
      await until(`the guest to reach NEW_CTX (output: ${output})`, () => output.includes('wl: event_idx') || vm.exitCode !== null, 30_000);
      await sleep(300);
      expect(output).not.toContain('wl: connected');
      const started = Date.now();
      const status = spawnSync(process.execPath, [CLI, 'ctl', '--socket', control, '--timeout', '5000', 'status'], { encoding: 'utf8' });
      expect({ code: status.status, stderr: status.stderr }).toEqual({ code: 0, stderr: '' });
      expect(Date.now() - started).toBeLessThan(5000);
      vm.kill('SIGTERM');
      const timer = setTimeout(() => vm.kill('SIGKILL'), 10_000);
      expect(await exit).toBe(143);
      clearTimeout(timer);
    } finally {
      if (vm.exitCode === null && vm.signalCode === null) vm.kill('SIGKILL');
      await exit;
      native.close(filler);
      listener.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
