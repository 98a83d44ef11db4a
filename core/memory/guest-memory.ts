/**
 * Guest RAM as seen from the VMM: a sorted set of regions, each backed by one ArrayBuffer
 * (in production the external ArrayBuffer over a memfd mapping that is also registered
 * with KVM_SET_USER_MEMORY_REGION).
 *
 * Every access is bounds-checked before any byte is touched: a range must be a pair of
 * non-negative safe integers and must lie entirely inside ONE region (regions are separate
 * buffers, so a range spanning two of them can't be served even if they are adjacent).
 * Addresses come from the guest (descriptor tables, boot structures), so a bad range is
 * an expected event and throws GuestMemoryError (ERR_GUEST_MEMORY_RANGE), never a
 * RangeError from deep inside a DataView.
 *
 * Hot path (virtqueue processing, MMIO emulation): scalar reads and writes allocate
 * nothing; the first and last regions (low RAM and RAM above 4 GiB) are checked before the
 * binary search; DataViews and byte views are built once per region.
 *
 * Buffers are used as they are: if the owner detaches one (Mapping.close), later accesses
 * throw the engine's TypeError rather than reading freed memory.
 */
import { MMIO_HOLE_END, MMIO_HOLE_START, PAGE_SIZE } from '../boot/layout';
import { ConfigError, GuestMemoryError } from '../errors';

/** One contiguous piece of guest-physical RAM; bytes [0, size) of `buffer` back it. */
export interface MemoryRegion {
  guestAddress: number;
  size: number;
  buffer: ArrayBuffer;
}

/** Where a piece of RAM goes in the guest-physical address space (see GuestMemory.splitRam). */
export interface RamLayoutEntry {
  guestAddress: number;
  size: number;
}

const TWO_POW_53 = 2 ** 53;
const TWO_POW_64 = 2n ** 64n;

export class GuestMemory {
  /** The regions, sorted by guest address. */
  readonly regions: readonly Readonly<MemoryRegion>[];
  /** Total bytes of RAM over all regions. */
  readonly size: number;

  // Parallel arrays indexed by region (sorted): cheaper to scan than an array of objects.
  private readonly starts: number[];
  private readonly ends: number[];
  private readonly bytes: Uint8Array[];
  private readonly views: DataView[];
  private readonly lastIndex: number;
  // Region 0 copied into fields: most accesses hit low RAM and skip the array loads.
  private readonly firstStart: number;
  private readonly firstEnd: number;

