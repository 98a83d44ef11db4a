/**
 * vmm plugin API: the complete public contract for plugin authors (`import type { Plugin } from
 * 'vmm'`; the package's runtime entry adds `definePlugin`). Needs TypeScript 5.0 or later.
 *
 * A plugin is an object `{ name, schema?, apply(vmm, options) }`, exported by an npm package or a
 * local file (`module.exports = plugin`, or `module.exports = { default: plugin }`). `apply` runs
 * once per VM, before the VM is configured; it only taps hooks. Everything a plugin does to the VM
 * it does from inside a hook, at the moment that hook names:
 *
 *   apply ─▶ configure ─▶ createDevices ─▶ kernelCmdline ─▶ beforeBoot ─▶ afterBoot
 *      ─▶ (running ⇄ paused: stateChange, pause, resume, unhandledExit, deviceEvent, controlCommand)
 *      ─▶ shutdown ─▶ afterShutdown
 *   failed: when start-up fails, instead of the hooks that would have followed (a VM that had
 *           begun booting still gets shutdown and afterShutdown; see VmmHooks.failed)
 *
 * Tap with the plugin's name first (`vmm.hooks.createDevices.tapPromise(NAME, …)`) so traces can
 * name it. Errors name the plugin whose `apply` registered the tap (or, for a tap registered
 * later, the plugin whose tap was running then). What an exception thrown by a tap does depends
 * on the hook; each hook says so below. In short: in `apply` or `configure` the VM is not
 * created (`failed` runs, `vmm` exits 2); in the other start-up hooks the start fails (`failed`
 * runs, exit code 1); while the VM runs it stops the VM with an error (exit code 1);
 * in `shutdown`/`afterShutdown` it turns the exit into an error; in `controlCommand` it only
 * answers that request with an error; in `failed` it is logged and ignored. The message always
 * names the plugin and the hook.
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

/**
 * A plugin. `Plugin` (no argument) takes its options unchecked: `apply` gets whatever the user
 * wrote, typed as such. `Plugin<typeof schema>` declares its options as a JSON Schema: vmm checks
 * them before anything starts (the same check for a config file and for `--plugin`; a refusal
 * exits 2), fills in `default`s and resolves `resolvePath` strings, and `apply` gets them typed
 * from the schema (a property is present when it is `required` or has a `default`). In
 * TypeScript, `definePlugin({ name, schema, apply })` infers that type without `as const`.
 */
export type Plugin<Schema extends OptionsSchema | undefined = undefined> = PluginBase<Schema>
  & (undefined extends Schema ? { readonly schema?: undefined } : { readonly schema: Schema });

export interface PluginBase<Schema extends OptionsSchema | undefined> {
  /** Unique name; used in error messages, logs (`vmm:plugin:<name>`) and tap names. */
  readonly name: string;
  /**
   * Tap hooks (and check options the schema cannot express: throw an Error whose message names
   * the option and why; vmm exits 2, as for a schema refusal). `options` is what the user gave
   * (`--plugin name='{"a":1}'` or the config file), or `{}`; with a schema, checked and completed.
   */
  apply(vmm: Vmm, options: PluginOptions<Schema>): void;
}

/** What `apply` receives: typed from the schema, or unchecked values without one. */
export type PluginOptions<Schema extends OptionsSchema | undefined> =
  Schema extends OptionsSchema ? FromSchema<Schema> : UncheckedOptions;

/** Options nobody checked: any key may be missing and any value may be of any type. */
export type UncheckedOptions = { readonly [option: string]: unknown };

/**
 * The JSON Schema (draft-07) subset that vmm's types understand; ajv 8 checks the schema itself
 * (an unknown keyword is an error naming the plugin). vmm adds one keyword, `resolvePath`.
 */
export interface JsonSchema {
  readonly type?: JsonSchemaTypeName | readonly JsonSchemaTypeName[];
  /**
   * What the value is, as a noun phrase: errors read "option 'port' must be <description>; got …"
   * and `vmm help PLUGIN` lists it.
   */
  readonly description?: string;
  readonly title?: string;
  readonly $comment?: string;
  readonly examples?: readonly unknown[];
  /** Filled in when the option (or property) is absent; the option is then always present. */
  readonly default?: unknown;
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly properties?: { readonly [name: string]: JsonSchema };
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | JsonSchema;
  readonly propertyNames?: JsonSchema;
  readonly minProperties?: number;
  readonly maxProperties?: number;
  readonly items?: JsonSchema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly uniqueItems?: boolean;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly multipleOf?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly anyOf?: readonly JsonSchema[];
  readonly oneOf?: readonly JsonSchema[];
  readonly allOf?: readonly JsonSchema[];
  readonly not?: JsonSchema;
  readonly if?: JsonSchema;
  readonly then?: JsonSchema;
  readonly else?: JsonSchema;
  readonly dependencies?: { readonly [name: string]: JsonSchema | readonly string[] };
  /**
   * vmm's keyword: this string is a file path; a relative one is resolved against the directory
   * of the config file that gave it (the working directory for `--plugin`), as `kernel` is.
   */
  readonly resolvePath?: boolean;
}

