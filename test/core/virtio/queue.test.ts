import {
  VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY,
  VMM_VIRTQ_DESCRIPTORS_PER_TURN, VMM_VIRTQ_INDIRECT_MAX,
} from '../../../core/virtio/constants';
import { DescriptorChain } from '../../../core/virtio/chain';
import { Queue, QueueError, validateQueueConfig, vringNeedEvent } from '../../../core/virtio/queue';
import { MockQueue } from '../../../core/virtio/testing/mock-queue';

const { NEXT, WRITE, INDIRECT } = { NEXT: VIRTQ_DESC_F_NEXT, WRITE: VIRTQ_DESC_F_WRITE, INDIRECT: VIRTQ_DESC_F_INDIRECT };

function hooks() {
  const h = { interrupts: 0, resets: [] as string[], live: true };
  return { h, hooks: { interrupt: () => { h.interrupts++; }, needsReset: (r: string) => { h.resets.push(r); }, live: () => h.live } };
}

function expectError(result: unknown, code: string): QueueError {
  expect(result).toBeInstanceOf(QueueError);
  expect((result as QueueError).code).toBe(code);
  return result as QueueError;
}

describe('split virtqueue: well-formed chains', () => {
  test('a readable + writable chain comes out with its buffers in order', () => {
    const m = new MockQueue(16);
    const d = m.dataStart;
    m.setDesc(3, { addr: d, len: 10, flags: NEXT, next: 7 });
    m.setDesc(7, { addr: d + 100, len: 20, flags: NEXT | WRITE, next: 1 });
    m.setDesc(1, { addr: d + 200, len: 30, flags: WRITE });
    m.addAvail(3);
    const q = m.create();
    const c = q.next() as DescriptorChain;
    expect(c).toBeInstanceOf(DescriptorChain);
    expect(c.head).toBe(3);
    expect(c.readable).toEqual([{ addr: d, len: 10 }]);
    expect(c.writable).toEqual([{ addr: d + 100, len: 20 }, { addr: d + 200, len: 30 }]);
    expect([c.readableLength, c.writableLength]).toEqual([10, 50]);
    expect(q.next()).toBeNull();
  });

  test('readBytes and writeBytes hide descriptor boundaries', () => {
    const m = new MockQueue(8);
    const d = m.dataStart;
    m.memory.write(d, Uint8Array.of(1, 2, 3));
    m.memory.write(d + 64, Uint8Array.of(4, 5));
    m.setDesc(0, { addr: d, len: 3, flags: NEXT, next: 1 });
    m.setDesc(1, { addr: d + 64, len: 2, flags: NEXT, next: 2 });
    m.setDesc(2, { addr: d + 128, len: 2, flags: NEXT | WRITE, next: 3 });
    m.setDesc(3, { addr: d + 256, len: 4, flags: WRITE });
    m.addAvail(0);
    const c = m.create().pop()!;
    expect(Array.from(c.readBytes())).toEqual([1, 2, 3, 4, 5]);
    expect(c.writeBytes(Uint8Array.of(9, 8, 7, 6, 5, 4, 3), 1)).toBe(5);
    expect(Array.from(m.memory.read(d + 128, 2))).toEqual([0, 9]);
    expect(Array.from(m.memory.read(d + 256, 4))).toEqual([8, 7, 6, 5]);
  });

  test('used ring gets exact lengths (clipped to the writable length) and the index advances', () => {
    const m = new MockQueue(4);
    const d = m.dataStart;
    m.setDesc(0, { addr: d, len: 100, flags: WRITE });
    m.setDesc(1, { addr: d + 100, len: 8 });
    m.addAvail(0);
    m.addAvail(1);
    const q = m.create();
    const a = q.pop()!;
    const b = q.pop()!;
    q.pushUsed(a, 42);
    q.pushUsed(b, 1000);
    expect(m.usedIdx()).toBe(2);
    expect(m.used(0)).toEqual({ id: 0, len: 42 });
    expect(m.used(1)).toEqual({ id: 1, len: 0 });
  });

  test('indices wrap around 2^16', async () => {
    const m = new MockQueue(4);
    m.setDesc(0, { addr: m.dataStart, len: 4, flags: WRITE });
    const q = m.create();
    for (let i = 0; i < 70000; i++) {
      m.addAvail(0);
      let c = q.pop();
      // Every VMM_VIRTQ_DESCRIPTORS_PER_TURN descriptors the queue yields the event loop once.
      if (c === null && i % VMM_VIRTQ_DESCRIPTORS_PER_TURN === 0) {
        await new Promise((r) => setImmediate(r));
        c = q.pop();
      }
      expect(c).not.toBeNull();
      q.pushUsed(c!, 4);
    }
    expect(m.usedIdx()).toBe(70000 & 0xffff);
  });

  test('an indirect table after direct descriptors', () => {
    const m = new MockQueue(8);
    const d = m.dataStart;
    const table = d + 0x1000;
    m.setDesc(0, { addr: d, len: 12, flags: NEXT, next: 5 });
    m.setDesc(5, { addr: table, len: 3 * 16, flags: INDIRECT | WRITE /* WRITE is ignored on an indirect descriptor */ });
    m.setDesc(0, { addr: d + 0x100, len: 4, flags: NEXT, next: 2 }, table);
    m.setDesc(2, { addr: d + 0x200, len: 64, flags: WRITE | NEXT, next: 1 }, table);
    m.setDesc(1, { addr: d + 0x300, len: 64, flags: WRITE }, table);
    m.addAvail(0);
    const c = m.create({ indirect: true }).next() as DescriptorChain;
    expect(c).toBeInstanceOf(DescriptorChain);
    expect(c.readable.map((b) => b.len)).toEqual([12, 4]);
    expect(c.writable.map((b) => b.len)).toEqual([64, 64]);
  });

  test('undoPop makes the same chains come out again', () => {
    const m = new MockQueue(4);
    m.setDesc(0, { addr: m.dataStart, len: 4, flags: WRITE });
    m.setDesc(1, { addr: m.dataStart + 4, len: 4, flags: WRITE });
    m.addAvail(0);
    m.addAvail(1);
    const q = m.create();
    expect(q.pop()!.head).toBe(0);
    expect(q.pop()!.head).toBe(1);
    q.undoPop(2);
    expect(q.pop()!.head).toBe(0);
    expect(q.pop()!.head).toBe(1);
    expect(q.pop()).toBeNull();
  });
});

