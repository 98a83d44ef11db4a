/**
 * The VM: owns KVM, guest memory, the buses, the vCPU threads and the plugins' hooks.
 *
 * Lifecycle: configured → booting → running ⇄ paused → stopping → stopped. Teardown order is
 * fixed: stop and join the vCPU threads (nothing touches guest memory or devices after that),
 * run the `shutdown` hook so plugins release their devices, dispose ioeventfds while the VM fd
 * is still open, then unmap memory and close the VM and KVM fds.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import createDebug, { type Debugger } from 'debug';
import { native, type Mapping } from '../native';
import type {
  AccessValue, BusDevice, DeviceBus, DeviceInfo, Disposable, IoEventOptions, MainThreadBusDevice, UnhandledExit,
  VmConfig, VmExit, Vmm, VmState, WorkerBusDevice,
} from '../plugin-api';
import type { VirtioDevice, VirtioDeviceInfo, VirtioDeviceOptions } from '../plugin-api';
import { loadKernel } from './boot';
import { writeMpTable } from './boot/mptable';
import { IDENTITY_MAP_ADDRESS, IOAPIC_START, MMIO_HOLE_START, TSS_ADDRESS } from './boot/layout';
import { allOnes } from './bus/all-ones';
import { Bus } from './bus/bus';
import { isPlainObject, splitKernelCmdline, validateConfig } from './config';
import { ExitPortMessage, VMM_EXIT_PORT, VMM_EXIT_PORT_LENGTH } from './devices/exit-port';
import { I8042_BASE, I8042_LENGTH, I8042Message } from './devices/i8042';
import { createIoEvent } from './devices/io-event';
import { addVirtioMmioDevice } from './virtio/mmio-transport';
import { legacyPortDevices } from './devices/legacy-ports';
import { SerialPort } from './devices/serial/serial-port';
import { ConfigError, KernelLoadError, KvmError, messageOf, PluginError, VmmError } from './errors';
import { createHooks, instrumentHooks, type TapOwner } from './hooks';
import { IrqAllocator } from './irq/interrupts';
import { GuestMemory } from './memory/guest-memory';
import { ShmWindow, type GuestShmMapping } from './memory/shm-window';
import { checkPluginOptions, type LoadedPlugin } from './plugins/loader';
import { maskCpuid } from './vcpu/cpuid';
import { describeDevice, type VcpuEvent, type WorkerDeviceSpec } from './vcpu/protocol';
import { VcpuThread } from './vcpu/vcpu-thread';

const log = createDebug('vmm:core');

/** The built-in demo guest, built by `npm install` (guest/Makefile). */
export const DEMO_GUEST = path.join(__dirname, '..', '..', 'guest', 'build', 'demo.elf');

/** KVM_API_VERSION has been 12 since Linux 2.6.22; anything else is not the KVM we know. */
const KVM_API_VERSION = 12;
// linux/kvm.h capabilities we cannot run without
const REQUIRED_CAPS: Readonly<Record<string, number>> = {
  KVM_CAP_IRQCHIP: 0,
  KVM_CAP_USER_MEMORY: 3,
  KVM_CAP_PIT2: 33,
  KVM_CAP_IOEVENTFD: 36,
  KVM_CAP_IRQFD: 32,
};

export const EXIT_CODES = Object.freeze({ ok: 0, error: 1, usage: 2, crash: 3, guestFailure: 4 });

export interface VmIo {
  /** Fed to the guest's COM1. */
  serialInput: NodeJS.ReadableStream | null;
  /** COM1 output goes to this fd, written synchronously by the vCPU thread. */
  serialOutput: number;
  /**
   * Aborting it stops the VM (exit reason 'stopped'). Aborted with a signal name as the reason
   * (`controller.abort('SIGTERM')`), the exit code is 128 + that signal's number (143).
   */
  stopSignal?: AbortSignal;
}

/** A registered device, with its bus and the plugin that registered it (undefined: vmm's own). */
type Owned<D extends BusDevice> = D & { readonly bus: 'pio' | 'mmio'; readonly owner: string | undefined };

