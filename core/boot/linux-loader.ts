/**
 * Linux x86-64 direct boot, "64-bit BOOT PROTOCOL" of Documentation/x86/boot.rst: the kernel
 * is entered in long mode with paging identity-mapping the kernel, zero page, command line
 * and initrd, %rsi pointing at struct boot_params, and interrupts off.
 *
 * Two image formats:
 *   - vmlinux (uncompressed ELF): PT_LOAD segments at p_paddr, entry e_entry (the physical
 *     address of startup_64), as Firecracker does. It has no setup header, so the loader
 *     writes the few header fields the kernel reads.
 *   - bzImage: the protected-mode part goes to HIMEM_START and is entered at
 *     HIMEM_START + 0x200; its own setup header is copied into the zero page. 0x100000 suits
 *     every kernel: a relocatable one moves itself to an aligned address, a fixed one
 *     decompresses to pref_address either way (arch/x86/boot/compressed/head_64.S).
 *
 * Each loader validates everything (image, command line, initrd placement, RAM) before
 * writing guest memory, so a refused kernel leaves RAM untouched.
 */
import type { GuestMemory } from '../memory/guest-memory';
import {
  BOOT_FLAG_MAGIC, BOOT_HEAP_END_PTR, BOOT_PARAMS, BOOT_PARAMS_SIZE, CAN_USE_HEAP, HDRS_MAGIC, LOADED_HIGH,
  LOADER_TYPE_UNDEFINED, STARTUP_64_OFFSET, VMLINUX_INITRD_ADDR_MAX, VMLINUX_KERNEL_ALIGNMENT,
} from './boot-params';
import {
  DEFAULT_SOURCE_NAME, hex, kernelLoadError, lowRamEnd, requireBootRam, type BootSetup, type KernelFormat, type KernelLoadOptions,
} from './boot-setup';
import { parseBzImage, type BzImage } from './bzimage';
import { CMDLINE_MAX_LENGTH, encodeCmdline, writeCmdline } from './cmdline';
import { e820Map, writeE820, type E820Entry } from './e820';
import { parseElf, type ElfFile } from './elf';
import { placeInitrd } from './initrd';
import { CMDLINE_START, HIMEM_START, ZERO_PAGE_START } from './layout';
import { setupLongMode } from './long-mode';
import { copySegments, planSegments } from './segments';

/** What a format-specific step hands to the shared part of the Linux boot. */
interface LinuxKernel {
  format: KernelFormat;
  entry: number;
  /** One past the last byte the kernel occupies or will decompress into. */
  kernelEnd: number;
  /** initrd_addr_max: highest address the initrd may occupy. */
  initrdAddrMax: number;
  /** Longest command line accepted, without the NUL. */
  cmdlineMax: number;
  /** Fills the header part of a fresh zero page. */
  writeHeader(zeroPage: Uint8Array, view: DataView): void;
  /** Copies the kernel into guest RAM; called only after every check has passed. */
  copyKernel(): void;
}

/** Load an uncompressed ELF vmlinux (one with a "Linux" or "Xen" note). */
export function loadVmlinux(memory: GuestMemory, image: Uint8Array, options: KernelLoadOptions = {}, parsed?: ElfFile): BootSetup {
  const sourceName = options.sourceName ?? DEFAULT_SOURCE_NAME;
  requireBootRam(memory, sourceName);
  const elf = parsed ?? parseElf(image, sourceName);
  const plan = planSegments(memory, elf, sourceName);
  return bootLinux(memory, options, sourceName, {
    format: 'vmlinux',
    entry: plan.entry,
    kernelEnd: plan.end,
    initrdAddrMax: VMLINUX_INITRD_ADDR_MAX,
    cmdlineMax: CMDLINE_MAX_LENGTH,
    writeHeader(_page, view) {
      // The fields Firecracker writes for a vmlinux; the kernel checks the magic numbers.
      view.setUint16(BOOT_PARAMS.BOOT_FLAG, BOOT_FLAG_MAGIC, true);
      view.setUint32(BOOT_PARAMS.HEADER, HDRS_MAGIC, true);
      view.setUint32(BOOT_PARAMS.KERNEL_ALIGNMENT, VMLINUX_KERNEL_ALIGNMENT, true);
      view.setUint32(BOOT_PARAMS.CMDLINE_SIZE, CMDLINE_MAX_LENGTH, true);
    },
    copyKernel: () => copySegments(memory, image, plan),
  });
}

