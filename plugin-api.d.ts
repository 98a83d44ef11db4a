/**
 * vmm plugin API: the complete public contract for plugin authors.
 *
 * A plugin is an object `{ name, apply(vmm, options) }`, exported by an npm package or a local
 * file (`module.exports = plugin`, or `module.exports = { default: plugin }`). `apply` runs
 * once, before the VM is configured; it only taps hooks. Everything a plugin does to the VM it
 * does from inside a hook, at the moment that hook names:
 *
 *   configure ─▶ createDevices ─▶ kernelCmdline ─▶ beforeBoot ─▶ afterBoot
 *      ─▶ (running ⇄ paused: stateChange, pause, resume, unhandledExit, controlCommand)
 *      ─▶ shutdown ─▶ afterShutdown            (failed: whenever start-up fails)
 *
 * Tap with the plugin's name first (`vmm.hooks.createDevices.tapPromise(NAME, …)`) so errors
 * and traces can name it. An exception thrown by a tap stops the VM with an error that names
 * the plugin and the hook.
 *
 * Threads. The VM's vCPUs run on worker threads. A bus device registered with plain `read` /
 * `write` functions runs on the main thread: simple, but every guest access waits for the main
 * event loop (~70 µs here). A device on a hot path registers a *worker* handler instead: a
 * module loaded into every vCPU thread, called synchronously on the vCPU's own thread (a few
 * µs), that keeps shared state in a SharedArrayBuffer. See `WorkerDeviceModule`.
 */
import type {
  AsyncSeriesBailHook,
  AsyncSeriesHook,
  SyncBailHook,
  SyncHook,
  SyncWaterfallHook,
} from 'tapable';
import type { Debugger } from 'debug';

// ---------------------------------------------------------------------------------------------
// Plugins

export interface Plugin<Options = unknown> {
  /** Unique name; used in error messages, logs (`vmm:plugin:<name>`) and tap names. */
  readonly name: string;
  /**
   * Validate `options` (throw an Error whose message names the option and why) and tap hooks.
   * `options` is what the user gave (`--plugin name='{"a":1}'` or the config file), or `{}`.
   */
  apply(vmm: Vmm, options: Options): void;
}

/** How a plugin is named in a config file or on the command line. */
export interface PluginSpec {
  /** A first-party short name (`virtio-net`, `virtio-wl`, `control`), an npm package, or a path. */
  name: string;
  options?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// Configuration

export type UnclaimedPolicy = 'stop' | 'ignore';

export interface VmConfig {
  /** Kernel or guest image path; `null` boots the built-in demo guest. */
  kernel: string | null;
  /** Initial ramdisk for a Linux kernel. */
  initrd: string | null;
  /** Kernel command line, before plugins add their entries (`kernelCmdline`). */
  cmdline: string;
  /** Guest RAM in bytes. */
  memory: number;
  /** Number of vCPUs. */
  cpus: number;
  /**
   * CPUID feature names hidden from the guest (`cx16`, `xsave`, `smap`, …). The default hides
   * what the emulated KVM on our CI machines cannot execute; `[]` passes everything KVM supports.
   */
  cpuidHide: string[];
  /** What happens when the guest touches a port or address no device claimed. */
  unclaimedAccess: UnclaimedPolicy;
  /** Plugins, in the order they are applied. */
  plugins: PluginSpec[];
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

export type VmState = 'configured' | 'booting' | 'running' | 'paused' | 'stopping' | 'stopped';

/** How the VM ended; `exitCode` is what `vmm` exits with (see the README's exit codes). */
export interface VmExit {
  reason:
    | 'poweroff'      // the guest wrote 0 to the exit port
    | 'reset'         // the guest reset through the i8042 controller (treated as power-off)
    | 'guest-failure' // the guest wrote a non-zero status to the exit port
    | 'crash'         // triple fault, KVM internal/emulation error, unclaimed access under 'stop'
    | 'stopped'       // stopped from outside (signal, control channel, API)
    | 'error';        // a VMM or plugin error
  exitCode: number;
  /** A plain sentence for the user (registers included for a crash). */
  message: string;
  /** The status the guest wrote to the exit port, when it did. */
  guestStatus?: number;
}

// ---------------------------------------------------------------------------------------------
// Hooks

export interface UnhandledExit {
  vcpu: number;
  kind: 'pio' | 'mmio';
  address: number;
  size: number;
  isWrite: boolean;
  /** The value written (writes only). */
  value?: number | bigint;
}

/** One request on the control channel (see the control plugin). */
export interface ControlRequest {
  command: string;
  args: string[];
  [key: string]: unknown;
}

export interface ControlContext {
  /** File descriptors that came with the request (SCM_RIGHTS). A handler that keeps one takes ownership: remove it from the array. The rest are closed after the reply. */
  fds: number[];
}

export type ControlReply = Record<string, unknown>;

export interface DeviceEvent {
  /** The device's name. */
  device: string;
  /** What happened, e.g. `link-up`, `socket-added`. */
  type: string;
  [key: string]: unknown;
}

/** A device on a bus, as `vmm.devices` lists it. */
export interface DeviceInfo {
  name: string;
  bus: 'pio' | 'mmio';
  base: number;
  length: number;
}

export interface VmmHooks {
  // configuration
  /** Adjust and validate the configuration; return a new config or mutate it. Throw to refuse. */
  readonly configure: SyncWaterfallHook<[VmConfig]>;