export class Vm implements Vmm {
  readonly hooks = createHooks();
  readonly irq = new IrqAllocator(() => this.vmFd);
  readonly pio: DeviceBus = { register: (d) => this.register('pio', d) };
  readonly mmio: DeviceBus = { register: (d) => this.register('mmio', d) };

  private _config: VmConfig;
  private _state: VmState = 'configured';
  private _memory: GuestMemory | undefined;
  private readonly taps = instrumentHooks(this.hooks, (owner, error) => this.onTapFailure(owner, error));
  private readonly registered = { pio: [] as Owned<BusDevice>[], mmio: [] as Owned<BusDevice>[] };
  private readonly buses = { pio: new Bus<BusDevice>('pio'), mmio: new Bus<BusDevice>('mmio') };
  private readonly serial = new SerialPort((gsi, level) => this.irq.set(gsi, level));
  private readonly ioEvents = new Set<Disposable>();
  private readonly unclaimedSeen = new Set<string>();
  private kvmFd = -1;
  private vmFd = -1;
  private memFd = -1;
  private mappings: Mapping[] = [];
  private vcpuFds: number[] = [];
  private vcpus: VcpuThread[] = [];
  private nextMmio = MMIO_HOLE_START;
  private exit: VmExit | undefined;
  private finishing: Promise<VmExit> | undefined;
  private resolveExit!: (exit: VmExit) => void;
  private readonly exited = new Promise<VmExit>((resolve) => { this.resolveExit = resolve; });
  private detachIo: (() => void) | undefined;
  /**
   * True from start() until afterBoot has run (or start-up failed): what would end the VM
   * meanwhile waits in `pendingExit`, and a failed guarded tap in `bootFailure`, so that every
   * VM that boots gets its afterBoot (plugin-api.d.ts, VmmHooks.afterBoot).
   */
  private booting = false;
  private pendingExit: VmExit | undefined;
  private bootFailure: Error | undefined;
  /** True once wait() resolved: the exit can no longer change. */
  private exitSettled = false;
  /** Kernel command-line entries of the devices (virtio-mmio), given to the kernelCmdline taps. */
  private readonly deviceCmdline: string[] = [];
  private cmdlineBuilt = false;
  private _kernelCmdline = '';
  private readonly pluginList: { name: string; source: string; baseDir: string }[];

  /**
   * Checks each plugin's options against its schema, applies the plugins and runs `configure`;
   * nothing touches KVM yet. Throws a PluginError (after running the `failed` taps registered so
   * far) when a plugin refuses.
   */
  constructor(config: VmConfig, private readonly loadedPlugins: readonly LoadedPlugin[], private readonly io: VmIo) {
    this._config = config;
    const cwd = process.cwd();
    this.pluginList = loadedPlugins.map(({ plugin, source, baseDir }) => ({ name: plugin.name, source, baseDir: baseDir ?? cwd }));
    for (const loaded of loadedPlugins) {
      const { plugin, source } = loaded;
      this.taps.applying = plugin.name;
      try {
        plugin.apply(this, checkPluginOptions(loaded));
      } catch (error) {
        this.taps.applying = undefined;
        const refusal = error instanceof PluginError ? error
          : new PluginError(`plugin '${plugin.name}' (${source}) failed to start: ${messageOf(error)}`, { cause: error });
        this.hooks.failed.call(refusal);
        throw refusal;
      }
    }
    this.taps.applying = undefined;
    try {
      const configured = this.hooks.configure.call({ ...config, plugins: [...config.plugins] });
      this._config = Object.freeze(validateConfig(configured ?? config, 'the configuration after plugins adjusted it'));
    } catch (error) {
      this.hooks.failed.call(error as Error);
      throw error;
    }
  }

  get config(): Readonly<VmConfig> { return this._config; }

  get devices(): DeviceInfo[] {
    return (['pio', 'mmio'] as const).flatMap((bus) => this.registered[bus].map(({ name, base, length }) => ({ name, bus, base, length })));
  }

  get plugins(): { name: string; source: string; baseDir: string }[] {
    return this.pluginList.map((p) => ({ ...p }));
  }

