/**
 * The VM end to end on real KVM, with the probe guest (guest/tests/probe.c) doing exactly
 * what each test needs: port and MMIO accesses, faults, the exit port.
 */
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../native';
import type { Plugin, Vmm, VmState } from '../../plugin-api';
import { Vm } from '../../core/vm';
import { DEFAULT_CONFIG } from '../../core/config';
import { openFdCount, PROBE_GUEST, ROOT, runProbe, startGuest, threadCount } from '../helpers/guest-run';

// Plain JavaScript, as a third-party worker device ships; tsc does not copy it to dist/.
const WORKER_REGISTER = path.join(ROOT, 'test', 'core', 'fixtures', 'register-device.js');

function devicePlugin(register: (vmm: Vmm) => void, name = 'test-devices'): Plugin {
  return { name, apply: (vmm) => vmm.hooks.createDevices.tap(name, () => register(vmm)) };
}

describe('booting guests', () => {
  test('a guest that writes 0 to the exit port powers off cleanly', async () => {
    const { exit, output } = await runProbe('');
    expect(output).toContain('probe: start');
    expect(output).toContain('probe: done');
    expect(exit).toMatchObject({ reason: 'poweroff', exitCode: 0, guestStatus: 0 });
  });

  test('a non-zero exit status is reported as guest failure', async () => {
    const { exit } = await runProbe('exit:5');
    expect(exit).toMatchObject({ reason: 'guest-failure', exitCode: 4, guestStatus: 5 });
    expect(exit.message).toContain('status 5');
  });

  test('an i8042 reset ends the VM as a reset', async () => {
    const { exit } = await runProbe('reset');
    expect(exit).toMatchObject({ reason: 'reset', exitCode: 0 });
  });

  test('the i8042 reads as an absent controller that takes commands, and port 0x61 as 0', async () => {
    const { exit, output } = await runProbe('inb:0x64 inb:0x60 inb:0x61 reset');
    expect(output).toContain('probe: inb 0x64 = 0xfd');
    expect(output).toContain('probe: inb 0x60 = 0xff');
    expect(output).toContain('probe: inb 0x61 = 0x0');
    expect(exit).toMatchObject({ reason: 'reset', exitCode: 0 });
  });

  test('a triple fault stops the VM with the registers in the message', async () => {
    const { exit } = await runProbe('triple');
    expect(exit.reason).toBe('crash');
    expect(exit.exitCode).toBe(3);
    expect(exit.message).toMatch(/triple fault/);
    expect(exit.message).toMatch(/rip=0x[0-9a-f]{16}/);
    expect(exit.message).toMatch(/cr3=0x0000000000009000/);
  });

  test('the demo guest echoes a line typed on its serial port', async () => {
    const run = startGuest({ kernel: null });
    await run.waitFor('type a line');
    run.input.write('hello vmm\r');
    const exit = await run.exit;
    expect(run.output()).toContain('you typed: hello vmm');
    expect(exit).toMatchObject({ reason: 'poweroff', exitCode: 0 });
  });
});

describe('unclaimed accesses', () => {
  test("a write to a port nobody claimed stops the VM, naming port and value", async () => {
    const { exit } = await runProbe('outl:0x700:0xabcd');
    expect(exit.reason).toBe('crash');
    expect(exit.exitCode).toBe(3);
    expect(exit.message).toContain('wrote 0xabcd (4 bytes) to unclaimed port 0x700');
  });

  test('an MMIO read nobody claimed names the address', async () => {
    const { exit } = await runProbe('rd32:0xd0004000');
    expect(exit.message).toContain('read 4 bytes from unclaimed address 0xd0004000');
  });

  test("with unclaimedAccess 'ignore' reads see all ones and the guest goes on", async () => {
    const { exit, output } = await runProbe('inl:0x700 rd8:0xd0004000 outb:0x701:1', { unclaimedAccess: 'ignore' });
    expect(output).toContain('probe: inl 0x700 = 0xffffffff');
    expect(output).toContain('probe: rd8 0xd0004000 = 0xff');
    expect(exit.reason).toBe('poweroff');
  });

  test('an unhandledExit tap can overrule the policy', async () => {
    const seen: string[] = [];
    const plugin: Plugin = {
      name: 'lenient',
      apply: (vmm) => vmm.hooks.unhandledExit.tap('lenient', (e) => { seen.push(`${e.kind}:${e.address.toString(16)}`); return 'ignore'; }),
    };
    const { exit } = await runProbe('outb:0x702:7', {}, [plugin]);
    expect(seen).toEqual(['pio:702']);
    expect(exit.reason).toBe('poweroff');
  });
});

