/**
 * Guest shared memory mapped at run time: a window of guest-physical address space above guest
 * RAM where devices map host fds (memfds) so the guest can reach them (virtio-wl's shm VFDs).
 *
 * Each mapping is one KVM memory slot: the fd is mmap'ed MAP_SHARED here and registered with
 * KVM_SET_USER_MEMORY_REGION at a page-aligned address taken from the window (first fit over a
 * sorted free list, neighbours merged on release). Unmapping deletes the slot (size 0) before
 * the host mapping goes, so the guest never sees freed memory. Slot numbers start after the RAM
 * slots and are reused.
 */
import createDebug from 'debug';
import { native, type Mapping } from '../../native';
import { VmmError } from '../errors';

const log = createDebug('vmm:core');

export const SHM_PAGE_SIZE = 0x1000;
/** Window alignment and the window's default size. */
const GiB = 0x4000_0000;
export const SHM_WINDOW_SIZE = 64 * GiB;
/** KVM_CAP_NR_MEMSLOTS is 509 or more on every kernel we run on; stay below the smallest. */
const MAX_SLOTS = 509;

/** One fd mapped into guest-physical space. */
export interface GuestShmMapping {
  /** Guest-physical address of the first byte (page-aligned). */
  readonly gpa: number;
  /** Bytes mapped (page-rounded). */
  readonly size: number;
  /** The host's view of the same pages (valid until unmap). */
  readonly view: Uint8Array;
  /** Remove it from the guest and unmap it here; idempotent. */
  unmap(): void;
}

interface Live {
  slot: number;
  gpa: number;
  size: number;
  mapping: Mapping;
}

export class ShmWindow {
  /** Free ranges [start, end), sorted, never adjacent. */
  private free: { start: number; end: number }[];
  private readonly freeSlots: number[] = [];
  private nextSlot: number;
  private readonly live = new Set<Live>();

  constructor(private readonly vmFd: number, readonly base: number, readonly size: number, firstSlot: number) {
    if (base % SHM_PAGE_SIZE !== 0 || size % SHM_PAGE_SIZE !== 0 || size <= 0) throw new RangeError('shm window must be page-aligned');
    this.free = [{ start: base, end: base + size }];
    this.nextSlot = firstSlot;
  }

  /** The window above RAM: from 4 GiB or the end of RAM, whichever is higher, 1 GiB aligned. */
  static aboveRam(vmFd: number, ramRegions: readonly { guestAddress: number; size: number }[]): ShmWindow {
    const ramEnd = Math.max(0x1_0000_0000, ...ramRegions.map((r) => r.guestAddress + r.size));
    const base = Math.ceil(ramEnd / GiB) * GiB;
    return new ShmWindow(vmFd, base, SHM_WINDOW_SIZE, ramRegions.length);
  }

  /** Mappings currently in the guest. */
  get count(): number { return this.live.size; }

  /**
   * Map `size` bytes (rounded up to a page) of `fd` from offset 0 into the guest. The fd stays
   * the caller's. Throws VmmError ERR_SHM_WINDOW_FULL when no room or slot is left, and the
   * native error (EACCES for a read-only fd, …) when the fd cannot be mapped.
   */
  map(fd: number, size: number): GuestShmMapping {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`cannot map ${size} bytes into the guest`);
    const length = Math.ceil(size / SHM_PAGE_SIZE) * SHM_PAGE_SIZE;
    const index = this.free.findIndex((r) => r.end - r.start >= length);
    if (index < 0) throw new VmmError('ERR_SHM_WINDOW_FULL', `no room for ${length} bytes in the guest shared-memory window`);
    // The slot is only taken once everything succeeded: a failed mmap (a read-only fd) or KVM
    // refusal leaves the slot free for the next mapping.
    const reused = this.freeSlots.length > 0;
    const slot = reused ? this.freeSlots[this.freeSlots.length - 1] : this.nextSlot;
    if (slot >= MAX_SLOTS) throw new VmmError('ERR_SHM_WINDOW_FULL', 'no KVM memory slot is left for guest shared memory');
    const mapping = native.mmapFd(fd, length, 0);
    const range = this.free[index];
    const gpa = range.start;
    try {
      native.setUserMemoryRegion(this.vmFd, slot, gpa, length, mapping.address);
    } catch (error) {
      mapping.close();
      throw error;
    }
    if (reused) this.freeSlots.pop();
    else this.nextSlot++;
    range.start += length;
    if (range.start === range.end) this.free.splice(index, 1);
    const entry: Live = { slot, gpa, size: length, mapping };
    this.live.add(entry);
    log('shm: fd %d mapped at guest 0x%s (+0x%s), slot %d', fd, gpa.toString(16), length.toString(16), slot);
    const view = new Uint8Array(mapping.buffer, 0, length);
    return { gpa, size: length, view, unmap: () => this.release(entry) };
  }

  /** Unmap everything (VM teardown). */
  closeAll(): void {
    for (const entry of [...this.live]) this.release(entry);
  }

  private release(entry: Live): void {
    if (!this.live.delete(entry)) return;
    try {
      native.setUserMemoryRegion(this.vmFd, entry.slot, entry.gpa, 0, 0n);
    } catch (error) {
      // The VM fd is gone (teardown raced us); the slot went with it.
      log('shm: deleting slot %d failed: %s', entry.slot, (error as Error).message);
    }
    entry.mapping.close();
    this.freeSlots.push(entry.slot);
    this.insertFree(entry.gpa, entry.gpa + entry.size);
  }

  private insertFree(start: number, end: number): void {
    let i = 0;
    while (i < this.free.length && this.free[i].start < start) i++;
    this.free.splice(i, 0, { start, end });
    // Merge with the next, then the previous.
    if (i + 1 < this.free.length && this.free[i].end === this.free[i + 1].start) {
      this.free[i].end = this.free[i + 1].end;
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1].end === this.free[i].start) {
      this.free[i - 1].end = this.free[i].end;
      this.free.splice(i, 1);
    }
  }
}