describe('split virtqueue: hostile chains end in a typed error, never a throw or a hang', () => {
  const cases: [string, (m: MockQueue, table: number) => void, string, boolean?][] = [
    ['a descriptor loop', (m) => { m.setDesc(0, { addr: m.dataStart, len: 8, flags: NEXT, next: 1 }); m.setDesc(1, { addr: m.dataStart, len: 8, flags: NEXT, next: 0 }); }, 'ERR_QUEUE_CHAIN_LOOP'],
    ['a self loop', (m) => { m.setDesc(0, { addr: m.dataStart, len: 8, flags: NEXT, next: 0 }); }, 'ERR_QUEUE_CHAIN_LOOP'],
    ['next out of range', (m) => { m.setDesc(0, { addr: m.dataStart, len: 8, flags: NEXT, next: 16 }); }, 'ERR_QUEUE_NEXT_INDEX'],
    ['next = 0xffff', (m) => { m.setDesc(0, { addr: m.dataStart, len: 8, flags: NEXT, next: 0xffff }); }, 'ERR_QUEUE_NEXT_INDEX'],
    ['an address outside guest memory', (m) => { m.setDesc(0, { addr: 0x4000_0000, len: 8 }); }, 'ERR_QUEUE_BUFFER_RANGE'],
    ['a buffer running past the end of memory', (m) => { m.setDesc(0, { addr: (1 << 20) - 4, len: 8 }); }, 'ERR_QUEUE_BUFFER_RANGE'],
    ['an address that wraps the 64-bit space', (m) => { m.setDesc(0, { addr: 0xffff_ffff_ffff_fff0n, len: 0x20 }); }, 'ERR_QUEUE_BUFFER_RANGE'],
    ['an address above 2^53', (m) => { m.setDesc(0, { addr: 1n << 60n, len: 1 }); }, 'ERR_QUEUE_BUFFER_RANGE'],
    ['a zero-length buffer', (m) => { m.setDesc(0, { addr: m.dataStart, len: 0 }); }, 'ERR_QUEUE_ZERO_LENGTH'],
    ['an oversized buffer (4 GiB - 1)', (m) => { m.setDesc(0, { addr: m.dataStart, len: 0xffff_ffff, flags: WRITE }); }, 'ERR_QUEUE_BUFFER_RANGE'],
    ['a readable after a writable', (m) => { m.setDesc(0, { addr: m.dataStart, len: 8, flags: WRITE | NEXT, next: 1 }); m.setDesc(1, { addr: m.dataStart, len: 8 }); }, 'ERR_QUEUE_DESC_ORDER'],
    ['indirect without the feature', (m, t) => { m.setDesc(0, { addr: t, len: 16, flags: INDIRECT }); m.setDesc(0, { addr: m.dataStart, len: 8 }, t); }, 'ERR_QUEUE_INDIRECT', false],
    ['a nested indirect table', (m, t) => { m.setDesc(0, { addr: t, len: 32, flags: INDIRECT }); m.setDesc(0, { addr: t + 0x100, len: 16, flags: INDIRECT }, t); }, 'ERR_QUEUE_INDIRECT'],
    ['a misaligned indirect table', (m, t) => { m.setDesc(0, { addr: t + 8, len: 16, flags: INDIRECT }); }, 'ERR_QUEUE_INDIRECT'],
    ['an indirect table length not a multiple of 16', (m, t) => { m.setDesc(0, { addr: t, len: 24, flags: INDIRECT }); }, 'ERR_QUEUE_INDIRECT'],
    ['an empty indirect table', (m, t) => { m.setDesc(0, { addr: t, len: 0, flags: INDIRECT }); }, 'ERR_QUEUE_INDIRECT'],
    ['an indirect table larger than 2^16 entries', (m, t) => { m.setDesc(0, { addr: t, len: 16 * 0x10001, flags: INDIRECT }); }, 'ERR_QUEUE_INDIRECT'],
    ['an indirect table of 1025 entries (the cap + 1)', (m, t) => { m.setDesc(0, { addr: t, len: 16 * (VMM_VIRTQ_INDIRECT_MAX + 1), flags: INDIRECT }); }, 'ERR_QUEUE_INDIRECT'],
    ['an indirect table outside memory', (m) => { m.setDesc(0, { addr: 0x7fff_0000, len: 64, flags: INDIRECT }); }, 'ERR_QUEUE_BUFFER_RANGE'],
    ['INDIRECT together with NEXT', (m, t) => { m.setDesc(0, { addr: t, len: 16, flags: INDIRECT | NEXT, next: 1 }); m.setDesc(0, { addr: m.dataStart, len: 8 }, t); }, 'ERR_QUEUE_INDIRECT'],
    ['a loop inside an indirect table', (m, t) => { m.setDesc(0, { addr: t, len: 32, flags: INDIRECT }); m.setDesc(0, { addr: m.dataStart, len: 8, flags: NEXT, next: 1 }, t); m.setDesc(1, { addr: m.dataStart, len: 8, flags: NEXT, next: 0 }, t); }, 'ERR_QUEUE_CHAIN_LOOP'],
    ['next out of an indirect table', (m, t) => { m.setDesc(0, { addr: t, len: 32, flags: INDIRECT }); m.setDesc(0, { addr: m.dataStart, len: 8, flags: NEXT, next: 2 }, t); }, 'ERR_QUEUE_NEXT_INDEX'],
    ['a 4 GiB buffer inside an indirect table', (m, t) => { m.setDesc(0, { addr: t, len: 16, flags: INDIRECT }); m.setDesc(0, { addr: 0, len: 0xffff_ffff }, t); }, 'ERR_QUEUE_BUFFER_RANGE'],
  ];

  test.each(cases)('%s', (_name, build, code, indirect = true) => {
    const m = new MockQueue(16);
    const table = m.dataStart + 0x4000;
    build(m, table);
    m.addAvail(0);
    const { h, hooks: hk } = hooks();
    const q = m.create({ indirect }, hk);
    const e = expectError(q.next(), code);
    expect(e.head).toBe(0);
    // pop() gives the bad chain back with length 0 and goes on; the queue keeps working.
    m.addAvail(0);
    expect(q.pop()).toBeNull();
    expect(m.usedIdx()).toBe(1);
    expect(m.used(0)).toEqual({ id: 0, len: 0 });
    expect(q.broken).toBe(false);
    expect(h.resets).toEqual([]);
    m.setDesc(0, { addr: m.dataStart, len: 8, flags: WRITE });
    m.addAvail(0);
    expect(q.pop()?.head).toBe(0);
  });

  test('more than 2^32 - 1 bytes in one direction', () => {
    const size = 64 * 1024 * 1024; // 64 MiB of RAM; 128 descriptors of 48 MiB each over it
    const m = new MockQueue(128, size);
    for (let i = 0; i < 127; i++) m.setDesc(i, { addr: m.dataStart, len: 48 * 1024 * 1024, flags: WRITE | NEXT, next: i + 1 });
    m.setDesc(127, { addr: m.dataStart, len: 48 * 1024 * 1024, flags: WRITE });
    m.addAvail(0);
    expectError(m.create().next(), 'ERR_QUEUE_CHAIN_TOO_LONG');
  });

  test('a chain using every descriptor is fine; the ttl stops one that revisits', () => {
    const m = new MockQueue(8);
    for (let i = 0; i < 7; i++) m.setDesc(i, { addr: m.dataStart, len: 1, flags: NEXT, next: i + 1 });
    m.setDesc(7, { addr: m.dataStart, len: 1 });
    m.addAvail(0);
    const q = m.create();
    expect((q.next() as DescriptorChain).readable.length).toBe(8);
    m.setDesc(7, { addr: m.dataStart, len: 1, flags: NEXT, next: 3 });
    m.addAvail(0);
    expectError(q.next(), 'ERR_QUEUE_CHAIN_LOOP');
  });

  test('a head index out of range breaks the queue and asks for a reset', () => {
    const m = new MockQueue(16);
    m.addAvail(16);
    const { h, hooks: hk } = hooks();
    const q = m.create({}, hk);
    expect(q.pop()).toBeNull();
    expect(q.broken).toBe(true);
    expect(h.resets.length).toBe(1);
    expect(m.usedIdx()).toBe(0);
  });

  test('an avail idx more than a queue size ahead breaks the queue', () => {
    const m = new MockQueue(16);
    m.setAvailIdx(17);
    const { h, hooks: hk } = hooks();
    const q = m.create({}, hk);
    expectError(q.next(), 'ERR_QUEUE_AVAIL_INDEX');
    expect(q.pop()).toBeNull();
    expect(q.broken).toBe(true);
    expect(h.resets[0]).toMatch(/avail idx/);
  });

  test('a queue whose device was reset does nothing', () => {
    const m = new MockQueue(4);
    m.setDesc(0, { addr: m.dataStart, len: 4, flags: WRITE });
    m.addAvail(0);
    const { h, hooks: hk } = hooks();
    const q = m.create({}, hk);
    const c = q.pop()!;
    h.live = false;
    q.pushUsed(c, 4);
    q.notify();
    expect(q.pop()).toBeNull();
    expect(m.usedIdx()).toBe(0);
    expect(h.interrupts).toBe(0);
  });

  test('many bad chains in a row are all skipped in one pop', () => {
    const m = new MockQueue(16);
    for (let i = 0; i < 16; i++) { m.setDesc(i, { addr: m.dataStart, len: 8, flags: NEXT, next: i }); m.addAvail(i); }
    const q = m.create();
    expect(q.pop()).toBeNull();
    expect(m.usedIdx()).toBe(16);
  });
});

