/**
 * CPU state for entering a 64-bit kernel directly, skipping real and protected mode
 * (the "64-bit BOOT PROTOCOL" of Documentation/x86/boot.rst, and how Firecracker boots).
 *
 * The loaders write two structures into low guest RAM and hand KVM matching register state:
 *   - a 4-entry GDT at BOOT_GDT_START (null, 64-bit code, data, TSS) and an empty IDT;
 *   - page tables identity-mapping the first 4 GiB with 2 MiB pages:
 *     PML4[0] -> PDPT, PDPT[0..3] -> 4 page directories, 4 x 512 PDEs.
 *
 * The values are a fixed contract shared with the C reference VMM; keep them identical.
 */
import type { Regs, Segment, Sregs } from '../../native/types';
import type { GuestMemory } from '../memory/guest-memory';
import {
  BOOT_GDT_START, BOOT_IDT_START, BOOT_PD_COUNT, BOOT_STACK_POINTER, PAGE_SIZE, PDE_START, PDPTE_START, PML4_START,
} from './layout';

/** CR0: PE | MP | ET | NE | WP | AM | PG (Intel SDM vol. 3 §2.5). */
export const BOOT_CR0 = 0x8005_0033n;
/** CR4: PAE, required for long mode (Intel SDM vol. 3 §2.5). */
export const BOOT_CR4 = 0x20n;
/** EFER: LME | LMA, long mode enabled and active (Intel SDM vol. 3 §2.2.1). */
export const BOOT_EFER = 0x500n;
/** CR3: the PML4. */
export const BOOT_CR3 = BigInt(PML4_START);
/** RFLAGS: only bit 1, which is reserved and always reads as 1. */
export const BOOT_RFLAGS = 0x2n;

/** Page-table entry flags: present | writable | user (Intel SDM vol. 3 §4.5). */
export const PTE_TABLE_FLAGS = 0x7n;
/** PDE flags for a 2 MiB page: present | writable | user | PS. */
export const PDE_2M_PAGE_FLAGS = 0x87n;
const PAGE_2M = 0x20_0000n;
const ENTRIES_PER_TABLE = 512;

/** The boot GDT, in order: null, code (0x08), data (0x10), TSS (0x18). Firecracker's values. */
export const BOOT_GDT: readonly bigint[] = Object.freeze([
  0x0000_0000_0000_0000n,
  0x00af_9b00_0000_ffffn, // 64-bit code: L=1, G=1, present, DPL 0, execute/read, accessed
  0x00cf_9300_0000_ffffn, // data: D/B=1, G=1, present, read/write, accessed
  0x008f_8b00_0000_ffffn, // TSS: busy 64-bit TSS, present
]);
export const CODE_SELECTOR = 0x08;
export const DATA_SELECTOR = 0x10;
export const TSS_SELECTOR = 0x18;
/** GDTR limit: size in bytes minus one. */
export const BOOT_GDT_LIMIT = BOOT_GDT.length * 8 - 1;

/** The register state set before the first KVM_RUN; which registers this covers. */
export type LongModeSregs = Pick<Sregs, 'cs' | 'ds' | 'es' | 'fs' | 'gs' | 'ss' | 'tr' | 'ldt' | 'gdt' | 'idt' | 'cr0' | 'cr3' | 'cr4' | 'efer'>;

/** Write the GDT, the (empty) IDT and the identity-mapping page tables into guest RAM. */
export function writeLongModeTables(memory: GuestMemory): void {
  BOOT_GDT.forEach((entry, i) => memory.writeU64(BOOT_GDT_START + i * 8, entry));
  memory.writeU64(BOOT_IDT_START, 0n);

  // Clear the whole table area first: stale non-present entries must read as zero.
  memory.write(PML4_START, new Uint8Array(PDE_START + BOOT_PD_COUNT * PAGE_SIZE - PML4_START));
  memory.writeU64(PML4_START, BigInt(PDPTE_START) | PTE_TABLE_FLAGS);
  for (let pd = 0; pd < BOOT_PD_COUNT; pd++) {
    const pdAddress = PDE_START + pd * PAGE_SIZE;
    memory.writeU64(PDPTE_START + pd * 8, BigInt(pdAddress) | PTE_TABLE_FLAGS);
    for (let i = 0; i < ENTRIES_PER_TABLE; i++) {
      const page = BigInt(pd * ENTRIES_PER_TABLE + i) * PAGE_2M;
      memory.writeU64(pdAddress + i * 8, page | PDE_2M_PAGE_FLAGS);
    }
  }
}

/** Segment and control registers matching the tables written by writeLongModeTables. */
export function longModeSregs(): LongModeSregs {
  const data = (): Segment => ({
    // KVM takes the expanded, byte-granular limit: 0xfffff pages with G=1 is 0xffffffff.
    base: 0n, limit: 0xffff_ffff, selector: DATA_SELECTOR, type: 0x3, present: 1, dpl: 0,
    db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0,
  });
  return {
    cs: {
      base: 0n, limit: 0xffff_ffff, selector: CODE_SELECTOR, type: 0xb, present: 1, dpl: 0,
      db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0,
    },
    ds: data(), es: data(), fs: data(), gs: data(), ss: data(),
    // VM entry requires TR to be a usable busy TSS (Intel SDM vol. 3 §26.3.1.2) even though
    // the kernel loads its own before it needs one.
    tr: {
      base: 0n, limit: 0xffff, selector: TSS_SELECTOR, type: 0xb, present: 1, dpl: 0,
      db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0,
    },
    ldt: {
      base: 0n, limit: 0, selector: 0, type: 0x2, present: 0, dpl: 0,
      db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1,
    },
    gdt: { base: BigInt(BOOT_GDT_START), limit: BOOT_GDT_LIMIT },
    idt: { base: BigInt(BOOT_IDT_START), limit: 0 },
    cr0: BOOT_CR0,
    cr3: BOOT_CR3,
    cr4: BOOT_CR4,
    efer: BOOT_EFER,
  };
}

/** General registers for the first instruction at `entry`; all others zero. */
export function longModeRegs(entry: number, extra: Partial<Regs> = {}): Regs {
  return {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n,
    rsp: BigInt(BOOT_STACK_POINTER), rbp: BigInt(BOOT_STACK_POINTER),
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
    rip: BigInt(entry), rflags: BOOT_RFLAGS,
    ...extra,
  };
}

/** Write the tables and return the complete register state for entering 64-bit code at `entry`. */
export function setupLongMode(memory: GuestMemory, entry: number, extra: Partial<Regs> = {}): { regs: Regs; sregs: LongModeSregs } {
  writeLongModeTables(memory);
  return { regs: longModeRegs(entry, extra), sregs: longModeSregs() };
}
