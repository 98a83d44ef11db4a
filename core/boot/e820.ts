/**
 * The BIOS-style memory map a Linux kernel reads from boot_params.e820_table.
 *
 * Only usable RAM is listed: the 640 KiB below the EBDA, RAM from 1 MiB up, and any RAM
 * above the MMIO hole. The EBDA / VGA / BIOS area [EBDA_START, HIMEM_START) is left out
 * so the kernel never allocates there, as on real PCs (and Firecracker).
 */
import type { GuestMemory } from '../memory/guest-memory';
import { E820_ENTRY_SIZE, E820_MAX_ENTRIES, E820_RAM, BOOT_PARAMS } from './boot-params';
import { kernelLoadError } from './boot-setup';
import { EBDA_START, HIMEM_START } from './layout';

export interface E820Entry {
  address: number;
  size: number;
  type: number;
}

/** RAM entries for every region, minus the legacy hole [EBDA_START, HIMEM_START). */
export function e820Map(memory: GuestMemory, sourceName: string): E820Entry[] {
  const entries: E820Entry[] = [];
  for (const region of memory.regions) {
    const start = region.guestAddress;
    const end = start + region.size;
    const pieces: Array<[number, number]> = [[start, Math.min(end, EBDA_START)], [Math.max(start, HIMEM_START), end]];
    for (const [from, to] of pieces) {
      if (to > from) entries.push({ address: from, size: to - from, type: E820_RAM });
    }
  }
  if (entries.length > E820_MAX_ENTRIES) {
    throw kernelLoadError(sourceName, `guest RAM has ${entries.length} pieces; the zero page holds at most ${E820_MAX_ENTRIES} e820 entries`);
  }
  return entries;
}

/** Store the table and its count into a zero page under construction. */
export function writeE820(zeroPage: DataView, entries: E820Entry[]): void {
  zeroPage.setUint8(BOOT_PARAMS.E820_ENTRIES, entries.length);
  entries.forEach((entry, i) => {
    const at = BOOT_PARAMS.E820_TABLE + i * E820_ENTRY_SIZE;
    zeroPage.setBigUint64(at, BigInt(entry.address), true);
    zeroPage.setBigUint64(at + 8, BigInt(entry.size), true);
    zeroPage.setUint32(at + 16, entry.type, true);
  });
}
