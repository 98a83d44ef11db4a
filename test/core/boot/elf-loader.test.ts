import { loadElfGuest } from '../../../core/boot/elf-loader';
import { KernelLoadError } from '../../../core/errors';
import { GuestMemory } from '../../../core/memory/guest-memory';
import { allZero, buildElf, makeRam, MiB, pattern, type SegmentSpec } from './fixtures';

const SRC = '/images/test-guest.elf';
const RAM = 8 * MiB;

function loadError(segments: SegmentSpec[], entry = 0x100000, cmdline?: string): KernelLoadError {
  const memory = makeRam(RAM);
  let error: unknown;
  try {
    loadElfGuest(memory, buildElf({ entry, segments }), { cmdline, sourceName: SRC });
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(KernelLoadError);
  expect((error as KernelLoadError).code).toBe('ERR_KERNEL_LOAD');
  expect(allZero(memory)).toBe(true); // refused before writing anything
  return error as KernelLoadError;
}

describe('loadElfGuest', () => {
  test('copies segments to p_paddr and zero-fills to p_memsz', () => {
    const memory = makeRam(RAM);
    memory.view(0x100000, 0x3000).fill(0xee); // stale bytes where .bss goes
    const text = pattern(0x180, 1);
    const data = pattern(0x40, 2);
    const setup = loadElfGuest(
      memory,
      buildElf({
        entry: 0x100010,
        segments: [
          { paddr: 0x100000, vaddr: 0xffff_8000_0010_0000n, data: text, memsz: 0x1000 },
          { paddr: 0x200000, data, memsz: 0x40 },
          { paddr: 0x300000, memsz: 0 }, // empty segments are skipped wherever they point
        ],
      }),
      { sourceName: SRC },
    );
    expect(memory.read(0x100000, 0x180)).toEqual(text);
    expect(memory.read(0x100180, 0x1000 - 0x180).every((b) => b === 0)).toBe(true);
    expect(memory.readU8(0x101000)).toBe(0xee); // beyond p_memsz: untouched
    expect(memory.read(0x200000, 0x40)).toEqual(data);
    expect(setup.format).toBe('elf');
    expect(setup.entry).toBe(0x100010);
  });

  test('registers: rip = e_entry, rdi = cmdline, rsi = RAM size, long-mode stack', () => {
    const memory = makeRam(RAM);
    const setup = loadElfGuest(memory, buildElf({ entry: 0x100004, segments: [{ paddr: 0x100000, data: pattern(16) }] }), {
      cmdline: 'console=ttyS0 quiet',
    });
    expect(setup.regs).toMatchObject({ rip: 0x100004n, rdi: 0x20000n, rsi: BigInt(RAM), rsp: 0x8ff0n, rbp: 0x8ff0n, rflags: 2n });
    expect(setup.sregs).toMatchObject({ cr0: 0x80050033n, cr3: 0x9000n, cr4: 0x20n, efer: 0x500n });
    expect(Buffer.from(memory.read(0x20000, 20)).toString('latin1')).toBe('console=ttyS0 quiet\0');
    expect(memory.readU64(0x9000)).toBe(0xa007n); // page tables written
  });

  test('without a command line rdi is 0 and nothing is written at CMDLINE_START', () => {
    const memory = makeRam(RAM);
    const setup = loadElfGuest(memory, buildElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(16) }] }));
    expect(setup.regs.rdi).toBe(0n);
    expect(memory.readU8(0x20000)).toBe(0);
  });

  test('accepts a 2047-byte command line', () => {
    const memory = makeRam(RAM);
    loadElfGuest(memory, buildElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(16) }] }), { cmdline: 'x'.repeat(2047) });
    expect(memory.readU8(0x20000 + 2046)).toBe(0x78);
    expect(memory.readU8(0x20000 + 2047)).toBe(0);
  });

  // [label, segments, entry, cmdline, message fragment]
  test.each<[string, SegmentSpec[], number, string | undefined, string]>([
    ['a segment below 1 MiB', [{ paddr: 0x8000, data: pattern(16) }], 0x8000, undefined,
      'program header 0 (physical 0x8000, 0x10 bytes) starts below 0x100000, where the boot structures live'],
    ['a segment over the boot structures', [{ paddr: 0x7000, data: pattern(16), memsz: 0x100000 }], 0x7000, undefined, 'starts below 0x100000'],
    ['a segment past the end of RAM', [{ paddr: RAM - 0x10, data: pattern(32) }], RAM - 0x10, undefined,
      `program header 0 (physical 0x7ffff0, 0x20 bytes) is outside guest RAM`],
    ['a .bss past the end of RAM', [{ paddr: 0x100000, data: pattern(16), memsz: RAM }], 0x100000, undefined, 'is outside guest RAM'],
    ['a segment in the MMIO hole', [{ paddr: 0xd000_0000, data: pattern(16) }], 0xd000_0000, undefined, 'is outside guest RAM'],
    ['a segment near 2^64', [{ paddr: 0xffff_ffff_ffff_f000n, data: pattern(16) }], 0x100000, undefined, 'is outside guest RAM'],
    ['overlapping segments', [{ paddr: 0x100000, data: pattern(16), memsz: 0x2000 }, { paddr: 0x101000, data: pattern(16) }], 0x100000, undefined,
      'program headers 0 (0x100000-0x101fff) and 1 (0x101000-0x10100f) overlap'],
    ['overlap given in reverse order', [{ paddr: 0x101000, data: pattern(16) }, { paddr: 0x100000, data: pattern(16), memsz: 0x2000 }], 0x100000, undefined,
      'program headers 1 (0x100000-0x101fff) and 0 (0x101000-0x10100f) overlap'],
    ['no loadable segment', [{ paddr: 0x100000, memsz: 0 }], 0x100000, undefined, 'it has no loadable (PT_LOAD) segments'],
    ['an entry outside every segment', [{ paddr: 0x100000, data: pattern(16) }], 0x100010, undefined,
      'its entry point 0x100010 is not inside any loadable segment'],
    ['a 2048-byte command line', [{ paddr: 0x100000, data: pattern(16) }], 0x100000, 'x'.repeat(2048),
      'the kernel command line is 2048 bytes long; the limit is 2047 bytes (Linux COMMAND_LINE_SIZE 2048 including the terminating NUL)'],
    ['a command line that is too long in UTF-8', [{ paddr: 0x100000, data: pattern(16) }], 0x100000, 'é'.repeat(1024), 'is 2048 bytes long'],
    ['a NUL in the command line', [{ paddr: 0x100000, data: pattern(16) }], 0x100000, 'a\0b', 'contains a NUL character'],
  ])('refuses %s, leaving RAM untouched', (_label, segments, entry, cmdline, fragment) => {
    const error = loadError(segments, entry, cmdline);
    expect(error.message).toContain(`failed to load kernel ${SRC}: `);
    expect(error.message).toContain(fragment);
  });

  test('refuses an initrd', () => {
    expect(() =>
      loadElfGuest(makeRam(RAM), buildElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(16) }] }), { initrd: pattern(16), sourceName: SRC }),
    ).toThrow(`failed to load kernel ${SRC}: an initrd can only be passed to a Linux kernel`);
  });

  test('refuses a segment in RAM above 4 GiB, which the boot page tables do not map', () => {
    const memory = new GuestMemory([
      { guestAddress: 0, size: 2 * MiB, buffer: new ArrayBuffer(2 * MiB) },
      { guestAddress: 0x1_0000_0000, size: MiB, buffer: new ArrayBuffer(MiB) },
    ]);
    const image = buildElf({ entry: 0x1_0000_0000, segments: [{ paddr: 0x1_0000_0000, data: pattern(16) }] });
    expect(() => loadElfGuest(memory, image, { sourceName: SRC })).toThrow(
      `failed to load kernel ${SRC}: program header 0 (physical 0x100000000, 0x10 bytes) ends above 0x100000000, beyond what the boot page tables map`,
    );
  });

  test('refuses guest RAM that does not cover the first MiB', () => {
    const memory = new GuestMemory([{ guestAddress: 0x100000, size: 4 * MiB, buffer: new ArrayBuffer(4 * MiB) }]);
    expect(() => loadElfGuest(memory, buildElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(16) }] }), { sourceName: SRC })).toThrow(
      `failed to load kernel ${SRC}: guest RAM must start at address 0 and cover the first 1 MiB, where the boot structures go`,
    );
  });
});