describe('split virtqueue: a hostile driver cannot exhaust the host or corrupt the used ring', () => {
  test('an indirect table of exactly the cap is walked', () => {
    const m = new MockQueue(16, 4 << 20);
    const t = m.dataStart + 0x10000;
    m.setDesc(0, { addr: t, len: 16 * VMM_VIRTQ_INDIRECT_MAX, flags: INDIRECT });
    for (let i = 0; i < VMM_VIRTQ_INDIRECT_MAX - 1; i++) m.setDesc(i, { addr: m.dataStart, len: 1, flags: NEXT, next: i + 1 }, t);
    m.setDesc(VMM_VIRTQ_INDIRECT_MAX - 1, { addr: m.dataStart, len: 1 }, t);
    m.addAvail(0);
    expect((m.create({ indirect: true }).next() as DescriptorChain).readable.length).toBe(VMM_VIRTQ_INDIRECT_MAX);
  });

  test('chains sharing the largest indirect table: pop yields after the per-turn budget and the device is notified again', async () => {
    const m = new MockQueue(256, 4 << 20);
    const t = m.dataStart + 0x10000;
    for (let i = 0; i < VMM_VIRTQ_INDIRECT_MAX - 1; i++) m.setDesc(i, { addr: m.dataStart, len: 1, flags: NEXT, next: i + 1 }, t);
    m.setDesc(VMM_VIRTQ_INDIRECT_MAX - 1, { addr: m.dataStart, len: 1 }, t);
    for (let i = 0; i < 256; i++) { m.setDesc(i, { addr: t, len: 16 * VMM_VIRTQ_INDIRECT_MAX, flags: INDIRECT }); m.addAvail(i); }
    let resumes = 0;
    const { hooks: hk } = hooks();
    const q = m.create({ indirect: true, eventIdx: true }, { ...hk, resume: () => { resumes++; } });
    const perTurn = Math.ceil(VMM_VIRTQ_DESCRIPTORS_PER_TURN / (VMM_VIRTQ_INDIRECT_MAX + 1));
    let popped = 0;
    while (q.pop()) popped++;
    expect(popped).toBe(perTurn);
    // Nothing more this turn, and no busy loop: enableNotification says "wait".
    expect(q.enableNotification()).toBe(false);
    expect(q.pop()).toBeNull();
    expect(resumes).toBe(0);
    await new Promise((r) => setImmediate(r));
    expect(resumes).toBe(1);
    while (q.pop()) popped++;
    expect(popped).toBe(2 * perTurn);
  });

  test('undoPop does not rewind onto a malformed chain that pop skipped: every head is completed once', () => {
    const m = new MockQueue(8);
    m.setDesc(0, { addr: m.dataStart, len: 64, flags: WRITE });
    m.setDesc(1, { addr: m.dataStart, len: 0, flags: WRITE }); // malformed: zero length
    m.setDesc(2, { addr: m.dataStart + 64, len: 64, flags: WRITE });
    [0, 1, 2].forEach((h) => m.addAvail(h));
    const q = m.create();
    expect(q.pop()!.head).toBe(0);
    expect(q.pop()!.head).toBe(2); // 1 was skipped and completed with length 0
    q.undoPop(2);
    const again = [q.pop()!, q.pop()!];
    expect(again.map((c) => c.head)).toEqual([0, 2]);
    expect(q.pop()).toBeNull();
    q.pushUsedBatch(again.map((chain) => ({ chain, written: 8 })));
    expect(m.usedIdx()).toBe(3);
    expect([0, 1, 2].map((i) => m.used(i).id).sort()).toEqual([0, 1, 2]);
  });

  test('undoPop takes the most recent chains, also after a partial re-pop', () => {
    const m = new MockQueue(8);
    for (let i = 0; i < 3; i++) { m.setDesc(i, { addr: m.dataStart + 8 * i, len: 8, flags: WRITE }); m.addAvail(i); }
    const q = m.create();
    q.pop(); q.pop();
    q.undoPop(1);
    q.undoPop(1);
    expect([q.pop()!.head, q.pop()!.head, q.pop()!.head]).toEqual([0, 1, 2]);
  });

  test('a chain completed twice is published once', () => {
    const m = new MockQueue(4);
    m.setDesc(0, { addr: m.dataStart, len: 8, flags: WRITE });
    m.addAvail(0);
    const q = m.create();
    const c = q.pop()!;
    q.pushUsed(c, 8);
    q.pushUsed(c, 8);
    expect(m.usedIdx()).toBe(1);
  });

  test('a head made available again while the device holds it breaks the queue', () => {
    const m = new MockQueue(4);
    m.setDesc(0, { addr: m.dataStart, len: 8, flags: WRITE });
    m.addAvail(0);
    m.addAvail(0);
    const { h, hooks: hk } = hooks();
    const q = m.create({}, hk);
    expect(q.pop()!.head).toBe(0);
    expect(q.pop()).toBeNull();
    expect(q.broken).toBe(true);
    expect(h.resets[0]).toMatch(/head 0 was made available again/);
    expect(m.usedIdx()).toBe(0);
  });

  test('stashed chains do not count as new buffers for enableNotification', () => {
    const m = new MockQueue(4);
    m.setDesc(0, { addr: m.dataStart, len: 8, flags: WRITE });
    m.setDesc(1, { addr: m.dataStart + 8, len: 8, flags: WRITE });
    m.addAvail(0);
    const q = m.create({ eventIdx: true });
    q.pop();
    q.undoPop(1);
    expect(q.enableNotification()).toBe(false);
    expect(m.availEvent()).toBe(1);
    m.addAvail(1);
    expect(q.enableNotification()).toBe(true);
    expect([q.pop()!.head, q.pop()!.head]).toEqual([0, 1]);
  });
});

