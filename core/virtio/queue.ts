/**
 * Split virtqueue (virtio 1.2 §2.7) over guest memory, following rust-vmm's virtio-queue rules:
 * every chain walk has a hop budget (ttl = table size), every index is checked against the table
 * size before it is read, address and length sums are overflow-checked, indirect tables are
 * validated before use, and malformed guest input yields a typed QueueError (returned, never
 * thrown) that ends that chain.
 *
 * Beyond rust-vmm, for a hostile driver: indirect tables are capped (VMM_VIRTQ_INDIRECT_MAX), the
 * descriptors walked are budgeted per event-loop turn (pop() yields and the device is notified
 * again later), a head the device still holds cannot be made available twice, and a chain is
 * completed at most once (undoPop stashes chains instead of rewinding the ring, so chains that
 * pop() already skipped and completed are never walked again).
 *
 * Layout (§2.7.5, §2.7.6, §2.7.8):
 *   descriptor table: size × { addr u64, len u32, flags u16, next u16 }
 *   available ring:   flags u16, idx u16, ring[size] u16, used_event u16
 *   used ring:        flags u16, idx u16, ring[size] { id u32, len u32 }, avail_event u16
 */
import createDebug from 'debug';
import type { GuestMemory, VirtioChain, VirtioQueue } from '../../plugin-api';
import { DescriptorChain } from './chain';
import {
  VIRTQ_AVAIL_ALIGN, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_ALIGN, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE, VIRTQ_DESC_SIZE, VIRTQ_MAX_SIZE, VIRTQ_USED_ALIGN, VIRTQ_USED_ELEM_SIZE, VIRTQ_USED_F_NO_NOTIFY,
  VMM_VIRTQ_DESCRIPTORS_PER_TURN, VMM_VIRTQ_INDIRECT_MAX,
} from './constants';

const log = createDebug('vmm:virtio');

/** §2.7.4: "The length of a descriptor chain ... MUST NOT exceed 2^32" (rust-vmm caps the sum). */
const MAX_CHAIN_BYTES = 2 ** 32 - 1;

export type QueueErrorCode =
  | 'ERR_QUEUE_AVAIL_INDEX'      // the driver's avail idx ran more than a queue size ahead
  | 'ERR_QUEUE_HEAD_INDEX'       // a head index in the available ring is >= queue size
  | 'ERR_QUEUE_HEAD_IN_USE'      // a head made available again while the device still holds it
  | 'ERR_QUEUE_NEXT_INDEX'       // a `next` field is >= the table size
  | 'ERR_QUEUE_CHAIN_LOOP'       // the hop budget ran out (a loop, or a chain longer than the table)
  | 'ERR_QUEUE_BUFFER_RANGE'     // a buffer is not inside guest RAM (or wraps)
  | 'ERR_QUEUE_ZERO_LENGTH'      // a zero-length buffer
  | 'ERR_QUEUE_CHAIN_TOO_LONG'   // more than 2^32 - 1 bytes in one direction
  | 'ERR_QUEUE_DESC_ORDER'       // a readable buffer after a writable one
  | 'ERR_QUEUE_INDIRECT'         // indirect descriptors misused (not negotiated, nested, with NEXT, bad table)
  | 'ERR_QUEUE_MEMORY'           // a ring itself is not readable (only if guest memory went away)
  | 'ERR_QUEUE_INVALID_CHAIN';   // the device found the chain unusable (wrong direction, too short, …)

/** A guest mistake in a queue. Returned, never thrown on guest input. */
export class QueueError extends Error {
  constructor(readonly code: QueueErrorCode, message: string, readonly head?: number) {
    super(message);
    this.name = 'QueueError';
  }
}

export interface QueueConfig {
  size: number;
  descTable: number;
  availRing: number;
  usedRing: number;
}

export interface QueueFeatures {
  eventIdx: boolean;
  indirect: boolean;
}