describe('plugin devices', () => {
  test('main-thread and worker devices see the guest accesses, with sizes and offsets', async () => {
    const writes: string[] = [];
    const plugin = devicePlugin((vmm) => {
      vmm.pio.register({
        name: 'main pio', base: 0x600, length: 8,
        read: (offset, size) => 0x11223344 + offset + size,
        write: (offset, size, value) => { writes.push(`pio+${offset}/${size}=${value.toString(16)}`); },
      });
      vmm.mmio.register({
        name: 'main mmio', base: 0xd0000000, length: 0x1000,
        read: (offset, size) => (size === 8 ? 0x0102030405060708n : 0xcafe0000 + offset),
        write: (offset, size, value) => { writes.push(`mmio+${offset}/${size}=${value.toString(16)}`); },
      });
      const shared = new SharedArrayBuffer(8);
      vmm.mmio.register({ name: 'worker mmio', base: 0xd0001000, length: 0x1000, worker: { module: WORKER_REGISTER, shared } });
    });
    const { exit, output } = await runProbe(
      'inl:0x600 inb:0x603 outw:0x602:0xbeef rd32:0xd0000010 rd64:0xd0000008 wr32:0xd0000020:0x55aa wr64:0xd0000028:0x1122334455667788 '
      + 'wr32:0xd0001000:0x1234 rd32:0xd0001000 rd32:0xd0001004', {}, [plugin]);
    expect(exit.reason).toBe('poweroff');
    expect(output).toContain('probe: inl 0x600 = 0x11223348');
    expect(output).toContain('probe: inb 0x603 = 0x48');
    expect(output).toContain('probe: rd32 0xd0000010 = 0xcafe0010');
    expect(output).toContain('probe: rd64 0xd0000008 = 0x102030405060708');
    expect(writes).toEqual(['pio+2/2=beef', 'mmio+32/4=55aa', 'mmio+40/8=1122334455667788']);
    // The worker register stores what is written and counts accesses in shared memory.
    expect(output).toContain('probe: rd32 0xd0001000 = 0x1234');
    expect(output).toContain('probe: rd32 0xd0001004 = 0x2');
  });

  test('an MMIO access split at a page boundary reaches the device as exactly-sized pieces (3 + 5 bytes)', async () => {
    const seen: string[] = [];
    const plugin = devicePlugin((vmm) => {
      vmm.mmio.register({
        name: 'two pages', base: 0xd0002000, length: 0x2000,
        read: (offset, size) => { seen.push(`r+${offset}/${size}`); return size === 3 ? 0xabcdef : 0x0102030405n; },
        write: (offset, size, value) => { seen.push(`w+${offset}/${size}=${typeof value}:${value.toString(16)}`); },
      });
    });
    const { exit, output } = await runProbe('wr64:0xd0002ffd:0x1122334455667788 rd64:0xd0002ffd', {}, [plugin]);
    expect(exit.reason).toBe('poweroff');
    expect(seen).toEqual(['w+4093/3=number:667788', 'w+4096/5=bigint:1122334455', 'r+4093/3', 'r+4096/5']);
    expect(output).toContain('probe: rd64 0xd0002ffd = 0x102030405abcdef');
  });

  test('shared memory that cannot be mapped leaves no KVM memory slot taken (more failures than there are slots)', async () => {
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'vmm-shm-'));
    const file = path.join(dir, 'read-only');
    fs.writeFileSync(file, Buffer.alloc(4096));
    const readOnly = fs.openSync(file, 'r');
    const memfd = native.memfdCreate('test-shm', 8192);
    let failures = 0;
    let mapped: { gpa: number; size: number } | undefined;
    try {
      const { exit } = await runProbe('', {}, [devicePlugin((vmm) => {
        // A freed slot is reused first: each failure right after an unmap must not lose it.
        for (let i = 0; i < 600; i++) {
          vmm.mapGuestShm(memfd, 4096).unmap();
          try { vmm.mapGuestShm(readOnly, 4096); } catch { failures++; }
        }
        const m = vmm.mapGuestShm(memfd, 8192);
        mapped = { gpa: m.gpa, size: m.size };
        m.unmap();
      })]);
      expect(exit.exitCode).toBe(0);
    } finally {
      fs.closeSync(readOnly);
      native.close(memfd);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(failures).toBe(600);
    expect(mapped?.size).toBe(8192);
  });

  test('overlapping devices are refused with both owners named', async () => {
    const plugin = devicePlugin((vmm) => {
      vmm.pio.register({ name: 'mine', base: 0x3fc, length: 2, read: () => 0 });
    }, 'greedy');
    const { exit } = await runProbe('', {}, [plugin]);
    expect(exit.reason).toBe('error');
    expect(exit.exitCode).toBe(1);
    expect(exit.message).toContain('greedy');
    expect(exit.message).toMatch(/'mine'.*0x3fc.*serial \(COM1\).*0x3f8/);
  });

  test('a plugin that throws stops start-up with an error naming it, and nothing leaks', async () => {
    await runProbe(''); // warm up lazily created threads and fds
    const fds = openFdCount();
    const threads = threadCount();
    const plugin: Plugin = {
      name: 'broken',
      apply: (vmm) => vmm.hooks.beforeBoot.tapPromise('broken', async () => { throw new Error('disk on fire'); }),
    };
    const { exit } = await runProbe('', {}, [plugin]);
    expect(exit).toMatchObject({ reason: 'error', exitCode: 1 });
    expect(exit.message).toContain('broken');
    expect(exit.message).toContain('disk on fire');
    expect(openFdCount()).toBe(fds);
    expect(threadCount()).toBe(threads);
  });

  test('a plugin whose apply throws is named', () => {
    const plugin: Plugin = { name: 'bad-options', apply: () => { throw new Error("option 'x' must be a number"); } };
    expect(() => new Vm({ ...DEFAULT_CONFIG }, [{ plugin, options: {}, source: '/plugins/bad.js' }], { serialInput: null, serialOutput: 1 }))
      .toThrow(/plugin 'bad-options' \(\/plugins\/bad.js\).*option 'x' must be a number/);
  });
});