/** Load a bzImage through its 64-bit entry point. */
export function loadBzImage(memory: GuestMemory, image: Uint8Array, options: KernelLoadOptions = {}): BootSetup {
  const sourceName = options.sourceName ?? DEFAULT_SOURCE_NAME;
  requireBootRam(memory, sourceName);
  const bz = parseBzImage(image, sourceName);
  const kernelEnd = bzImageEnd(bz, sourceName);
  if (kernelEnd > lowRamEnd(memory)) {
    throw kernelLoadError(
      sourceName,
      `the kernel needs guest RAM up to ${hex(kernelEnd)} to load and decompress, but RAM at 0 ends at ${hex(lowRamEnd(memory))}`,
    );
  }
  return bootLinux(memory, options, sourceName, {
    format: 'bzimage',
    entry: HIMEM_START + STARTUP_64_OFFSET,
    kernelEnd,
    initrdAddrMax: bz.initrdAddrMax,
    // The header's cmdline_size is the kernel's own limit; COMMAND_LINE_SIZE still applies.
    cmdlineMax: Math.min(bz.cmdlineSize, CMDLINE_MAX_LENGTH),
    writeHeader(page) {
      page.set(bz.setupHeader, BOOT_PARAMS.SETUP_HEADER);
    },
    copyKernel: () => memory.write(HIMEM_START, bz.kernel),
  });
}

/**
 * One past the highest byte the kernel touches while starting: the compressed image at
 * HIMEM_START, and init_size bytes from where the decompressor runs. head_64.S: a
 * relocatable kernel runs at its load address rounded up to kernel_alignment, but not below
 * LOAD_PHYSICAL_ADDR (= pref_address); a fixed one runs at LOAD_PHYSICAL_ADDR.
 */
function bzImageEnd(bz: BzImage, sourceName: string): number {
  if (bz.prefAddress > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw kernelLoadError(sourceName, `its preferred load address ${hex(bz.prefAddress)} is beyond any guest RAM`);
  }
  const pref = Number(bz.prefAddress);
  const alignment = bz.kernelAlignment > 0 ? bz.kernelAlignment : 1;
  const aligned = Math.ceil(HIMEM_START / alignment) * alignment;
  const runtimeStart = Math.max(bz.relocatable ? Math.max(aligned, pref) : pref, HIMEM_START);
  return Math.max(HIMEM_START + bz.kernel.length, runtimeStart + bz.initSize);
}

function bootLinux(memory: GuestMemory, options: KernelLoadOptions, sourceName: string, kernel: LinuxKernel): BootSetup {
  const cmdline = encodeCmdline(options.cmdline ?? '', sourceName, kernel.cmdlineMax);
  const ramEnd = lowRamEnd(memory);
  const initrd = options.initrd;
  const initrdAddress = initrd
    ? placeInitrd(initrd.length, { kernelEnd: kernel.kernelEnd, limit: Math.min(kernel.initrdAddrMax + 1, ramEnd) }, sourceName)
    : 0;
  const zeroPage = buildZeroPage(kernel, e820Map(memory, sourceName), initrd ? { address: initrdAddress, size: initrd.length } : undefined);

  // Everything is validated; only now touch guest memory.
  kernel.copyKernel();
  writeCmdline(memory, cmdline);
  if (initrd) memory.write(initrdAddress, initrd);
  memory.write(ZERO_PAGE_START, zeroPage);
  const { regs, sregs } = setupLongMode(memory, kernel.entry, { rsi: BigInt(ZERO_PAGE_START) });
  return { format: kernel.format, entry: kernel.entry, regs, sregs };
}

function buildZeroPage(kernel: LinuxKernel, e820: E820Entry[], initrd?: { address: number; size: number }): Uint8Array {
  const page = new Uint8Array(BOOT_PARAMS_SIZE);
  const view = new DataView(page.buffer);
  kernel.writeHeader(page, view);
  page[BOOT_PARAMS.TYPE_OF_LOADER] = LOADER_TYPE_UNDEFINED;
  page[BOOT_PARAMS.LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
  view.setUint16(BOOT_PARAMS.HEAP_END_PTR, BOOT_HEAP_END_PTR, true);
  setSplitU64(view, BOOT_PARAMS.CMD_LINE_PTR, BOOT_PARAMS.EXT_CMD_LINE_PTR, CMDLINE_START);
  if (initrd) {
    setSplitU64(view, BOOT_PARAMS.RAMDISK_IMAGE, BOOT_PARAMS.EXT_RAMDISK_IMAGE, initrd.address);
    setSplitU64(view, BOOT_PARAMS.RAMDISK_SIZE, BOOT_PARAMS.EXT_RAMDISK_SIZE, initrd.size);
  }
  writeE820(view, e820);
  return page;
}

/** A 64-bit value stored as a low u32 in the setup header and a high u32 in the ext_* field. */
function setSplitU64(view: DataView, lowOffset: number, highOffset: number, value: number): void {
  view.setUint32(lowOffset, value % 2 ** 32, true);
  view.setUint32(highOffset, Math.floor(value / 2 ** 32), true);
}
