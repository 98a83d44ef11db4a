/**
 * Fixed guest-physical addresses of the x86-64 machine vmm builds.
 *
 * Low memory (first MiB) holds the boot structures the loaders write before the first
 * KVM_RUN; the kernel itself always goes at or above HIMEM_START. The values follow
 * Firecracker's `src/vmm/src/arch/x86_64/layout.rs` and the Linux boot protocol
 * (`Documentation/x86/boot.rst`) so that kernels tested under Firecracker boot here too.
 *
 *   0x0000_0500  GDT (4 entries)           0x0000_9000  PML4
 *   0x0000_0520  IDT (empty)               0x0000_a000  PDPT
 *   0x0000_7000  zero page (boot_params)   0x0000_b000  4 page directories (to 0xefff)
 *   0x0000_8ff0  initial stack pointer     0x0002_0000  kernel command line
 *   0x0009_fc00  EBDA (not RAM in e820)    0x0010_0000  kernel
 *   0xd000_0000  MMIO hole ... 0x1_0000_0000, RAM continues above 4 GiB
 */

/** Boot GDT (Firecracker BOOT_GDT_OFFSET). */
export const BOOT_GDT_START = 0x500;
/** Boot IDT, left empty: no interrupts are enabled before the kernel installs its own (Firecracker BOOT_IDT_OFFSET). */
export const BOOT_IDT_START = 0x520;
/** struct boot_params, the "zero page" passed in %rsi (Firecracker ZERO_PAGE_START). */
export const ZERO_PAGE_START = 0x7000;
/** Initial %rsp/%rbp; the stack grows down towards the zero page (Firecracker BOOT_STACK_POINTER). */
export const BOOT_STACK_POINTER = 0x8ff0;
/** Level-4 page table (Firecracker PML4_START). */
export const PML4_START = 0x9000;
/** Page-directory-pointer table (Firecracker PDPTE_START). */
export const PDPTE_START = 0xa000;
/** First of BOOT_PD_COUNT page directories (Firecracker PDE_START). */
export const PDE_START = 0xb000;
/** Page directories used to identity-map the first 4 GiB with 2 MiB pages (0xb000-0xefff). */
export const BOOT_PD_COUNT = 4;
/** Bytes identity-mapped by the boot page tables: one GiB per page directory. Code must load below this. */
export const BOOT_IDENTITY_MAP_SIZE = BOOT_PD_COUNT * 0x4000_0000;
/** Kernel command line (Firecracker CMDLINE_START). */
export const CMDLINE_START = 0x20000;
/** Linux x86 COMMAND_LINE_SIZE (arch/x86/include/asm/setup.h): bytes including the NUL. */
export const CMDLINE_MAX = 2048;
/** Start of the Extended BIOS Data Area; RAM above it up to 1 MiB is not reported (Firecracker EBDA_START). */
export const EBDA_START = 0x9fc00;
/** First byte above the legacy 1 MiB area; kernels load here or higher (Firecracker HIMEM_START). */
export const HIMEM_START = 0x100000;
/** Start of the 32-bit MMIO gap: RAM beyond this moves above 4 GiB (Firecracker MMIO_MEM_START, 4 GiB - 768 MiB). */
export const MMIO_HOLE_START = 0xd000_0000;
/** End of the 32-bit MMIO gap; high RAM starts here (Firecracker FIRST_ADDR_PAST_32BITS). */
export const MMIO_HOLE_END = 0x1_0000_0000;
/** IOAPIC MMIO base (Intel 82093AA datasheet default; Firecracker IOAPIC_ADDR). */
export const IOAPIC_START = 0xfec0_0000;
/** Local APIC MMIO base (Intel SDM vol. 3 §10.4.1 default; Firecracker APIC_ADDR). */
export const LAPIC_START = 0xfee0_0000;
/** KVM_SET_TSS_ADDR: three pages KVM needs on Intel for real-mode emulation (Firecracker KVM_TSS_ADDRESS). */
export const TSS_ADDRESS = 0xfffb_d000;
/** KVM_SET_IDENTITY_MAP_ADDR: one page directly below the TSS pages, also inside the MMIO hole. */
export const IDENTITY_MAP_ADDRESS = 0xfffb_c000;

/** x86 page size; loaders align the initrd to it. */
export const PAGE_SIZE = 0x1000;
