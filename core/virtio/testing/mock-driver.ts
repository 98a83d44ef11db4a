/**
 * The driver side of a split virtqueue for tests and fuzzing: it owns a ring in guest memory,
 * makes chains available, kicks only when a real driver would, and checks what the device puts
 * on the used ring.
 *
 * What "as a real driver would" means here is Linux's virtio_ring.c (split rings):
 *   - kick (virtqueue_kick_prepare_split): with EVENT_IDX only when the new avail idx passed the
 *     device's avail_event since the last kick; without, unless the device set NO_NOTIFY;
 *   - interrupts (virtqueue_enable_cb_prepare_split): the driver reads the used ring only when
 *     interrupted, then re-arms (used_event = last seen used idx with EVENT_IDX, NO_INTERRUPT
 *     cleared without) and looks once more, as virtqueue_enable_cb does.
 * So a device that forgets to re-arm notifications, or to interrupt, leaves work visibly
 * undone instead of being rescued by a test that pokes it.
 *
 * Every used element is checked against what was made available: an id the driver does not
 * have in flight (completed twice, or never given) and a length above the chain's writable
 * bytes are protocol violations (§2.7.8.2), reported by throwing DriverViolation.
 */
import type { GuestMemory } from '../../../plugin-api';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_SIZE, VIRTQ_USED_ELEM_SIZE, VIRTQ_USED_F_NO_NOTIFY } from '../constants';
import { fullBarrier, Queue, vringNeedEvent, type QueueConfig, type QueueFeatures, type QueueHooks } from '../queue';

/** One buffer of a chain, as the driver lays it out. */
export interface DriverBuffer {
  addr: number;
  len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE). */
  write: boolean;
}

/** A chain the device has not completed yet. */
export interface InFlight<T> {
  head: number;
  /** Descriptor-table slots it holds (one for an indirect chain). */
  slots: number[];
  writableLength: number;
  token: T;
}

/** What the driver saw on the used ring for one chain. */
export interface Completed<T> extends InFlight<T> {
  len: number;
}

/** The device broke the split-ring protocol. */
export class DriverViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DriverViolation';
  }
}

export interface MockDriverOptions {
  /** Ring size (a power of two). */
  size: number;
  /** Guest-physical address of the descriptor table (16-byte aligned); the rings follow it. */
  base: number;
  features?: Partial<QueueFeatures>;
  /**
   * Check used elements against the chains addChain made available (default). Off for a
   * hostile driver that writes raw heads: the caller checks the used ring itself (usedSince).
   */
  checkUsed?: boolean;
}

/** Where the three parts of a split ring lie for `size` entries from `base` (as Linux lays them out). */
export function ringLayout(base: number, size: number): QueueConfig & { end: number } {
  const descTable = base;
  const availRing = descTable + VIRTQ_DESC_SIZE * size;
  const usedRing = Math.ceil((availRing + 6 + 2 * size) / 4) * 4;
  return { size, descTable, availRing, usedRing, end: usedRing + 6 + VIRTQ_USED_ELEM_SIZE * size };
}

export class MockDriver<T = undefined> {
  readonly config: QueueConfig;
  readonly features: QueueFeatures;
  /** First byte after the rings. */
  readonly end: number;
  /** Interrupts the device raised. */
  interrupts = 0;
  /** Kicks the driver decided to send (publish() returned true). */
  kicks = 0;
  /** Called on every completion the driver reads (the device's answer to one chain). */
  onCompleted: ((completed: Completed<T>) => void) | undefined;

  private readonly freeSlots: number[] = [];
  private readonly inFlight = new Map<number, InFlight<T>>();
  /** The driver's own avail idx (vq->split.avail_idx_shadow). */
  private availIdx = 0;
  /** avail idx at the last kick decision. */
  private kickedIdx = 0;
  /** Next used-ring slot the driver reads (vq->last_used_idx). */
  private lastUsed = 0;
  private readonly checkUsed: boolean;