export interface QueueHooks {
  /** Raise the used-buffer interrupt. */
  interrupt(): void;
  /** The ring is broken: set DEVICE_NEEDS_RESET. */
  needsReset(reason: string): void;
  /** False once the driver reset the device (the rings may be gone). */
  live(): boolean;
  /** The queue yielded (descriptor budget spent): have the device look at it again. */
  resume?(): void;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** Why this queue configuration cannot be used, or null (§2.7 sizes and alignments, §4.2.2). */
export function validateQueueConfig(memory: GuestMemory, c: QueueConfig, maxSize: number): string | null {
  // §2.7: "Queue Size value is always a power of 2. The maximum Queue Size value is 32768."
  if (!Number.isInteger(c.size) || !isPowerOfTwo(c.size) || c.size > VIRTQ_MAX_SIZE) return `queue size ${c.size} is not a power of 2 up to 32768`;
  // §4.2.2.2: "The driver MUST NOT write a value to QueueNum which is greater than QueueNumMax"
  if (c.size > maxSize) return `queue size ${c.size} is above the maximum ${maxSize}`;
  // §2.7, table "Virtqueue Part Alignment"
  if (c.descTable % VIRTQ_DESC_ALIGN !== 0) return `descriptor table 0x${c.descTable.toString(16)} is not 16-byte aligned`;
  if (c.availRing % VIRTQ_AVAIL_ALIGN !== 0) return `available ring 0x${c.availRing.toString(16)} is not 2-byte aligned`;
  if (c.usedRing % VIRTQ_USED_ALIGN !== 0) return `used ring 0x${c.usedRing.toString(16)} is not 4-byte aligned`;
  // §2.7, table "Virtqueue Part Size" (with the event fields, which exist whether or not EVENT_IDX is used)
  if (!memory.contains(c.descTable, VIRTQ_DESC_SIZE * c.size)) return `descriptor table 0x${c.descTable.toString(16)} is not in guest RAM`;
  if (!memory.contains(c.availRing, 6 + 2 * c.size)) return `available ring 0x${c.availRing.toString(16)} is not in guest RAM`;
  if (!memory.contains(c.usedRing, 6 + VIRTQ_USED_ELEM_SIZE * c.size)) return `used ring 0x${c.usedRing.toString(16)} is not in guest RAM`;
  return null;
}

export class Queue implements VirtioQueue {
  /** Next available-ring slot to read (free-running u16). */
  private nextAvail = 0;
  /** Next used-ring slot to write (free-running u16). */
  private nextUsed = 0;
  /** Used index at the last notification decision (EVENT_IDX), or -1 before the first. */
  private signalledUsed = -1;
  private _broken = false;
  /** Popped chains not yet completed, by head, in pop order (a Map keeps insertion order). */
  private readonly outstanding = new Map<number, DescriptorChain>();
  /** Chains given back by undoPop, served before the ring. */
  private readonly stash: DescriptorChain[] = [];
  /** Descriptors walked since the queue last yielded. */
  private walked = 0;
  private yielding = false;
  /** Used entries were published since the last notify(): only then can one be owed. */
  private published = false;
  private readonly availIdxAddr: number;
  private readonly availRingAddr: number;
  private readonly usedEventAddr: number;
  private readonly usedIdxAddr: number;
  private readonly usedRingAddr: number;
  private readonly availEventAddr: number;

  readonly size: number;

  /** The configuration must have passed validateQueueConfig. */
  constructor(
    private readonly memory: GuestMemory,
    readonly index: number,
    private readonly config: QueueConfig,
    private readonly features: QueueFeatures,
    private readonly hooks: QueueHooks = { interrupt: () => undefined, needsReset: () => undefined, live: () => true },
  ) {
    this.size = config.size;
    this.availIdxAddr = config.availRing + 2;
    this.availRingAddr = config.availRing + 4;
    this.usedEventAddr = config.availRing + 4 + 2 * config.size;
    this.usedIdxAddr = config.usedRing + 2;
    this.usedRingAddr = config.usedRing + 4;
    this.availEventAddr = config.usedRing + 4 + VIRTQ_USED_ELEM_SIZE * config.size;
    // A fresh queue starts at index 0; the driver wrote 0 into both idx fields before enabling it.
  }

  get broken(): boolean {
    return this._broken;
  }

  /** Chains waiting: avail idx − next, or a QueueError when the driver's index is impossible. */
  available(): number | QueueError {
    const idx = this.memory.readU16(this.availIdxAddr);
    const pending = (idx - this.nextAvail) & 0xffff;
    // §2.7.6 / rust-vmm InvalidAvailRingIndex: the driver can be at most a queue size ahead.
    if (pending > this.size) return new QueueError('ERR_QUEUE_AVAIL_INDEX', `avail idx ${idx} is ${pending} entries ahead of the device (queue size ${this.size})`);
    return pending;
  }

  isEmpty(): boolean {
    return this.stash.length === 0 && !this.hasNew();
  }

  /** Whether the driver made chains available that were never popped. */
  private hasNew(): boolean {
    if (this._broken || !this.hooks.live()) return false;
    const n = this.guard(() => this.available());
    return typeof n === 'number' && n > 0;
  }

