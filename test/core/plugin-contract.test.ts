/**
 * plugin-api.d.ts, statement by statement: when each hook runs, what it receives, and what an
 * exception thrown by a tap does; options checked against a plugin's schema; device events;
 * the kernel command line; device errors naming the device and the plugin. Real KVM guests (the
 * probe guest, guest/tests/probe.c), as a plugin sees them.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { DeviceEvent, OptionsSchema, Plugin, VirtioDevice, Vmm, VmExit, VmState } from '../../plugin-api';
import { DEFAULT_CONFIG } from '../../core/config';
import { PluginError } from '../../core/errors';
import type { AnyPlugin, LoadedPlugin } from '../../core/plugins/loader';
import { Vm, type VmIo } from '../../core/vm';
import { PROBE_GUEST, ROOT, startGuest } from '../helpers/guest-run';
import { ControlClient } from '../../plugins/control/client';
import { startControlVm } from '../plugins/control/control-fixture';

const MiB = 1024 * 1024;
const THROWING_WORKER = path.join(ROOT, 'test', 'core', 'fixtures', 'throwing-device.js');

function loaded(plugin: AnyPlugin | Plugin, options: Record<string, unknown> = {}, baseDir?: string): LoadedPlugin {
  return { plugin: plugin as AnyPlugin, options, source: `test ${plugin.name}`, baseDir };
}

/** Boot the probe guest with `plugins` to its end; the serial output is collected. */
async function boot(actions: string, plugins: LoadedPlugin[], config: Partial<typeof DEFAULT_CONFIG> = {}, io: Partial<VmIo> = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-contract-'));
  const file = path.join(dir, 'serial.out');
  const fd = fs.openSync(file, 'w');
  try {
    const vm = new Vm({ ...DEFAULT_CONFIG, memory: 16 * MiB, kernel: PROBE_GUEST, cmdline: actions, ...config }, plugins,
      { serialInput: null, serialOutput: fd, ...io });
    let startError: unknown;
    await vm.start().catch((error) => { startError = error; });
    const exit = await vm.wait();
    return { vm, exit, startError, output: fs.readFileSync(file, 'utf8') };
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A plugin that records every hook it sees in `log`, in order. */
function recorder(log: string[], name = 'recorder'): Plugin {
  return {
    name,
    apply(vmm) {
      const h = vmm.hooks;
      h.createDevices.tap(name, () => { log.push('createDevices'); });
      h.kernelCmdline.tap(name, () => { log.push('kernelCmdline'); return undefined; });
      h.beforeBoot.tap(name, () => { log.push('beforeBoot'); });
      h.afterBoot.tap(name, () => { log.push(`afterBoot:${vmm.state}`); });
      h.stateChange.tap(name, (from, to) => { log.push(`${from}>${to}`); });
      h.shutdown.tap(name, () => { log.push('shutdown'); });
      h.afterShutdown.tap(name, () => { log.push('afterShutdown'); });
      h.failed.tap(name, (error) => { log.push(`failed:${error.message}`); });
    },
  };
}

const tiny: () => VirtioDevice = () => ({
  deviceType: 4, features: 0n, queueMaxSizes: [8], config: new Uint8Array(0),
  activate() {}, queueNotify() {}, reset() {},
});

describe('apply and options', () => {
  test('apply runs once, in state configured, before configure; it only taps hooks', () => {
    const seen: string[] = [];
    const plugin: Plugin = {
      name: 'early',
      apply(vmm, options) {
        seen.push(`apply:${vmm.state}:${JSON.stringify(options)}`);
        expect(() => vmm.memory).toThrow(/before the createDevices hook/);
        vmm.hooks.configure.tap('early', (config) => { seen.push('configure'); return config; });
      },
    };
    new Vm({ ...DEFAULT_CONFIG }, [loaded(plugin, { a: 1 })], { serialInput: null, serialOutput: 1 });
    expect(seen).toEqual(['apply:configured:{"a":1}', 'configure']);
  });

  const schema = {
    type: 'object',
    properties: {
      port: { type: 'integer', minimum: 0, maximum: 0xffff, default: 0x700 },
      log: { type: 'string', resolvePath: true },
    },
    additionalProperties: false,
  } as const satisfies OptionsSchema;

  test('with a schema, apply gets checked options: defaults filled in, paths resolved against baseDir, the user\'s object untouched', () => {
    const got: unknown[] = [];
    const plugin: Plugin<typeof schema> = { name: 'typed', schema, apply: (_vmm, options) => { got.push(options); } };
    const given = { log: 'logs/x.log' };
    const vm = new Vm({ ...DEFAULT_CONFIG }, [loaded(plugin, given, '/etc/vmm')], { serialInput: null, serialOutput: 1 });
    expect(got).toEqual([{ port: 0x700, log: '/etc/vmm/logs/x.log' }]);
    expect(given).toEqual({ log: 'logs/x.log' });
    expect(vm.plugins).toEqual([{ name: 'typed', source: 'test typed', baseDir: '/etc/vmm' }]);
    // Without a baseDir, the working directory.
    new Vm({ ...DEFAULT_CONFIG }, [loaded(plugin, { log: 'y' })], { serialInput: null, serialOutput: 1 });
    expect(got[1]).toEqual({ port: 0x700, log: path.join(process.cwd(), 'y') });
  });

  test('options the schema refuses: the VM is not created, the error names the plugin and the option, failed taps run', () => {
    const log: string[] = [];
    const plugin: Plugin<typeof schema> = { name: 'typed', schema, apply: () => { throw new Error('never applied'); } };
    expect(() => new Vm({ ...DEFAULT_CONFIG }, [loaded(recorder(log)), loaded(plugin, { port: 70000 })], { serialInput: null, serialOutput: 1 }))
      .toThrow("plugin 'typed' (test typed): option 'port' must be a whole number from 0 to 65535; got 70000");
    expect(log).toEqual(["failed:plugin 'typed' (test typed): option 'port' must be a whole number from 0 to 65535; got 70000"]);
  });

  test("a later plugin's apply that throws: earlier plugins' failed taps get the error, and the VM is not created", () => {
    const log: string[] = [];
    const refusing: Plugin = { name: 'refusing', apply: () => { throw new Error("option 'x' makes no sense"); } };
    let error: unknown;
    try {
      new Vm({ ...DEFAULT_CONFIG }, [loaded(recorder(log)), loaded(refusing)], { serialInput: null, serialOutput: 1 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PluginError);
    expect((error as Error).message).toBe("plugin 'refusing' (test refusing) failed to start: option 'x' makes no sense");
    expect(log).toEqual([`failed:${(error as Error).message}`]);
  });
});

describe('configure', () => {
  test('receives a copy of the configuration; a changed one is used, returning nothing keeps it', () => {
    let received: unknown;
    const config = { ...DEFAULT_CONFIG, cpus: 1 };
    const plugins = [
      loaded({ name: 'a', apply: (vmm: Vmm) => vmm.hooks.configure.tap('a', (c) => { received = c; return { ...c, cpus: 3 }; }) }),
      loaded({ name: 'b', apply: (vmm: Vmm) => vmm.hooks.configure.tap('b', () => undefined) }),
    ];
    const vm = new Vm(config, plugins, { serialInput: null, serialOutput: 1 });
    expect(received).toEqual(config);
    expect(received).not.toBe(config);
    expect(vm.config.cpus).toBe(3);
    expect(Object.isFrozen(vm.config)).toBe(true);
  });

  test('a tap that throws: the constructor throws naming the plugin and the hook, and failed runs', () => {
    const log: string[] = [];
    const refusing: Plugin = { name: 'strict', apply: (vmm) => vmm.hooks.configure.tap('strict', () => { throw new Error('needs 2 vCPUs'); }) };
    expect(() => new Vm({ ...DEFAULT_CONFIG }, [loaded(recorder(log)), loaded(refusing)], { serialInput: null, serialOutput: 1 }))
      .toThrow("plugin 'strict' failed in its configure hook: needs 2 vCPUs");
    expect(log).toEqual(["failed:plugin 'strict' failed in its configure hook: needs 2 vCPUs"]);
  });

  test('a configuration left invalid is refused like a config file, and failed runs', () => {
    const log: string[] = [];
    const bad: Plugin = { name: 'bad', apply: (vmm) => vmm.hooks.configure.tap('bad', (c) => ({ ...c, cpus: 0 })) };
    expect(() => new Vm({ ...DEFAULT_CONFIG }, [loaded(recorder(log)), loaded(bad)], { serialInput: null, serialOutput: 1 }))
      .toThrow('the configuration after plugins adjusted it: cpus must be a whole number from 1 to 64; got 0');
    expect(log).toHaveLength(1);
  });
});

describe('start-up hooks', () => {
  test('createDevices: booting, guest memory and the built-in devices exist, the kernel command line does not yet', async () => {
    let seen: Record<string, unknown> = {};
    const plugin: Plugin = {
      name: 'inspector',
      apply: (vmm) => vmm.hooks.createDevices.tap('inspector', (arg) => {
        seen = { same: arg === vmm, state: vmm.state, memory: vmm.memory.size, devices: vmm.devices.map((d) => d.name), cmdline: vmm.kernelCmdline };
      }),
    };
    const { exit } = await boot('', [loaded(plugin)]);
    expect(exit.reason).toBe('poweroff');
    expect(seen).toEqual({ same: true, state: 'booting', memory: 16 * MiB, devices: ['serial (COM1)', 'exit port', 'i8042'], cmdline: '' });
  });

  test.each(['createDevices', 'kernelCmdline', 'beforeBoot', 'afterBoot'] as const)(
    'a %s tap that throws fails the start: failed runs first, then the VM is torn down with an error naming plugin and hook',
    async (hook) => {
      const log: string[] = [];
      const broken: Plugin = {
        name: 'broken',
        apply: (vmm) => (vmm.hooks[hook] as { tap(name: string, fn: () => void): void }).tap('broken', () => { throw new Error('disk on fire'); }),
      };
      const { exit, startError } = await boot('', [loaded(recorder(log)), loaded(broken)]);
      const message = `plugin 'broken' failed in its ${hook} hook: disk on fire`;
      expect((startError as Error).message).toBe(message);
      expect(exit).toEqual({ reason: 'error', exitCode: 1, message });
      if (hook !== 'afterBoot') expect(log).not.toContain('afterBoot:running');
      const failedAt = log.indexOf(`failed:${message}`);
      expect(failedAt).toBeGreaterThan(0);
      expect(log.slice(failedAt + 1)).toEqual([hook === 'afterBoot' ? 'running>stopping' : 'booting>stopping', 'shutdown', 'stopping>stopped', 'afterShutdown']);
    });

  test('an async tap that rejects is named too (tapPromise and tapAsync)', async () => {
    const viaPromise: Plugin = { name: 'p', apply: (vmm) => vmm.hooks.beforeBoot.tapPromise('p', async () => { throw new Error('late'); }) };
    expect((await boot('', [loaded(viaPromise)])).exit.message).toBe("plugin 'p' failed in its beforeBoot hook: late");
    const viaCallback: Plugin = { name: 'c', apply: (vmm) => vmm.hooks.createDevices.tapAsync('c', (_vmm, done) => done(new Error('no'))) };
    expect((await boot('', [loaded(viaCallback)])).exit.message).toBe("plugin 'c' failed in its createDevices hook: no");
  });

  test('kernelCmdline: the entries as the kernel splits them, then the virtio devices\'; the result is vmm.kernelCmdline and what the guest runs', async () => {
    let received: string[] = [];
    let final = '';
    const plugin: Plugin = {
      name: 'cmdline',
      apply(vmm) {
        vmm.hooks.createDevices.tap('cmdline', () => { vmm.addVirtioDevice(tiny(), { name: 'tiny' }); });
        vmm.hooks.kernelCmdline.tap('cmdline', (entries) => { received = [...entries]; return ['inb:0x61', 'exit:3', ...entries]; });
        vmm.hooks.kernelCmdline.tap('cmdline-2', () => undefined); // nothing returned: kept
        vmm.hooks.beforeBoot.tap('cmdline', () => { final = vmm.kernelCmdline; });
      },
    };
    const { exit, output } = await boot('  wait  x="a  b"\tz ', [loaded(plugin)]);
    expect(received).toEqual(['wait', 'x="a  b"', 'z', expect.stringMatching(/^virtio_mmio\.device=4K@0x[0-9a-f]+:\d+$/)]);
    expect(final).toBe(['inb:0x61', 'exit:3', ...received].join(' '));
    expect(output).toContain('probe: inb 0x61 = 0x0');
    expect(exit).toMatchObject({ reason: 'guest-failure', guestStatus: 3 });
  });

  test('kernelCmdline taps that return something other than a list of strings fail the start', async () => {
    const plugin: Plugin = { name: 'odd', apply: (vmm) => vmm.hooks.kernelCmdline.tap('odd', () => 'exit:0' as unknown as string[]) };
    expect((await boot('', [loaded(plugin)])).exit.message).toBe('the kernelCmdline taps must return a list of strings (command-line entries).');
  });

  test("a virtio device whose attach throws fails addVirtioDevice, so the plugin's createDevices", async () => {
    const plugin: Plugin = {
      name: 'virt',
      apply: (vmm) => vmm.hooks.createDevices.tap('virt', () => { vmm.addVirtioDevice({ ...tiny(), attach() { throw new Error('no transport for me'); } }, { name: 'v' }); }),
    };
    expect((await boot('', [loaded(plugin)])).exit).toEqual({ reason: 'error', exitCode: 1, message: "plugin 'virt' failed in its createDevices hook: no transport for me" });
  });

  test('a virtio device added after the command line was built is refused', async () => {
    const late: Plugin = { name: 'late', apply: (vmm) => vmm.hooks.beforeBoot.tap('late', () => { vmm.addVirtioDevice(tiny(), { name: 'late' }); }) };
    expect((await boot('', [loaded(late)])).exit.message).toMatch(/^plugin 'late' failed in its beforeBoot hook: cannot add a virtio device once the kernel command line is built/);
  });
});

describe('afterBoot', () => {
  test('runs for every VM that boots, in state running, before it stops, even when the guest ends at once on 2 vCPUs', async () => {
    for (let run = 0; run < 12; run++) {
      const log: string[] = [];
      const { exit } = await boot('', [loaded(recorder(log))], { cpus: 2 });
      expect(exit.reason).toBe('poweroff');
      expect(log).toEqual(['configured>booting', 'createDevices', 'kernelCmdline', 'beforeBoot', 'booting>running', 'afterBoot:running',
        'running>stopping', 'shutdown', 'stopping>stopped', 'afterShutdown']);
    }
  });

  test('a stop asked for while booting takes effect right after afterBoot', async () => {
    const log: string[] = [];
    const stopper: Plugin = { name: 'stopper', apply: (vmm) => vmm.hooks.beforeBoot.tap('stopper', () => { void vmm.stop(); }) };
    const { exit } = await boot('wait', [loaded(recorder(log)), loaded(stopper)]);
    expect(exit).toMatchObject({ reason: 'stopped', exitCode: 0 });
    expect(log.slice(log.indexOf('afterBoot:running'))).toEqual(['afterBoot:running', 'running>stopping', 'shutdown', 'stopping>stopped', 'afterShutdown']);
  });
});

describe('run-time hooks', () => {
  test('stateChange gets (from, to) after the state changed; pause and resume run after the vCPUs did', async () => {
    const seen: string[] = [];
    const plugin: Plugin = {
      name: 'watch',
      apply(vmm) {
        vmm.hooks.stateChange.tap('watch', (from: VmState, to: VmState) => { seen.push(`${from}>${to}=${vmm.state}`); });
        vmm.hooks.pause.tap('watch', () => { seen.push(`pause:${vmm.state}`); });
        vmm.hooks.resume.tap('watch', () => { seen.push(`resume:${vmm.state}`); });
      },
    };
    const run = startGuest({ kernel: PROBE_GUEST, cmdline: 'wait' }, [plugin]);
    await run.waitFor('probe: start');
    while (run.vm.state === 'booting') await new Promise((r) => setTimeout(r, 5));
    await run.vm.pause();
    await run.vm.resume();
    await run.vm.stop();
    await run.exit;
    expect(seen).toEqual(['configured>booting=booting', 'booting>running=running', 'running>paused=paused', 'pause:paused',
      'paused>running=running', 'resume:running', 'running>stopping=stopping', 'stopping>stopped=stopped']);
  });

  test.each(['pause', 'resume'] as const)('a %s tap that throws stops the VM with an error naming it; the other taps still run', async (hook) => {
    const ran: string[] = [];
    const plugin: Plugin = {
      name: 'fragile',
      apply(vmm) {
        vmm.hooks[hook].tap('fragile', () => { throw new Error('oops'); });
        vmm.hooks[hook].tap('fragile-2', () => { ran.push(hook); });
      },
    };
    const run = startGuest({ kernel: PROBE_GUEST, cmdline: 'wait' }, [plugin]);
    await run.waitFor('probe: start');
    while (run.vm.state === 'booting') await new Promise((r) => setTimeout(r, 5));
    await run.vm.pause();
    if (hook === 'resume') await run.vm.resume();
    const exit = await run.exit;
    expect(exit).toEqual({ reason: 'error', exitCode: 1, message: `plugin 'fragile' failed in its ${hook} hook: oops` });
    expect(ran).toEqual([hook]);
  });

  test('a stateChange tap that throws while booting fails the start; later, it stops the VM', async () => {
    const during = (when: VmState): Plugin => ({
      name: 'picky',
      apply: (vmm) => vmm.hooks.stateChange.tap('picky', (_f, to) => { if (to === when) throw new Error(`not ${to}`); }),
    });
    const booting = await boot('', [loaded(during('booting'))]);
    expect((booting.startError as Error).message).toBe("plugin 'picky' failed in its stateChange hook: not booting");
    expect(booting.exit.reason).toBe('error');
    const run = startGuest({ kernel: PROBE_GUEST, cmdline: 'wait' }, [during('paused')]);
    await run.waitFor('probe: start');
    while (run.vm.state === 'booting') await new Promise((r) => setTimeout(r, 5));
    await run.vm.pause();
    expect(await run.exit).toEqual({ reason: 'error', exitCode: 1, message: "plugin 'picky' failed in its stateChange hook: not paused" });
  });

  test('a stateChange tap that throws once the VM is stopping turns the exit into that error', async () => {
    const picky: Plugin = { name: 'picky', apply: (vmm) => vmm.hooks.stateChange.tap('picky', (_f, to) => { if (to === 'stopping') throw new Error('not now'); }) };
    const { exit } = await boot('', [loaded(picky)]);
    expect(exit).toEqual({ reason: 'error', exitCode: 1, message: "plugin 'picky' failed in its stateChange hook: not now", guestStatus: 0 });
  });

  test('unhandledExit: called for each unclaimed access with what the guest did; the first policy returned decides', async () => {
    const seen: unknown[] = [];
    const plugin: Plugin = {
      name: 'lenient',
      apply(vmm) {
        vmm.hooks.unhandledExit.tap('lenient', (e) => { seen.push(e); return undefined; });
        vmm.hooks.unhandledExit.tap('lenient-2', () => 'ignore');
        vmm.hooks.unhandledExit.tap('never', () => 'stop');
      },
    };
    const { exit, output } = await boot('outw:0x702:0x1234 inb:0x702 rd32:0xd0004000', [loaded(plugin)]);
    expect(exit.reason).toBe('poweroff');
    expect(output).toContain('probe: inb 0x702 = 0xff');
    expect(seen).toEqual([
      { vcpu: 0, kind: 'pio', address: 0x702, size: 2, isWrite: true, value: 0x1234 },
      { vcpu: 0, kind: 'pio', address: 0x702, size: 1, isWrite: false },
      { vcpu: 0, kind: 'mmio', address: 0xd0004000, size: 4, isWrite: false },
    ]);
  });

  test('an unhandledExit tap that throws stops the VM with an error (exit code 1, not a crash) naming it', async () => {
    const plugin: Plugin = { name: 'thrower', apply: (vmm) => vmm.hooks.unhandledExit.tap('thrower', () => { throw new Error('cannot decide'); }) };
    const { exit, output } = await boot('inb:0x702 exit:0', [loaded(plugin)], { unclaimedAccess: 'ignore' });
    expect(exit).toEqual({ reason: 'error', exitCode: 1, message: "plugin 'thrower' failed in its unhandledExit hook: cannot decide" });
    expect(output).not.toContain('probe: inb');
  });

  test('emitDeviceEvent reaches every deviceEvent tap synchronously; a tap that throws stops the VM, the emitter never sees it', async () => {
    const events: DeviceEvent[] = [];
    let afterEmit = false;
    const plugin: Plugin = {
      name: 'emitter',
      apply(vmm) {
        vmm.hooks.deviceEvent.tap('emitter', () => { throw new Error('observer broke'); });
        vmm.hooks.deviceEvent.tap('emitter-2', (e) => { events.push(e); });
        vmm.hooks.afterBoot.tap('emitter', () => {
          vmm.emitDeviceEvent('rng', 'reseeded', { bytes: 32 });
          afterEmit = true;
        });
      },
    };
    const { exit } = await boot('wait', [loaded(plugin)]);
    expect(events).toEqual([{ device: 'rng', type: 'reseeded', bytes: 32 }]);
    expect(afterEmit).toBe(true);
    expect(exit).toEqual({ reason: 'error', exitCode: 1, message: "plugin 'emitter' failed in its deviceEvent hook: observer broke" });
  });

  test('emitDeviceEvent refuses what the control channel could not carry', () => {
    const vm = new Vm({ ...DEFAULT_CONFIG }, [], { serialInput: null, serialOutput: 1 });
    expect(() => vm.emitDeviceEvent('', 'x')).toThrow('emitDeviceEvent: the device must be a non-empty string (its name).');
    expect(() => vm.emitDeviceEvent('d', '')).toThrow('emitDeviceEvent: the event type must be a non-empty string.');
    expect(() => vm.emitDeviceEvent('d', 'x', [] as unknown as Record<string, unknown>)).toThrow('emitDeviceEvent: details must be a plain object of JSON values.');
    expect(() => vm.emitDeviceEvent('d', 'x', { type: 'y' })).toThrow("emitDeviceEvent: details may not use the keys 'device' and 'type'.");
  });
});

describe('the end: shutdown, afterShutdown', () => {
  test('shutdown: stopping, guest memory still there; afterShutdown: stopped, memory gone; the same exit, before wait() resolves', async () => {
    const seen: unknown[] = [];
    let waited = false;
    const plugin: Plugin = {
      name: 'ender',
      apply(vmm) {
        vmm.hooks.shutdown.tap('ender', (exit) => { seen.push(['shutdown', vmm.state, vmm.memory.size, exit]); });
        vmm.hooks.afterShutdown.tap('ender', (exit) => {
          seen.push(['afterShutdown', vmm.state, exit, waited]);
          expect(() => vmm.memory).toThrow();
        });
      },
    };
    const vm = new Vm({ ...DEFAULT_CONFIG, memory: 16 * MiB, kernel: PROBE_GUEST, cmdline: 'exit:7' }, [loaded(plugin)], { serialInput: null, serialOutput: fs.openSync('/dev/null', 'w') });
    await vm.start();
    const exit = await vm.wait().then((e) => { waited = true; return e; });
    expect(exit).toMatchObject({ reason: 'guest-failure', exitCode: 4, guestStatus: 7 });
    expect(seen).toEqual([['shutdown', 'stopping', 16 * MiB, exit], ['afterShutdown', 'stopped', exit, false]]);
    expect((seen[0] as unknown[])[3]).toBe((seen[1] as unknown[])[2]);
  });

  test.each([['SIGTERM', 143], ['SIGINT', 130]] as const)('stopped through a stopSignal aborted with %s, shutdown already sees exit code %d', async (signal, code) => {
    const seen: VmExit[] = [];
    const plugin: Plugin = {
      name: 'ender',
      apply(vmm) {
        vmm.hooks.shutdown.tap('ender', (exit) => { seen.push({ ...exit }); });
        vmm.hooks.afterShutdown.tap('ender', (exit) => { seen.push({ ...exit }); });
      },
    };
    const controller = new AbortController();
    const stopper: Plugin = { name: 'stopper', apply: (vmm) => vmm.hooks.afterBoot.tap('stopper', () => controller.abort(signal)) };
    const { exit } = await boot('wait', [loaded(plugin), loaded(stopper)], {}, { stopSignal: controller.signal });
    const expected = { reason: 'stopped', exitCode: code, message: `stopped by ${signal}.` };
    expect(exit).toEqual(expected);
    expect(seen).toEqual([expected, expected]);
  });

  test('every shutdown tap runs even after one failed; the exit becomes an error naming the first, unless it was one', async () => {
    const ran: string[] = [];
    const plugin: Plugin = {
      name: 'leaky',
      apply(vmm) {
        vmm.hooks.shutdown.tapPromise('leaky', async () => { throw new Error('cannot close'); });
        vmm.hooks.shutdown.tap('leaky-2', () => { ran.push('shutdown'); });
        vmm.hooks.afterShutdown.tap('leaky', () => { throw new Error('also broken'); });
        vmm.hooks.afterShutdown.tap('leaky-3', () => { ran.push('afterShutdown'); });
      },
    };
    const { exit } = await boot('', [loaded(plugin)]);
    // (The guest did power off: guestStatus stays.)
    expect(exit).toEqual({ reason: 'error', exitCode: 1, message: "plugin 'leaky' failed in its shutdown hook: cannot close", guestStatus: 0 });
    expect(ran).toEqual(['shutdown', 'afterShutdown']);
    // An afterShutdown failure alone also makes the exit an error.
    const late: Plugin = { name: 'late', apply: (vmm) => vmm.hooks.afterShutdown.tap('late', () => { throw new Error('too late'); }) };
    expect((await boot('', [loaded(late)])).exit).toMatchObject({ reason: 'error', exitCode: 1, message: "plugin 'late' failed in its afterShutdown hook: too late" });
  });

  test('a failed tap that throws is logged and ignored: the start-up error stays the one reported', async () => {
    const plugin: Plugin = {
      name: 'grumpy',
      apply(vmm) {
        vmm.hooks.failed.tap('grumpy', () => { throw new Error('while failing'); });
        vmm.hooks.createDevices.tap('grumpy', () => { throw new Error('first'); });
      },
    };
    const { exit, startError } = await boot('', [loaded(plugin)]);
    expect((startError as Error).message).toBe("plugin 'grumpy' failed in its createDevices hook: first");
    expect(exit.message).toBe("plugin 'grumpy' failed in its createDevices hook: first");
  });
});

describe('errors name the plugin that owns the tap', () => {
  test('a tap registered by a plugin under another name, or from inside its own tap, is still that plugin\'s', async () => {
    const plugin: Plugin = {
      name: 'owner',
      apply(vmm) {
        vmm.hooks.createDevices.tap('some-helper', () => {
          vmm.hooks.beforeBoot.tap('registered-later', () => { throw new Error('nested'); });
        });
      },
    };
    expect((await boot('', [loaded(plugin)])).exit.message).toBe("plugin 'owner' failed in its beforeBoot hook: nested");
  });

  test('a vmm error inside a tap (an overlapping device) names the plugin, the hook and both devices', async () => {
    const greedy: Plugin = { name: 'greedy', apply: (vmm) => vmm.hooks.createDevices.tap('greedy', () => vmm.pio.register({ name: 'mine', base: 0x3fc, length: 2, read: () => 0 })) };
    const { exit } = await boot('', [loaded(greedy)]);
    expect(exit.message).toMatch(/^plugin 'greedy' failed in its createDevices hook: .*'mine'.*serial \(COM1\)/);
  });
});

describe('device errors name the device, the plugin and the access', () => {
  function devicePlugin(register: (vmm: Vmm) => void): Plugin {
    return { name: 'devices', apply: (vmm) => vmm.hooks.createDevices.tap('devices-helper', () => register(vmm)) };
  }

  test('a main-thread device', async () => {
    const { exit } = await boot('outb:0x600:1', [loaded(devicePlugin((vmm) => vmm.pio.register({
      name: 'flaky', base: 0x600, length: 4, write: () => { throw new Error('boom from main write'); },
    })))]);
    expect(exit).toEqual({
      reason: 'error', exitCode: 1,
      message: "device 'flaky' (plugin 'devices') failed on a guest 1-byte write at offset 0x0 on vCPU 0: boom from main write",
    });
  });

  test.each([
    ['rd32:0xd0001004', "vCPU 0: device 'worker flaky' (plugin 'devices') failed on a guest 4-byte read at offset 0x4: boom from worker read"],
    ['wr32:0xd0001008:2', "vCPU 0: device 'worker flaky' (plugin 'devices') failed on a guest 4-byte write at offset 0x8: boom from worker write"],
    ['wr32:0xd0001000:1', "device 'worker flaky' (plugin 'devices') failed on a message from its worker handler on vCPU 0: cannot take messages"],
  ])('a worker device: %s', async (action, message) => {
    const { exit } = await boot(`${action} wait`, [loaded(devicePlugin((vmm) => vmm.mmio.register({
      name: 'worker flaky', base: 0xd0001000, length: 0x1000, worker: { module: THROWING_WORKER },
      onWorkerMessage: () => { throw new Error('cannot take messages'); },
    })))]);
    expect(exit).toEqual({ reason: 'error', exitCode: 1, message });
  });

  test('a worker module whose createDevice throws fails the start, naming the device and the plugin', async () => {
    const { exit, startError } = await boot('', [loaded(devicePlugin((vmm) => vmm.mmio.register({
      name: 'absent', base: 0xd0001000, length: 0x1000, worker: { module: THROWING_WORKER, options: { failCreate: true } },
    })))]);
    expect(exit.reason).toBe('error');
    expect((startError as Error).message).toBe(`device 'absent' (plugin 'devices'): its worker module ${THROWING_WORKER} failed to create the device: no such hardware`);
  });
});

describe('through the control channel', () => {
  test('controlCommand: taps in order, the first reply answers; a tap that throws answers that request with an error, and the VM runs on', async () => {
    const seen: unknown[] = [];
    const plugin: Plugin = {
      name: 'commands',
      apply(vmm) {
        vmm.hooks.controlCommand.tapPromise('commands', async (request, context) => {
          seen.push({ command: request.command, args: request.args, fds: context.fds });
          return undefined; // passes the request on
        });
        vmm.hooks.controlCommand.tapPromise('commands-2', async (request) => {
          if (request.command === 'hello') return { hello: request.args[0] };
          if (request.command === 'boom') throw new Error('the widget is gone');
          if (request.command === 'coded') throw Object.assign(new Error('no such widget'), { code: 'ERR_BAD_ARGS' });
          return undefined;
        });
        vmm.hooks.controlCommand.tapPromise('never', async () => ({ never: true }));
      },
    };
    const run = await startControlVm({}, [plugin]);
    try {
      const client = await ControlClient.connect(run.socket);
      expect(await client.request('hello', ['world'])).toMatchObject({ result: { hello: 'world' } });
      expect(seen[0]).toEqual({ command: 'hello', args: ['world'], fds: [] });
      expect(await client.request('boom')).toMatchObject({ error: { code: 'ERR_COMMAND_FAILED', message: 'the widget is gone' } });
      expect(await client.request('coded')).toMatchObject({ error: { code: 'ERR_BAD_ARGS', message: 'no such widget' } });
      expect(run.vm.state).toBe('running');
      client.close();
    } finally {
      await run.cleanup();
    }
  });

  test('a device event reaches an events subscriber as { type: device, device, event, details }', async () => {
    let emit: ((details: Record<string, unknown>) => void) | undefined;
    const plugin: Plugin = { name: 'emitter', apply: (vmm) => { emit = (details) => vmm.emitDeviceEvent('widget', 'changed', details); } };
    const run = await startControlVm({}, [plugin]);
    try {
      const client = await ControlClient.connect(run.socket);
      const events = client.events();
      const first = events.next();
      // Requests are served in order and a subscription starts right after its reply: once a
      // later request is answered, the subscription is live.
      await client.request('status');
      emit!({ level: 3, tags: ['a'] });
      expect((await first).value).toEqual({ type: 'device', device: 'widget', event: 'changed', details: { level: 3, tags: ['a'] } });
      client.close();
    } finally {
      await run.cleanup();
    }
  });
});
