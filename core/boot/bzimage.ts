/**
 * Reading the setup header of a Linux bzImage (Documentation/x86/boot.rst, "THE REAL-MODE
 * KERNEL HEADER"). The file is: boot sector, `setup_sects` 512-byte setup sectors (real-
 * mode code, not used by the 64-bit protocol), then the protected-mode kernel, which is
 * what gets loaded at HIMEM_START.
 */
import {
  BOOT_FLAG_MAGIC, BOOT_PARAMS, HDRS_MAGIC, LOADED_HIGH, MIN_64BIT_BOOT_PROTOCOL, SETUP_HEADER_LIMIT, XLF_KERNEL_64,
} from './boot-params';
import { kernelLoadError } from './boot-setup';

/** Size of the boot sector and of each setup sector. */
export const SECTOR_SIZE = 512;
/** setup_sects 0 means 4, for compatibility with ancient kernels (boot.rst, setup_sects). */
export const LEGACY_SETUP_SECTS = 4;
/** The header must reach init_size (the last field read here) to be usable. */
const MIN_HEADER_END = BOOT_PARAMS.INIT_SIZE + 4;

export interface BzImage {
  /** Setup sectors after the boot sector, with 0 already turned into 4. */
  setupSects: number;
  version: number;
  loadflags: number;
  xloadflags: number;
  relocatable: boolean;
  kernelAlignment: number;
  /** Highest address the initrd may occupy (inclusive). */
  initrdAddrMax: number;
  /** Longest command line the kernel takes, without the NUL. */
  cmdlineSize: number;
  prefAddress: bigint;
  initSize: number;
  /** File bytes [0x1f1, end of setup header): copied verbatim into the zero page. */
  setupHeader: Uint8Array;
  /** The protected-mode kernel (everything after the setup sectors). */
  kernel: Uint8Array;
}

/** The two magic numbers of a bzImage: boot_flag 0xaa55 at 0x1fe and "HdrS" at 0x202. */
export function isBzImage(image: Uint8Array): boolean {
  if (image.length < BOOT_PARAMS.HEADER + 4) return false;
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  return view.getUint16(BOOT_PARAMS.BOOT_FLAG, true) === BOOT_FLAG_MAGIC && view.getUint32(BOOT_PARAMS.HEADER, true) === HDRS_MAGIC;
}

export function parseBzImage(image: Uint8Array, sourceName: string): BzImage {
  const fail = (reason: string) => kernelLoadError(sourceName, reason);
  if (!isBzImage(image)) throw fail('it is not a Linux bzImage (no "HdrS" header at 0x202)');
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);

  const version = view.getUint16(BOOT_PARAMS.VERSION, true);
  if (version < MIN_64BIT_BOOT_PROTOCOL) {
    throw fail(`it uses boot protocol ${formatProtocol(version)}; at least ${formatProtocol(MIN_64BIT_BOOT_PROTOCOL)} is needed to find its 64-bit entry point`);
  }
  // boot.rst: "the end of setup header can be calculated as 0x0202 + byte value at offset 0x0201".
  const headerEnd = Math.min(BOOT_PARAMS.JUMP + 2 + image[BOOT_PARAMS.JUMP + 1], SETUP_HEADER_LIMIT);
  if (headerEnd < MIN_HEADER_END) {
    throw fail(`its setup header ends at ${hex(headerEnd)}, before the protocol ${formatProtocol(version)} fields`);
  }
  if (headerEnd > image.length) throw fail('its setup header extends past the end of the file');

  const loadflags = image[BOOT_PARAMS.LOADFLAGS];
  if (!(loadflags & LOADED_HIGH)) throw fail('it is a zImage (LOADED_HIGH is clear in loadflags); only bzImages can be loaded');
  const xloadflags = view.getUint16(BOOT_PARAMS.XLOADFLAGS, true);
  if (!(xloadflags & XLF_KERNEL_64)) {
    throw fail('it has no 64-bit entry point (XLF_KERNEL_64 is clear in xloadflags); is it a 32-bit kernel?');
  }

  const setupSects = image[BOOT_PARAMS.SETUP_SECTS] || LEGACY_SETUP_SECTS;
  const kernelOffset = (setupSects + 1) * SECTOR_SIZE;
  if (kernelOffset >= image.length) {
    throw fail(`it has no protected-mode kernel after its ${setupSects} setup sectors (the file is ${image.length} bytes)`);
  }
  return {
    setupSects,
    version,
    loadflags,
    xloadflags,
    relocatable: image[BOOT_PARAMS.RELOCATABLE_KERNEL] !== 0,
    kernelAlignment: view.getUint32(BOOT_PARAMS.KERNEL_ALIGNMENT, true),
    initrdAddrMax: view.getUint32(BOOT_PARAMS.INITRD_ADDR_MAX, true),
    cmdlineSize: view.getUint32(BOOT_PARAMS.CMDLINE_SIZE, true),
    prefAddress: view.getBigUint64(BOOT_PARAMS.PREF_ADDRESS, true),
    initSize: view.getUint32(BOOT_PARAMS.INIT_SIZE, true),
    setupHeader: image.subarray(BOOT_PARAMS.SETUP_HEADER, headerEnd),
    kernel: image.subarray(kernelOffset),
  };
}

/** 0x020c -> "2.12" (the minor number is written in decimal in boot.rst). */
export function formatProtocol(version: number): string {
  return `${version >> 8}.${String(version & 0xff).padStart(2, '0')}`;
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}
