/**
 * The main-thread half of a virtio-mmio device: owns the shared register file, the queue
 * notification ioeventfds (QueueNotify, datamatch = queue index), the irqfd, and the
 * VirtioDevice. The register file itself runs on the vCPU threads (mmio-registers.ts) and tells
 * this side to look at the shared state when the status changed (reset, DRIVER_OK, FAILED), the
 * config was written, or a notify missed the ioeventfd; queues are processed on this thread's
 * event loop.
 *
 * Epochs: every reset bumps R_EPOCH in the shared state before the main thread hears of it. A
 * queue belongs to the epoch it was activated in and goes dead as soon as the epoch moves on,
 * so the device never touches rings the driver already abandoned.
 */
import * as path from 'path';
import createDebug from 'debug';
import type {
  Disposable, GuestMemory, IoEventOptions, VirtioDevice, VirtioDeviceInfo, VirtioDeviceOptions, VirtioTransport, Vmm,
  WorkerBusDevice,
} from '../../plugin-api';
import {
  VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING, VIRTIO_MMIO_QUEUE_NOTIFY, VIRTQ_MAX_SIZE, VMM_VIRTIO_MMIO_SIZE,
  VMM_VIRTIO_VENDOR_ID,
} from './constants';
import { hasFeature, TRANSPORT_FEATURES } from './device';
import { createIrqfd, type Irqfd } from './irqfd';
import {
  PENDING_STATUS, Q_AVAIL_LO, Q_DESC_LO, Q_NOTIFY_PENDING, Q_NUM, Q_NUM_MAX, Q_READY, Q_USED_LO, R_CONFIG_GENERATION,
  R_DEVICE_FEATURES_HI, R_DEVICE_FEATURES_LO, R_DEVICE_ID, R_INTERRUPT_STATUS, R_STATUS, R_VENDOR_ID, RegisterFile,
  type RegisterOptions, type TransportMessage,
} from './mmio-registers';
import { Queue, validateQueueConfig } from './queue';

const log = createDebug('vmm:virtio');

/** Compiled next to this file (dist/core/virtio/mmio-registers.js). */
export const REGISTERS_MODULE = path.join(__dirname, 'mmio-registers.js');

export interface TransportEnv {
  memory(): GuestMemory;
  /** Pulses the device's interrupt line (an irqfd in a VM). */
  interrupt(): void;
}

export class MmioTransport implements VirtioTransport {
  readonly regs: RegisterFile;
  private queues: (Queue | undefined)[] = [];
  /** Epoch the queues belong to, or -1 when the device is not active. */
  private activeEpoch = -1;
  /** The register file's epoch when this side last looked: a change is a reset. */
  private seenEpoch = 0;
  /** The epoch whose DRIVER_OK was handled (activated, or refused with NEEDS_RESET). */
  private startedEpoch = -1;
  private sawFailed = false;
  private halted = false;
  private closed = false;

  constructor(readonly device: VirtioDevice, readonly name: string, private readonly env: TransportEnv) {
    const sizes = device.queueMaxSizes;
    for (const size of sizes) {
      if (!Number.isInteger(size) || size < 1 || size > VIRTQ_MAX_SIZE || (size & (size - 1)) !== 0) {
        throw new RangeError(`virtio device '${name}': queue maximum ${size} is not a power of 2 up to ${VIRTQ_MAX_SIZE}`);
      }
    }
    const vendorId = device.vendorId ?? VMM_VIRTIO_VENDOR_ID;
    if (!Number.isInteger(vendorId) || vendorId < 0 || vendorId > 0xffffffff) {
      throw new RangeError(`virtio device '${name}': vendorId must be a 32-bit unsigned number; got ${vendorId}`);
    }
    this.regs = RegisterFile.create({ numQueues: sizes.length, configSize: device.config.length });
    const r = this.regs.i32;
    r[R_DEVICE_ID] = device.deviceType;
    r[R_VENDOR_ID] = vendorId | 0;
    const features = BigInt.asUintN(64, device.features | TRANSPORT_FEATURES);
    r[R_DEVICE_FEATURES_LO] = Number(features & 0xffffffffn) | 0;
    r[R_DEVICE_FEATURES_HI] = Number(features >> 32n) | 0;
    sizes.forEach((size, q) => { r[this.regs.q(q, Q_NUM_MAX)] = size; });
    this.regs.config.set(device.config);
  }

