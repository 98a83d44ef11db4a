/**
 * `wl add|list|remove` through the real control socket (ControlClient and `vmm ctl`), and the
 * socket enum: a NonListening fd serves exactly one context.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Plugin } from '../../../plugin-api';
import { native } from '../../../native';
import { ControlClient } from '../../../plugins/control/client';
import { loadControlPlugin } from '../control/control-fixture';
import { CLI } from '../../helpers/guest-run';
import { parseOptions } from '../../../plugins/virtio-wl/index';
import { WlSocketRegistry } from '../../../plugins/virtio-wl/sockets';
import {
  ctrlVfd, HostConn, HostListener, respType, startWlVm, tempDir, vfdNew, vfdSend, type WlVm,
} from './driver';
import { until } from '../../helpers/wait';

const RESP_VFD_NEW = 0x1001, OK = 0x1000, ERR = 0x1100, NAMED = 0x10a, CLOSE = 0x101;

type Ok = { result: Record<string, unknown> };

describe('wl control commands', () => {
  let dir: string;
  let wl: WlVm;
  let client: ControlClient;
  let listener: HostListener;

  beforeAll(async () => {
    dir = tempDir();
    listener = new HostListener(path.join(dir, 'wayland-0'));
    const control = loadControlPlugin({ socket: path.join(dir, 'control.sock') });
    const controlPlugin: Plugin = { name: 'control', apply: (vmm) => control.plugin.apply(vmm, control.options) };
    wl = await startWlVm({ sockets: { '': listener.path } }, [controlPlugin]);
    client = await ControlClient.connect(path.join(dir, 'control.sock'));
  });

  afterAll(async () => {
    client?.close();
    await wl?.stop();
    listener?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function ok(command: string, args: string[], fds: number[] = []): Promise<Record<string, unknown>> {
    const response = await client.request(command, args, fds);
    if ('error' in response) throw new Error(`${response.error.code}: ${response.error.message}`);
    return (response as Ok).result;
  }

  test('wl add NAME with an fd, twice: wl-conn-0 then wl-conn-1; a context on wl-conn-0 uses exactly that connection, once', async () => {
    const [mine0, theirs0] = native.unixPair(native.SOCK_STREAM);
    const [mine1, theirs1] = native.unixPair(native.SOCK_STREAM);
    expect(await ok('wl', ['add', 'wl-conn-%d', '--fd'], [theirs0])).toEqual({ name: 'wl-conn-0', kind: 'non-listening' });
    expect(await ok('wl', ['add', 'wl-conn-%d'], [theirs1])).toEqual({ name: 'wl-conn-1', kind: 'non-listening' });
    native.close(theirs0);
    native.close(theirs1);
    expect((await ok('wl', ['list'])).sockets).toEqual([
      { name: '', kind: 'listening', path: listener.path, consumed: false },
      { name: 'wl-conn-0', kind: 'non-listening', consumed: false },
      { name: 'wl-conn-1', kind: 'non-listening', consumed: false },
    ]);
    const d = wl.driver;
    expect(respType(await d.command(vfdNew(NAMED, 1, 3, 0, 'wl-conn-0')))).toBe(RESP_VFD_NEW);
    expect(respType(await d.command(vfdSend(1, [], 'over the accepted connection'), { replyLen: 8 }))).toBe(OK);
    const peer0 = new HostConn(mine0);
    expect((await peer0.recv(28)).data.toString()).toBe('over the accepted connection');
    peer0.send('and back');
    const [recv] = await d.events(1);
    expect(Buffer.from(recv.subarray(16)).toString()).toBe('and back');
    // Consumed: listed as such, and a second context on it fails (unknown/used name → RESP_ERR).
    expect((await ok('wl', ['list'])).sockets).toContainEqual({ name: 'wl-conn-0', kind: 'non-listening', consumed: true });
    expect(respType(await d.command(vfdNew(NAMED, 2, 3, 0, 'wl-conn-0')))).toBe(ERR);
    // The guest closes the context: the host side sees the end, and the name is free again.
    expect(respType(await d.command(ctrlVfd(CLOSE, 1), { replyLen: 8 }))).toBe(OK);
    await until('EOF on the accepted connection', () => peer0.eof());
    peer0.close();
    expect(((await ok('wl', ['list'])).sockets as { name: string }[]).map((s) => s.name)).toEqual(['', 'wl-conn-1']);
    // wl remove closes an unused fd: its peer sees the end; the name no longer opens.
    expect(await ok('wl', ['remove', 'wl-conn-1'])).toEqual({ removed: 'wl-conn-1' });
    const peer1 = new HostConn(mine1);
    await until('EOF after wl remove', () => peer1.eof());
    peer1.close();
    expect(respType(await d.command(vfdNew(NAMED, 2, 3, 0, 'wl-conn-1')))).toBe(ERR);
  });

  test('wl add NAME PATH: a listening socket, connected anew for every context', async () => {
    const extra = new HostListener(path.join(dir, 'extra'));
    expect(await ok('wl', ['add', 'extra', extra.path])).toEqual({ name: 'extra', kind: 'listening', path: extra.path });
    const d = wl.driver;
    expect(respType(await d.command(vfdNew(NAMED, 10, 3, 0, 'extra')))).toBe(RESP_VFD_NEW);
    expect(respType(await d.command(vfdNew(NAMED, 11, 3, 0, 'extra')))).toBe(RESP_VFD_NEW);
    const a = await extra.accept();
    const b = await extra.accept();
    for (const id of [10, 11]) expect(respType(await d.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
    a.close();
    b.close();
    expect(await ok('add', ['wl', 'extra2', extra.path])).toMatchObject({ name: 'extra2' });
    for (const name of ['extra', 'extra2']) await ok('wl', ['remove', name]);
    extra.close();
  });

  test('errors: a taken name, a name over 32 bytes, a non-socket fd, unknown subcommands and names', async () => {
    const err = async (args: string[], fds: number[] = []) => {
      const r = await client.request('wl', args, fds);
      return 'error' in r ? r.error.code : 'no error';
    };
    expect(await err(['add', '', '/x'])).toBe('ERR_WL_BAD_NAME');
    expect(await err(['add', 'n'.repeat(33), '/x'])).toBe('ERR_WL_BAD_NAME');
    const file = fs.openSync(path.join(dir, 'plain'), 'w');
    expect(await err(['add', 'f'], [file])).toBe('ERR_BAD_FD_TYPE');
    fs.closeSync(file);
    expect(await err(['add', 'f', '--fd'])).toBe('ERR_BAD_ARGS');
    expect(await err(['remove', 'nope'])).toBe('ERR_WL_UNKNOWN_SOCKET');
    expect(await err(['frobnicate'])).toBe('ERR_BAD_ARGS');
    expect(await err(['list', 'x'])).toBe('ERR_BAD_ARGS');
  });

  test('vmm ctl --fd N wl add wl-conn-%d prints the chosen name', async () => {
    const [mine, theirs] = native.unixPair(native.SOCK_STREAM);
    const child = spawn(process.execPath, [CLI, 'ctl', '--socket', path.join(dir, 'control.sock'), '--fd', '3', 'wl', 'add', 'wl-conn-%d'],
      { stdio: ['ignore', 'pipe', 'pipe', theirs] });
    let out = '';
    child.stdout!.on('data', (c) => { out += c; });
    child.stderr!.on('data', (c) => { out += c; });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    native.close(theirs);
    expect(out).toMatch(/name\s+wl-conn-0/);
    expect(code).toBe(0);
    await ok('wl', ['remove', 'wl-conn-0']);
    native.close(mine);
  });
});

describe('wl socket map and options', () => {
  test('%d takes the lowest free number; duplicate names are refused', () => {
    const reg = new WlSocketRegistry();
    expect(reg.add('c-%d', { kind: 'listening', path: '/a' })).toBe('c-0');
    expect(reg.add('c-%d', { kind: 'listening', path: '/a' })).toBe('c-1');
    expect(reg.add('c-%d', { kind: 'listening', path: '/a' })).toBe('c-2');
    reg.remove('c-1');
    expect(reg.add('c-%d', { kind: 'listening', path: '/a' })).toBe('c-1');
    expect(reg.add('%d-x', { kind: 'listening', path: '/a' })).toBe('0-x');
    expect(() => reg.add('c-1', { kind: 'listening', path: '/a' })).toThrow(/already used/);
    expect(() => reg.add('%d%d', { kind: 'listening', path: '/a' })).toThrow(/at most once/);
  });

  test('options: sockets map, unknown options and bad names are errors naming the option', () => {
    expect(parseOptions({ sockets: { '': '/run/w', x: '/run/x' } })).toEqual({ sockets: { '': '/run/w', x: '/run/x' } });
    expect(parseOptions({})).toEqual({ sockets: {} });
    expect(() => parseOptions({ socket: {} })).toThrow(/unknown option 'socket'/);
    expect(() => parseOptions({ sockets: [] })).toThrow(/option 'sockets'/);
    expect(() => parseOptions({ sockets: { x: 3 } })).toThrow(/option 'sockets'/);
    expect(() => parseOptions({ sockets: { ['n'.repeat(33)]: '/x' } })).toThrow(/longer than 32 bytes/);
  });
});