  constructor(regions: MemoryRegion[]) {
    if (regions.length === 0) {
      throw new GuestMemoryError('failed to create guest memory: at least one RAM region is required');
    }
    const sorted = regions.map((r) => checkRegion(r)).sort((a, b) => a.guestAddress - b.guestAddress);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1];
      const cur = sorted[i];
      if (cur.guestAddress < prev.guestAddress + prev.size) {
        throw new GuestMemoryError(
          `failed to create guest memory: region ${formatRange(cur.guestAddress, cur.size)} ` +
            `overlaps region ${formatRange(prev.guestAddress, prev.size)}`,
        );
      }
    }
    this.regions = Object.freeze(sorted.map((r) => Object.freeze(r)));
    this.starts = sorted.map((r) => r.guestAddress);
    this.ends = sorted.map((r) => r.guestAddress + r.size);
    this.bytes = sorted.map((r) => new Uint8Array(r.buffer, 0, r.size));
    this.views = sorted.map((r) => new DataView(r.buffer, 0, r.size));
    this.lastIndex = sorted.length - 1;
    this.firstStart = this.starts[0];
    this.firstEnd = this.ends[0];
    this.size = sorted.reduce((sum, r) => sum + r.size, 0);
  }

  /**
   * Lay out `sizeBytes` of RAM the way the boot loaders expect: from 0 up to the MMIO hole
   * at MMIO_HOLE_START, and whatever is left from 4 GiB (MMIO_HOLE_END) upwards.
   */
  static splitRam(sizeBytes: number): RamLayoutEntry[] {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % PAGE_SIZE !== 0) {
      throw new ConfigError(`invalid RAM size ${String(sizeBytes)}: it must be a positive multiple of 4 KiB`);
    }
    if (sizeBytes <= MMIO_HOLE_START) return [{ guestAddress: 0, size: sizeBytes }];
    const high = sizeBytes - MMIO_HOLE_START;
    if (high > Number.MAX_SAFE_INTEGER - MMIO_HOLE_END) {
      throw new ConfigError(`invalid RAM size ${hex(sizeBytes)}: it does not fit below 2^53`);
    }
    return [
      { guestAddress: 0, size: MMIO_HOLE_START },
      { guestAddress: MMIO_HOLE_END, size: high },
    ];
  }

  /** True if [gpa, gpa+length) is a valid range inside one region (length 0: gpa may be a region's end). */
  contains(gpa: number, length: number): boolean {
    return this.locate(gpa, length) >= 0;
  }

  /** Zero-copy view of guest RAM; writes through it reach the guest. */
  view(gpa: number, length: number): Uint8Array {
    const i = this.locate(gpa, length);
    if (i < 0) throw rangeError('map', gpa, length, this.starts, this.ends);
    const offset = gpa - this.starts[i];
    return this.bytes[i].subarray(offset, offset + length);
  }

  /** Copy of guest RAM, safe to keep after the guest changes it. */
  read(gpa: number, length: number): Uint8Array {
    const i = this.locate(gpa, length);
    if (i < 0) throw rangeError('read', gpa, length, this.starts, this.ends);
    const offset = gpa - this.starts[i];
    return this.bytes[i].slice(offset, offset + length);
  }

  write(gpa: number, data: Uint8Array): void {
    const i = this.locate(gpa, data.length);
    if (i < 0) throw rangeError('write', gpa, data.length, this.starts, this.ends);
    this.bytes[i].set(data, gpa - this.starts[i]);
  }

  readU8(gpa: number): number {
    const i = this.locateFixed(gpa, 1);
    if (i < 0) throw rangeError('read', gpa, 1, this.starts, this.ends);
    return this.views[i].getUint8(gpa - this.starts[i]);
  }

  readU16(gpa: number): number {
    const i = this.locateFixed(gpa, 2);
    if (i < 0) throw rangeError('read', gpa, 2, this.starts, this.ends);
    return this.views[i].getUint16(gpa - this.starts[i], true);
  }

  readU32(gpa: number): number {
    const i = this.locateFixed(gpa, 4);
    if (i < 0) throw rangeError('read', gpa, 4, this.starts, this.ends);
    return this.views[i].getUint32(gpa - this.starts[i], true);
  }

  readU64(gpa: number): bigint {
    const i = this.locateFixed(gpa, 8);
    if (i < 0) throw rangeError('read', gpa, 8, this.starts, this.ends);
    return this.views[i].getBigUint64(gpa - this.starts[i], true);
  }

  // Values are stored modulo 2^width, as DataView does: the results of JS bitwise
  // operators are signed (0x80000000 | 0 === -2147483648) and must store as their bit pattern.

  writeU8(gpa: number, value: number): void {
    const i = this.locateFixed(gpa, 1);
    if (i < 0) throw rangeError('write', gpa, 1, this.starts, this.ends);
    this.views[i].setUint8(gpa - this.starts[i], value);
  }

  writeU16(gpa: number, value: number): void {
    const i = this.locateFixed(gpa, 2);
    if (i < 0) throw rangeError('write', gpa, 2, this.starts, this.ends);
    this.views[i].setUint16(gpa - this.starts[i], value, true);
  }

  writeU32(gpa: number, value: number): void {
    const i = this.locateFixed(gpa, 4);
    if (i < 0) throw rangeError('write', gpa, 4, this.starts, this.ends);
    this.views[i].setUint32(gpa - this.starts[i], value, true);
  }

  writeU64(gpa: number, value: bigint): void {
    const i = this.locateFixed(gpa, 8);
    if (i < 0) throw rangeError('write', gpa, 8, this.starts, this.ends);
    this.views[i].setBigUint64(gpa - this.starts[i], value, true);
  }

  /** Index of the region holding [gpa, gpa+length), or -1 for any invalid range. */
  private locate(gpa: number, length: number): number {
    if (!(Number.isSafeInteger(length) && length >= 0)) return -1;
    return this.locateFixed(gpa, length);
  }

  /** As locate, for a length the caller knows is a small non-negative integer. */
  private locateFixed(gpa: number, length: number): number {
    if (!(Number.isSafeInteger(gpa) && gpa >= 0)) return -1;
    // Both operands are safe integers, so the sum is exact unless it exceeds 2^53, in which
    // case it rounds to >= 2^53 and still fails `end <= ends[i]` (region ends are < 2^53).
    const end = gpa + length;
    if (gpa >= this.firstStart && end <= this.firstEnd) return 0;
    const starts = this.starts;
    const last = this.lastIndex;
    if (gpa >= starts[last]) return end <= this.ends[last] ? last : -1;
    // Greatest i in [0, last) with starts[i] <= gpa.
    let lo = 0;
    let hi = last - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid] <= gpa) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && end <= this.ends[found] ? found : -1;
  }
}