  get state(): VmState { return this._state; }

  get kernelCmdline(): string { return this._kernelCmdline; }

  get memory(): GuestMemory {
    if (!this._memory) throw new VmmError('ERR_VM_STATE', 'guest memory does not exist before the createDevices hook.');
    return this._memory;
  }

  logger(name: string): Debugger {
    return createDebug(`vmm:plugin:${name}`);
  }

  emitDeviceEvent(device: string, type: string, details: Record<string, unknown> = {}): void {
    if (typeof device !== 'string' || device === '') throw new TypeError('emitDeviceEvent: the device must be a non-empty string (its name).');
    if (typeof type !== 'string' || type === '') throw new TypeError('emitDeviceEvent: the event type must be a non-empty string.');
    if (!isPlainObject(details)) throw new TypeError('emitDeviceEvent: details must be a plain object of JSON values.');
    if ('device' in details || 'type' in details) throw new TypeError("emitDeviceEvent: details may not use the keys 'device' and 'type'.");
    this.hooks.deviceEvent.call({ ...details, device, type });
  }

  ioevent(options: IoEventOptions): Disposable {
    this.requireVm('register an ioeventfd');
    const inner = createIoEvent(this.vmFd, options);
    const handle = { dispose: () => { this.ioEvents.delete(handle); inner.dispose(); } };
    this.ioEvents.add(handle);
    return handle;
  }

  /** virtio-mmio devices: the transport lives in core/virtio/mmio-transport.ts. */
  addVirtioDevice(device: VirtioDevice, options: VirtioDeviceOptions): VirtioDeviceInfo {
    this.requireVm('add a virtio device');
    if (this.cmdlineBuilt) {
      throw new VmmError('ERR_VM_STATE', 'cannot add a virtio device once the kernel command line is built; add virtio devices in the createDevices hook.');
    }
    return addVirtioMmioDevice(this, this.vmFd, device, options, (entry) => this.deviceCmdline.push(entry));
  }

  // --- guest shared memory (core/memory/shm-window.ts) -----------------------------------------
  private shmWindow: ShmWindow | undefined;

  /** Map `size` bytes of `fd` into the guest-physical window above RAM (one KVM slot each). */
  mapGuestShm(fd: number, size: number): GuestShmMapping {
    this.requireVm('map shared memory into the guest');
    this.shmWindow ??= ShmWindow.aboveRam(this.vmFd, this.regionSpecs);
    return this.shmWindow.map(fd, size);
  }
  // ---------------------------------------------------------------------------------------------

  allocateMmio(owner: string, size: number): number {
    const length = Math.ceil(size / 0x1000) * 0x1000;
    if (!Number.isInteger(size) || size <= 0 || this.nextMmio + length > IOAPIC_START) {
      throw new VmmError('ERR_MMIO_EXHAUSTED', `cannot reserve ${size} bytes of MMIO space for '${owner}'.`);
    }
    const base = this.nextMmio;
    this.nextMmio += length;
    return base;
  }

  /** Boots the VM; resolves once the vCPUs run. On failure everything is released and the error rethrown. */
  async start(): Promise<void> {
    if (this._state !== 'configured') throw new VmmError('ERR_VM_STATE', `cannot start a VM that is ${this._state}.`);
    this.booting = true;
    this.setState('booting');
    this.watchStopSignal();
    try {
      this.checkBoot();
      this.openKvm();
      this.createMemory();
      this.registerBuiltinDevices();
      await this.hooks.createDevices.promise(this);
      this.checkBoot();
      const setup = this.loadKernel();
      if (setup.format === 'vmlinux' || setup.format === 'bzimage') {
        this.registerLinuxLegacyPorts();
        writeMpTable(this.memory, this._config.cpus);
      }
      this.createVcpus(setup);
      await this.hooks.beforeBoot.promise(this);
      this.checkBoot();
      await this.startVcpus();
      this.checkBoot();
      this.attachSerialInput();
      // Even if the guest already ended while its threads came up (pendingExit), the VM goes
      // through running and afterBoot first, as plugin-api.d.ts promises.
      this.setState('running');
      this.checkBoot();
      this.hooks.afterBoot.call(this);
      this.checkBoot();
    } catch (error) {
      this.booting = false;
      this.hooks.failed.call(error as Error);
      await this.finish(errorExit(error));
      throw error;
    }
    this.booting = false;
    if (this.pendingExit) void this.finish(this.pendingExit);
  }

