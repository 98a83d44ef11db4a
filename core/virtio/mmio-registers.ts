/**
 * The virtio-mmio register file (virtio 1.2 §4.2.2, version 2), run on the vCPU threads as a
 * worker device: guest register reads and writes are answered from a SharedArrayBuffer and
 * never wait for the main thread. What the main thread must act on (a status change, a config
 * write, a notify that missed the ioeventfd) is flagged in the shared state and announced with
 * postToMain only when the flag was clear, so however fast a guest resets, writes config or
 * notifies, at most one message of each kind waits for the main thread, which then acts on the
 * state as it is then (the latest epoch and status, the union of the written config bytes).
 *
 * This module is also imported by the main-thread half (mmio-transport.ts) for the layout.
 * It has no device types: it only knows the registers (style rule "the transport never names
 * a device type").
 */
import type { AccessValue, WorkerDeviceContext, WorkerDeviceHandler } from '../../plugin-api';
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED,
  VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1, VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_CONFIG_GENERATION, VIRTIO_MMIO_DEVICE_FEATURES, VIRTIO_MMIO_DEVICE_FEATURES_SEL, VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_DRIVER_FEATURES, VIRTIO_MMIO_DRIVER_FEATURES_SEL, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_MAGIC, VIRTIO_MMIO_MAGIC_VALUE, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
  VIRTIO_MMIO_QUEUE_DESC_HIGH, VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX, VIRTIO_MMIO_QUEUE_READY, VIRTIO_MMIO_QUEUE_SEL, VIRTIO_MMIO_QUEUE_USED_HIGH,
  VIRTIO_MMIO_QUEUE_USED_LOW, VIRTIO_MMIO_SHM_BASE_HIGH, VIRTIO_MMIO_SHM_BASE_LOW, VIRTIO_MMIO_SHM_LEN_HIGH,
  VIRTIO_MMIO_SHM_LEN_LOW, VIRTIO_MMIO_SHM_SEL, VIRTIO_MMIO_STATUS, VIRTIO_MMIO_VENDOR_ID, VIRTIO_MMIO_VERSION,
  VIRTIO_MMIO_VERSION_2, VMM_VIRTIO_MMIO_SIZE,
} from './constants';

// --- shared layout (Int32 slots, then per-queue blocks, then the config bytes)
export const R_LOCK = 0;
export const R_DEVICE_ID = 1;
export const R_VENDOR_ID = 2;
export const R_NUM_QUEUES = 3;
export const R_CONFIG_SIZE = 4;
export const R_DEVICE_FEATURES_LO = 5;
export const R_DEVICE_FEATURES_HI = 6;
export const R_DEVICE_FEATURES_SEL = 7;
export const R_DRIVER_FEATURES_LO = 8;
export const R_DRIVER_FEATURES_HI = 9;
export const R_DRIVER_FEATURES_SEL = 10;
export const R_QUEUE_SEL = 11;
export const R_STATUS = 12;
export const R_INTERRUPT_STATUS = 13;
export const R_CONFIG_GENERATION = 14;
/** Bumped by every reset: the main thread drops work that belongs to an older epoch. */
export const R_EPOCH = 15;
export const R_SHM_SEL = 16;
/** PENDING_* bits: a message is on its way to the main thread; cleared there before acting. */
export const R_PENDING = 17;
/** Config bytes [lo, hi) written since the main thread last looked; hi = 0: none. */
export const R_CONFIG_DIRTY_LO = 18;
export const R_CONFIG_DIRTY_HI = 19;
const GLOBAL_SLOTS = 32;

export const PENDING_STATUS = 1;
export const PENDING_CONFIG = 2;

export const Q_NUM_MAX = 0;
export const Q_NUM = 1;
export const Q_READY = 2;
export const Q_DESC_LO = 3;
export const Q_DESC_HI = 4;
export const Q_AVAIL_LO = 5;
export const Q_AVAIL_HI = 6;
export const Q_USED_LO = 7;
export const Q_USED_HI = 8;
/** 1 while a 'notify' message for this queue is on its way. */
export const Q_NOTIFY_PENDING = 9;
const QUEUE_SLOTS = 12;

