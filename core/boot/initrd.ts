/**
 * Where the initial ramdisk goes: as high as possible (boot.rst recommends the top of low
 * memory, which keeps it clear of the kernel's decompression and early allocations),
 * page-aligned, below the kernel's initrd_addr_max and the end of low RAM, above the kernel.
 */
import { hex, kernelLoadError } from './boot-setup';
import { PAGE_SIZE } from './layout';

export interface InitrdBounds {
  /** Lowest usable address: the end of everything the kernel occupies. */
  kernelEnd: number;
  /** One past the highest byte the initrd may occupy. */
  limit: number;
}

/** Guest-physical address for an initrd of `size` bytes; throws if it doesn't fit. */
export function placeInitrd(size: number, bounds: InitrdBounds, sourceName: string): number {
  if (size === 0) throw kernelLoadError(sourceName, 'the initrd is empty');
  const address = Math.floor((bounds.limit - size) / PAGE_SIZE) * PAGE_SIZE;
  if (size > bounds.limit || address < bounds.kernelEnd) {
    throw kernelLoadError(
      sourceName,
      `the initrd (${size} bytes) does not fit in guest RAM between the end of the kernel (${hex(bounds.kernelEnd)}) ` +
        `and ${hex(bounds.limit)}; give the VM more memory or use a smaller initrd`,
    );
  }
  return address;
}
