/**
 * Options and the socket path: a stale socket file from a dead VMM is replaced, a live one is
 * not, and anything that is not a socket is left alone. A VM that cannot get its socket does
 * not start, and leaks nothing.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DEFAULT_CONFIG } from '../../../core/config';
import { Vm } from '../../../core/vm';
import { native } from '../../../native';
import { loadPlugin } from '../../../core/plugins/loader';
import { ControlClient } from '../../../plugins/control/client';
import { DEFAULT_OPTIONS, parseOptions } from '../../../plugins/control/index';
import { MiB, loadControlPlugin, settledFdCount, expectFdCount, startControlVm, tempDir } from './control-fixture';

describe('control plugin options', () => {
  test('defaults', () => {
    expect(parseOptions({ socket: '/run/x.sock' })).toEqual({
      socket: '/run/x.sock', allowAnyUid: false, maxRequestBytes: 65536, maxFds: 8, stopTimeoutMs: 10000, maxConnections: 256,
    });
    expect(DEFAULT_OPTIONS.maxRequestBytes).toBe(64 * 1024);
  });

  test.each([
    [{ socket: '/x', sokcet: 1 }, "unknown option 'sokcet'; the options are socket, allowAnyUid, maxRequestBytes, maxFds, stopTimeoutMs, maxConnections"],
    [{}, "option 'socket' is required"],
    [{ socket: '' }, "option 'socket' must be the path of the control socket"],
    [{ socket: `/${'x'.repeat(120)}` }, "option 'socket' is 121 bytes long; a Unix socket path may have at most 107"],
    [{ socket: '/x', allowAnyUid: 'yes' }, "option 'allowAnyUid' must be true or false; got \"yes\""],
    [{ socket: '/x', maxFds: 300 }, "option 'maxFds' must be a whole number from 0 to 253; got 300"],
    [{ socket: '/x', maxRequestBytes: 1.5 }, "option 'maxRequestBytes' must be a whole number from 256 to 1048576; got 1.5"],
    [{ socket: '/x', stopTimeoutMs: 0 }, "option 'stopTimeoutMs' must be a whole number from 1 to 3600000; got 0"],
  ])('%j is refused: %s', (options, message) => {
    expect(() => parseOptions(options)).toThrow(message);
  });

  // Each limit a user may raise has a ceiling of its own: the value at the ceiling is taken, one more is refused.
  test.each([
    ['maxRequestBytes', 256, 1024 * 1024],
    ['maxFds', 0, 253],
    ['maxConnections', 1, 4096],
    ['stopTimeoutMs', 1, 3_600_000],
  ] as const)('%s: %i to %i, and nothing outside', (name, min, max) => {
    expect(parseOptions({ socket: '/x', [name]: min })[name]).toBe(min);
    expect(parseOptions({ socket: '/x', [name]: max })[name]).toBe(max);
    expect(() => parseOptions({ socket: '/x', [name]: max + 1 })).toThrow(`option '${name}' must be a whole number from ${min} to ${max}; got ${max + 1}`);
    expect(() => parseOptions({ socket: '/x', [name]: min - 1 })).toThrow(`option '${name}' must be a whole number from ${min} to ${max}; got ${min - 1}`);
  });

  test('a socket path of 107 bytes is taken, 108 refused', () => {
    expect(parseOptions({ socket: `/${'x'.repeat(106)}` }).socket).toHaveLength(107);
    expect(() => parseOptions({ socket: `/${'x'.repeat(107)}` })).toThrow("option 'socket' is 108 bytes long; a Unix socket path may have at most 107");
  });

  test('a bad option stops the VM before anything starts, naming the plugin and the option (at load time, and in the Vm)', () => {
    const refusal = /^plugin 'control' \(first-party control\): unknown option 'bogus'/;
    expect(() => loadControlPlugin({ socket: '/tmp/x.sock', bogus: true })).toThrow(refusal);
    const good = loadControlPlugin({ socket: '/tmp/x.sock' });
    expect(() => new Vm({ ...DEFAULT_CONFIG }, [{ ...good, options: { socket: '/tmp/x.sock', bogus: true } }], { serialInput: null, serialOutput: 1 }))
      .toThrow(refusal);
  });

  test('a relative socket path resolves against the directory of the config file that gave it', () => {
    expect(loadPlugin({ name: 'control', options: { socket: 'run/vm.sock' } }, '/etc/vmm').options).toMatchObject({ socket: '/etc/vmm/run/vm.sock' });
    expect(parseOptions({ socket: 'vm.sock' }, '/srv')).toMatchObject({ socket: '/srv/vm.sock' });
  });
});

describe('control socket path', () => {
  /** Start a VM that is expected to fail with `message`; returns after checking nothing leaked. */
  async function expectStartFailure(socket: string, message: string | RegExp): Promise<void> {
    const before = await settledFdCount();
    const serialOutput = fs.openSync('/dev/null', 'w');
    try {
      const vm = new Vm({ ...DEFAULT_CONFIG, memory: 64 * MiB }, [loadControlPlugin({ socket })], { serialInput: null, serialOutput });
      await expect(vm.start()).rejects.toThrow(message);
      expect(vm.state).toBe('stopped');
    } finally {
      fs.closeSync(serialOutput);
    }
    await expectFdCount(before);
  }

  test('a stale socket file (nobody listens) is replaced', async () => {
    const dir = tempDir();
    const socket = path.join(dir, 'control.sock');
    // What a VMM that died leaves behind: a bound socket file with no listener.
    native.close(native.unixListen(socket, native.SOCK_SEQPACKET, 1));
    expect(fs.lstatSync(socket).isSocket()).toBe(true);
    const run = await startControlVm({ socket });
    try {
      const client = await ControlClient.connect(socket);
      expect(await client.request('status')).toMatchObject({ result: { state: 'running' } });
      client.close();
      expect(fs.lstatSync(socket).mode & 0o777).toBe(0o600);
    } finally {
      await run.cleanup();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a live socket is not replaced: the second VMM refuses to start, the first keeps its socket', async () => {
    const run = await startControlVm();
    try {
      await expectStartFailure(run.socket, `another VMM is listening on ${run.socket}; stop it or choose another socket path.`);
      expect(fs.lstatSync(run.socket).isSocket()).toBe(true);
      const client = await ControlClient.connect(run.socket);
      expect(await client.request('status')).toMatchObject({ result: { state: 'running' } });
      client.close();
    } finally {
      await run.cleanup();
    }
  });

  test('a path that is not a socket is refused and left as it was', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'control.sock');
    fs.writeFileSync(file, 'keep me');
    try {
      await expectStartFailure(file, `${file} exists and is not a socket; refusing to replace it.`);
      expect(fs.readFileSync(file, 'utf8')).toBe('keep me');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a socket in a directory that does not exist: a clear error', async () => {
    const dir = tempDir();
    try {
      await expectStartFailure(path.join(dir, 'missing', 'control.sock'), /cannot listen on .*missing\/control\.sock: bind failed: No such file or directory/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