  /** A guarded tap that failed while booting fails the start-up. */
  private checkBoot(): void {
    if (this.bootFailure) throw this.bootFailure;
  }

  /** Resolves with how the VM ended, once it is fully torn down. */
  wait(): Promise<VmExit> {
    return this.exited;
  }

  async pause(): Promise<void> {
    if (this._state !== 'running') throw new VmmError('ERR_VM_STATE', `cannot pause a VM that is ${this._state}.`);
    await Promise.all(this.vcpus.map((v) => v.pause()));
    if (this.exit) return;
    this.setState('paused');
    this.hooks.pause.call();
  }

  async resume(): Promise<void> {
    if (this._state !== 'paused') throw new VmmError('ERR_VM_STATE', `cannot resume a VM that is ${this._state}.`);
    await Promise.all(this.vcpus.map((v) => v.resume()));
    if (this.exit) return;
    this.setState('running');
    this.hooks.resume.call();
  }

  stop(): Promise<VmExit> {
    return this.finish(stoppedExit(undefined));
  }

  // --- start-up steps ------------------------------------------------------------------------

  private openKvm(): void {
    const device = process.env.VMM_KVM_DEVICE || '/dev/kvm';
    try {
      this.kvmFd = native.kvmOpen(device);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new KvmError(`cannot open ${device}: it does not exist, so this machine offers no KVM (load the kvm module, or enable virtualization).`);
      if (code === 'EACCES' || code === 'EPERM') throw new KvmError(`cannot open ${device}: permission denied (run as root or join the group that owns it).`);
      throw new KvmError(`cannot open ${device}: ${messageOf(error)}`);
    }
    const version = native.kvmApiVersion(this.kvmFd);
    if (version !== KVM_API_VERSION) throw new KvmError(`${device} speaks KVM API version ${version}; vmm needs ${KVM_API_VERSION}.`);
    for (const [name, cap] of Object.entries(REQUIRED_CAPS)) {
      if (native.checkExtension(this.kvmFd, cap) <= 0) throw new KvmError(`this KVM lacks ${name}, which vmm needs.`);
    }
    this.vmFd = native.createVm(this.kvmFd);
    native.setTssAddr(this.vmFd, TSS_ADDRESS);
    native.setIdentityMapAddr(this.vmFd, IDENTITY_MAP_ADDRESS);
    native.createIrqchip(this.vmFd);
    native.createPit2(this.vmFd);
    log('VM created (fd %d)', this.vmFd);
  }

  private createMemory(): void {
    const layout = GuestMemory.splitRam(this._config.memory);
    try {
      this.memFd = native.memfdCreate('vmm-guest-ram', this._config.memory);
    } catch (error) {
      throw new ConfigError(`cannot allocate ${this._config.memory} bytes of guest memory: ${messageOf(error)}`);
    }
    let fileOffset = 0;
    const regions = layout.map((r, slot) => {
      const mapping = native.mmapFd(this.memFd, r.size, fileOffset);
      this.mappings.push(mapping);
      native.setUserMemoryRegion(this.vmFd, slot, r.guestAddress, r.size, mapping.address);
      const region = { ...r, fileOffset, buffer: mapping.buffer };
      fileOffset += r.size;
      return region;
    });
    this.regionSpecs = regions.map(({ guestAddress, size, fileOffset: o }) => ({ guestAddress, size, fileOffset: o }));
    this._memory = new GuestMemory(regions);
  }

  private regionSpecs: { guestAddress: number; size: number; fileOffset: number }[] = [];

