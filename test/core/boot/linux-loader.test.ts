import { BOOT_PARAMS } from '../../../core/boot/boot-params';
import { loadBzImage, loadVmlinux } from '../../../core/boot/linux-loader';
import { KernelLoadError } from '../../../core/errors';
import { GuestMemory } from '../../../core/memory/guest-memory';
import { allZero, buildBzImage, buildElf, makeRam, MiB, pattern, type BzImageSpec } from './fixtures';

const SRC = '/boot/vmlinuz';
const ZERO_PAGE = 0x7000;

/**
 * struct boot_params offsets as literals from Documentation/x86/zero-page.rst and boot.rst.
 * Checked once against the loader's BOOT_PARAMS table, then used for every field check,
 * so a wrong entry in BOOT_PARAMS cannot hide itself.
 */
const ZP = {
  ext_ramdisk_image: 0x0c0,
  ext_ramdisk_size: 0x0c4,
  ext_cmd_line_ptr: 0x0c8,
  e820_entries: 0x1e8,
  setup_sects: 0x1f1,
  boot_flag: 0x1fe,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  type_of_loader: 0x210,
  loadflags: 0x211,
  code32_start: 0x214,
  ramdisk_image: 0x218,
  ramdisk_size: 0x21c,
  heap_end_ptr: 0x224,
  cmd_line_ptr: 0x228,
  initrd_addr_max: 0x22c,
  kernel_alignment: 0x230,
  relocatable_kernel: 0x234,
  xloadflags: 0x236,
  cmdline_size: 0x238,
  pref_address: 0x258,
  init_size: 0x260,
  e820_table: 0x2d0,
} as const;

const u8 = (m: GuestMemory, off: number) => m.readU8(ZERO_PAGE + off);
const u16 = (m: GuestMemory, off: number) => m.readU16(ZERO_PAGE + off);
const u32 = (m: GuestMemory, off: number) => m.readU32(ZERO_PAGE + off);
const u64 = (m: GuestMemory, off: number) => m.readU64(ZERO_PAGE + off);

function e820(m: GuestMemory): Array<[number, number, number]> {
  const entries: Array<[number, number, number]> = [];
  for (let i = 0; i < u8(m, ZP.e820_entries); i++) {
    const at = ZP.e820_table + i * 20;
    entries.push([Number(u64(m, at)), Number(u64(m, at + 8)), u32(m, at + 16)]);
  }
  return entries;
}

/** The zero page with the given [offset, width] fields cleared: everything else must be 0. */
function zeroPageExcept(m: GuestMemory, fields: Array<[number, number]>): Uint8Array {
  const page = m.read(ZERO_PAGE, 0x1000);
  for (const [offset, width] of fields) page.fill(0, offset, offset + width);
  return page;
}

function vmlinuxImage(notes = [{ name: 'Linux', type: 6, desc: pattern(4) }]): Uint8Array {
  return buildElf({
    entry: 0x100_0000,
    segments: [
      { paddr: 0x100_0000, vaddr: 0xffff_ffff_8100_0000n, data: pattern(0x2000, 3), memsz: 0x3000 },
      { paddr: 0x120_0000, vaddr: 0xffff_ffff_8120_0000n, data: pattern(0x800, 4), memsz: 0x10_0000 },
    ],
    notes,
  });
}

