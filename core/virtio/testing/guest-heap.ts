/**
 * A first-fit allocator over a range of guest memory, for test drivers that post buffers of
 * many sizes and get them back in any order (the way a driver's kmalloc would).
 */

const ALIGN = 64;

export class GuestHeap {
  /** Free ranges [start, end), sorted by start, never adjacent. */
  private readonly free: { start: number; end: number }[];
  private readonly sizes = new Map<number, number>();

  constructor(readonly start: number, readonly end: number) {
    if (start % ALIGN !== 0 || end <= start) throw new RangeError(`bad heap range 0x${start.toString(16)}..0x${end.toString(16)}`);
    this.free = [{ start, end }];
  }

  /** Bytes not allocated. */
  get available(): number {
    return this.free.reduce((sum, r) => sum + r.end - r.start, 0);
  }

  /** A 64-byte aligned address with `len` bytes, or null when no free range is large enough. */
  alloc(len: number): number | null {
    const size = Math.max(ALIGN, Math.ceil(len / ALIGN) * ALIGN);
    const i = this.free.findIndex((r) => r.end - r.start >= size);
    if (i < 0) return null;
    const range = this.free[i];
    const at = range.start;
    range.start += size;
    if (range.start === range.end) this.free.splice(i, 1);
    this.sizes.set(at, size);
    return at;
  }

  release(at: number): void {
    const size = this.sizes.get(at);
    if (size === undefined) throw new RangeError(`0x${at.toString(16)} was not allocated here`);
    this.sizes.delete(at);
    let i = 0;
    while (i < this.free.length && this.free[i].start < at) i++;
    this.free.splice(i, 0, { start: at, end: at + size });
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