/** Shared memory regions (virtio 1.2 §2.10): base and length as 64-bit halves. */
export const MAX_SHM_REGIONS = 4;
const SHM_SLOTS = 4;

export const MAX_QUEUES = 64;
export const MAX_CONFIG_SIZE = VMM_VIRTIO_MMIO_SIZE - VIRTIO_MMIO_CONFIG;

export interface RegisterFileLayout {
  numQueues: number;
  configSize: number;
}

/** Messages the worker half sends to the main-thread half: "look at the shared state". */
export type TransportMessage =
  | { type: 'status' }
  | { type: 'config' }
  | { type: 'notify'; queue: number };

export interface RegisterOptions {
  name: string;
}

/** Typed views over the shared state; the same class on both sides. */
export class RegisterFile {
  readonly i32: Int32Array;
  readonly config: Uint8Array;
  readonly numQueues: number;
  readonly configSize: number;
  private readonly queueBase = GLOBAL_SLOTS;
  private readonly shmBase: number;

  static create(layout: RegisterFileLayout): RegisterFile {
    if (!Number.isInteger(layout.numQueues) || layout.numQueues < 1 || layout.numQueues > MAX_QUEUES) throw new RangeError(`a virtio device has 1 to ${MAX_QUEUES} queues; got ${layout.numQueues}`);
    if (!Number.isInteger(layout.configSize) || layout.configSize < 0 || layout.configSize > MAX_CONFIG_SIZE) throw new RangeError(`a virtio-mmio config space is at most ${MAX_CONFIG_SIZE} bytes; got ${layout.configSize}`);
    const slots = GLOBAL_SLOTS + QUEUE_SLOTS * layout.numQueues + SHM_SLOTS * MAX_SHM_REGIONS;
    const sab = new SharedArrayBuffer(slots * 4 + layout.configSize);
    const i32 = new Int32Array(sab, 0, GLOBAL_SLOTS);
    i32[R_NUM_QUEUES] = layout.numQueues;
    i32[R_CONFIG_SIZE] = layout.configSize;
    return new RegisterFile(sab);
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    const head = new Int32Array(buffer, 0, GLOBAL_SLOTS);
    this.numQueues = head[R_NUM_QUEUES];
    this.configSize = head[R_CONFIG_SIZE];
    const slots = GLOBAL_SLOTS + QUEUE_SLOTS * this.numQueues + SHM_SLOTS * MAX_SHM_REGIONS;
    this.i32 = new Int32Array(buffer, 0, slots);
    this.shmBase = GLOBAL_SLOTS + QUEUE_SLOTS * this.numQueues;
    this.config = new Uint8Array(buffer, slots * 4, this.configSize);
  }

  /** Spinlock: held for a few instructions by a vCPU thread or the main thread. */
  lock(): void {
    while (Atomics.compareExchange(this.i32, R_LOCK, 0, 1) !== 0) { /* spin */ }
  }

  unlock(): void {
    Atomics.store(this.i32, R_LOCK, 0);
  }

  q(queue: number, slot: number): number {
    return this.queueBase + QUEUE_SLOTS * queue + slot;
  }

  shm(region: number, slot: number): number {
    return this.shmBase + SHM_SLOTS * region + slot;
  }

  get status(): number { return Atomics.load(this.i32, R_STATUS); }
  get epoch(): number { return Atomics.load(this.i32, R_EPOCH); }

  driverFeatures(): bigint {
    return (BigInt(this.i32[R_DRIVER_FEATURES_HI] >>> 0) << 32n) | BigInt(this.i32[R_DRIVER_FEATURES_LO] >>> 0);
  }

  deviceFeatures(): bigint {
    return (BigInt(this.i32[R_DEVICE_FEATURES_HI] >>> 0) << 32n) | BigInt(this.i32[R_DEVICE_FEATURES_LO] >>> 0);
  }

  queueAddress(queue: number, lo: number): number {
    return (this.i32[this.q(queue, lo + 1)] >>> 0) * 2 ** 32 + (this.i32[this.q(queue, lo)] >>> 0);
  }

