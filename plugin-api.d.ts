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

/** Accesses of 1, 2 or 4 bytes carry a number; 8-byte MMIO accesses carry a bigint. */
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
