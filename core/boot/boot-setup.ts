/**
 * What every loader returns, the options they take, and the checks they share.
 */
import type { Regs, Sregs } from '../../native/types';
import { KernelLoadError } from '../errors';
import type { GuestMemory } from '../memory/guest-memory';
import { HIMEM_START } from './layout';

export type KernelFormat = 'elf' | 'vmlinux' | 'bzimage';

/** Everything the VM needs to start the boot vCPU once the image is in guest RAM. */
export interface BootSetup {
  format: KernelFormat;
  /** Guest-physical address of the first instruction (also regs.rip). */
  entry: number;
  regs: Regs;
  sregs: Partial<Sregs>;
}

export interface KernelLoadOptions {
  /** Kernel command line; '' or undefined for none. */
  cmdline?: string;
  /** Initial ramdisk contents (Linux kernels only). */
  initrd?: Uint8Array;
  /** How the image is named in error messages, usually its path. */
  sourceName?: string;
}

export const DEFAULT_SOURCE_NAME = 'kernel image';

/** "failed to load kernel <source>: <reason>". */
export function kernelLoadError(sourceName: string, reason: string, options?: { cause?: unknown }): KernelLoadError {
  return new KernelLoadError(`failed to load kernel ${sourceName}: ${reason}`, options);
}

/**
 * The boot structures (GDT, page tables, zero page, command line) live in the first MiB,
 * so the loaders need RAM there before they write anything.
 */
export function requireBootRam(memory: GuestMemory, sourceName: string): void {
  if (!memory.contains(0, HIMEM_START)) {
    throw kernelLoadError(sourceName, 'guest RAM must start at address 0 and cover the first 1 MiB, where the boot structures go');
  }
}

/** End of the RAM region that starts at 0 (requireBootRam guarantees there is one). */
export function lowRamEnd(memory: GuestMemory): number {
  const low = memory.regions[0];
  return low.guestAddress + low.size;
}

/** "0x1000-0x1fff" for messages about byte ranges. */
export function hexRange(start: number, length: number): string {
  return length > 0 ? `0x${start.toString(16)}-0x${(start + length - 1).toString(16)}` : `0x${start.toString(16)} (empty)`;
}

export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}
