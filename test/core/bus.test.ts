import { Bus } from '../../core/bus/bus';
import { BusOverlapError, BusRangeError } from '../../core/errors';

interface Dev {
  name: string;
}
const dev = (name: string): Dev => ({ name });

function busWithSerial(kind: 'pio' | 'mmio' = 'pio'): Bus<Dev> {
  const bus = new Bus<Dev>(kind);
  bus.insert(0x3f8, 8, dev('serial'));
  return bus;
}

function insertError(bus: Bus<Dev>, base: number, length: number, name = 'b'): unknown {
  try {
    bus.insert(base, length, dev(name));
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('Bus.insert against serial at 0x3f8-0x3ff', () => {
  // [label, base, length, expected: 'ok' | error class, message for overlaps]
  test.each([
    ['zero length', 0x400, 0, BusRangeError],
    ['exact overlap', 0x3f8, 8, BusOverlapError],
    ['left overlap', 0x3f0, 9, BusOverlapError],
    ['right overlap', 0x3ff, 2, BusOverlapError],
    ['contained', 0x3fa, 2, BusOverlapError],
    ['containing', 0x3f0, 0x20, BusOverlapError],
    ['same base, shorter', 0x3f8, 1, BusOverlapError],
    ['adjacent below', 0x3f0, 8, 'ok'],
    ['adjacent above', 0x400, 8, 'ok'],
    ['fractional base', 1024.5, 1, BusRangeError],
    ['fractional length', 0x400, 1.5, BusRangeError],
    ['NaN base', NaN, 1, BusRangeError],
    ['negative base', -1, 2, BusRangeError],
    ['negative length', 0x400, -1, BusRangeError],
    ['last port', 0xffff, 1, 'ok'],
    ['past the last port', 0xffff, 2, BusRangeError],
    ['base at the PIO limit', 0x10000, 1, BusRangeError],
    ['whole space', 0, 0x10001, BusRangeError],
  ])('%s (base %p, length %p)', (_label, base, length, expected) => {
    const bus = busWithSerial();
    const error = insertError(bus, base, length);
    if (expected === 'ok') {
      expect(error).toBeUndefined();
      expect(bus.size).toBe(2);
    } else {
      expect(error).toBeInstanceOf(expected);
      expect(bus.size).toBe(1);
      expect(bus.entries()).toEqual([{ base: 0x3f8, length: 8, device: dev('serial') }]);
    }
  });

  test('the overlap message names both devices and both ranges in hex', () => {
    const error = insertError(busWithSerial(), 0x3f8, 8) as BusOverlapError;
    expect(error.code).toBe('ERR_BUS_OVERLAP');
    expect(error.message).toBe("cannot add PIO device 'b' at 0x3f8-0x3ff: it overlaps 'serial' at 0x3f8-0x3ff");
    const left = insertError(busWithSerial(), 0x3f0, 9, 'rtc') as BusOverlapError;
    expect(left.message).toBe("cannot add PIO device 'rtc' at 0x3f0-0x3f8: it overlaps 'serial' at 0x3f8-0x3ff");
  });

  test('range errors name the device and range and carry ERR_BUS_RANGE', () => {
    const zero = insertError(busWithSerial(), 0x400, 0) as BusRangeError;
    expect(zero.code).toBe('ERR_BUS_RANGE');
    expect(zero.message).toBe("cannot add PIO device 'b' at 0x400 (length 0): the length must be at least 1");
    const past = insertError(busWithSerial(), 0xfff0, 0x20) as BusRangeError;
    expect(past.message).toBe("cannot add PIO device 'b' at 0xfff0-0x1000f: the range does not fit in the PIO space (0x0-0xffff)");
  });

  test('overlap is detected against the neighbour on either side', () => {
    const bus = new Bus<Dev>('pio');
    bus.insert(0x10, 0x10, dev('a'));
    bus.insert(0x30, 0x10, dev('c'));
    expect((insertError(bus, 0x1f, 2) as Error).message).toContain("overlaps 'a' at 0x10-0x1f");
    expect((insertError(bus, 0x2f, 2) as Error).message).toContain("overlaps 'c' at 0x30-0x3f");
    expect(insertError(bus, 0x20, 0x10)).toBeUndefined();
  });
});

describe('Bus MMIO space', () => {
  test.each([
    [2 ** 53 - 1, 1, 'ok'],
    [2 ** 53 - 1, 2, BusRangeError],
    [2 ** 53, 1, BusRangeError],
    [0xd000_0000, 0x1000, 'ok'],
    [2 ** 64 - 0x1000, 0x1000, BusRangeError],
  ])('base %p length %p', (base, length, expected) => {
    const error = insertError(new Bus<Dev>('mmio'), base, length);
    if (expected === 'ok') expect(error).toBeUndefined();
    else expect(error).toBeInstanceOf(expected);
  });

  test('messages say MMIO', () => {
    const bus = new Bus<Dev>('mmio');
    bus.insert(0xd000_0000, 0x1000, dev('virtio-net'));
    expect((insertError(bus, 0xd000_0800, 0x1000, 'virtio-blk') as Error).message).toBe(
      "cannot add MMIO device 'virtio-blk' at 0xd0000800-0xd00017ff: it overlaps 'virtio-net' at 0xd0000000-0xd0000fff",
    );
  });
});

describe('Bus lookup', () => {
  function sampleBus(): Bus<Dev> {
    const bus = new Bus<Dev>('pio');
    bus.insert(0x3f8, 8, dev('serial'));
    bus.insert(0x60, 1, dev('kbd'));
    bus.insert(0x70, 2, dev('rtc'));
    bus.insert(0x400, 8, dev('adjacent'));
    return bus;
  }

  test.each([
    [0x3f8, 'serial', 0],
    [0x3ff, 'serial', 7],
    [0x400, 'adjacent', 0],
    [0x407, 'adjacent', 7],
    [0x408, undefined, 0],
    [0x3f7, undefined, 0],
    [0x60, 'kbd', 0],
    [0x61, undefined, 0],
    [0x5f, undefined, 0],
    [0x71, 'rtc', 1],
    [0x72, undefined, 0],
    [0, undefined, 0],
    [0xffff, undefined, 0],
    [-1, undefined, 0],
    [NaN, undefined, 0],
  ])('address %p -> %p at offset %p', (address, name, offset) => {
    const bus = sampleBus();
    const hit = bus.find(address);
    if (name === undefined) {
      expect(hit).toBeUndefined();
      expect(bus.findIndex(address)).toBe(-1);
    } else {
      expect(hit).toEqual({ device: dev(name), base: address - offset, offset });
      const i = bus.findIndex(address);
      expect(bus.deviceAt(i).name).toBe(name);
      expect(bus.baseAt(i)).toBe(address - offset);
    }
  });

  test('the last-hit cache never returns a stale device', () => {
    const bus = sampleBus();
    expect(bus.find(0x3f9)?.device.name).toBe('serial');
    expect(bus.find(0x3f9)?.device.name).toBe('serial');
    expect(bus.remove(0x3f8)?.name).toBe('serial');
    expect(bus.find(0x3f9)).toBeUndefined();
    bus.insert(0x3f8, 2, dev('new'));
    expect(bus.find(0x3f9)?.device.name).toBe('new');
    expect(bus.find(0x3fa)).toBeUndefined();
  });

  test('remove needs the exact base', () => {
    const bus = sampleBus();
    expect(bus.remove(0x3f9)).toBeUndefined();
    expect(bus.remove(0x500)).toBeUndefined();
    expect(bus.remove(0x70)?.name).toBe('rtc');
    expect(bus.remove(0x70)).toBeUndefined();
    expect(bus.size).toBe(3);
    bus.insert(0x70, 2, dev('rtc2'));
    expect(bus.find(0x70)?.device.name).toBe('rtc2');
  });

  test('entries are sorted by base', () => {
    expect(sampleBus().entries().map((e) => [e.base, e.length, e.device.name])).toEqual([
      [0x60, 1, 'kbd'],
      [0x70, 2, 'rtc'],
      [0x3f8, 8, 'serial'],
      [0x400, 8, 'adjacent'],
    ]);
  });

  test('binary search agrees with a linear scan over many ranges', () => {
    const bus = new Bus<Dev>('mmio');
    const ranges: Array<[number, number]> = [];
    // 200 ranges of varying length with gaps, inserted in a scrambled order.
    for (let i = 0; i < 200; i++) ranges.push([0x1000_0000 + i * 0x3000, 0x1000 + (i % 3) * 0x800]);
    for (let i = 0; i < ranges.length; i++) {
      const [base, length] = ranges[(i * 7) % ranges.length];
      bus.insert(base, length, dev(`d${base.toString(16)}`));
    }
    for (let address = 0x0fff_f000; address < 0x1000_0000 + 201 * 0x3000; address += 0x3ff) {
      const owner = ranges.find(([base, length]) => address >= base && address < base + length);
      expect(bus.find(address)?.device.name).toBe(owner ? `d${owner[0].toString(16)}` : undefined);
    }
  });
});