function refused(load: (memory: GuestMemory) => unknown, memory: GuestMemory = makeRam(64 * MiB)): KernelLoadError {
  let error: unknown;
  try {
    load(memory);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(KernelLoadError);
  expect((error as KernelLoadError).code).toBe('ERR_KERNEL_LOAD');
  expect(allZero(memory)).toBe(true); // nothing written before the refusal
  return error as KernelLoadError;
}

test('BOOT_PARAMS offsets match the boot protocol', () => {
  const expected = Object.fromEntries(
    Object.entries(ZP).filter(([name]) => name.toUpperCase() in BOOT_PARAMS).map(([name, offset]) => [name.toUpperCase(), offset]),
  );
  expect(Object.keys(expected).length).toBeGreaterThan(20);
  expect(BOOT_PARAMS).toMatchObject(expected);
  expect(BOOT_PARAMS.SETUP_HEADER).toBe(0x1f1);
});

describe('vmlinux', () => {
  test('loads PT_LOAD segments at p_paddr and enters at e_entry in long mode', () => {
    const memory = makeRam(64 * MiB);
    const setup = loadVmlinux(memory, vmlinuxImage(), { cmdline: 'console=ttyS0 root=/dev/vda', sourceName: SRC });
    expect(setup.format).toBe('vmlinux');
    expect(setup.entry).toBe(0x100_0000);
    expect(setup.regs).toMatchObject({ rip: 0x100_0000n, rsi: 0x7000n, rdi: 0n, rsp: 0x8ff0n, rbp: 0x8ff0n, rflags: 2n });
    expect(setup.sregs).toMatchObject({ cr0: 0x80050033n, cr3: 0x9000n, cr4: 0x20n, efer: 0x500n, gdt: { base: 0x500n, limit: 31 } });
    expect(memory.read(0x100_0000, 0x2000)).toEqual(pattern(0x2000, 3));
    expect(memory.read(0x100_2000, 0x1000).every((b) => b === 0)).toBe(true);
    expect(memory.read(0x120_0000, 0x800)).toEqual(pattern(0x800, 4));
    expect(memory.readU64(0x9000)).toBe(0xa007n);
    expect(Buffer.from(memory.read(0x20000, 28)).toString('latin1')).toBe('console=ttyS0 root=/dev/vda\0');
  });

  test('zero page, field by field', () => {
    const memory = makeRam(64 * MiB);
    loadVmlinux(memory, vmlinuxImage(), { cmdline: 'console=ttyS0', sourceName: SRC });
    expect(u16(memory, ZP.boot_flag)).toBe(0xaa55);
    expect(u32(memory, ZP.header)).toBe(0x53726448);
    expect(u8(memory, ZP.type_of_loader)).toBe(0xff);
    expect(u8(memory, ZP.loadflags)).toBe(0x81); // LOADED_HIGH | CAN_USE_HEAP
    expect(u16(memory, ZP.heap_end_ptr)).toBe(0xfe00);
    expect(u32(memory, ZP.cmd_line_ptr)).toBe(0x20000);
    expect(u32(memory, ZP.ext_cmd_line_ptr)).toBe(0);
    expect(u32(memory, ZP.cmdline_size)).toBe(2047);
    expect(u32(memory, ZP.kernel_alignment)).toBe(0x100_0000);
    expect(u32(memory, ZP.ramdisk_image)).toBe(0);
    expect(u32(memory, ZP.ramdisk_size)).toBe(0);
    expect(u8(memory, ZP.e820_entries)).toBe(2);
    expect(e820(memory)).toEqual([
      [0, 0x9fc00, 1],
      [0x100000, 64 * MiB - 0x100000, 1],
    ]);
    // Raw offsets, independent of any table: boot_flag, HdrS, loadflags, first e820 entry size.
    expect([...memory.read(0x7000 + 0x1fe, 2)]).toEqual([0x55, 0xaa]);
    expect(Buffer.from(memory.read(0x7000 + 0x202, 4)).toString('latin1')).toBe('HdrS');
    expect(memory.readU8(0x7211)).toBe(0x81);
    expect(memory.readU64(0x7000 + 0x2d0 + 8)).toBe(0x9fc00n);
    const rest = zeroPageExcept(memory, [
      [ZP.boot_flag, 2], [ZP.header, 4], [ZP.type_of_loader, 1], [ZP.loadflags, 1], [ZP.heap_end_ptr, 2],
      [ZP.cmd_line_ptr, 4], [ZP.cmdline_size, 4], [ZP.kernel_alignment, 4], [ZP.e820_entries, 1], [ZP.e820_table, 2 * 20],
    ]);
    expect(rest.every((b) => b === 0)).toBe(true);
  });

  test('initrd goes page-aligned at the top of low RAM', () => {
    const memory = makeRam(64 * MiB);
    const initrd = pattern(10000, 9);
    loadVmlinux(memory, vmlinuxImage(), { initrd, sourceName: SRC });
    const address = u32(memory, ZP.ramdisk_image);
    expect(address).toBe(0x3ffd000); // floor((64 MiB - 10000) / 4096) * 4096
    expect(address % 0x1000).toBe(0);
    expect(address + initrd.length).toBeLessThanOrEqual(64 * MiB);
    expect(u32(memory, ZP.ramdisk_size)).toBe(10000);
    expect(u32(memory, ZP.ext_ramdisk_image)).toBe(0);
    expect(u32(memory, ZP.ext_ramdisk_size)).toBe(0);
    expect(memory.read(address, initrd.length)).toEqual(initrd);
  });

  test('an initrd may end exactly where the kernel ends', () => {
    const memory = makeRam(64 * MiB);
    loadVmlinux(memory, vmlinuxImage(), { initrd: new Uint8Array(45 * MiB), sourceName: SRC });
    expect(u32(memory, ZP.ramdisk_image)).toBe(0x130_0000); // the kernel's last segment ends here
  });

  test('reports RAM above 4 GiB in e820 and keeps the initrd in low RAM', () => {
    const memory = new GuestMemory([
      { guestAddress: 0, size: 32 * MiB, buffer: new ArrayBuffer(32 * MiB) },
      { guestAddress: 0x1_0000_0000, size: 2 * MiB, buffer: new ArrayBuffer(2 * MiB) },
    ]);
    loadVmlinux(memory, vmlinuxImage(), { initrd: pattern(0x1000), sourceName: SRC });
    expect(e820(memory)).toEqual([
      [0, 0x9fc00, 1],
      [0x100000, 31 * MiB, 1],
      [0x1_0000_0000, 2 * MiB, 1],
    ]);
    expect(u32(memory, ZP.ramdisk_image)).toBe(32 * MiB - 0x1000);
  });

  test('an empty command line is still a valid NUL-terminated string', () => {
    const memory = makeRam(64 * MiB);
    memory.writeU8(0x20000, 0x41);
    loadVmlinux(memory, vmlinuxImage(), { sourceName: SRC });
    expect(u32(memory, ZP.cmd_line_ptr)).toBe(0x20000);
    expect(memory.readU8(0x20000)).toBe(0);
  });

  test.each<[string, (m: GuestMemory) => unknown, string]>([
    ['an initrd larger than RAM', (m) => loadVmlinux(m, vmlinuxImage(), { initrd: new Uint8Array(64 * MiB), sourceName: SRC }),
      `failed to load kernel ${SRC}: the initrd (67108864 bytes) does not fit in guest RAM between the end of the kernel (0x1300000) and 0x4000000`],
    ['an initrd that would overlap the kernel', (m) => loadVmlinux(m, vmlinuxImage(), { initrd: new Uint8Array(45 * MiB + 1), sourceName: SRC }),
      'does not fit in guest RAM between the end of the kernel (0x1300000)'],
    ['an empty initrd', (m) => loadVmlinux(m, vmlinuxImage(), { initrd: new Uint8Array(0), sourceName: SRC }), 'the initrd is empty'],
    ['a 2048-byte command line', (m) => loadVmlinux(m, vmlinuxImage(), { cmdline: 'a'.repeat(2048), sourceName: SRC }),
      'the kernel command line is 2048 bytes long; the limit is 2047 bytes'],
    ['a kernel beyond RAM', (m) => loadVmlinux(m, vmlinuxImage(), { sourceName: SRC }), 'is outside guest RAM'],
  ])('refuses %s, leaving RAM untouched', (label, load, fragment) => {
    const memory = label === 'a kernel beyond RAM' ? makeRam(16 * MiB) : makeRam(64 * MiB);
    expect(refused(load, memory).message).toContain(fragment);
  });
});

describe('bzImage', () => {
  const kernel = pattern(0x3000, 7);

  test('loads the protected-mode kernel at 0x100000 and enters at 0x100200', () => {
    const memory = makeRam(64 * MiB);
    const setup = loadBzImage(memory, buildBzImage({ kernel }), { cmdline: 'console=ttyS0', sourceName: SRC });
    expect(setup.format).toBe('bzimage');
    expect(setup.entry).toBe(0x100200);
    expect(setup.regs).toMatchObject({ rip: 0x100200n, rsi: 0x7000n, rsp: 0x8ff0n, rbp: 0x8ff0n, rflags: 2n });
    expect(setup.sregs).toMatchObject({ cr0: 0x80050033n, cr3: 0x9000n, cr4: 0x20n, efer: 0x500n });
    expect(memory.read(0x100000, kernel.length)).toEqual(kernel);
    expect(memory.readU8(0x100000 + kernel.length)).toBe(0);
  });

  test.each([
    [0, 5 * 512], // setup_sects 0 means 4
    [4, 5 * 512],
    [1, 2 * 512],
    [30, 31 * 512],
  ])('setup_sects %p puts the kernel at file offset %p', (setupSects, offset) => {
    const image = buildBzImage({ setupSects, kernel });
    expect(image.length).toBe(offset + kernel.length);
    const memory = makeRam(64 * MiB);
    loadBzImage(memory, image, { sourceName: SRC });
    expect(memory.read(0x100000, kernel.length)).toEqual(kernel);
    expect(u8(memory, ZP.setup_sects)).toBe(setupSects); // copied as the file has it
  });

  test('zero page: the file header copied, loader fields set, field by field', () => {
    const memory = makeRam(64 * MiB);
    loadBzImage(memory, buildBzImage({ kernel, cmdlineSize: 0x7ff, initrdAddrMax: 0x7fffffff }), { cmdline: 'quiet', sourceName: SRC });
    // Copied from the file.
    expect(u8(memory, ZP.setup_sects)).toBe(4);
    expect(u16(memory, ZP.boot_flag)).toBe(0xaa55);
    expect([u8(memory, ZP.jump), u8(memory, ZP.jump + 1)]).toEqual([0xeb, 0x6a]);
    expect(u32(memory, ZP.header)).toBe(0x53726448);
    expect(u16(memory, ZP.version)).toBe(0x020f);
    expect(u32(memory, ZP.code32_start)).toBe(0x100000);
    expect(u32(memory, ZP.initrd_addr_max)).toBe(0x7fffffff);
    expect(u32(memory, ZP.kernel_alignment)).toBe(0x200000);
    expect(u8(memory, ZP.relocatable_kernel)).toBe(1);
    expect(u16(memory, ZP.xloadflags)).toBe(3);
    expect(u32(memory, ZP.cmdline_size)).toBe(0x7ff); // the kernel's value: read-only for loaders
    expect(u64(memory, ZP.pref_address)).toBe(0x100_0000n);
    expect(u32(memory, ZP.init_size)).toBe(0x400000);
    // Written by the loader.
    expect(u8(memory, ZP.type_of_loader)).toBe(0xff);
    expect(u8(memory, ZP.loadflags)).toBe(0x81);
    expect(u16(memory, ZP.heap_end_ptr)).toBe(0xfe00);
    expect(u32(memory, ZP.cmd_line_ptr)).toBe(0x20000);
    expect(u32(memory, ZP.ext_cmd_line_ptr)).toBe(0);
    expect(u32(memory, ZP.ramdisk_image)).toBe(0);
    expect(e820(memory)).toEqual([
      [0, 0x9fc00, 1],
      [0x100000, 63 * MiB, 1],
    ]);
    // Raw offsets: version, xloadflags, type_of_loader.
    expect(memory.readU16(0x7206)).toBe(0x020f);
    expect(memory.readU16(0x7236)).toBe(3);
    expect(memory.readU8(0x7210)).toBe(0xff);
    // Nothing outside the header came along: the boot sector and setup code are 0xcc filler,
    // and so are the bytes between the header's end (0x26c) and 0x290.
    const page = memory.read(ZERO_PAGE, 0x1000);
    expect(page.subarray(0, 0x1e8).every((b) => b === 0)).toBe(true);
    expect(page.subarray(0x26c, 0x2d0).every((b) => b === 0)).toBe(true);
    expect(page.subarray(0x2d0 + 2 * 20).every((b) => b === 0)).toBe(true);
    expect(Buffer.from(memory.read(0x20000, 6)).toString('latin1')).toBe('quiet\0');
  });

  test('initrd goes below initrd_addr_max, page-aligned, above the decompressed kernel', () => {
    const memory = makeRam(64 * MiB);
    const initrd = pattern(0x12345, 5);
    loadBzImage(memory, buildBzImage({ kernel, initrdAddrMax: 0x1ffffff }), { initrd, sourceName: SRC });
    expect(u32(memory, ZP.ramdisk_image)).toBe(0x1fed000); // floor((0x2000000 - 0x12345) / 4096) * 4096
    expect(u32(memory, ZP.ramdisk_size)).toBe(0x12345);
    expect(u32(memory, ZP.ext_ramdisk_image)).toBe(0);
    expect(u32(memory, ZP.ext_ramdisk_size)).toBe(0);
    expect(Buffer.from(memory.read(0x1fed000, initrd.length)).equals(initrd)).toBe(true);
  });

  test('low RAM below initrd_addr_max bounds the initrd', () => {
    const memory = makeRam(48 * MiB);
    loadBzImage(memory, buildBzImage({ kernel }), { initrd: pattern(0x1000), sourceName: SRC });
    expect(u32(memory, ZP.ramdisk_image)).toBe(48 * MiB - 0x1000);
  });

  // [label, spec, options, RAM, message fragment]
  test.each<[string, BzImageSpec, { cmdline?: string; initrd?: Uint8Array }, number, string]>([
    ['protocol 2.11', { version: 0x020b }, {}, 64,
      'it uses boot protocol 2.11; at least 2.12 is needed to find its 64-bit entry point'],
    ['protocol 2.02', { version: 0x0202 }, {}, 64, 'it uses boot protocol 2.02'],
    ['a 32-bit-only kernel', { xloadflags: 0x2 }, {}, 64, 'it has no 64-bit entry point (XLF_KERNEL_64 is clear in xloadflags)'],
    ['a zImage', { loadflags: 0 }, {}, 64, 'it is a zImage'],
    ['a setup header cut off by the end of the file', { truncateTo: 0x240 }, {}, 64, 'its setup header extends past the end of the file'],
    ['a setup header too short for protocol 2.12', { jumpLength: 0x20 }, {}, 64, 'its setup header ends at 0x222'],
    ['no protected-mode kernel', { truncateTo: 5 * 512 }, {}, 64, 'it has no protected-mode kernel after its 4 setup sectors (the file is 2560 bytes)'],
    ['a command line longer than cmdline_size', { cmdlineSize: 100 }, { cmdline: 'x'.repeat(101) }, 64,
      'the kernel command line is 101 bytes long; the limit is 100 bytes (cmdline_size in the kernel header)'],
    ['a command line longer than COMMAND_LINE_SIZE', { cmdlineSize: 0xffff }, { cmdline: 'x'.repeat(2048) }, 64, 'the limit is 2047 bytes'],
    ['RAM too small to decompress into', { initSize: 0x800000 }, {}, 16,
      'the kernel needs guest RAM up to 0x1800000 to load and decompress, but RAM at 0 ends at 0x1000000'],
    ['a pref_address beyond 2^53', { prefAddress: 0xffff_ffff_0000_0000n }, {}, 64, 'its preferred load address 0xffffffff00000000 is beyond any guest RAM'],
    ['an initrd too big for the RAM', {}, { initrd: new Uint8Array(64 * MiB) }, 64, 'the initrd (67108864 bytes) does not fit in guest RAM'],
    ['an initrd that would overlap the decompressed kernel', { initrdAddrMax: 0x17fffff, initSize: 0x800000 }, { initrd: pattern(0x1000) }, 64,
      'the initrd (4096 bytes) does not fit in guest RAM between the end of the kernel (0x1800000) and 0x1800000'],
  ])('refuses %s, leaving RAM untouched', (_label, spec, options, ramMiB, fragment) => {
    const error = refused((m) => loadBzImage(m, buildBzImage({ kernel, ...spec }), { ...options, sourceName: SRC }), makeRam(ramMiB * MiB));
    expect(error.message).toContain(`failed to load kernel ${SRC}: `);
    expect(error.message).toContain(fragment);
  });

  test('a non-relocatable kernel decompresses at pref_address', () => {
    // init_size from pref_address 16 MiB reaches 28 MiB: fits in 32 MiB, not in 24 MiB.
    const spec = { kernel, relocatable: 0, initSize: 12 * MiB };
    expect(() => loadBzImage(makeRam(32 * MiB), buildBzImage(spec), { sourceName: SRC })).not.toThrow();
    expect(() => loadBzImage(makeRam(24 * MiB), buildBzImage(spec), { sourceName: SRC })).toThrow('needs guest RAM up to 0x1c00000');
  });
});
