/**
 * Telling kernel image formats apart by content, never by file name.
 */
import { isBzImage } from './bzimage';
import { kernelLoadError } from './boot-setup';
import { hasElfMagic, parseElf, readNotes, type ElfFile } from './elf';

/** ELF note owners that mark a Linux kernel: build salt ("Linux") and PVH/Xen entry ("Xen"). */
export const LINUX_NOTE_NAMES: readonly string[] = Object.freeze(['Linux', 'Xen']);

export type DetectedKernel =
  | { format: 'bzimage' }
  | { format: 'vmlinux' | 'elf'; elf: ElfFile };

/**
 * bzImage: boot_flag 0xaa55 at 0x1fe and "HdrS" at 0x202. ELF: the magic, then a strict
 * parse; a PT_NOTE owned by "Linux" or "Xen" makes it a vmlinux, otherwise a plain guest.
 */
export function detectKernel(image: Uint8Array, sourceName: string): DetectedKernel {
  if (isBzImage(image)) return { format: 'bzimage' };
  if (hasElfMagic(image)) {
    const elf = parseElf(image, sourceName);
    const linux = readNotes(image, elf, sourceName).some((note) => LINUX_NOTE_NAMES.includes(note.name));
    return { format: linux ? 'vmlinux' : 'elf', elf };
  }
  throw kernelLoadError(
    sourceName,
    image.length === 0 ? 'it is not an ELF executable or a Linux bzImage (the file is empty)' : 'it is not an ELF executable or a Linux bzImage',
  );
}
