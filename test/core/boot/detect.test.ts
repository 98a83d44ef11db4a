import { detectKernel, loadKernel } from '../../../core/boot';
import { KernelLoadError } from '../../../core/errors';
import { buildBzImage, buildElf, makeRam, MiB, pattern, type NoteSpec } from './fixtures';

const SRC = '/var/lib/vmm/kernel';

function elfWith(notes?: NoteSpec[]): Uint8Array {
  return buildElf({ entry: 0x100_0000, segments: [{ paddr: 0x100_0000, data: pattern(0x100) }], notes });
}

describe('loadKernel format detection', () => {
  test.each<[string, () => Uint8Array, string]>([
    ['a bzImage', () => buildBzImage(), 'bzimage'],
    ['an ELF with a "Linux" note', () => elfWith([{ name: 'GNU', type: 3, desc: pattern(20) }, { name: 'Linux', type: 6, desc: pattern(4) }]), 'vmlinux'],
    ['an ELF with a "Xen" note (PVH)', () => elfWith([{ name: 'Xen', type: 18, desc: Uint8Array.of(0, 0, 0, 1) }]), 'vmlinux'],
    ['an ELF with only a "GNU" note', () => elfWith([{ name: 'GNU', type: 3, desc: pattern(20) }]), 'elf'],
    ['an ELF with a note named "Linuxish"', () => elfWith([{ name: 'Linuxish', type: 1, desc: pattern(4) }]), 'elf'],
    ['an ELF without notes', () => elfWith(), 'elf'],
  ])('%s loads as %s', (_label, image, format) => {
    const memory = makeRam(64 * MiB);
    const setup = loadKernel(memory, image(), { cmdline: 'console=ttyS0', sourceName: SRC });
    expect(setup.format).toBe(format);
    // Linux formats get a zero page in %rsi; plain guests get the command line in %rdi.
    if (format === 'elf') {
      expect(setup.regs.rdi).toBe(0x20000n);
      expect(setup.regs.rsi).toBe(BigInt(64 * MiB));
      expect(memory.readU32(0x7000 + 0x202)).toBe(0);
    } else {
      expect(setup.regs.rsi).toBe(0x7000n);
      expect(memory.readU32(0x7000 + 0x202)).toBe(0x53726448);
    }
  });

  test.each<[string, () => Uint8Array, string]>([
    ['an empty file', () => new Uint8Array(0), 'it is not an ELF executable or a Linux bzImage (the file is empty)'],
    ['a PE file', () => Uint8Array.from([0x4d, 0x5a, ...pattern(4000)]), 'it is not an ELF executable or a Linux bzImage'],
    ['a bzImage cut before its header', () => buildBzImage().slice(0, 0x200), 'it is not an ELF executable or a Linux bzImage'],
    ['"HdrS" without the 0xaa55 boot flag', () => { const b = buildBzImage(); b[0x1fe] = 0; return b; }, 'it is not an ELF executable or a Linux bzImage'],
    ['an ELF cut to 10 bytes', () => elfWith().slice(0, 10), 'it is not an ELF executable or a Linux bzImage (its ELF header is truncated: 10 of 64 bytes)'],
    ['an ELF cut inside its program headers', () => elfWith().slice(0, 80), 'its program header table (1 entries at offset 0x40) extends past the end of the file'],
  ])('refuses %s', (_label, image, fragment) => {
    expect(() => loadKernel(makeRam(64 * MiB), image(), { sourceName: SRC })).toThrow(KernelLoadError);
    expect(() => loadKernel(makeRam(64 * MiB), image(), { sourceName: SRC })).toThrow(`failed to load kernel ${SRC}: ${fragment}`);
  });

  test('an initrd with a plain ELF guest is refused', () => {
    expect(() => loadKernel(makeRam(64 * MiB), elfWith(), { initrd: pattern(16), sourceName: SRC })).toThrow(
      `failed to load kernel ${SRC}: an initrd can only be passed to a Linux kernel`,
    );
  });

  test('an initrd with a vmlinux is accepted', () => {
    const memory = makeRam(64 * MiB);
    loadKernel(memory, elfWith([{ name: 'Linux', type: 6, desc: pattern(4) }]), { initrd: pattern(16), sourceName: SRC });
    expect(memory.readU32(0x7000 + 0x21c)).toBe(16);
  });

  test('errors name a default source when none is given', () => {
    expect(() => loadKernel(makeRam(64 * MiB), new Uint8Array(0))).toThrow('failed to load kernel kernel image: ');
  });

  test('detectKernel returns the parsed ELF', () => {
    const detected = detectKernel(elfWith(), SRC);
    expect(detected.format).toBe('elf');
    expect(detected.format !== 'bzimage' && detected.elf.entry).toBe(0x100_0000n);
  });
});
