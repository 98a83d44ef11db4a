/**
 * Address-range routing for port I/O and MMIO exits, after crosvm's `devices/src/bus.rs`.
 *
 * Ranges are half-open [base, base+length), never empty, never overlapping, and kept sorted
 * in parallel arrays so a lookup is a binary search over plain numbers: the last range
 * starting at or below the address, then one comparison against its end. The vCPU exit
 * path calls `findIndex` plus the `*At` accessors, which allocate nothing; `find` is the
 * convenient form that allocates one small result object.
 */
import { BusOverlapError, BusRangeError } from '../errors';

export type BusKind = 'pio' | 'mmio';

/** x86 port I/O space: ports 0x0000-0xffff. */
export const PIO_SPACE_SIZE = 0x1_0000;
/**
 * MMIO is architecturally 2^64, but guest addresses are JS numbers; 2^53 is the practical
 * limit (far above any physical address width KVM reports).
 */
export const MMIO_SPACE_SIZE = 2 ** 53;

export interface BusMatch<D> {
  device: D;
  /** First address of the device's range. */
  base: number;
  /** address - base: the register offset the device sees. */
  offset: number;
}

export interface BusEntry<D> {
  base: number;
  length: number;
  device: D;
}

export class Bus<D extends { name: string }> {
  /** One past the highest address of this bus's space. */
  readonly limit: number;

  private readonly bases: number[] = [];
  /** Exclusive ends: base + length. */
  private readonly ends: number[] = [];
  private readonly devices: D[] = [];
  // Exits tend to repeat on the same device (a UART being polled, a virtqueue notify),
  // so the last hit is tried before the binary search.
  private lastHit = -1;

  constructor(readonly kind: BusKind) {
    this.limit = kind === 'pio' ? PIO_SPACE_SIZE : MMIO_SPACE_SIZE;
  }

  /** Number of registered ranges. */
  get size(): number {
    return this.bases.length;
  }

  /**
   * Route [base, base+length) to `device`. Throws BusRangeError for an empty, non-integral or
   * out-of-space range and BusOverlapError if any byte is already routed (adjacent is fine).
   */
  insert(base: number, length: number, device: D): void {
    const what = `cannot add ${this.label()} device '${device.name}' at ${formatBusRange(base, length)}`;
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length)) {
      throw new BusRangeError(`${what}: the base and length must be integers`);
    }
    if (length <= 0) throw new BusRangeError(`${what}: the length must be at least 1`);
    // Compare against the space left above base, so base + length can't round past the check.
    if (base < 0 || base >= this.limit || length > this.limit - base) {
      throw new BusRangeError(`${what}: the range does not fit in the ${this.label()} space (0x0-0x${(this.limit - 1).toString(16)})`);
    }
    const at = this.upperBound(base); // first range with bases[i] > base
    const end = base + length;
    for (const i of [at - 1, at]) {
      if (i < 0 || i >= this.bases.length) continue;
      if (base < this.ends[i] && this.bases[i] < end) {
        const other = this.devices[i];
        throw new BusOverlapError(
          `${what}: it overlaps '${other.name}' at ${formatBusRange(this.bases[i], this.ends[i] - this.bases[i])}`,
        );
      }
    }
    this.bases.splice(at, 0, base);
    this.ends.splice(at, 0, end);
    this.devices.splice(at, 0, device);
    this.lastHit = -1;
  }

  /** Unroute the range that starts exactly at `base`; returns its device, or undefined if none starts there. */
  remove(base: number): D | undefined {
    const i = this.upperBound(base) - 1;
    if (i < 0 || this.bases[i] !== base) return undefined;
    const [device] = this.devices.splice(i, 1);
    this.bases.splice(i, 1);
    this.ends.splice(i, 1);
    this.lastHit = -1;
    return device;
  }

  /** The device owning `address`, its base and the offset into its range; undefined if unrouted. */
  find(address: number): BusMatch<D> | undefined {
    const i = this.findIndex(address);
    if (i < 0) return undefined;
    const base = this.bases[i];
    return { device: this.devices[i], base, offset: address - base };
  }

  /** Allocation-free lookup: index for deviceAt/baseAt, or -1 if no range holds `address`. */
  findIndex(address: number): number {
    const last = this.lastHit;
    if (last >= 0 && address >= this.bases[last] && address < this.ends[last]) return last;
    const i = this.upperBound(address) - 1;
    // NaN and negative addresses fail this comparison (or leave i at -1) and so never match.
    if (i < 0 || !(address < this.ends[i])) return -1;
    this.lastHit = i;
    return i;
  }

  deviceAt(index: number): D {
    return this.devices[index];
  }

  baseAt(index: number): number {
    return this.bases[index];
  }

  lengthAt(index: number): number {
    return this.ends[index] - this.bases[index];
  }

  /** Snapshot of all routes, sorted by base. */
  entries(): BusEntry<D>[] {
    return this.bases.map((base, i) => ({ base, length: this.ends[i] - base, device: this.devices[i] }));
  }

  /** Index of the first range whose base is greater than `address` (bases.length if none). */
  private upperBound(address: number): number {
    const bases = this.bases;
    let lo = 0;
    let hi = bases.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (bases[mid] <= address) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private label(): string {
    return this.kind === 'pio' ? 'PIO' : 'MMIO';
  }
}

/** "0x3f8-0x3ff" (inclusive end, as in /proc/ioports); non-integral input shown as given. */
export function formatBusRange(base: number, length: number): string {
  if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || length <= 0 || base < 0) {
    return `${Number.isSafeInteger(base) && base >= 0 ? `0x${base.toString(16)}` : String(base)} (length ${String(length)})`;
  }
  return `0x${base.toString(16)}-0x${(BigInt(base) + BigInt(length) - 1n).toString(16)}`;
}
