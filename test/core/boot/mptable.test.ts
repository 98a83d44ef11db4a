/** The MP table checked against MP spec 1.4 chapter 4, byte by byte where it matters. */
import { GuestMemory } from '../../../core/memory/guest-memory';
import { MPTABLE_START, mpTableSize, writeMpTable } from '../../../core/boot/mptable';

function memory(): GuestMemory {
  return new GuestMemory([{ guestAddress: 0, size: 1 << 20, buffer: new ArrayBuffer(1 << 20) }]);
}

const sum = (bytes: Uint8Array) => bytes.reduce((s, b) => (s + b) & 0xff, 0);
const ascii = (bytes: Uint8Array) => String.fromCharCode(...bytes);

test.each([1, 2, 4])('with %d CPUs: floating pointer, header, entries and checksums', (cpus) => {
  const m = memory();
  writeMpTable(m, cpus);
  // Linux scans the first KiB of the EBDA at 0x9fc00 (MP spec §4).
  expect(MPTABLE_START).toBe(0x9fc00);
  const mpf = m.read(0x9fc00, 16);
  expect(ascii(mpf.subarray(0, 4))).toBe('_MP_');
  expect(m.readU32(0x9fc04)).toBe(0x9fc10);
  expect(mpf[8]).toBe(1);
  expect(mpf[9]).toBe(4);
  expect(sum(mpf)).toBe(0);

  const length = m.readU16(0x9fc10 + 4);
  expect(length).toBe(mpTableSize(cpus) - 16);
  const table = m.read(0x9fc10, length);
  expect(ascii(table.subarray(0, 4))).toBe('PCMP');
  expect(table[6]).toBe(4);
  expect(sum(table)).toBe(0);
  expect(m.readU16(0x9fc10 + 34)).toBe(cpus + 1 + 1 + 24 + 2);
  expect(m.readU32(0x9fc10 + 36)).toBe(0xfee00000);

  let at = 44;
  for (let cpu = 0; cpu < cpus; cpu++, at += 20) {
    expect([table[at], table[at + 1], table[at + 3]]).toEqual([0, cpu, cpu === 0 ? 3 : 1]);
  }
  expect(table[at]).toBe(1);
  expect(ascii(table.subarray(at + 2, at + 8))).toBe('ISA   ');
  at += 8;
  expect([table[at], table[at + 1], table[at + 3]]).toEqual([2, cpus, 1]);
  expect(new DataView(table.buffer, table.byteOffset).getUint32(at + 4, true)).toBe(0xfec00000);
  at += 8;
  for (let irq = 0; irq < 24; irq++, at += 8) {
    expect(Array.from(table.subarray(at, at + 8))).toEqual([3, 0, 0, 0, 0, irq, cpus, irq]);
  }
  expect(Array.from(table.subarray(at, at + 8))).toEqual([4, 3, 0, 0, 0, 0, 0, 0]);
  expect(Array.from(table.subarray(at + 8, at + 16))).toEqual([4, 1, 0, 0, 0, 0, 0xff, 1]);
});