  /** The bus registration for the register window at `base`. */
  busDevice(base: number): WorkerBusDevice {
    const options: RegisterOptions = { name: this.name };
    return {
      name: this.name,
      base,
      length: VMM_VIRTIO_MMIO_SIZE,
      worker: { module: REGISTERS_MODULE, options, shared: this.regs.buffer },
      onWorkerMessage: (_vcpu, message) => this.onMessage(message as TransportMessage),
    };
  }

  get active(): boolean {
    return this.activeEpoch >= 0 && this.activeEpoch === this.regs.epoch && !this.halted && !this.closed;
  }

  /** Handles what the register file sent (main thread). */
  onMessage(message: TransportMessage): void {
    if (this.closed) return;
    switch (message.type) {
      case 'status': this.syncStatus(); return;
      case 'config': {
        const written = this.regs.takeConfigWrites();
        if (written) this.call('writeConfig', () => this.device.writeConfig?.(written.offset, written.data));
        return;
      }
      case 'notify': {
        const q = message.queue;
        if (!Number.isInteger(q) || q < 0 || q >= this.regs.numQueues) return;
        Atomics.store(this.regs.i32, this.regs.q(q, Q_NOTIFY_PENDING), 0);
        this.queueNotify(q);
        return;
      }
      default:
    }
  }

  /** Act on the status as it is now: however many resets happened, the device resets once. */
  private syncStatus(): void {
    const regs = this.regs;
    regs.clearPending(PENDING_STATUS);
    const epoch = regs.epoch;
    const status = regs.status;
    if (epoch !== this.seenEpoch) {
      this.seenEpoch = epoch;
      this.sawFailed = false;
      this.reset();
    }
    if ((status & VIRTIO_CONFIG_S_FAILED) && !this.sawFailed) {
      this.sawFailed = true;
      log('%s: the driver set FAILED', this.name);
    }
    if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && this.startedEpoch !== epoch) {
      this.startedEpoch = epoch;
      this.activate(epoch);
    }
  }

  /** A guest notification for queue `index` (ioeventfd or register write). */
  queueNotify(index: number): void {
    if (!this.active) return;
    if (!this.queues[index]) { log('%s: notify for queue %d, which is not enabled', this.name, index); return; }
    this.call('queueNotify', () => this.device.queueNotify(index));
  }

  updateConfig(offset: number, data: Uint8Array): void {
    if (this.closed) return;
    const regs = this.regs;
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > regs.configSize) {
      throw new RangeError(`virtio device '${this.name}': config update at ${offset} (+${data.length}) is outside its ${regs.configSize}-byte config space`);
    }
    regs.lock();
    try {
      regs.config.set(data, offset);
      // §2.5.1 / §4.2.2: the generation changes whenever the config space may have changed.
      Atomics.add(regs.i32, R_CONFIG_GENERATION, 1);
    } finally {
      regs.unlock();
    }
    if (regs.status & VIRTIO_CONFIG_S_DRIVER_OK) this.signal(VIRTIO_MMIO_INT_CONFIG);
  }

  needsReset(reason: string): void {
    if (this.closed) return;
    log('%s: device needs reset: %s', this.name, reason);
    this.halted = true;
    // Under the lock: a vCPU's status write is a read-modify-write that would drop the bit.
    this.regs.lock();
    try {
      Atomics.or(this.regs.i32, R_STATUS, VIRTIO_CONFIG_S_NEEDS_RESET);
    } finally {
      this.regs.unlock();
    }
    // §2.1.2: "If DRIVER_OK is set, after it sets DEVICE_NEEDS_RESET, the device MUST send a device configuration change notification"
    if (this.regs.status & VIRTIO_CONFIG_S_DRIVER_OK) this.signal(VIRTIO_MMIO_INT_CONFIG);
  }

  /** Stop everything; the device's shutdown runs last. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queues = [];
    this.activeEpoch = -1;
    await this.device.shutdown?.();
  }

  private signal(bit: number): void {
    if (this.closed) return;
    Atomics.or(this.regs.i32, R_INTERRUPT_STATUS, bit);
    this.env.interrupt();
  }

  private activate(epoch: number): void {
    const regs = this.regs;
    if (this.activeEpoch === epoch) return;
    const features = regs.driverFeatures();
    const memory = this.env.memory();
    const queueFeatures = { eventIdx: hasFeature(features, VIRTIO_F_RING_EVENT_IDX), indirect: hasFeature(features, VIRTIO_F_INDIRECT_DESC) };
    const queues: (Queue | undefined)[] = [];
    const r = regs.i32;
    for (let q = 0; q < regs.numQueues; q++) {
      if (!r[regs.q(q, Q_READY)]) { queues.push(undefined); continue; }
      const config = {
        size: r[regs.q(q, Q_NUM)] >>> 0,
        descTable: regs.queueAddress(q, Q_DESC_LO),
        availRing: regs.queueAddress(q, Q_AVAIL_LO),
        usedRing: regs.queueAddress(q, Q_USED_LO),
      };
      const why = validateQueueConfig(memory, config, r[regs.q(q, Q_NUM_MAX)]);
      if (why) {
        this.needsReset(`queue ${q}: ${why}`);
        return;
      }
      queues.push(new Queue(memory, q, config, queueFeatures, {
        interrupt: () => this.signal(VIRTIO_MMIO_INT_VRING),
        needsReset: (reason) => this.needsReset(reason),
        live: () => this.active && this.queues[q] !== undefined,
        resume: () => this.queueNotify(q),
      }));
    }
    this.queues = queues;
    this.activeEpoch = epoch;
    this.halted = false;
    log('%s: activated (features 0x%s, queues %o)', this.name, features.toString(16), queues.map((q) => q?.size ?? 0));
    this.call('activate', () => this.device.activate({ features, queues, memory }));
    // Buffers the driver added (and notified) before DRIVER_OK reached us.
    queues.forEach((q, i) => { if (q) this.queueNotify(i); });
  }

  private reset(): void {
    const wasActive = this.activeEpoch >= 0;
    this.queues = [];
    this.activeEpoch = -1;
    this.halted = false;
    if (wasActive) log('%s: reset by the driver', this.name);
    this.call('reset', () => this.device.reset());
  }

  /** A device callback that throws is a device bug: log it and stop the device, never the VMM. */
  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      log('%s: device %s failed: %s', this.name, what, (error as Error)?.stack ?? String(error));
      this.needsReset(`the device's ${what} failed: ${(error as Error)?.message ?? String(error)}`);
    }
  }
}

