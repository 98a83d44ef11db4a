import { ConfigError, GuestMemoryError } from '../../core/errors';
import { GuestMemory, type MemoryRegion } from '../../core/memory/guest-memory';

const GiB4 = 0x1_0000_0000;

/**
 * Four regions, given out of order: low RAM, a gap, two adjacent regions (separate
 * buffers), and one above 4 GiB. Every byte starts as 0xa5 so writes are visible.
 */
function makeMemory(): GuestMemory {
  const region = (guestAddress: number, size: number): MemoryRegion => {
    const buffer = new ArrayBuffer(size);
    new Uint8Array(buffer).fill(0xa5);
    return { guestAddress, size, buffer };
  };
  return new GuestMemory([region(0x2_0000, 0x1_0000), region(GiB4, 0x1000), region(0, 0x1_0000), region(0x3_0000, 0x1000)]);
}

/** Copy of every region's bytes, as one Buffer (compared with Buffer.equals: fast). */
function snapshot(memory: GuestMemory): Buffer {
  return Buffer.concat(memory.regions.map((r) => new Uint8Array(r.buffer, 0, r.size)));
}

function expectUnchanged(memory: GuestMemory, before: Buffer): void {
  expect(snapshot(memory).equals(before)).toBe(true);
}

describe('GuestMemory layout', () => {
  test('sorts regions and sums their sizes', () => {
    const memory = makeMemory();
    expect(memory.regions.map((r) => r.guestAddress)).toEqual([0, 0x2_0000, 0x3_0000, GiB4]);
    expect(memory.size).toBe(0x1_0000 + 0x1_0000 + 0x1000 + 0x1000);
    expect(Object.isFrozen(memory.regions)).toBe(true);
  });

  test.each([
    ['no regions', []],
    ['overlapping regions', [{ guestAddress: 0, size: 0x2000 }, { guestAddress: 0x1000, size: 0x1000 }]],
    ['a zero-size region', [{ guestAddress: 0, size: 0 }]],
    ['a negative address', [{ guestAddress: -0x1000, size: 0x1000 }]],
    ['a fractional size', [{ guestAddress: 0, size: 10.5 }]],
    ['a region ending beyond 2^53', [{ guestAddress: 2 ** 53 - 0x1000, size: 0x2000 }]],
  ])('refuses %s', (_label, specs) => {
    const regions = specs.map((s) => ({ ...s, buffer: new ArrayBuffer(0x2000) }));
    expect(() => new GuestMemory(regions)).toThrow(GuestMemoryError);
  });

  test('refuses a buffer smaller than its region', () => {
    expect(() => new GuestMemory([{ guestAddress: 0, size: 0x2000, buffer: new ArrayBuffer(0x1000) }])).toThrow(
      'failed to create guest memory: region at 0x0 (size 0x2000): the buffer is smaller than the region',
    );
  });

  test('uses only the first `size` bytes of a larger buffer', () => {
    const memory = new GuestMemory([{ guestAddress: 0, size: 0x1000, buffer: new ArrayBuffer(0x2000) }]);
    expect(memory.contains(0xfff, 1)).toBe(true);
    expect(memory.contains(0x1000, 1)).toBe(false);
  });
});

