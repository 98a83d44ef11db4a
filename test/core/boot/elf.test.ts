import { parseElf, readNotes } from '../../../core/boot/elf';
import { KernelLoadError } from '../../../core/errors';
import { buildElf, encodeNotes, pattern } from './fixtures';

const SRC = '/images/guest.elf';

function parseError(image: Uint8Array): KernelLoadError {
  try {
    parseElf(image, SRC);
  } catch (e) {
    expect(e).toBeInstanceOf(KernelLoadError);
    expect((e as KernelLoadError).code).toBe('ERR_KERNEL_LOAD');
    return e as KernelLoadError;
  }
  throw new Error('parseElf accepted the image');
}

const good = () => buildElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(0x100), memsz: 0x200 }] });

/** Set a little-endian field in a copy of `image`. */
function patch(image: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, value: number | bigint): Uint8Array {
  const copy = image.slice();
  const view = new DataView(copy.buffer);
  if (width === 1) view.setUint8(offset, Number(value));
  if (width === 2) view.setUint16(offset, Number(value), true);
  if (width === 4) view.setUint32(offset, Number(value), true);
  if (width === 8) view.setBigUint64(offset, BigInt(value), true);
  return copy;
}

describe('parseElf', () => {
  test('reads the entry point and program headers', () => {
    const elf = parseElf(
      buildElf({ entry: 0x100040, segments: [{ paddr: 0x100000, vaddr: 0xffffffff81000000n, data: pattern(0x100), memsz: 0x200 }] }),
      SRC,
    );
    expect(elf.entry).toBe(0x100040n);
    expect(elf.programHeaders).toEqual([
      expect.objectContaining({
        index: 0, type: 1, fileSize: 0x100, physicalAddress: 0x100000n, virtualAddress: 0xffffffff81000000n, memorySize: 0x200n,
      }),
    ]);
  });

  // [label, image, message fragment]
  test.each([
    ['4 bytes of magic only', () => Uint8Array.of(0x7f, 0x45, 0x4c, 0x46), 'its ELF header is truncated: 4 of 64 bytes'],
    ['63-byte header', () => good().slice(0, 63), 'its ELF header is truncated: 63 of 64 bytes'],
    ['32-bit ELF', () => patch(good(), 4, 1, 1), 'it is not a 64-bit ELF file'],
    ['big-endian ELF', () => patch(good(), 5, 1, 2), 'it is not a little-endian ELF file'],
    ['ELF version 0', () => patch(good(), 6, 1, 0), 'unsupported ELF version 0'],
    ['shared object', () => patch(good(), 0x10, 2, 3), 'it is not an ELF executable (e_type 3'],
    ['AArch64', () => patch(good(), 0x12, 2, 183), 'built for ELF machine 183, not x86-64'],
    ['no program headers', () => patch(good(), 0x38, 2, 0), 'it has no program headers'],
    ['PN_XNUM', () => patch(good(), 0x38, 2, 0xffff), 'PN_XNUM'],
    ['32-bit program header size', () => patch(good(), 0x36, 2, 32), 'its program header size is 32, not 56'],
    ['header table past the end', () => patch(good(), 0x20, 8, 0x1000n), 'its program header table (1 entries at offset 0x1000) extends past the end of the file'],
    ['header table offset near 2^64', () => patch(good(), 0x20, 8, 0xffff_ffff_ffff_fff0n), 'extends past the end of the file'],
    ['segment data past the end', () => patch(good(), 64 + 0x20, 8, 0x10000n), 'program header 0 extends past the end of the file'],
    ['segment offset near 2^64', () => patch(good(), 64 + 0x08, 8, 0xffff_ffff_ffff_ff00n), 'program header 0 extends past the end of the file'],
    ['file size larger than memory size', () => patch(good(), 64 + 0x28, 8, 0x10n), 'program header 0 has a file size (0x100) larger than its memory size (0x10)'],
  ])('refuses %s', (_label, image, fragment) => {
    const error = parseError(image());
    expect(error.message).toContain(`failed to load kernel ${SRC}: `);
    expect(error.message).toContain(fragment);
  });

  test('names the offending program header by index', () => {
    const image = buildElf({
      entry: 0x100000,
      segments: [
        { paddr: 0x100000, data: pattern(16) },
        { paddr: 0x200000, data: pattern(16) },
        { paddr: 0x300000, data: pattern(16), offset: 0x10_0000 },
      ],
    });
    expect(parseError(image).message).toBe(`failed to load kernel ${SRC}: program header 2 extends past the end of the file`);
  });

  test('ignores the contents of PT_NULL entries', () => {
    const image = buildElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(16) }, { type: 0, paddr: 0, offset: 0xffffffffn, filesz: 0xffffn }] });
    expect(parseElf(image, SRC).programHeaders).toHaveLength(2);
  });
});

describe('readNotes', () => {
  test('reads names, types and descriptors of 4-byte aligned notes', () => {
    const image = buildElf({
      entry: 0x100000,
      segments: [{ paddr: 0x100000, data: pattern(16) }],
      notes: [
        { name: 'GNU', type: 3, desc: pattern(20) },
        { name: 'Xen', type: 18, desc: Uint8Array.of(0, 0, 0, 1) },
        { name: 'Linux', type: 0x100, desc: pattern(5) },
      ],
    });
    const notes = readNotes(image, parseElf(image, SRC), SRC);
    expect(notes.map((n) => [n.name, n.type, [...n.desc]])).toEqual([
      ['GNU', 3, [...pattern(20)]],
      ['Xen', 18, [0, 0, 0, 1]],
      ['Linux', 0x100, [...pattern(5)]],
    ]);
  });

  const twoNotes = () => encodeNotes([{ name: 'Linux', type: 1, desc: pattern(4) }, { name: 'Xen', type: 2, desc: pattern(4) }]);
  const withU32 = (bytes: Uint8Array, offset: number, value: number) => {
    new DataView(bytes.buffer).setUint32(offset, value, true);
    return bytes;
  };
  // [label, note segment bytes, note index in the message]
  test.each([
    ['a descriptor longer than the segment', () => withU32(twoNotes(), 4, 0x1000), 0],
    ['a name longer than the segment', () => withU32(twoNotes(), 0, 0xffff_fff0), 0],
    ['a second header cut short', () => twoNotes().slice(0, 20 + 8), 1],
  ])('refuses %s', (_label, noteBytes, noteIndex) => {
    const image = buildElf({ entry: 0x100000, segments: [{ paddr: 0x100000, data: pattern(16) }, { type: 4, paddr: 0, data: noteBytes(), align: 4 }] });
    const elf = parseElf(image, SRC);
    expect(() => readNotes(image, elf, SRC)).toThrow(KernelLoadError);
    expect(() => readNotes(image, elf, SRC)).toThrow(
      `failed to load kernel ${SRC}: note ${noteIndex} in program header 1 extends past the end of its segment`,
    );
  });
});