  /** Device reset (§2.4): everything the driver set goes back to its initial value. Call locked. */
  resetRegisters(): void {
    const r = this.i32;
    for (const slot of [R_DEVICE_FEATURES_SEL, R_DRIVER_FEATURES_LO, R_DRIVER_FEATURES_HI, R_DRIVER_FEATURES_SEL, R_QUEUE_SEL, R_SHM_SEL]) r[slot] = 0;
    for (let q = 0; q < this.numQueues; q++) {
      for (const slot of [Q_NUM, Q_READY, Q_DESC_LO, Q_DESC_HI, Q_AVAIL_LO, Q_AVAIL_HI, Q_USED_LO, Q_USED_HI]) r[this.q(q, slot)] = 0;
      // §4.2.2: QueueNum is reset to QueueNumMax would also be allowed; Linux writes it anyway.
    }
    Atomics.store(r, R_INTERRUPT_STATUS, 0);
    Atomics.store(r, R_STATUS, 0);
    // Config writes of the old driver instance are not news for the new one.
    Atomics.store(r, R_CONFIG_DIRTY_HI, 0);
    Atomics.add(r, R_EPOCH, 1);
  }

  /** Set `bit` in R_PENDING; true when it was clear (the caller then sends the message). */
  flagPending(bit: number): boolean {
    return (Atomics.or(this.i32, R_PENDING, bit) & bit) === 0;
  }

  /** Main thread, before acting on a message: later changes send a new one. */
  clearPending(bit: number): void {
    Atomics.and(this.i32, R_PENDING, ~bit);
  }

  /** The config bytes written since the last call, or null (main thread). */
  takeConfigWrites(): { offset: number; data: Uint8Array } | null {
    this.clearPending(PENDING_CONFIG);
    this.lock();
    try {
      const hi = this.i32[R_CONFIG_DIRTY_HI];
      if (hi === 0) return null;
      const lo = this.i32[R_CONFIG_DIRTY_LO];
      this.i32[R_CONFIG_DIRTY_HI] = 0;
      return { offset: lo, data: this.config.slice(lo, hi) };
    } finally {
      this.unlock();
    }
  }
}

/** 32-bit registers must be accessed with 32-bit accesses (§4.2.2.2). */
function isWordAccess(offset: number, size: number): boolean {
  return size === 4 && (offset & 3) === 0;
}

