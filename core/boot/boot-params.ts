/**
 * struct boot_params, the 4 KiB "zero page" of the Linux x86 boot protocol.
 *
 * Offsets are from Documentation/x86/zero-page.rst and the setup-header table in
 * Documentation/x86/boot.rst (arch/x86/include/uapi/asm/bootparam.h). The loaders write
 * every field through BOOT_PARAMS so that a wrong offset is wrong in exactly one place.
 */

export const BOOT_PARAMS = Object.freeze({
  EXT_RAMDISK_IMAGE: 0x0c0, // u32, high 32 bits of ramdisk_image
  EXT_RAMDISK_SIZE: 0x0c4, // u32, high 32 bits of ramdisk_size
  EXT_CMD_LINE_PTR: 0x0c8, // u32, high 32 bits of cmd_line_ptr
  E820_ENTRIES: 0x1e8, // u8, number of entries in E820_TABLE
  SETUP_HEADER: 0x1f1, // struct setup_header starts here (same offset as in the bzImage file)
  SETUP_SECTS: 0x1f1, // u8, 512-byte setup sectors after the boot sector (0 means 4)
  BOOT_FLAG: 0x1fe, // u16, 0xaa55
  JUMP: 0x200, // u16, x86 short jump; its second byte gives the header length
  HEADER: 0x202, // u32, "HdrS"
  VERSION: 0x206, // u16, boot protocol version
  TYPE_OF_LOADER: 0x210, // u8
  LOADFLAGS: 0x211, // u8
  CODE32_START: 0x214, // u32
  RAMDISK_IMAGE: 0x218, // u32
  RAMDISK_SIZE: 0x21c, // u32
  HEAP_END_PTR: 0x224, // u16
  CMD_LINE_PTR: 0x228, // u32
  INITRD_ADDR_MAX: 0x22c, // u32, highest address the initrd may occupy
  KERNEL_ALIGNMENT: 0x230, // u32
  RELOCATABLE_KERNEL: 0x234, // u8
  XLOADFLAGS: 0x236, // u16 (protocol 2.12+)
  CMDLINE_SIZE: 0x238, // u32, maximum command line length without the NUL
  PREF_ADDRESS: 0x258, // u64, preferred load address (protocol 2.10+)
  INIT_SIZE: 0x260, // u32, bytes the kernel needs from its runtime start (protocol 2.10+)
  E820_TABLE: 0x2d0, // struct boot_e820_entry[E820_MAX_ENTRIES_ZEROPAGE]
});

/** sizeof(struct boot_params). */
export const BOOT_PARAMS_SIZE = 0x1000;
/**
 * struct setup_header plus its padding ends here (edd_mbr_sig_buffer follows): the most a
 * header copied from a bzImage may cover, whatever its jump byte says.
 */
export const SETUP_HEADER_LIMIT = 0x290;

/** boot_flag value (boot.rst). */
export const BOOT_FLAG_MAGIC = 0xaa55;
/** header value: "HdrS" little-endian (boot.rst). */
export const HDRS_MAGIC = 0x5372_6448;
/** type_of_loader: 0xff means "undefined" (boot.rst, type_of_loader). */
export const LOADER_TYPE_UNDEFINED = 0xff;

/** loadflags bit 0: protected-mode code is loaded at 0x100000 (boot.rst). */
export const LOADED_HIGH = 0x01;
/** loadflags bit 7: heap_end_ptr is valid (boot.rst). */
export const CAN_USE_HEAP = 0x80;
/** heap_end_ptr as boot.rst recommends for a modern loader: 0xe000 setup + heap minus 0x200. */
export const BOOT_HEAP_END_PTR = 0xfe00;

/** xloadflags bit 0: the kernel has the legacy 64-bit entry point at load address + 0x200 (boot.rst). */
export const XLF_KERNEL_64 = 0x1;
/** xloadflags bit 1: kernel, boot_params, cmdline and ramdisk may be above 4 GiB (boot.rst). */
export const XLF_CAN_BE_LOADED_ABOVE_4G = 0x2;

/** Oldest protocol with xloadflags, needed to know a bzImage has a 64-bit entry (boot.rst, 2.12). */
export const MIN_64BIT_BOOT_PROTOCOL = 0x020c;
/** Offset of the 64-bit entry point from the protected-mode load address (boot.rst, "64-bit BOOT PROTOCOL"). */
export const STARTUP_64_OFFSET = 0x200;
/** kernel_alignment written for a vmlinux, which has no header of its own (Firecracker; CONFIG_PHYSICAL_ALIGN default). */
export const VMLINUX_KERNEL_ALIGNMENT = 0x100_0000;
/** initrd_addr_max assumed for a vmlinux (boot.rst: the value for protocols before 2.03). */
export const VMLINUX_INITRD_ADDR_MAX = 0x37ff_ffff;

/** Size of struct boot_e820_entry: u64 addr, u64 size, u32 type, packed. */
export const E820_ENTRY_SIZE = 20;
/** E820_MAX_ENTRIES_ZEROPAGE (arch/x86/include/uapi/asm/setup_data.h). */
export const E820_MAX_ENTRIES = 128;
/** E820_TYPE_RAM. */
export const E820_RAM = 1;