export type JsonSchemaTypeName = 'string' | 'number' | 'integer' | 'boolean' | 'object' | 'array' | 'null';

/** A plugin's options schema: an object schema (typically with `additionalProperties: false`). */
export interface OptionsSchema extends JsonSchema {
  readonly type: 'object';
}

/** The TypeScript type of the values a schema accepts (after defaults are filled in). */
export type FromSchema<S> =
  S extends { readonly const: infer C } ? C
  : S extends { readonly enum: readonly (infer E)[] } ? E
  : S extends { readonly anyOf: readonly (infer U)[] } ? FromSchema<U>
  : S extends { readonly oneOf: readonly (infer U)[] } ? FromSchema<U>
  : S extends { readonly type: readonly (infer T)[] } ? FromTypeName<T, S>
  : S extends { readonly type: infer T } ? FromTypeName<T, S>
  : unknown;

type FromTypeName<T, S> =
  T extends 'string' ? string
  : T extends 'number' | 'integer' ? number
  : T extends 'boolean' ? boolean
  : T extends 'null' ? null
  : T extends 'array' ? (S extends { readonly items: infer I } ? FromSchema<I>[] : unknown[])
  : T extends 'object' ? FromObjectSchema<S>
  : never;

type PresentKeys<S, P> =
  | (S extends { readonly required: readonly (infer R)[] } ? R : never)
  | { [K in keyof P]: P[K] extends { readonly default: unknown } ? K : never }[keyof P];

type ExtraProperties<S> =
  S extends { readonly additionalProperties: false } ? unknown
  : S extends { readonly additionalProperties: infer A extends JsonSchema } ? { [key: string]: FromSchema<A> }
  : { [key: string]: unknown };

type Flatten<T> = { [K in keyof T]: T[K] } & {};

type FromObjectSchema<S> = S extends { readonly properties: infer P }
  ? Flatten<
      { -readonly [K in keyof P as K extends PresentKeys<S, P> ? K : never]: FromSchema<P[K]> }
      & { -readonly [K in keyof P as K extends PresentKeys<S, P> ? never : K]?: FromSchema<P[K]> }
    > & ExtraProperties<S>
  : ExtraProperties<S>;

/**
 * Runtime helper (the package's main export): returns its argument, typed. With a schema,
 * `apply`'s options get the schema's type: `definePlugin({ name, schema: { type: 'object', … }, apply(vmm, options) {…} })`.
 */
export declare function definePlugin<const Schema extends OptionsSchema>(plugin: {
  readonly name: string;
  readonly schema: Schema;
  apply(vmm: Vmm, options: FromSchema<Schema>): void;
}): Plugin<Schema>;
export declare function definePlugin(plugin: Plugin): Plugin;

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

/**
 * How the VM ended; `exitCode` is what `vmm` exits with (see the README's exit codes), already
 * when `shutdown` and `afterShutdown` see it: 0, 1, 3, 4, or 128 + the signal's number (130,
 * 143) for a VM stopped through a `stopSignal` aborted with a signal name.
 */
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

/**
 * A device event. On the control channel, `{ device, type, ...details }` becomes the event
 * datagram `{ "version": 1, "event": { "type": "device", "device": device, "event": type,
 * "details": { ...details } } }`, so details must be JSON values.
 */
export interface DeviceEvent {
  /** The device's name. */
  device: string;
  /** What happened, e.g. `link-up`, `socket-added`. */
  type: string;
  [detail: string]: unknown;
}

/** A device on a bus, as `vmm.devices` lists it. */
export interface DeviceInfo {
  name: string;
  bus: 'pio' | 'mmio';
  base: number;
  length: number;
}

/**
 * Every extension point, in the order they run. "Throws:" says what an exception thrown by a tap
 * (or a rejected promise) does; every message names the plugin and the hook.
 */