function checkRegion(region: MemoryRegion): MemoryRegion {
  const { guestAddress, size, buffer } = region;
  const what = `failed to create guest memory: region at ${describe(guestAddress)} (size ${describe(size)})`;
  if (!Number.isSafeInteger(guestAddress) || guestAddress < 0) {
    throw new GuestMemoryError(`${what}: the address must be a non-negative integer`);
  }
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new GuestMemoryError(`${what}: the size must be a positive integer`);
  }
  if (size > Number.MAX_SAFE_INTEGER - guestAddress) {
    throw new GuestMemoryError(`${what}: it ends beyond 2^53`);
  }
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < size) {
    throw new GuestMemoryError(`${what}: the buffer is smaller than the region`);
  }
  return { guestAddress, size, buffer };
}

/** Build the error for a range `locate` refused; only runs on failure, so it may be slow. */
function rangeError(op: string, gpa: number, length: number, starts: number[], ends: number[]): GuestMemoryError {
  return new GuestMemoryError(`failed to ${op} guest memory ${formatRange(gpa, length)}: ${whyRefused(gpa, length, starts, ends)}`);
}

function whyRefused(gpa: number, length: number, starts: number[], ends: number[]): string {
  if (!Number.isInteger(gpa) || !Number.isInteger(length)) return 'the address and length must be integers';
  if (gpa < 0 || length < 0) return 'the address and length must not be negative';
  if (BigInt(gpa) + BigInt(length) > TWO_POW_64) return 'the range wraps around the end of the 64-bit address space';
  if (gpa + length > TWO_POW_53 || !Number.isSafeInteger(gpa) || !Number.isSafeInteger(length)) {
    return 'the range extends beyond 2^53, above any guest RAM';
  }
  for (let i = 0; i < starts.length; i++) {
    if (gpa >= starts[i] && gpa < ends[i]) {
      return `the range runs past the end of the RAM region ${formatRange(starts[i], ends[i] - starts[i])}`;
    }
  }
  return 'the range is not in guest RAM';
}

/** "0x1000-0x1fff", or "0x1000 (length 0)"; exact even beyond 2^53 (for error messages). */
export function formatRange(start: number, length: number): string {
  if (!Number.isInteger(start) || !Number.isInteger(length) || length < 0) {
    return `${describe(start)} (length ${describe(length)})`;
  }
  if (length === 0) return `${describe(start)} (length 0)`;
  return `${describe(start)}-0x${(BigInt(start) + BigInt(length) - 1n).toString(16)}`;
}

function describe(value: number): string {
  return Number.isInteger(value) && value >= 0 ? hex(value) : String(value);
}

function hex(value: number): string {
  return `0x${BigInt(value).toString(16)}`;
}