export function createDevice(ctx: WorkerDeviceContext): WorkerDeviceHandler {
  const regs = new RegisterFile(ctx.shared as SharedArrayBuffer);
  const r = regs.i32;
  const { name } = ctx.options as RegisterOptions;
  const log = ctx.log;

  /** Messages owed by the access being handled; sent after the lock is released. */
  let owed = 0;
  const OWE_STATUS = 1;
  const OWE_CONFIG = 2;

  function statusChanged(): void {
    if (regs.flagPending(PENDING_STATUS)) owed |= OWE_STATUS;
  }

  function sendOwed(): void {
    const o = owed;
    owed = 0;
    if (o & OWE_STATUS) ctx.postToMain({ type: 'status' } satisfies TransportMessage);
    if (o & OWE_CONFIG) ctx.postToMain({ type: 'config' } satisfies TransportMessage);
  }

  function notify(queue: number): void {
    // Normally caught in KVM by the ioeventfd (4-byte write, datamatch = queue index); any
    // other notify (another width, another value) lands here.
    if (queue >= regs.numQueues) { log('%s: notify for queue %d, which does not exist', name, queue); return; }
    if (Atomics.exchange(r, regs.q(queue, Q_NOTIFY_PENDING), 1) === 0) ctx.postToMain({ type: 'notify', queue } satisfies TransportMessage);
  }

  /** §2.1 / Firecracker set_device_status: each step adds exactly the next bit; others are ignored. */
  function writeStatus(value: number): void {
    const current = r[R_STATUS];
    if (value === 0) {
      // §2.4.1: "The device MUST reinitialize device status to 0 after receiving a reset."
      regs.resetRegisters();
      statusChanged();
      return;
    }
    // DEVICE_NEEDS_RESET is the device's bit: a driver echoing it back changes nothing.
    const asked = (value & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (current & VIRTIO_CONFIG_S_NEEDS_RESET);
    if (asked === current) return;
    if (value & VIRTIO_CONFIG_S_FAILED) {
      // §2.1: the driver gave up; nothing to do but remember it.
      Atomics.or(r, R_STATUS, VIRTIO_CONFIG_S_FAILED);
      statusChanged();
      return;
    }
    const added = asked & ~current;
    const keeps = (asked & current) === current;
    const base = current & ~VIRTIO_CONFIG_S_NEEDS_RESET;
    let ok = false;
    if (keeps && added === VIRTIO_CONFIG_S_ACKNOWLEDGE && base === 0) ok = true;
    else if (keeps && added === VIRTIO_CONFIG_S_DRIVER && base === VIRTIO_CONFIG_S_ACKNOWLEDGE) ok = true;
    else if (keeps && added === VIRTIO_CONFIG_S_FEATURES_OK && base === (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER)) {
      // §2.2.2: the device refuses FEATURES_OK for features it did not offer; §6.1: a
      // non-legacy (version 2) device refuses a driver that does not accept VERSION_1.
      const driver = regs.driverFeatures();
      if ((driver & ~regs.deviceFeatures()) !== 0n) {
        log('%s: FEATURES_OK refused: the driver accepted features 0x%s that were not offered', name, (driver & ~regs.deviceFeatures()).toString(16));
        return;
      }
      if ((driver & (1n << BigInt(VIRTIO_F_VERSION_1))) === 0n) {
        log('%s: FEATURES_OK refused: the driver did not accept VIRTIO_F_VERSION_1', name);
        return;
      }
      ok = true;
    } else if (keeps && added === VIRTIO_CONFIG_S_DRIVER_OK
      && base === (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK)) {
      ok = true;
      Atomics.store(r, R_STATUS, asked);
      statusChanged();
      return;
    }
    if (!ok) {
      log('%s: invalid status transition 0x%s → 0x%s ignored', name, current.toString(16), value.toString(16));
      return;
    }
    Atomics.store(r, R_STATUS, asked);
  }

  /** Queue registers may be written while features are OK and the driver is not yet up (§4.2.3.2). */
  function queueWritable(): boolean {
    const s = r[R_STATUS];
    return (s & VIRTIO_CONFIG_S_FEATURES_OK) !== 0 && (s & (VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_FAILED)) === 0;
  }

  function readRegister(offset: number): number {
    const sel = r[R_QUEUE_SEL];
    const q = sel < regs.numQueues ? sel : -1;
    switch (offset) {
      case VIRTIO_MMIO_MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
      case VIRTIO_MMIO_VERSION: return VIRTIO_MMIO_VERSION_2;
      case VIRTIO_MMIO_DEVICE_ID: return r[R_DEVICE_ID];
      case VIRTIO_MMIO_VENDOR_ID: return r[R_VENDOR_ID];
      case VIRTIO_MMIO_DEVICE_FEATURES: {
        const page = r[R_DEVICE_FEATURES_SEL];
        return page === 0 ? r[R_DEVICE_FEATURES_LO] : page === 1 ? r[R_DEVICE_FEATURES_HI] : 0;
      }
      // §4.2.2: "reading from QueueNumMax ... returns 0x0 if the queue is not available"
      case VIRTIO_MMIO_QUEUE_NUM_MAX: return q < 0 ? 0 : r[regs.q(q, Q_NUM_MAX)];
      case VIRTIO_MMIO_QUEUE_READY: return q < 0 ? 0 : r[regs.q(q, Q_READY)];
      case VIRTIO_MMIO_INTERRUPT_STATUS: return Atomics.load(r, R_INTERRUPT_STATUS);
      case VIRTIO_MMIO_STATUS: return Atomics.load(r, R_STATUS);
      case VIRTIO_MMIO_QUEUE_DESC_LOW: return q < 0 ? 0 : r[regs.q(q, Q_DESC_LO)];
      case VIRTIO_MMIO_QUEUE_DESC_HIGH: return q < 0 ? 0 : r[regs.q(q, Q_DESC_HI)];
      case VIRTIO_MMIO_QUEUE_AVAIL_LOW: return q < 0 ? 0 : r[regs.q(q, Q_AVAIL_LO)];
      case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: return q < 0 ? 0 : r[regs.q(q, Q_AVAIL_HI)];
      case VIRTIO_MMIO_QUEUE_USED_LOW: return q < 0 ? 0 : r[regs.q(q, Q_USED_LO)];
      case VIRTIO_MMIO_QUEUE_USED_HIGH: return q < 0 ? 0 : r[regs.q(q, Q_USED_HI)];
      case VIRTIO_MMIO_SHM_LEN_LOW:
      case VIRTIO_MMIO_SHM_LEN_HIGH:
      case VIRTIO_MMIO_SHM_BASE_LOW:
      case VIRTIO_MMIO_SHM_BASE_HIGH: {
        const region = r[R_SHM_SEL];
        // §4.2.2: a non-existent region reads as length and base 0xffffffffffffffff.
        if (region < 0 || region >= MAX_SHM_REGIONS) return -1;
        const lenLo = r[regs.shm(region, 0)];
        const lenHi = r[regs.shm(region, 1)];
        if (lenLo === 0 && lenHi === 0) return -1;
        return r[regs.shm(region, (offset - VIRTIO_MMIO_SHM_LEN_LOW) >> 2)];
      }
      case VIRTIO_MMIO_CONFIG_GENERATION: return Atomics.load(r, R_CONFIG_GENERATION);
      default: return 0; // write-only and reserved registers read as 0
    }
  }

  function writeRegister(offset: number, value: number): void {
    const sel = r[R_QUEUE_SEL];
    const q = sel >>> 0 < regs.numQueues ? sel : -1;
    const queueSlot = (slot: number): void => {
      if (q < 0) { log('%s: queue register 0x%s written for missing queue %d', name, offset.toString(16), sel >>> 0); return; }
      if (!queueWritable()) { log('%s: queue register 0x%s written in status 0x%s; ignored', name, offset.toString(16), r[R_STATUS].toString(16)); return; }
      r[regs.q(q, slot)] = value;
    };
    switch (offset) {
      case VIRTIO_MMIO_DEVICE_FEATURES_SEL: r[R_DEVICE_FEATURES_SEL] = value; return;
      case VIRTIO_MMIO_DRIVER_FEATURES: {
        // §2.2 / §3.1.1 step 5: features are written after DRIVER and before FEATURES_OK.
        const s = r[R_STATUS];
        if ((s & VIRTIO_CONFIG_S_DRIVER) === 0 || (s & VIRTIO_CONFIG_S_FEATURES_OK) !== 0) {
          log('%s: driver features written in status 0x%s; ignored', name, s.toString(16));
          return;
        }
        const page = r[R_DRIVER_FEATURES_SEL];
        if (page === 0) r[R_DRIVER_FEATURES_LO] = value;
        else if (page === 1) r[R_DRIVER_FEATURES_HI] = value;
        else if (value !== 0) log('%s: driver features page %d written (no such features)', name, page);
        return;
      }
      case VIRTIO_MMIO_DRIVER_FEATURES_SEL: r[R_DRIVER_FEATURES_SEL] = value; return;
      case VIRTIO_MMIO_QUEUE_SEL: r[R_QUEUE_SEL] = value; return;
      case VIRTIO_MMIO_QUEUE_NUM: {
        // §4.2.2.2: QueueNum must not exceed QueueNumMax (the main thread checks the power of 2).
        if (q >= 0 && (value >>> 0) > r[regs.q(q, Q_NUM_MAX)]) { log('%s: queue %d size %d is above the maximum %d; ignored', name, q, value >>> 0, r[regs.q(q, Q_NUM_MAX)]); return; }
        queueSlot(Q_NUM);
        return;
      }
      case VIRTIO_MMIO_QUEUE_READY: {
        if (q < 0) return;
        // §4.2.2.2: a queue is enabled before DRIVER_OK; 1.2's QueueReset is not offered.
        if (!queueWritable()) { log('%s: QueueReady written in status 0x%s; ignored', name, r[R_STATUS].toString(16)); return; }
        r[regs.q(q, Q_READY)] = value & 1;
        return;
      }
      case VIRTIO_MMIO_INTERRUPT_ACK: Atomics.and(r, R_INTERRUPT_STATUS, ~value); return;
      case VIRTIO_MMIO_STATUS: writeStatus(value >>> 0 & 0xff); return;
      case VIRTIO_MMIO_QUEUE_DESC_LOW: queueSlot(Q_DESC_LO); return;
      case VIRTIO_MMIO_QUEUE_DESC_HIGH: queueSlot(Q_DESC_HI); return;
      case VIRTIO_MMIO_QUEUE_AVAIL_LOW: queueSlot(Q_AVAIL_LO); return;
      case VIRTIO_MMIO_QUEUE_AVAIL_HIGH: queueSlot(Q_AVAIL_HI); return;
      case VIRTIO_MMIO_QUEUE_USED_LOW: queueSlot(Q_USED_LO); return;
      case VIRTIO_MMIO_QUEUE_USED_HIGH: queueSlot(Q_USED_HI); return;
      case VIRTIO_MMIO_SHM_SEL: r[R_SHM_SEL] = value; return;
      default:
        log('%s: write of 0x%s to read-only or reserved register 0x%s ignored', name, (value >>> 0).toString(16), offset.toString(16));
    }
  }

  function readConfig(offset: number, size: number): AccessValue {
    const at = offset - VIRTIO_MMIO_CONFIG;
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(at + i < regs.configSize ? regs.config[at + i] : 0);
    return size === 8 ? v : Number(v);
  }

  function writeConfig(offset: number, size: number, value: AccessValue): void {
    const at = offset - VIRTIO_MMIO_CONFIG;
    if (at + size > regs.configSize) { log('%s: config write beyond the %d-byte config space ignored', name, regs.configSize); return; }
    const data = new Uint8Array(size);
    let v = BigInt.asUintN(64, BigInt(value));
    for (let i = 0; i < size; i++) { data[i] = Number(v & 0xffn); v >>= 8n; }
    regs.config.set(data, at);
    const hi = r[R_CONFIG_DIRTY_HI];
    r[R_CONFIG_DIRTY_LO] = hi === 0 ? at : Math.min(r[R_CONFIG_DIRTY_LO], at);
    r[R_CONFIG_DIRTY_HI] = Math.max(hi, at + size);
    if (regs.flagPending(PENDING_CONFIG)) owed |= OWE_CONFIG;
  }

  return {
    read(offset, size) {
      if (offset >= VIRTIO_MMIO_CONFIG) {
        regs.lock();
        try { return readConfig(offset, size); } finally { regs.unlock(); }
      }
      if (!isWordAccess(offset, size)) {
        log('%s: %d-byte read at register 0x%s (registers are 32-bit)', name, size, offset.toString(16));
        return size === 8 ? 0n : 0;
      }
      return readRegister(offset) >>> 0;
    },
    write(offset, size, value) {
      if (offset >= VIRTIO_MMIO_CONFIG) {
        regs.lock();
        try { writeConfig(offset, size, value); } finally { regs.unlock(); }
        sendOwed();
        return;
      }
      if (!isWordAccess(offset, size)) {
        log('%s: %d-byte write at register 0x%s ignored (registers are 32-bit)', name, size, offset.toString(16));
        return;
      }
      const word = Number(BigInt.asUintN(32, BigInt(value))) | 0;
      if (offset === VIRTIO_MMIO_QUEUE_NOTIFY) {
        notify(word >>> 0);
        return;
      }
      regs.lock();
      try { writeRegister(offset, word); } finally { regs.unlock(); }
      sendOwed();
    },
  };
}