  private registerBuiltinDevices(): void {
    this.serial.register(this.pio, this.io.serialOutput);
    this.pio.register({
      name: 'exit port',
      base: VMM_EXIT_PORT,
      length: VMM_EXIT_PORT_LENGTH,
      worker: { module: path.join(__dirname, 'devices', 'exit-port.js') },
      onWorkerMessage: (_vcpu, message) => {
        const { status } = message as ExitPortMessage;
        void this.finish(status === 0
          ? { reason: 'poweroff', exitCode: EXIT_CODES.ok, message: 'the guest powered off.', guestStatus: 0 }
          : { reason: 'guest-failure', exitCode: EXIT_CODES.guestFailure, message: `the guest reported failure with status ${status} (0x${status.toString(16)}).`, guestStatus: status });
      },
    });
    this.pio.register({
      name: 'i8042',
      base: I8042_BASE,
      length: I8042_LENGTH,
      worker: { module: path.join(__dirname, 'devices', 'i8042.js') },
      onWorkerMessage: (_vcpu, message) => {
        if ((message as I8042Message).reset) void this.finish({ reason: 'reset', exitCode: EXIT_CODES.ok, message: 'the guest reset the machine (treated as power-off).' });
      },
    });
  }

  /**
   * Linux boots only: the PC ports Linux probes that vmm has no device for (CMOS, delay ports,
   * absent COM2-4 and PCI; core/devices/legacy-ports.ts). A port a plugin already claimed stays
   * the plugin's.
   */
  private registerLinuxLegacyPorts(): void {
    for (const device of legacyPortDevices()) {
      let claimed = false;
      for (let port = device.base; port < device.base + device.length; port++) claimed ||= this.buses.pio.findIndex(port) >= 0;
      if (claimed) log('legacy port range %s left to the device already there', device.name);
      else this.pio.register(device);
    }
  }

  private loadKernel() {
    const file = this._config.kernel ?? DEMO_GUEST;
    const image = readImage(file, this._config.kernel === null ? 'the built-in demo guest (run npm install to build it)' : 'kernel');
    const initrd = this._config.initrd === null ? undefined : readImage(this._config.initrd, 'initrd');
    const entries = [...splitKernelCmdline(this._config.cmdline), ...this.deviceCmdline];
    this.cmdlineBuilt = true;
    const final: unknown = this.hooks.kernelCmdline.call(entries) ?? entries;
    if (!Array.isArray(final) || !final.every((entry) => typeof entry === 'string')) {
      throw new PluginError('the kernelCmdline taps must return a list of strings (command-line entries).');
    }
    const cmdline = final.filter((entry) => entry !== '').join(' ');
    this._kernelCmdline = cmdline;
    const setup = loadKernel(this.memory, image, { cmdline, initrd, sourceName: file });
    log('loaded %s as %s, entry 0x%s, cmdline %o', file, setup.format, setup.entry.toString(16), cmdline);
    return setup;
  }

  private createVcpus(setup: ReturnType<typeof loadKernel>): void {
    const cpuid = maskCpuid(native.supportedCpuid(this.kvmFd), this._config.cpuidHide);
    for (let id = 0; id < this._config.cpus; id++) {
      const fd = native.createVcpu(this.vmFd, id);
      this.vcpuFds.push(fd);
      native.setCpuid(fd, cpuid);
      native.setupLapicLint(fd);
      native.initFpu(fd);
      // Only the boot processor starts at the entry point; with the in-kernel LAPIC the others
      // wait for INIT/SIPI from the guest, as on hardware.
      if (id === 0) {
        native.setSregs(fd, { ...native.getSregs(fd), ...setup.sregs });
        native.setRegs(fd, setup.regs);
      }
    }
  }