  // devices and boot
  /** Guest memory exists; register bus devices, interrupts, ioeventfds. */
  readonly createDevices: AsyncSeriesHook<[Vmm]>;
  /** Contribute kernel command-line entries (e.g. `virtio_mmio.device=…`); return the list. */
  readonly kernelCmdline: SyncWaterfallHook<[string[]]>;
  /** The kernel is loaded and devices exist; the vCPUs have not started. */
  readonly beforeBoot: AsyncSeriesHook<[Vmm]>;
  /** The vCPUs are running. */
  readonly afterBoot: SyncHook<[Vmm]>;

  // running
  readonly stateChange: SyncHook<[VmState, VmState]>;
  readonly pause: SyncHook<[]>;
  readonly resume: SyncHook<[]>;
  /** A guest access nobody claimed. Return a policy to override `config.unclaimedAccess`. */
  readonly unhandledExit: SyncBailHook<[UnhandledExit], UnclaimedPolicy | undefined>;
  /** Something a device wants observers (e.g. the control channel's `events`) to know. */
  readonly deviceEvent: SyncHook<[DeviceEvent]>;
  /** A control-channel command; the first tap that returns a reply answers it. */
  readonly controlCommand: AsyncSeriesBailHook<[ControlRequest, ControlContext], ControlReply | undefined>;

