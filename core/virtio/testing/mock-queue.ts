/**
 * A mock split queue for tests (after rust-vmm's mock.rs): guest memory over a plain
 * ArrayBuffer, and helpers that write descriptor tables and ring entries the way a driver
 * would, so queue and device code can be driven without KVM.
 */
import { GuestMemory } from '../../memory/guest-memory';
import { VIRTQ_DESC_SIZE } from '../constants';
import { Queue, type QueueConfig, type QueueFeatures, type QueueHooks } from '../queue';

export interface MockDescriptor {
  addr: number | bigint;
  len: number;
  flags?: number;
  next?: number;
}

export class MockQueue {
  readonly memory: GuestMemory;
  readonly config: QueueConfig;
  private availIdx = 0;

  /** Rings at `base`; a fresh `memorySize`-byte memory unless `memory` is shared with other queues. */
  constructor(readonly size = 16, memorySize = 1 << 20, base = 0x1000, memory?: GuestMemory) {
    this.memory = memory ?? new GuestMemory([{ guestAddress: 0, size: memorySize, buffer: new ArrayBuffer(memorySize) }]);
    const descTable = base;
    const availRing = descTable + VIRTQ_DESC_SIZE * size;
    const usedRing = Math.ceil((availRing + 6 + 2 * size) / 4) * 4;
    this.config = { size, descTable, availRing, usedRing };
  }

  /** The byte after the rings: a safe place for buffers. */
  get dataStart(): number {
    return Math.ceil((this.config.usedRing + 6 + 8 * this.size) / 0x1000) * 0x1000;
  }

  create(features: Partial<QueueFeatures> = {}, hooks?: QueueHooks, index = 0): Queue {
    return new Queue(this.memory, index, this.config, { eventIdx: false, indirect: false, ...features }, hooks);
  }

  /** Write descriptor `i` of a table (the queue's own table unless `table` is given). */
  setDesc(i: number, d: MockDescriptor, table = this.config.descTable): void {
    const at = table + VIRTQ_DESC_SIZE * i;
    this.memory.writeU64(at, BigInt(d.addr));
    this.memory.writeU32(at + 8, d.len >>> 0);
    this.memory.writeU16(at + 12, d.flags ?? 0);
    this.memory.writeU16(at + 14, d.next ?? 0);
  }

  /** Make `head` available (and publish the new avail idx). */
  addAvail(head: number): void {
    this.memory.writeU16(this.config.availRing + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.memory.writeU16(this.config.availRing + 2, this.availIdx);
  }

  /** Set the driver's avail idx directly (to fake a broken driver). */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.memory.writeU16(this.config.availRing + 2, this.availIdx);
  }

  setAvailFlags(flags: number): void {
    this.memory.writeU16(this.config.availRing, flags);
  }

  setUsedEvent(idx: number): void {
    this.memory.writeU16(this.config.availRing + 4 + 2 * this.size, idx);
  }

  availEvent(): number {
    return this.memory.readU16(this.config.usedRing + 4 + 8 * this.size);
  }

  usedFlags(): number {
    return this.memory.readU16(this.config.usedRing);
  }

  usedIdx(): number {
    return this.memory.readU16(this.config.usedRing + 2);
  }

  used(slot: number): { id: number; len: number } {
    const at = this.config.usedRing + 4 + 8 * (slot % this.size);
    return { id: this.memory.readU32(at), len: this.memory.readU32(at + 4) };
  }
}
