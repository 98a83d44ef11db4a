/**
 * Boot loaders for x86-64 guests: `loadKernel` detects the image format and puts the image,
 * boot structures and page tables into guest RAM, returning the vCPU's initial registers.
 */
import type { GuestMemory } from '../memory/guest-memory';
import { DEFAULT_SOURCE_NAME, type BootSetup, type KernelLoadOptions } from './boot-setup';
import { detectKernel } from './detect';
import { loadElfGuest } from './elf-loader';
import { loadBzImage, loadVmlinux } from './linux-loader';

export type { BootSetup, KernelFormat, KernelLoadOptions } from './boot-setup';
export { detectKernel, LINUX_NOTE_NAMES, type DetectedKernel } from './detect';
export { loadElfGuest } from './elf-loader';
export { loadBzImage, loadVmlinux } from './linux-loader';
export { setupLongMode, longModeRegs, longModeSregs, writeLongModeTables, type LongModeSregs } from './long-mode';
export * from './layout';

/** Load a bzImage, a Linux vmlinux or a plain 64-bit ELF guest, whichever `image` is. */
export function loadKernel(memory: GuestMemory, image: Uint8Array, options: KernelLoadOptions = {}): BootSetup {
  const sourceName = options.sourceName ?? DEFAULT_SOURCE_NAME;
  const detected = detectKernel(image, sourceName);
  const named = { ...options, sourceName };
  switch (detected.format) {
    case 'bzimage':
      return loadBzImage(memory, image, named);
    case 'vmlinux':
      return loadVmlinux(memory, image, named, detected.elf);
    case 'elf':
      return loadElfGuest(memory, image, named, detected.elf);
  }
}