  constructor(readonly memory: GuestMemory, options: MockDriverOptions) {
    const layout = ringLayout(options.base, options.size);
    this.config = { size: layout.size, descTable: layout.descTable, availRing: layout.availRing, usedRing: layout.usedRing };
    this.end = layout.end;
    this.features = { eventIdx: false, indirect: false, ...options.features };
    this.checkUsed = options.checkUsed ?? true;
    memory.view(layout.descTable, layout.end - layout.descTable).fill(0);
    for (let i = options.size - 1; i >= 0; i--) this.freeSlots.push(i);
  }

  get size(): number {
    return this.config.size;
  }

  /** Descriptor-table slots not held by a chain in flight. */
  get freeCount(): number {
    return this.freeSlots.length;
  }

  /** The driver's avail idx (published or not). */
  get availIndex(): number {
    return this.availIdx;
  }

  /** Chains made available and not completed. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Tokens of the chains in flight, in no particular order. */
  pending(): InFlight<T>[] {
    return [...this.inFlight.values()];
  }

  /** The device-side queue over this ring, as the transport builds it at DRIVER_OK. */
  createQueue(index: number, hooks: Partial<QueueHooks> = {}): Queue {
    return new Queue(this.memory, index, this.config, this.features, {
      interrupt: () => this.interrupt(),
      needsReset: () => undefined,
      live: () => true,
      ...hooks,
    });
  }

