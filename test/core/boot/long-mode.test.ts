import { longModeRegs, longModeSregs, setupLongMode } from '../../../core/boot/long-mode';
import { allZero, makeRam, MiB } from './fixtures';

// The contract shared with the C reference VMM, spelled out literally.
const CODE = { base: 0n, limit: 0xffffffff, selector: 0x08, type: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
const DATA = { base: 0n, limit: 0xffffffff, selector: 0x10, type: 0x3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 };
const TSS = { base: 0n, limit: 0xffff, selector: 0x18, type: 0xb, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 };

describe('long-mode boot state', () => {
  test('sregs', () => {
    const sregs = longModeSregs();
    expect(sregs).toEqual({
      cs: CODE, ds: DATA, es: DATA, fs: DATA, gs: DATA, ss: DATA, tr: TSS,
      ldt: expect.objectContaining({ unusable: 1 }),
      gdt: { base: 0x500n, limit: 31 },
      idt: { base: 0x520n, limit: 0 },
      cr0: 0x80050033n, cr3: 0x9000n, cr4: 0x20n, efer: 0x500n,
    });
    // Each call returns fresh objects: callers may mutate them.
    expect(longModeSregs().ds).not.toBe(longModeSregs().ds);
    expect(sregs.ds).not.toBe(sregs.es);
  });

  test('regs', () => {
    expect(longModeRegs(0x1234, { rsi: 0x7000n })).toEqual({
      rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0x7000n, rdi: 0n, rsp: 0x8ff0n, rbp: 0x8ff0n,
      r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
      rip: 0x1234n, rflags: 0x2n,
    });
  });

  test('GDT and IDT bytes', () => {
    const memory = makeRam(2 * MiB);
    memory.write(0x520, new Uint8Array(8).fill(0xff)); // stale IDT bytes must be cleared
    setupLongMode(memory, 0x100000);
    expect([...memory.read(0x500, 32)]).toEqual([
      0, 0, 0, 0, 0, 0, 0, 0,
      0xff, 0xff, 0, 0, 0, 0x9b, 0xaf, 0x00,
      0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0x00,
      0xff, 0xff, 0, 0, 0, 0x8b, 0x8f, 0x00,
    ]);
    expect(memory.readU64(0x520)).toBe(0n);
  });

  test('page tables identity-map 4 GiB with 2 MiB pages', () => {
    const memory = makeRam(2 * MiB);
    memory.view(0x9000, 0x6000).fill(0xee); // stale entries must be cleared
    setupLongMode(memory, 0x100000);
    expect(memory.readU64(0x9000)).toBe(0xa007n);
    for (let i = 1; i < 512; i++) expect(memory.readU64(0x9000 + i * 8)).toBe(0n);
    expect([0, 1, 2, 3].map((i) => memory.readU64(0xa000 + i * 8))).toEqual([0xb007n, 0xc007n, 0xd007n, 0xe007n]);
    for (let i = 4; i < 512; i++) expect(memory.readU64(0xa000 + i * 8)).toBe(0n);
    for (let n = 0; n < 2048; n++) {
      expect(memory.readU64(0xb000 + n * 8)).toBe((BigInt(n) << 21n) | 0x87n);
    }
    expect(memory.readU64(0xb000)).toBe(0x87n);
    expect(memory.readU64(0xb008)).toBe(0x200087n);
    expect(memory.readU64(0xeff8)).toBe(0xffe00087n);
    expect(memory.readU8(0xf000)).toBe(0); // nothing written past the last PD
  });

  test('writes nothing outside the GDT, IDT and tables', () => {
    const memory = makeRam(2 * MiB);
    setupLongMode(memory, 0x100000);
    memory.view(0x500, 0x28).fill(0);
    memory.view(0x9000, 0x6000).fill(0);
    expect(allZero(memory)).toBe(true);
  });
});