export interface VmmHooks {
  // configuration
  /**
   * Once, when the VM is created, after every plugin's `apply` and before anything touches KVM
   * (state `configured`). Receives a copy of the configuration; return it changed (or a new one),
   * or nothing to keep it. The result is checked like a config file.
   * Throws: the VM is not created (the constructor throws; `vmm` exits 2); `failed` runs.
   */
  readonly configure: SyncWaterfallHook<[VmConfig], VmConfig | undefined>;

  // devices and boot
  /**
   * Once, in state `booting`: guest memory and the built-in devices exist, the kernel is not
   * loaded yet. Register bus devices, interrupts, ioeventfds and virtio devices here.
   * Throws: start-up fails (`failed` runs, the VM is torn down, exit code 1).
   */
  readonly createDevices: AsyncSeriesHook<[Vmm]>;
  /**
   * Once, after `createDevices`, while the kernel is loaded. Receives the command line as
   * entries, one per word as the kernel splits it (`key=value`, `key="a quoted value"`): the
   * configuration's `cmdline` first, then one `virtio_mmio.device=4K@0xBASE:IRQ` per virtio
   * device. Return the list (changed, or a new one), or nothing to keep it. The final line,
   * entries joined by spaces, is `vmm.kernelCmdline`.
   * Throws: start-up fails, as for `createDevices`.
   */
  readonly kernelCmdline: SyncWaterfallHook<[string[]], string[] | undefined>;
  /**
   * Once: the kernel is loaded (so `vmm.kernelCmdline` is final) and the vCPUs are created but
   * not started. Throws: start-up fails, as for `createDevices`.
   */
  readonly beforeBoot: AsyncSeriesHook<[Vmm]>;
  /**
   * Once, for every VM whose start-up succeeded: every vCPU thread runs the guest and the state
   * has just become `running`. It always runs before the VM stops: if the guest ends, a vCPU
   * crashes or `stop()` (a signal, the control channel) is asked for while the VM is still
   * booting, that takes effect right after `afterBoot`. It does not run when start-up fails
   * (then `failed` does). Throws: start-up fails (`start()` rejects, `failed` runs, exit code 1).
   */
  readonly afterBoot: SyncHook<[Vmm]>;

  // running
  /**
   * Every lifecycle transition (`configured → booting → running ⇄ paused → stopping → stopped`),
   * just after `vmm.state` changed. Throws: while booting, start-up fails; later the VM stops
   * with an error (or, once stopping, the exit becomes that error); the other taps still run.
   */
  readonly stateChange: SyncHook<[VmState, VmState]>;
  /** After every vCPU paused (state `paused`). Throws: the VM stops with an error. */
  readonly pause: SyncHook<[]>;
  /** After every vCPU resumed (state `running`). Throws: the VM stops with an error. */
  readonly resume: SyncHook<[]>;
  /**
   * Each time the guest touches a port or address no device claimed, on the main thread while
   * that vCPU waits. Return `'ignore'` (reads see all ones) or `'stop'` (a crash, exit code 3) to
   * override `config.unclaimedAccess`; the first tap that returns one decides.
   * Throws: the access is refused and the VM stops with an error (exit code 1), not a crash.
   */
  readonly unhandledExit: SyncBailHook<[UnhandledExit], UnclaimedPolicy | undefined>;
  /**
   * When a device reports something (`vmm.emitDeviceEvent`), synchronously, in the emitter's
   * call. The control channel sends each one to its `events` subscribers (see DeviceEvent).
   * Throws: the VM stops with an error; the emitter does not see the exception and the other
   * taps still get the event.
   */
  readonly deviceEvent: SyncHook<[DeviceEvent]>;
  /**
   * A control-channel request for a command that is not built in (only with the `control`
   * plugin). Taps run in order; the first that returns an object answers it; returning
   * nothing passes the request on. Throws: the request is answered with an error (the
   * exception's `code` when it starts with `ERR_`, else `ERR_COMMAND_FAILED`, and its message);
   * the VM runs on.
   */
  readonly controlCommand: AsyncSeriesBailHook<[ControlRequest, ControlContext], ControlReply | undefined>;