describe('queue configuration checks (virtio 1.2 §2.7)', () => {
  const m = new MockQueue(16);
  const ok = m.config;
  test.each([
    ['a good configuration', ok, null],
    ['size not a power of 2', { ...ok, size: 12 }, /power of 2/],
    ['size 0', { ...ok, size: 0 }, /power of 2/],
    ['size above the maximum', { ...ok, size: 32 }, /maximum/],
    ['misaligned descriptor table', { ...ok, descTable: ok.descTable + 8 }, /16-byte/],
    ['misaligned available ring', { ...ok, availRing: ok.availRing + 1 }, /2-byte/],
    ['misaligned used ring', { ...ok, usedRing: ok.usedRing + 2 }, /4-byte/],
    ['descriptor table outside memory', { ...ok, descTable: 0x4000_0000 }, /not in guest RAM/],
    ['used ring running off the end', { ...ok, usedRing: (1 << 20) - 8 }, /not in guest RAM/],
  ] as [string, typeof ok, RegExp | null][])('%s', (_n, config, expected) => {
    const why = validateQueueConfig(m.memory, config, 16);
    if (expected === null) expect(why).toBeNull();
    else expect(why).toMatch(expected);
  });
});

describe('notification suppression', () => {
  test('vring_need_event', () => {
    expect(vringNeedEvent(0, 1, 0)).toBe(true);
    expect(vringNeedEvent(5, 3, 2)).toBe(false);
    expect(vringNeedEvent(5, 6, 5)).toBe(true);
    expect(vringNeedEvent(5, 10, 6)).toBe(false);
    expect(vringNeedEvent(0xffff, 1, 0xfffe)).toBe(true);
  });

  test('without EVENT_IDX, NO_INTERRUPT suppresses interrupts', () => {
    const m = new MockQueue(4);
    m.setDesc(0, { addr: m.dataStart, len: 4, flags: WRITE });
    const { h, hooks: hk } = hooks();
    const q = m.create({}, hk);
    m.addAvail(0);
    q.pushUsed(q.pop()!, 1);
    q.notify();
    expect(h.interrupts).toBe(1);
    m.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    m.addAvail(0);
    q.pushUsed(q.pop()!, 1);
    q.notify();
    expect(h.interrupts).toBe(1);
  });

  test('with EVENT_IDX, the driver gets an interrupt only when used idx passes used_event', () => {
    const m = new MockQueue(8);
    m.setDesc(0, { addr: m.dataStart, len: 4, flags: WRITE });
    const { h, hooks: hk } = hooks();
    const q = m.create({ eventIdx: true }, hk);
    const once = () => { m.addAvail(0); q.pushUsed(q.pop()!, 1); q.notify(); };
    m.setUsedEvent(0);
    once(); // first decision always notifies
    expect(h.interrupts).toBe(1);
    m.setUsedEvent(3); // "interrupt me when entry 3 is used" (used idx becomes 4)
    once(); once(); // used idx 2, 3
    expect(h.interrupts).toBe(1);
    once(); // used idx 4: entry 3 was used
    expect(h.interrupts).toBe(2);
    once(); // used_event is behind now: no interrupt until the driver moves it
    expect(h.interrupts).toBe(2);
  });

  test('enableNotification writes avail_event (EVENT_IDX) or clears NO_NOTIFY and reports new buffers', () => {
    const m = new MockQueue(8);
    m.setDesc(0, { addr: m.dataStart, len: 4, flags: WRITE });
    const q = m.create({ eventIdx: true });
    m.addAvail(0);
    q.pushUsed(q.pop()!, 0);
    m.addAvail(0);
    q.pushUsed(q.pop()!, 0);
    expect(q.enableNotification()).toBe(false);
    expect(m.availEvent()).toBe(2);
    m.addAvail(0);
    expect(q.enableNotification()).toBe(true);

    const m2 = new MockQueue(8);
    const q2 = m2.create();
    q2.disableNotification();
    expect(m2.usedFlags()).toBe(VIRTQ_USED_F_NO_NOTIFY);
    expect(q2.enableNotification()).toBe(false);
    expect(m2.usedFlags()).toBe(0);
  });

  test('Queue is constructible with a custom index', () => {
    const m = new MockQueue(4);
    expect(new Queue(m.memory, 3, m.config, { eventIdx: false, indirect: false }).index).toBe(3);
  });
});