  private async startVcpus(): Promise<void> {
    const spec = (bus: 'pio' | 'mmio'): WorkerDeviceSpec[] => this.registered[bus].map((d, index) => {
      const worker = (d as WorkerBusDevice).worker;
      return {
        name: d.name, owner: d.owner, base: d.base, length: d.length, index, module: worker?.module, options: worker?.options, shared: worker?.shared,
      };
    });
    const pio = spec('pio');
    const mmio = spec('mmio');
    const debugNamespaces = createDebug.disable();
    createDebug.enable(debugNamespaces);
    const mmapSize = native.vcpuMmapSize(this.kvmFd);
    this.vcpus = this.vcpuFds.map((vcpuFd, id) => new VcpuThread(id, {
      vcpu: id, vcpuFd, vmFd: this.vmFd, mmapSize, memFd: this.memFd, regions: this.regionSpecs, pio, mmio,
      debug: debugNamespaces || undefined,
    }, (vcpu, event) => this.onVcpuEvent(vcpu, event)));
    await Promise.all(this.vcpus.map((v) => v.started()));
  }

  private attachSerialInput(): void {
    const input = this.io.serialInput;
    if (!input) return;
    const onData = (chunk: Buffer | string) => this.serial.input(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    input.on('data', onData);
    this.detachIo = () => input.removeListener('data', onData);
  }

  private watchStopSignal(): void {
    const signal = this.io.stopSignal;
    if (!signal) return;
    const onAbort = () => void this.finish(stoppedExit(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    this.unwatchStopSignal = () => signal.removeEventListener('abort', onAbort);
    if (signal.aborted) onAbort();
  }

  private unwatchStopSignal: (() => void) | undefined;

  // --- running -------------------------------------------------------------------------------

  private onVcpuEvent(vcpu: VcpuThread, event: VcpuEvent): AccessValue | void {
    switch (event.type) {
      case 'call': {
        const device = this.registered[event.bus][event.index] as Owned<MainThreadBusDevice>;
        try {
          if (event.isWrite) { device.write?.(event.offset, event.size, event.value); return 0; }
          return device.read ? device.read(event.offset, event.size) : allOnes(event.size);
        } catch (error) {
          const access = `a guest ${event.size}-byte ${event.isWrite ? 'write' : 'read'} at offset 0x${event.offset.toString(16)} on vCPU ${vcpu.id}`;
          void this.finish(errorExit(new PluginError(`${describeDevice(device.name, device.owner)} failed on ${access}: ${messageOf(error)}`, { cause: error })));
          throw error;
        }
      }
      case 'unhandled': return this.onUnclaimed(event.exit);
      case 'device-message': {
        const device = this.registered[event.bus][event.index] as Owned<WorkerBusDevice>;
        try {
          device.onWorkerMessage?.(vcpu.id, event.message);
        } catch (error) {
          const what = `${describeDevice(device.name, device.owner)} failed on a message from its worker handler on vCPU ${vcpu.id}`;
          void this.finish(errorExit(new PluginError(`${what}: ${messageOf(error)}`, { cause: error })));
        }
        return;
      }
      case 'crash':
        void this.finish({ reason: 'crash', exitCode: EXIT_CODES.crash, message: event.message });
        return;
      case 'error':
        void this.finish(errorExit(new VmmError('ERR_VCPU', event.message)));
        return;
      case 'stopped':
        // A vCPU that stops on its own (crash, error) is reported by its own event first;
        // one that stops while the others run means the VM cannot go on.
        if (!this.exit && !this.pendingExit && this._state !== 'stopping') void this.finish({ reason: 'crash', exitCode: EXIT_CODES.crash, message: `vCPU ${vcpu.id} stopped unexpectedly.` });
        return;
      default:
    }
  }

  /** Returns 0 to let the guest go on (reads see all ones), 1 to stop it. */
  private onUnclaimed(exit: UnhandledExit): number {
    const policy = this.hooks.unhandledExit.call(exit) ?? this._config.unclaimedAccess;
    const where = `${exit.kind === 'pio' ? 'port' : 'address'} 0x${exit.address.toString(16)}`;
    const what = exit.isWrite
      ? `wrote 0x${BigInt(exit.value ?? 0).toString(16)} (${exit.size} bytes) to unclaimed ${where}`
      : `read ${exit.size} bytes from unclaimed ${where}`;
    if (policy === 'ignore') {
      const key = `${exit.kind}:${exit.address}`;
      if (!this.unclaimedSeen.has(key)) { this.unclaimedSeen.add(key); log('vCPU %d %s (ignored from now on)', exit.vcpu, what); }
      return 0;
    }
    void this.finish({ reason: 'crash', exitCode: EXIT_CODES.crash, message: `the guest ${what} on vCPU ${exit.vcpu}; no device handles it.` });
    return 1;
  }

  // --- teardown ------------------------------------------------------------------------------

  /** End the VM with `exit` (the first one wins); while booting, right after afterBoot. */
  private finish(exit: VmExit): Promise<VmExit> {
    if (this.booting) {
      this.pendingExit ??= exit;
      return this.exited;
    }
    if (!this.finishing) this.finishing = this.teardown(exit);
    return this.finishing;
  }

  /** A guarded tap threw (core/hooks.ts): fail the start-up, stop the VM, or make the exit an error. */
  private onTapFailure(owner: TapOwner, error: Error): void {
    log('%s', error.message);
    if (owner.hook === 'failed') return;
    if (this.booting) {
      this.bootFailure ??= error;
      return;
    }
    if (this.exit) {
      if (!this.exitSettled && this.exit.reason !== 'error') Object.assign(this.exit, errorExit(error));
      return;
    }
    void this.finish(errorExit(error));
  }

  private async teardown(exit: VmExit): Promise<VmExit> {
    this.exit = exit;
    if (this._state !== 'configured') this.setState('stopping');
    log('stopping: %s', exit.message);
    this.detachIo?.();
    this.unwatchStopSignal?.();
    await Promise.all(this.vcpus.map((v) => v.stop()));
    this.serial.close();
    // Each tap's failure is reported by onTapFailure and the next tap still runs (core/hooks.ts).
    await this.hooks.shutdown.promise(exit);
    for (const e of [...this.ioEvents]) e.dispose();
    this.shmWindow?.closeAll(); // guest shared memory a plugin left mapped
    this.shmWindow = undefined;
    for (const m of this.mappings) m.close();
    this.mappings = [];
    for (const fd of [...this.vcpuFds, this.memFd, this.vmFd, this.kvmFd]) if (fd >= 0) native.close(fd);
    this.vcpuFds = [];
    this.memFd = this.vmFd = this.kvmFd = -1;
    this._memory = undefined;
    this.setState('stopped');
    this.hooks.afterShutdown.call(exit);
    this.exitSettled = true;
    this.resolveExit(exit);
    return exit;
  }

  // --- helpers -------------------------------------------------------------------------------

  private register(bus: 'pio' | 'mmio', device: BusDevice): void {
    if (this._state !== 'booting') throw new VmmError('ERR_VM_STATE', `cannot register device '${device.name}' while the VM is ${this._state}; register devices in the createDevices hook.`);
    this.buses[bus].insert(device.base, device.length, device);
    this.registered[bus].push({ ...device, bus, owner: this.taps.current()?.plugin });
  }

  private requireVm(what: string): void {
    if (this.vmFd < 0) throw new VmmError('ERR_VM_STATE', `cannot ${what} before the VM exists (use the createDevices hook).`);
  }

  private setState(next: VmState): void {
    const previous = this._state;
    if (previous === next) return;
    this._state = next;
    log('state %s → %s', previous, next);
    this.hooks.stateChange.call(previous, next);
  }

}

function readImage(file: string, what: string): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : messageOf(error);
    throw new KernelLoadError(`cannot read ${what} ${file}: ${why}.`);
  }
}


/** Stopped from outside; with a signal name as the reason, the exit code is 128 + its number. */
function stoppedExit(reason: unknown): VmExit {
  const number = typeof reason === 'string' ? (os.constants.signals as Record<string, number | undefined>)[reason] : undefined;
  if (typeof number === 'number') return { reason: 'stopped', exitCode: 128 + number, message: `stopped by ${reason}.` };
  return { reason: 'stopped', exitCode: EXIT_CODES.ok, message: 'the VM was stopped.' };
}

function errorExit(error: unknown): VmExit {
  return { reason: 'error', exitCode: EXIT_CODES.error, message: messageOf(error) };
}
