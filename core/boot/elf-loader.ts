/**
 * Loader for small freestanding 64-bit ELF guests (test programs, not Linux).
 *
 * Entry contract: 64-bit mode, identity-mapped first 4 GiB, rdi = address of the NUL-
 * terminated command line (0 if none), rsi = RAM size in bytes, rsp on a small stack below
 * the page tables.
 */
import type { GuestMemory } from '../memory/guest-memory';
import { DEFAULT_SOURCE_NAME, kernelLoadError, requireBootRam, type BootSetup, type KernelLoadOptions } from './boot-setup';
import { encodeCmdline, writeCmdline } from './cmdline';
import { parseElf, type ElfFile } from './elf';
import { CMDLINE_START } from './layout';
import { setupLongMode } from './long-mode';
import { copySegments, planSegments } from './segments';

export function loadElfGuest(
  memory: GuestMemory, image: Uint8Array, options: KernelLoadOptions = {}, parsed?: ElfFile,
): BootSetup {
  const sourceName = options.sourceName ?? DEFAULT_SOURCE_NAME;
  if (options.initrd) {
    throw kernelLoadError(sourceName, 'an initrd can only be passed to a Linux kernel, and this is a plain ELF guest (no "Linux" or "Xen" note)');
  }
  requireBootRam(memory, sourceName);
  const elf = parsed ?? parseElf(image, sourceName);
  const plan = planSegments(memory, elf, sourceName);
  const cmdline = options.cmdline ? encodeCmdline(options.cmdline, sourceName) : undefined;

  // Everything is validated; only now touch guest memory.
  copySegments(memory, image, plan);
  if (cmdline) writeCmdline(memory, cmdline);
  const { regs, sregs } = setupLongMode(memory, plan.entry, {
    rdi: cmdline ? BigInt(CMDLINE_START) : 0n,
    rsi: BigInt(memory.size),
  });
  return { format: 'elf', entry: plan.entry, regs, sregs };
}