describe('lifecycle and hooks', () => {
  test('pause, resume and stop move through the states in order, and threads are joined', async () => {
    const states: string[] = [];
    const order: string[] = [];
    const plugin: Plugin = {
      name: 'observer',
      apply(vmm) {
        vmm.hooks.stateChange.tap('observer', (_from: VmState, to: VmState) => { states.push(to); });
        vmm.hooks.createDevices.tap('observer', () => { order.push('createDevices'); });
        vmm.hooks.kernelCmdline.tap('observer', (list) => { order.push('kernelCmdline'); return [...list, 'wait']; });
        vmm.hooks.beforeBoot.tap('observer', () => { order.push('beforeBoot'); });
        vmm.hooks.afterBoot.tap('observer', () => { order.push('afterBoot'); });
        vmm.hooks.pause.tap('observer', () => { order.push('pause'); });
        vmm.hooks.resume.tap('observer', () => { order.push('resume'); });
        vmm.hooks.shutdown.tap('observer', () => { order.push('shutdown'); });
        vmm.hooks.afterShutdown.tap('observer', () => { order.push('afterShutdown'); });
      },
    };
    const threads = threadCount();
    const run = startGuest({ kernel: PROBE_GUEST, cmdline: '', cpus: 2 }, [plugin]);
    await run.waitFor('probe: start');
    // vCPU 0 may print before vCPU 1's thread is up; the VM is running once every vCPU is.
    while (run.vm.state === 'booting') await new Promise((r) => setTimeout(r, 5));
    expect(run.vm.state).toBe('running');
    await run.vm.pause();
    expect(run.vm.state).toBe('paused');
    await run.vm.resume();
    expect(run.vm.state).toBe('running');
    const exit = await run.vm.stop();
    expect(exit).toMatchObject({ reason: 'stopped', exitCode: 0 });
    expect(await run.exit).toBe(exit);
    expect(states).toEqual(['booting', 'running', 'paused', 'running', 'stopping', 'stopped']);
    expect(order).toEqual(['createDevices', 'kernelCmdline', 'beforeBoot', 'afterBoot', 'pause', 'resume', 'shutdown', 'afterShutdown']);
    expect(threadCount()).toBeLessThanOrEqual(threads);
  });

  test('a missing kernel file is a clear error', async () => {
    const { exit } = await runProbe('', { kernel: '/nonexistent/vmlinux' });
    expect(exit.reason).toBe('error');
    expect(exit.message).toBe('cannot read kernel /nonexistent/vmlinux: no such file.');
  });

  test('a corrupt kernel file is a clear error', async () => {
    const { exit } = await runProbe('', { kernel: __filename });
    expect(exit.reason).toBe('error');
    expect(exit.message).toMatch(/is not an ELF executable or a Linux bzImage/);
  });

  test('a missing /dev/kvm is a clear error', async () => {
    process.env.VMM_KVM_DEVICE = '/nonexistent/kvm';
    try {
      const { exit } = await runProbe('');
      expect(exit.message).toBe('cannot open /nonexistent/kvm: it does not exist, so this machine offers no KVM (load the kvm module, or enable virtualization).');
    } finally {
      delete process.env.VMM_KVM_DEVICE;
    }
  });
});

describe('CPUID', () => {
  const CX16 = 1 << 13;
  const TSC_DEADLINE = 1 << 24;
  const ecxOfLeaf1 = (output: string) => Number(/probe: cpuid 0x1 = \S+ \S+ (0x[0-9a-f]+)/.exec(output)![1]);

  test('the default mask hides what this emulated host cannot run; an empty mask passes them', async () => {
    const masked = await runProbe('cpuid:1');
    expect(ecxOfLeaf1(masked.output) & CX16).toBe(0);
    expect(ecxOfLeaf1(masked.output) & TSC_DEADLINE).toBe(0);
    const open = await runProbe('cpuid:1', { cpuidHide: [] });
    // KVM reports cx16 on every x86-64 host it supports; the TSC deadline timer passes whenever
    // KVM reports it (it does here).
    expect(ecxOfLeaf1(open.output) & CX16).toBe(CX16);
    const kvm = fs.openSync('/dev/kvm', 'r+');
    try {
      const leaf1 = native.supportedCpuid(kvm).find((e) => e.function === 1)!;
      expect(ecxOfLeaf1(open.output) & TSC_DEADLINE).toBe(leaf1.ecx & TSC_DEADLINE);
    } finally {
      fs.closeSync(kvm);
    }
  });
});