  /**
   * The next chain, a QueueError for a malformed one (its slot is consumed; `error.head` says
   * whether it can be given back), or null when nothing is available.
   */
  next(): DescriptorChain | QueueError | null {
    const n = this.guard(() => this.available());
    if (n instanceof QueueError) return n;
    if (n === 0) return null;
    const slot = this.nextAvail % this.size;
    const head = this.guard(() => this.memory.readU16(this.availRingAddr + 2 * slot));
    if (head instanceof QueueError) return head;
    this.nextAvail = (this.nextAvail + 1) & 0xffff;
    // §2.7.6: ring entries are descriptor heads; rust-vmm checks the index before reading.
    if (head >= this.size) return new QueueError('ERR_QUEUE_HEAD_INDEX', `head index ${head} is not below the queue size ${this.size}`);
    // Its descriptors may already be rewritten; completing it twice would corrupt the driver.
    if (this.outstanding.has(head)) return new QueueError('ERR_QUEUE_HEAD_IN_USE', `head ${head} was made available again while the device still holds it`);
    const chain = this.guard(() => this.walk(head));
    if (chain instanceof QueueError && chain.head === undefined) return new QueueError(chain.code, chain.message, head);
    return chain;
  }

  pop(): VirtioChain | null {
    for (;;) {
      if (this._broken || !this.hooks.live()) return null;
      const stashed = this.stash.shift();
      if (stashed) {
        // Now the most recently popped chain again (undoPop takes from the end).
        this.outstanding.delete(stashed.head);
        this.outstanding.set(stashed.head, stashed);
        return stashed;
      }
      if (this.spentBudget()) return null;
      const result = this.next();
      if (result === null) return null;
      if (result instanceof DescriptorChain) {
        this.outstanding.set(result.head, result);
        return result;
      }
      this.fail(result);
    }
  }

  /** True (and a later resume is scheduled) once this turn's descriptor budget is spent. */
  private spentBudget(): boolean {
    if (this.yielding) return true;
    if (this.walked < VMM_VIRTQ_DESCRIPTORS_PER_TURN) return false;
    this.yielding = true;
    log('queue %d: %d descriptors walked, yielding to the event loop', this.index, this.walked);
    setImmediate(() => {
      this.yielding = false;
      this.walked = 0;
      if (!this._broken && this.hooks.live()) this.hooks.resume?.();
    });
    return true;
  }

  /** Handle a bad chain: give it back with length 0 when its head is known, else stop the queue. */
  fail(error: QueueError): void {
    if (error.head !== undefined && error.code !== 'ERR_QUEUE_HEAD_INDEX' && error.code !== 'ERR_QUEUE_HEAD_IN_USE') {
      log('queue %d: skipping chain %d: %s', this.index, error.head, error.message);
      this.addUsed(error.head, 0);
      // The device may publish nothing else this pass: the driver must still get it back.
      this.notify();
      return;
    }
    log('queue %d is broken: %s', this.index, error.message);
    this._broken = true;
    this.hooks.needsReset(`queue ${this.index}: ${error.message}`);
  }

  /** Give back the last `count` popped, uncompleted chains: the next pops return them, in order. */
  undoPop(count = 1): void {
    if (count <= 0) return;
    const stashed = new Set(this.stash);
    const held = [...this.outstanding.values()].filter((c) => !stashed.has(c));
    this.stash.unshift(...held.slice(-count));
  }

  pushUsed(chain: VirtioChain, written: number): void {
    this.pushUsedBatch([{ chain, written }]);
  }

  pushUsedBatch(used: readonly { chain: VirtioChain; written: number }[]): void {
    if (this._broken || !this.hooks.live() || used.length === 0) return;
    const r = this.guard(() => {
      let any = false;
      for (const { chain, written } of used) {
        if (!this.release(chain)) continue;
        // §2.7.8.2: "The device MUST NOT ... set len to a value greater than the writable length"
        this.writeUsedElem(chain.head, Math.max(0, Math.min(written, chain.writableLength)));
        any = true;
      }
      if (any) {
        this.memory.writeU16(this.usedIdxAddr, this.nextUsed);
        this.published = true;
      }
    });
    if (r instanceof QueueError) log('queue %d: %s', this.index, r.message);
  }