/**
 * `vmm.addVirtioDevice`: reserve the window and GSI, register the register file, bind the
 * notify ioeventfds and the irqfd, contribute the kernel command-line entry (through
 * `addCmdlineEntry`, so that `kernelCmdline` taps see it), and release it all in `shutdown`.
 * `vmFd` is the VM's fd (for KVM_IRQFD).
 */
export function addVirtioMmioDevice(
  vmm: Vmm, vmFd: number, device: VirtioDevice, options: VirtioDeviceOptions, addCmdlineEntry: (entry: string) => void,
): VirtioDeviceInfo {
  const name = options?.name;
  if (typeof name !== 'string' || name === '') throw new TypeError('addVirtioDevice: options.name must be a non-empty string');
  const base = vmm.allocateMmio(name, VMM_VIRTIO_MMIO_SIZE);
  const gsi = vmm.irq.allocate(name);
  let irqfd: Irqfd | undefined;
  const notifiers: Disposable[] = [];
  const transport = new MmioTransport(device, name, {
    memory: () => vmm.memory,
    interrupt: () => irqfd?.trigger(),
  });
  const release = (): void => {
    for (const n of notifiers.splice(0)) n.dispose();
    irqfd?.close();
    irqfd = undefined;
  };
  try {
    vmm.mmio.register(transport.busDevice(base));
    irqfd = createIrqfd(vmFd, gsi);
    for (let q = 0; q < device.queueMaxSizes.length; q++) {
      const notify: IoEventOptions = {
        address: base + VIRTIO_MMIO_QUEUE_NOTIFY,
        length: 4,
        datamatch: BigInt(q),
        onNotify: () => transport.queueNotify(q),
      };
      notifiers.push(vmm.ioevent(notify));
    }
  } catch (error) {
    release();
    throw error;
  }
  const entry = `virtio_mmio.device=4K@0x${base.toString(16)}:${gsi}`;
  addCmdlineEntry(entry);
  // Teardown order: the device stops first (no more queue work), then the ioeventfds and the
  // irqfd go while the VM fd is still open (the VM closes it after the shutdown hook).
  vmm.hooks.shutdown.tapPromise(`virtio-mmio:${name}`, async () => {
    try {
      await transport.shutdown();
    } finally {
      release();
    }
  });
  device.attach?.(transport);
  log('%s: virtio-mmio at 0x%s, GSI %d (%s)', name, base.toString(16), gsi, entry);
  return { base, irq: gsi };
}