  // end
  /**
   * Once, in state `stopping`, after every vCPU thread has been joined and before ioeventfds,
   * guest memory and the VM's fds are released: release your devices here. Receives how the VM
   * ended, with the exit code `vmm` will exit with (130/143 for SIGINT/SIGTERM). Every tap runs,
   * even after one failed. Throws: the exit becomes an error (exit code 1) unless it already is one.
   */
  readonly shutdown: AsyncSeriesHook<[VmExit]>;
  /**
   * Once, in state `stopped`: everything is released (guest memory is gone). Receives the same
   * exit as `shutdown`. `vm.wait()` resolves after it. Throws: as for `shutdown`.
   */
  readonly afterShutdown: SyncHook<[VmExit]>;
  /**
   * Start-up failed, instead of the hooks that would have followed: a later plugin's `apply`
   * threw or refused its options, `configure` threw or left a bad configuration, or `start()`
   * failed (KVM, guest memory, the kernel, or a `createDevices` / `kernelCmdline` / `beforeBoot`
   * / `afterBoot` tap). Every `failed` tap registered so far runs, before anything is torn down
   * (a VM that had started booting still runs `shutdown` and `afterShutdown` after it).
   * Receives the error, whose message names the plugin or step. Throws: logged and ignored.
   */
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

/**
 * A device handler (main-thread or worker, `read`, `write`, `onWorkerMessage`) that throws stops
 * the VM with an error (exit code 1) naming the device, the plugin that registered it, the
 * access and the vCPU.
 */
export interface DeviceBus {
  /**
   * Claim [base, base+length) while the VM is booting (in `createDevices`: for a Linux kernel,
   * vmm claims the legacy PC ports nobody took right after it). Overlaps are refused with an
   * error naming both devices.
   */
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
  /**
   * Plugins applied to this VM: where each was loaded from, and the directory its relative
   * option paths resolve against (the config file's directory, or the working directory).
   */
  readonly plugins: readonly { name: string; source: string; baseDir: string }[];
  /**
   * The kernel command line as the guest gets it: the `kernelCmdline` entries joined by spaces
   * ('' until the kernel is loaded, so read it from `beforeBoot` on).
   */
  readonly kernelCmdline: string;
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
  /**
   * Report a device event to the `deviceEvent` taps (the control channel's `events`
   * subscribers get `{ type: 'device', device, event: type, details }`). `details` are JSON
   * values and may not use the keys `device` and `type`.
   */
  emitDeviceEvent(device: string, type: string, details?: Record<string, unknown>): void;
  /** Pause every vCPU (state `running` only); resolves once they are paused and `pause` ran. */
  pause(): Promise<void>;
  /** Resume (state `paused` only); resolves once the vCPUs run again and `resume` ran. */
  resume(): Promise<void>;
  /**
   * Stop the VM (vCPUs joined, devices released); resolves with the exit. Asked while the VM is
   * booting, it stops right after `afterBoot`.
   */
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
  /** Send a used-buffer notification if something was published since the last call and the driver wants one (EVENT_IDX / NO_INTERRUPT). Call after a batch of pushUsed; a call with nothing new does nothing. */
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

/**
 * What every virtio device plugin implements. All methods run on the main thread. An exception
 * thrown by `activate`, `queueNotify`, `reset` or `writeConfig` is a device bug: it is logged and
 * the device is put in DEVICE_NEEDS_RESET (the driver sees a broken device); the VM runs on.
 * `attach` throwing fails `addVirtioDevice`; `shutdown` throwing is a `shutdown` hook failure.
 */
export interface VirtioDevice {
  /** Virtio device id (virtio 1.2 §5: 1 = network, 2 = block, …). */
  readonly deviceType: number;
  /**
   * The VendorID register (virtio-mmio 0x00c), a 32-bit number; default VMM_VIRTIO_VENDOR_ID
   * (0x004d4d56, the bytes "VMM\0"). Linux shows it in /sys/bus/virtio/devices/<dev>/vendor.
   */
  readonly vendorId?: number;
  /** Device feature bits offered. The transport adds VERSION_1, RING_EVENT_IDX and INDIRECT_DESC. */
  readonly features: bigint;
  /** Maximum size of each queue (powers of two up to 32768); the length is the number of queues. */
  readonly queueMaxSizes: readonly number[];
  /** Initial device configuration space (at MMIO offset 0x100; at most 0xf00 bytes). */
  readonly config: Uint8Array;
  /** Called once by addVirtioDevice, before it returns. */
  attach?(transport: VirtioTransport): void;
  /** The driver set DRIVER_OK: start using the queues. */
  activate(activation: VirtioActivation): void;
  /**
   * "Look at queue `index`": called when the driver notified it (it added buffers), once for
   * every enabled queue right after `activate` (buffers made available before DRIVER_OK), and
   * on the next event-loop turn after `pop` returned null for its walking budget. Nothing new
   * may be there: pop until null.
   */
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
   * registers the transport and adds `virtio_mmio.device=4K@0xBASE:IRQ` to the kernel command
   * line (the entries `kernelCmdline` taps receive). Throws a RangeError for a bad `vendorId`
   * or queue size.
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