  // end
  /** The vCPUs have stopped; release devices here. */
  readonly shutdown: AsyncSeriesHook<[VmExit]>;
  /** Everything is released. */
  readonly afterShutdown: SyncHook<[VmExit]>;
  /** Start-up failed (the error names the plugin or step). */
  readonly failed: SyncHook<[Error]>;
}

// ---------------------------------------------------------------------------------------------
// Guest memory: every access is bounds-checked; out-of-range or wrapping ranges throw.

export interface GuestMemory {
  readonly size: number;
  contains(gpa: number, length: number): boolean;
  /** Zero-copy view; valid until the VM stops. */
  view(gpa: number, length: number): Uint8Array;
  read(gpa: number, length: number): Uint8Array;
  write(gpa: number, data: Uint8Array): void;
  readU8(gpa: number): number;
  readU16(gpa: number): number;
  readU32(gpa: number): number;
  readU64(gpa: number): bigint;
  writeU8(gpa: number, value: number): void;
  writeU16(gpa: number, value: number): void;
  writeU32(gpa: number, value: number): void;
  writeU64(gpa: number, value: bigint): void;
}

// ---------------------------------------------------------------------------------------------
// Bus devices

/**
 * The value of a guest access, exactly `size` bytes, little-endian: a number for accesses of up
 * to 4 bytes, a bigint for MMIO accesses of 5 to 8 bytes. Ports see 1, 2 and 4 bytes; MMIO
 * mostly 1, 2, 4 and 8, but KVM reports other sizes for some instructions (3, 5, 6, 7).
 */
export type AccessValue = number | bigint;

export interface BusDeviceBase {
  /** Shown in overlap errors and logs. */
  name: string;
  base: number;
  length: number;
}

/** A device whose handlers run on the main thread (each guest access waits for the event loop). */
export interface MainThreadBusDevice extends BusDeviceBase {
  read?(offset: number, size: number): AccessValue;
  write?(offset: number, size: number, value: AccessValue): void;
}

/** A device whose handlers run on the vCPU threads. */
export interface WorkerBusDevice extends BusDeviceBase {
  worker: {
    /** Absolute path of a CommonJS module exporting `createDevice` (see WorkerDeviceModule). */
    module: string;
    /** Structured-cloneable options passed to `createDevice`. */
    options?: unknown;
    /** Shared state visible to every vCPU thread and to the main thread. */
    shared?: SharedArrayBuffer;
  };
  /** Receives what the device's worker handlers send with `postToMain` (main thread). */
  onWorkerMessage?(vcpu: number, message: unknown): void;
}

export type BusDevice = MainThreadBusDevice | WorkerBusDevice;

export interface DeviceBus {
  /** Claim [base, base+length). Overlaps are refused with an error naming both devices. */
  register(device: BusDevice): void;
}

/** What a worker device module gets, once per vCPU thread. */
export interface WorkerDeviceContext {
  vcpu: number;
  options: unknown;
  shared: SharedArrayBuffer | undefined;
  memory: GuestMemory;
  irq: {
    /** Set a GSI's line level (the in-kernel irqchip). */
    set(gsi: number, level: boolean): void;
    /** Raise then lower (edge). */
    pulse(gsi: number): void;
  };
  log: Debugger;
  /** Send a structured-cloneable message to the main thread's `onWorkerMessage` for this device. */
  postToMain(message: unknown): void;
}

export interface WorkerDeviceHandler {
  read?(offset: number, size: number): AccessValue;
  write?(offset: number, size: number, value: AccessValue): void;
}

/** The shape of a worker device module. */
export interface WorkerDeviceModule {
  createDevice(context: WorkerDeviceContext): WorkerDeviceHandler;
}

// ---------------------------------------------------------------------------------------------
// Interrupts and notifications

export interface Interrupts {
  /** Reserve a free GSI for a device (legacy ISA lines 0–15 except those already taken, then 16–23). */
  allocate(owner: string): number;
  set(gsi: number, level: boolean): void;
  pulse(gsi: number): void;
}

export interface IoEventOptions {
  /** Guest-physical MMIO address, or a port when `pio`. */
  address: number;
  /** 0 (any), 1, 2, 4 or 8 bytes. */
  length: number;
  pio?: boolean;
  /** Only writes of this value notify. */
  datamatch?: bigint;
  /** Runs on the main thread with the number of guest writes since the last call. */
  onNotify(count: bigint): void;
}

export interface Disposable {
  dispose(): void;
}

// ---------------------------------------------------------------------------------------------
// The VMM as plugins see it

export interface Vmm {
  readonly hooks: VmmHooks;
  /** The final configuration (valid from `createDevices` on). */
  readonly config: Readonly<VmConfig>;
  readonly state: VmState;
  /** Bus devices registered so far. */
  readonly devices: readonly DeviceInfo[];
  /** Plugins applied to this VM, with where each was loaded from. */
  readonly plugins: readonly { name: string; source: string }[];
  /** Guest RAM (valid from `createDevices` on). */
  readonly memory: GuestMemory;
  readonly pio: DeviceBus;
  readonly mmio: DeviceBus;
  readonly irq: Interrupts;
  /** Guest writes to an address become an eventfd notification, with no vCPU exit (KVM_IOEVENTFD). */
  ioevent(options: IoEventOptions): Disposable;
  /** Reserve `size` bytes (page-aligned) of the MMIO hole for a device. */
  allocateMmio(owner: string, size: number): number;
  /** A `debug` logger named `vmm:plugin:<name>`. */
  logger(name: string): Debugger;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Stop the VM (vCPUs joined, devices released). */
  stop(): Promise<VmExit>;
}

// ---------------------------------------------------------------------------------------------
// Virtio devices: virtio-mmio transport (version 2), split virtqueues (virtio 1.2 §2.7, §4.2)
//
// `vmm.addVirtioDevice(device, { name })` in `createDevices` gives the device 4 KiB of MMIO space
// and an interrupt line, and adds `virtio_mmio.device=4K@0xBASE:IRQ` to the kernel command line.
// The register file runs on the vCPU threads; queue notifications arrive through ioeventfds and
// interrupts leave through an irqfd, so the device's own code (`activate`, `queueNotify`, …)
// runs on the main thread's event loop and guest register accesses never wait for it.

/** One guest buffer of a descriptor chain (already checked to lie inside guest RAM). */
export interface VirtioBuffer {
  readonly addr: number;
  readonly len: number;
}

/** A descriptor chain the driver made available. Every buffer was validated when it was popped. */
export interface VirtioChain {
  /** Head descriptor index: what the used ring gets back. */
  readonly head: number;
  /** Device-readable buffers, in order. */
  readonly readable: readonly VirtioBuffer[];
  /** Device-writable buffers, in order (they follow every readable one, §2.7.4.2). */
  readonly writable: readonly VirtioBuffer[];
  readonly readableLength: number;
  readonly writableLength: number;
  /** A copy of every readable byte, descriptor boundaries removed. */
  readBytes(): Uint8Array;
  /** Write `data` into the writable buffers from byte `offset` on; returns bytes written (clipped at the end). */
  writeBytes(data: Uint8Array, offset?: number): number;
}

export interface VirtioQueue {
  readonly index: number;
  /** Queue size the driver chose. */
  readonly size: number;
  /**
   * The next available chain, or null. A malformed chain (loop, out-of-range index or address,
   * bad indirect table of more than 1024 entries, …) is logged, given back with length 0 and
   * skipped; a broken ring (an impossible available index, a head made available twice) sets
   * DEVICE_NEEDS_RESET and stops the queue. Never throws.
   *
   * Null also once every 4096 descriptors walked (a budget, so that no guest can hold the event
   * loop): the device's `queueNotify` is then called again on the next event-loop turn. So null means
   * "nothing more now", and `queueNotify` means "look again", not "something new".
   */
  pop(): VirtioChain | null;
  /**
   * Give back the last `count` popped chains that were not completed: the next pops return them
   * again, in the same order. The ring itself is not rewound, so chains that `pop` skipped as
   * malformed are never walked or completed twice.
   */
  undoPop(count?: number): void;
  /**
   * Return a chain to the driver; `written` is the number of bytes the device wrote into it
   * (clipped to the chain's writable length). A chain already completed is ignored (logged).
   */
  pushUsed(chain: VirtioChain, written: number): void;
  /** Return several chains published by one used-index update (e.g. the buffers of one merged rx packet). */
  pushUsedBatch(used: readonly { chain: VirtioChain; written: number }[]): void;
  /** Send a used-buffer notification if the driver wants one (EVENT_IDX / NO_INTERRUPT). Call after a batch of pushUsed. */
  notify(): void;
  /**
   * Ask for a notification when the driver adds buffers; true if it made new chains available
   * meanwhile (pop again). Chains given back with `undoPop` do not count, and while the queue
   * is yielding (see `pop`) it is false: the device will be notified.
   */
  enableNotification(): boolean;
  /** Tell the driver not to notify (the device is polling the queue anyway). */
  disableNotification(): void;
  /** True once the queue found the ring broken (the device needs a reset). */
  readonly broken: boolean;
}

/** What a device gets when the driver sets DRIVER_OK. */
export interface VirtioActivation {
  /** Features the driver accepted. */
  readonly features: bigint;
  /** The device's queues by index; a queue the driver did not enable is `undefined`. */
  readonly queues: readonly (VirtioQueue | undefined)[];
  readonly memory: GuestMemory;
}

/** The transport as its device sees it (given to `attach`). */
export interface VirtioTransport {
  /** Change config-space bytes; bumps the config generation and, once the driver is up, raises a configuration change interrupt. */
  updateConfig(offset: number, data: Uint8Array): void;
  /** Put the device in DEVICE_NEEDS_RESET (§2.1.2) and tell the driver; the device stays stopped until the driver resets it. */
  needsReset(reason: string): void;
}

/** What every virtio device plugin implements. All methods run on the main thread. */
export interface VirtioDevice {
  /** Virtio device id (virtio 1.2 §5: 1 = network, 2 = block, …). */
  readonly deviceType: number;
  /** Device feature bits offered. The transport adds VERSION_1, RING_EVENT_IDX and INDIRECT_DESC. */
  readonly features: bigint;
  /** Maximum size of each queue (powers of two up to 32768); the length is the number of queues. */
  readonly queueMaxSizes: readonly number[];
  /** Initial device configuration space (at MMIO offset 0x100; at most 0xf00 bytes). */
  readonly config: Uint8Array;
  /** Called once by addVirtioDevice. */
  attach?(transport: VirtioTransport): void;
  /** The driver set DRIVER_OK: start using the queues. */
  activate(activation: VirtioActivation): void;
  /** The driver notified queue `index` (it added buffers). */
  queueNotify(index: number): void;
  /** The driver reset the device (status 0): stop using the queues, forget negotiated state. */
  reset(): void;
  /** The driver wrote config bytes (already stored; the device may correct them with updateConfig). */
  writeConfig?(offset: number, data: Uint8Array): void;
  /** The VM is stopping: release everything (called once, after the queues are gone). */
  shutdown?(): void | Promise<void>;
}

export interface VirtioDeviceOptions {
  /** Device name for `vmm.devices` and logs. */
  name: string;
}

export interface VirtioDeviceInfo {
  /** Guest-physical base of the device's 4 KiB register window. */
  base: number;
  /** The device's GSI. */
  irq: number;
}

export interface Vmm {
  /**
   * Add a virtio-mmio device (call in `createDevices`): reserves its MMIO window and GSI,
   * registers the transport and adds `virtio_mmio.device=4K@0xBASE:IRQ` to the kernel command line.
   */
  addVirtioDevice(device: VirtioDevice, options: VirtioDeviceOptions): VirtioDeviceInfo;
}

// ---------------------------------------------------------------------------------------------
// Guest shared memory: host fds mapped into guest-physical space at run time (virtio-wl shm)

/** One fd mapped into the guest-physical window above RAM (core/memory/shm-window.ts). */
export interface GuestShmMapping {
  /** Guest-physical address of the first byte (page-aligned; pfn = gpa >> 12). */
  readonly gpa: number;
  /** Bytes mapped (the requested size rounded up to a page). */
  readonly size: number;
  /** The host's view of the same pages; valid until `unmap`. */
  readonly view: Uint8Array;
  /** Remove the memory from the guest and unmap it on the host; idempotent. */
  unmap(): void;
}

export interface Vmm {
  /**
   * Map `size` bytes of `fd` (a memfd or other mmap-able file, opened read-write) into guest-physical
   * space above RAM (from `createDevices` on). The fd stays the caller's. Throws ERR_SHM_WINDOW_FULL
   * when the window or the KVM slots are exhausted, or the mmap error (EACCES, EPERM for a sealed fd).
   */
  mapGuestShm(fd: number, size: number): GuestShmMapping;
}