  /** Forget an outstanding chain; false (a device bug, logged) when it is not one. */
  private release(chain: VirtioChain): boolean {
    if (this.outstanding.get(chain.head) !== chain) {
      log('queue %d: chain %d completed twice or never popped here; ignored', this.index, chain.head);
      return false;
    }
    this.outstanding.delete(chain.head);
    const at = this.stash.indexOf(chain as DescriptorChain);
    if (at >= 0) this.stash.splice(at, 1);
    return true;
  }

  /** Write one used element and publish it (§2.7.8). */
  addUsed(head: number, len: number): void {
    const r = this.guard(() => {
      this.writeUsedElem(head, len);
      // The element is written before the index that publishes it (x86 keeps store order).
      this.memory.writeU16(this.usedIdxAddr, this.nextUsed);
      this.published = true;
    });
    if (r instanceof QueueError) log('queue %d: %s', this.index, r.message);
  }

  private writeUsedElem(head: number, len: number): void {
    const at = this.usedRingAddr + VIRTQ_USED_ELEM_SIZE * (this.nextUsed % this.size);
    this.memory.writeU32(at, head);
    this.memory.writeU32(at + 4, len >>> 0);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
  }

  /** Whether the driver wants an interrupt for what was added since the last call (§2.7.7.2, §2.7.10). */
  needsNotification(): boolean {
    // The used idx we just published must be visible before we read the driver's suppression
    // state, or a driver that re-armed meanwhile is never interrupted (Linux: virtio_mb() in
    // virtqueue_kick_prepare, the same pairing on the driver side).
    fullBarrier();
    if (!this.features.eventIdx) {
      const flags = this.guard(() => this.memory.readU16(this.config.availRing));
      return typeof flags === 'number' && (flags & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    }
    const usedEvent = this.guard(() => this.memory.readU16(this.usedEventAddr));
    if (usedEvent instanceof QueueError) return true;
    const now = this.nextUsed;
    const old = this.signalledUsed;
    this.signalledUsed = now;
    if (old < 0) return true;
    return vringNeedEvent(usedEvent, now, old);
  }

  notify(): void {
    if (this._broken || !this.hooks.live() || !this.published) return;
    this.published = false;
    if (this.needsNotification()) this.hooks.interrupt();
  }

  enableNotification(): boolean {
    if (this._broken || !this.hooks.live()) return false;
    const r = this.guard(() => {
      // §2.7.10: with EVENT_IDX the device writes avail_event; otherwise it clears NO_NOTIFY.
      if (this.features.eventIdx) this.memory.writeU16(this.availEventAddr, this.nextAvail);
      else this.memory.writeU16(this.config.usedRing, 0);
    });
    if (r instanceof QueueError) return false;
    // Publish the request before looking at avail idx again (same reason, other direction).
    fullBarrier();
    // Stashed chains do not count: the device already judged them (e.g. too few for a frame).
    // While yielding, the scheduled resume looks again.
    return !this.yielding && this.hasNew();
  }

  disableNotification(): void {
    if (this._broken || !this.hooks.live() || this.features.eventIdx) return;
    this.guard(() => this.memory.writeU16(this.config.usedRing, VIRTQ_USED_F_NO_NOTIFY));
  }

  /** Walk the chain from `head`, validating every descriptor. */
  private walk(head: number): DescriptorChain | QueueError {
    const memory = this.memory;
    const chain = new DescriptorChain(memory, head);
    let table = this.config.descTable;
    let tableSize = this.size;
    let index = head;
    // rust-vmm chain.rs: the hop budget starts at the table size, so a loop ends.
    let ttl = tableSize;
    let inIndirect = false;
    let sawWritable = false;
    for (;;) {
      if (ttl === 0) return new QueueError('ERR_QUEUE_CHAIN_LOOP', `chain ${head} has more descriptors than its table (${tableSize}): a loop?`, head);
      ttl--;
      this.walked++;
      // §2.7.5.1 / rust-vmm: check the index before reading the descriptor.
      if (index >= tableSize) return new QueueError('ERR_QUEUE_NEXT_INDEX', `descriptor index ${index} is not below the table size ${tableSize}`, head);
      const at = table + VIRTQ_DESC_SIZE * index;
      const addr = memory.readU64(at);
      const len = memory.readU32(at + 8);
      const flags = memory.readU16(at + 12);
      const next = memory.readU16(at + 14);

      if (flags & VIRTQ_DESC_F_INDIRECT) {
        // §2.7.5.3.1: "The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag unless the VIRTIO_F_INDIRECT_DESC feature was negotiated."
        if (!this.features.indirect) return new QueueError('ERR_QUEUE_INDIRECT', `descriptor ${index} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated`, head);
        // §2.7.5.3.1: "The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag within an indirect descriptor"
        if (inIndirect) return new QueueError('ERR_QUEUE_INDIRECT', 'an indirect table contains an indirect descriptor', head);
        // §2.7.5.3.1: "A driver MUST NOT set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT in flags."
        if (flags & VIRTQ_DESC_F_NEXT) return new QueueError('ERR_QUEUE_INDIRECT', `indirect descriptor ${index} also has NEXT`, head);
        // rust-vmm: the table length is a non-zero multiple of 16; the count is capped lower here.
        if (len === 0 || len % VIRTQ_DESC_SIZE !== 0 || len / VIRTQ_DESC_SIZE > VMM_VIRTQ_INDIRECT_MAX) {
          return new QueueError('ERR_QUEUE_INDIRECT', `indirect table length ${len} is not a multiple of 16 up to ${VMM_VIRTQ_INDIRECT_MAX} entries`, head);
        }
        // rust-vmm: the table is 16-byte aligned (as the descriptor table must be, §2.7).
        if (addr % 16n !== 0n) return new QueueError('ERR_QUEUE_INDIRECT', `indirect table 0x${addr.toString(16)} is not 16-byte aligned`, head);
        if (addr > BigInt(Number.MAX_SAFE_INTEGER) || !memory.contains(Number(addr), len)) return new QueueError('ERR_QUEUE_BUFFER_RANGE', `indirect table 0x${addr.toString(16)} (+${len}) is not in guest RAM`, head);
        table = Number(addr);
        tableSize = len / VIRTQ_DESC_SIZE;
        // rust-vmm: switching to a table resets the index and the ttl to the table's size.
        ttl = tableSize;
        index = 0;
        inIndirect = true;
        continue;
      }

      // §2.7.5 / QEMU virtqueue_map_desc: zero-sized buffers are not allowed.
      if (len === 0) return new QueueError('ERR_QUEUE_ZERO_LENGTH', `descriptor ${index} has length 0`, head);
      // Overflow-checked: addr is a u64; anything above 2^53 is above all guest RAM.
      if (addr > BigInt(Number.MAX_SAFE_INTEGER) - BigInt(len) || !memory.contains(Number(addr), len)) {
        return new QueueError('ERR_QUEUE_BUFFER_RANGE', `buffer 0x${addr.toString(16)} (+${len}) of descriptor ${index} is not in guest RAM`, head);
      }
      const buffer = { addr: Number(addr), len };
      if (flags & VIRTQ_DESC_F_WRITE) {
        sawWritable = true;
        // §2.4.4 / rust-vmm: the byte count of a chain fits in 32 bits.
        if (chain.writableLength + len > MAX_CHAIN_BYTES) return new QueueError('ERR_QUEUE_CHAIN_TOO_LONG', `chain ${head} has more than 2^32 - 1 writable bytes`, head);
        chain.writable.push(buffer);
        chain.writableLength += len;
      } else {
        // §2.7.4.2: "The driver MUST place any device-writable descriptor elements after any device-readable descriptor elements."
        if (sawWritable) return new QueueError('ERR_QUEUE_DESC_ORDER', `readable descriptor ${index} follows a writable one`, head);
        if (chain.readableLength + len > MAX_CHAIN_BYTES) return new QueueError('ERR_QUEUE_CHAIN_TOO_LONG', `chain ${head} has more than 2^32 - 1 readable bytes`, head);
        chain.readable.push(buffer);
        chain.readableLength += len;
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) return chain;
      index = next;
    }
  }

  /** Runs a guest-memory access; a failure (only possible if memory went away) becomes a QueueError. */
  private guard<T>(fn: () => T): T | QueueError {
    try {
      return fn();
    } catch (error) {
      return new QueueError('ERR_QUEUE_MEMORY', `queue ${this.index}: ${(error as Error).message}`);
    }
  }
}

/**
 * A full memory barrier between our stores to guest memory and the loads that follow. x86 may
 * satisfy a load before an earlier store is visible to the vCPU; any Atomics read-modify-write
 * is a locked instruction, which drains the store buffer (guest RAM itself is not a
 * SharedArrayBuffer, so Atomics cannot be used on it directly).
 */
const FENCE = new Int32Array(new SharedArrayBuffer(4));
export function fullBarrier(): void {
  Atomics.add(FENCE, 0, 0);
}

/** linux/virtio_ring.h vring_need_event: notify if new_idx passed event_idx since old. */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}