  /**
   * Lay out a chain (readable buffers first, as §2.7.4.2 requires) and put its head in the
   * available ring; publish() makes it visible. `indirectTable` puts the descriptors in a table
   * at that guest address (16-byte aligned, 16 bytes per buffer) behind one ring descriptor.
   * Null when the table has no free slot for it.
   */
  addChain(buffers: readonly DriverBuffer[], token: T, indirectTable?: number): number | null {
    if (buffers.length === 0) throw new RangeError('a chain has at least one buffer');
    const slotsNeeded = indirectTable === undefined ? buffers.length : 1;
    if (this.freeSlots.length < slotsNeeded) return null;
    const slots = this.freeSlots.splice(this.freeSlots.length - slotsNeeded, slotsNeeded).reverse();
    if (indirectTable === undefined) {
      buffers.forEach((b, i) => this.writeDesc(this.config.descTable, slots[i], {
        addr: b.addr, len: b.len, flags: (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < buffers.length ? VIRTQ_DESC_F_NEXT : 0), next: slots[i + 1] ?? 0,
      }));
    } else {
      buffers.forEach((b, i) => this.writeDesc(indirectTable, i, {
        addr: b.addr, len: b.len, flags: (b.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < buffers.length ? VIRTQ_DESC_F_NEXT : 0), next: i + 1,
      }));
      this.writeDesc(this.config.descTable, slots[0], { addr: indirectTable, len: VIRTQ_DESC_SIZE * buffers.length, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
    }
    const head = slots[0];
    const writableLength = buffers.reduce((sum, b) => sum + (b.write ? b.len : 0), 0);
    this.inFlight.set(head, { head, slots, writableLength, token });
    this.putAvail(head);
    return head;
  }

  /**
   * Publish the avail idx and decide whether to kick (Linux virtqueue_kick_prepare_split).
   * True means the driver writes QueueNotify: call the device's queueNotify.
   */
  publish(): boolean {
    fullBarrier();
    this.memory.writeU16(this.config.availRing + 2, this.availIdx);
    // virtio_mb(): the new idx is visible before the device's suppression fields are read.
    fullBarrier();
    const old = this.kickedIdx;
    const now = this.availIdx;
    this.kickedIdx = now;
    if (old === now) return false;
    const kick = this.features.eventIdx
      ? vringNeedEvent(this.memory.readU16(this.availEventAddr), now, old)
      : (this.memory.readU16(this.config.usedRing) & VIRTQ_USED_F_NO_NOTIFY) === 0;
    if (kick) this.kicks++;
    return kick;
  }

  /** The device's used-buffer interrupt: read the used ring, re-arm, read again (virtqueue_enable_cb). */
  interrupt(): void {
    this.interrupts++;
    for (;;) {
      this.drainUsed();
      if (!this.armInterrupts()) break;
    }
  }

  /**
   * Read the used ring without an interrupt (a driver that polls, or one about to reset the
   * device and reclaim its buffers).
   */
  poll(): void {
    this.drainUsed();
  }

  /** Used entries the device published that the driver has not read (it was not interrupted). */
  unseenUsed(): number {
    return (this.memory.readU16(this.config.usedRing + 2) - this.lastUsed) & 0xffff;
  }

  // --- raw access, for hostile drivers --------------------------------------------------------

  writeDesc(table: number, i: number, d: { addr: number | bigint; len: number; flags: number; next: number }): void {
    const at = table + VIRTQ_DESC_SIZE * i;
    this.memory.writeU64(at, BigInt(d.addr));
    this.memory.writeU32(at + 8, d.len >>> 0);
    this.memory.writeU16(at + 12, d.flags & 0xffff);
    this.memory.writeU16(at + 14, d.next & 0xffff);
  }

  /** Put any head in the next available-ring slot (not published). */
  putAvail(head: number): void {
    this.memory.writeU16(this.config.availRing + 4 + 2 * (this.availIdx % this.size), head & 0xffff);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Write an arbitrary avail idx (a broken driver); publish() is then meaningless. */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.memory.writeU16(this.config.availRing + 2, this.availIdx);
  }

  /** Every used element from slot `from` up to the device's used idx, unchecked. */
  usedSince(from: number): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.memory.readU16(this.config.usedRing + 2);
    for (let i = from; i !== idx; i = (i + 1) & 0xffff) {
      const at = this.config.usedRing + 4 + VIRTQ_USED_ELEM_SIZE * (i % this.size);
      out.push({ id: this.memory.readU32(at), len: this.memory.readU32(at + 4) });
    }
    return out;
  }

  // --- internals ------------------------------------------------------------------------------

  private get availEventAddr(): number {
    return this.config.usedRing + 4 + VIRTQ_USED_ELEM_SIZE * this.size;
  }

  private get usedEventAddr(): number {
    return this.config.availRing + 4 + 2 * this.size;
  }

  private drainUsed(): void {
    const idx = this.memory.readU16(this.config.usedRing + 2);
    const ahead = (idx - this.lastUsed) & 0xffff;
    if (ahead > this.size) throw new DriverViolation(`used idx ${idx} is ${ahead} entries ahead of the driver (queue size ${this.size})`);
    while (this.lastUsed !== idx) {
      const at = this.config.usedRing + 4 + VIRTQ_USED_ELEM_SIZE * (this.lastUsed % this.size);
      const id = this.memory.readU32(at);
      const len = this.memory.readU32(at + 4);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
      if (!this.checkUsed) continue;
      const chain = this.inFlight.get(id);
      if (!chain) throw new DriverViolation(`used element ${id} (len ${len}) names no chain in flight: completed twice, or never made available`);
      if (len > chain.writableLength) throw new DriverViolation(`used element ${id} has len ${len}, above its ${chain.writableLength} writable bytes`);
      this.inFlight.delete(id);
      this.freeSlots.push(...chain.slots);
      this.onCompleted?.({ ...chain, len });
    }
  }

  /** Ask for the next interrupt; true when used entries arrived meanwhile (look again). */
  private armInterrupts(): boolean {
    if (this.features.eventIdx) this.memory.writeU16(this.usedEventAddr, this.lastUsed);
    else this.memory.writeU16(this.config.availRing, this.memory.readU16(this.config.availRing) & ~VIRTQ_AVAIL_F_NO_INTERRUPT);
    fullBarrier();
    return this.unseenUsed() !== 0;
  }
}