describe('GuestMemory bounds', () => {
  // [label, gpa, length, fragment of the message]
  const badRanges: Array<[string, number, number, string]> = [
    ['fractional address', 1.5, 4, 'must be integers'],
    ['fractional length', 0, 2.5, 'must be integers'],
    ['NaN address', NaN, 1, 'must be integers'],
    ['infinite address', Infinity, 1, 'must be integers'],
    ['negative address', -1, 4, 'must not be negative'],
    ['negative length', 0x100, -1, 'must not be negative'],
    ['address at 2^53', 2 ** 53, 1, 'beyond 2^53'],
    ['length beyond 2^53', 0, 2 ** 53 + 2, 'beyond 2^53'],
    ['range wrapping past 2^64', 2 ** 64 - 0x1000, 0x2000, 'wraps around'],
    ['address at 2^64', 2 ** 64, 1, 'wraps around'],
    ['empty range at 2^64 (does not wrap)', 2 ** 64, 0, 'beyond 2^53'],
    ['past the end of the first region', 0xffff, 2, 'runs past the end of the RAM region 0x0-0xffff'],
    ['in the gap after the first region', 0x1_0000, 1, 'not in guest RAM'],
    ['zero length inside the gap', 0x1_0001, 0, 'not in guest RAM'],
    ['below the high region', GiB4 - 4, 8, 'not in guest RAM'],
    ['spanning two adjacent regions', 0x2_fffe, 4, 'runs past the end of the RAM region 0x20000-0x2ffff'],
    ['one past a middle region', 0x3_1000, 1, 'not in guest RAM'],
    ['one past the last region', GiB4 + 0x1000, 1, 'not in guest RAM'],
    ['the whole last region plus one', GiB4, 0x1001, 'runs past the end'],
  ];

  const accesses: Array<[string, (m: GuestMemory, gpa: number, length: number) => unknown]> = [
    ['view', (m, gpa, length) => m.view(gpa, length)],
    ['read', (m, gpa, length) => m.read(gpa, length)],
    ['write', (m, gpa, length) => m.write(gpa, new Uint8Array(length))],
  ];
  // write() takes its length from the data, which can't be fractional, negative or huge.
  const expressible = (op: string, length: number) => op !== 'write' || (Number.isSafeInteger(length) && length >= 0 && length < 0x10000);

  describe.each(badRanges)('%s', (_label, gpa, length, why) => {
    test.each(accesses.filter(([op]) => expressible(op, length)))('%s is refused and touches nothing', (_op, access) => {
      const memory = makeMemory();
      const before = snapshot(memory);
      expect(memory.contains(gpa, length)).toBe(false);
      let error: unknown;
      try {
        access(memory, gpa, length);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(GuestMemoryError);
      expect((error as GuestMemoryError).code).toBe('ERR_GUEST_MEMORY_RANGE');
      expect((error as GuestMemoryError).message).toContain(why);
      expectUnchanged(memory, before);
    });
  });

  test('write refusal with a long buffer names the whole range', () => {
    const memory = makeMemory();
    expect(() => memory.write(0xfff0, new Uint8Array(0x20))).toThrow(
      'failed to write guest memory 0xfff0-0x1000f: the range runs past the end of the RAM region 0x0-0xffff',
    );
  });

  test('messages name the range in hex, exactly even beyond 2^53', () => {
    const memory = makeMemory();
    expect(() => memory.read(0x1_0000, 0x10)).toThrow('failed to read guest memory 0x10000-0x1000f: the range is not in guest RAM');
    expect(() => memory.view(2 ** 64 - 0x1000, 0x2000)).toThrow('failed to map guest memory 0xfffffffffffff000-0x10000000000000fff');
    expect(() => memory.read(0x1_0001, 0)).toThrow('failed to read guest memory 0x10001 (length 0)');
  });

  // Scalar accessors: [name, width, call]
  const scalars: Array<[string, number, (m: GuestMemory, gpa: number) => unknown]> = [
    ['readU8', 1, (m, a) => m.readU8(a)],
    ['readU16', 2, (m, a) => m.readU16(a)],
    ['readU32', 4, (m, a) => m.readU32(a)],
    ['readU64', 8, (m, a) => m.readU64(a)],
    ['writeU8', 1, (m, a) => m.writeU8(a, 0x11)],
    ['writeU16', 2, (m, a) => m.writeU16(a, 0x1122)],
    ['writeU32', 4, (m, a) => m.writeU32(a, 0x11223344)],
    ['writeU64', 8, (m, a) => m.writeU64(a, 0x1122334455667788n)],
  ];

  test.each(scalars)('%s: last fitting address works, one more is refused untouched', (_name, width, call) => {
    for (const end of [0x1_0000, 0x3_0000, 0x3_1000, GiB4 + 0x1000]) {
      const memory = makeMemory();
      expect(() => call(memory, end - width)).not.toThrow();
      const before = snapshot(memory);
      // One byte further runs past the region (for a byte access at 0x30000 that is the
      // start of the adjacent region, which is fine, so that case is skipped).
      if (!(width === 1 && end === 0x3_0000)) expect(() => call(memory, end - width + 1)).toThrow(GuestMemoryError);
      expect(() => call(memory, -1)).toThrow(GuestMemoryError);
      expect(() => call(memory, 0.5)).toThrow(GuestMemoryError);
      expectUnchanged(memory, before);
    }
  });

  test('zero-length ranges are allowed inside a region and at its end', () => {
    const memory = makeMemory();
    expect(memory.contains(0, 0)).toBe(true);
    expect(memory.contains(0x1_0000, 0)).toBe(true);
    expect(memory.contains(GiB4 + 0x1000, 0)).toBe(true);
    expect(memory.read(0x1_0000, 0)).toEqual(new Uint8Array(0));
    expect(memory.view(0x3_1000, 0).length).toBe(0);
  });
});

describe('GuestMemory access', () => {
  test('scalars are little-endian', () => {
    const memory = makeMemory();
    memory.writeU64(0x100, 0x0123_4567_89ab_cdefn);
    expect([...memory.read(0x100, 8)]).toEqual([0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
    expect(memory.readU32(0x100)).toBe(0x89ab_cdef);
    expect(memory.readU16(0x104)).toBe(0x4567);
    expect(memory.readU8(0x107)).toBe(0x01);
    expect(memory.readU64(0x100)).toBe(0x0123_4567_89ab_cdefn);
  });

  test.each([0n, 1n, 0x8000_0000_0000_0000n, 0xffff_ffff_ffff_ffffn, 2n ** 53n + 1n])('u64 0x%s round-trips', (value) => {
    const memory = makeMemory();
    memory.writeU64(GiB4 + 0xff8, value);
    expect(memory.readU64(GiB4 + 0xff8)).toBe(value);
  });

  test('values are stored modulo their width, so signed bitwise results store their bit pattern', () => {
    const memory = makeMemory();
    memory.writeU32(0, 0x8000_0000 | 1);
    expect(memory.readU32(0)).toBe(0x8000_0001);
    memory.writeU16(8, -1);
    expect(memory.readU16(8)).toBe(0xffff);
    memory.writeU64(16, -1n);
    expect(memory.readU64(16)).toBe(0xffff_ffff_ffff_ffffn);
  });

  test('each region is its own buffer', () => {
    const memory = makeMemory();
    memory.writeU32(0x3_0000, 0xdead_beef);
    memory.writeU32(GiB4, 0xcafe_f00d);
    const bufferOf = (gpa: number) => new DataView(memory.regions.find((r) => r.guestAddress === gpa)!.buffer);
    expect(bufferOf(0x3_0000).getUint32(0, true)).toBe(0xdead_beef);
    expect(bufferOf(GiB4).getUint32(0, true)).toBe(0xcafe_f00d);
    expect(memory.readU32(0x2_fffc)).toBe(0xa5a5_a5a5);
  });

  test('view is zero-copy, read is a copy', () => {
    const memory = makeMemory();
    const view = memory.view(0x2_0010, 4);
    view.set([1, 2, 3, 4]);
    expect(memory.readU32(0x2_0010)).toBe(0x0403_0201);
    const copy = memory.read(0x2_0010, 4);
    copy[0] = 9;
    expect(memory.readU8(0x2_0010)).toBe(1);
    memory.writeU8(0x2_0010, 7);
    expect(view[0]).toBe(7);
    expect(copy[0]).toBe(9);
  });

  test('write copies the data at the address', () => {
    const memory = makeMemory();
    memory.write(0xfffc, Uint8Array.of(1, 2, 3, 4));
    expect(memory.readU32(0xfffc)).toBe(0x0403_0201);
  });
});

describe('GuestMemory.splitRam', () => {
  test.each([
    [0x1000, [{ guestAddress: 0, size: 0x1000 }]],
    [512 * 0x10_0000, [{ guestAddress: 0, size: 0x2000_0000 }]],
    [0xd000_0000, [{ guestAddress: 0, size: 0xd000_0000 }]],
    [0xd000_1000, [{ guestAddress: 0, size: 0xd000_0000 }, { guestAddress: GiB4, size: 0x1000 }]],
    [16 * 2 ** 30, [{ guestAddress: 0, size: 0xd000_0000 }, { guestAddress: GiB4, size: 16 * 2 ** 30 - 0xd000_0000 }]],
  ])('%d bytes', (size, expected) => {
    expect(GuestMemory.splitRam(size)).toEqual(expected);
  });

  test.each([0, -0x1000, 0x1001, 1.5, NaN, 2 ** 60])('refuses %p with ERR_CONFIG', (size) => {
    let error: unknown;
    try {
      GuestMemory.splitRam(size);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('ERR_CONFIG');
  });
});
