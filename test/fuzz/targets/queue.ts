/**
 * Fuzz target: the split virtqueue (core/virtio/queue.ts) under a hostile driver.
 *
 * The driver writes random descriptor tables (loops, overlapping and out-of-RAM buffers, zero
 * and huge lengths, indirect tables that are nested, misaligned, huge or shared by every head),
 * random heads and impossible avail indexes, with and without EVENT_IDX and INDIRECT_DESC. The
 * device side is a well-behaved device: it pops until null, completes with random lengths,
 * holds chains and gives some back with undoPop, re-arms notifications and interrupts.
 *
 * Checked: no exception; bounded time and allocation per notify; every chain pop returns is
 * exactly the reference walk (queue-model.ts) of an entry the driver made available, in order;
 * every chain the queue skips is one the reference walk rejects; no head is completed more often
 * than it was made available; a used length is the device's clipped to the writable length;
 * every chain made available is processed once the driver kicked as Linux does (no lost
 * notification), and every completion is seen by an interrupt-driven driver (no lost
 * interrupt); the queue only breaks on a broken ring.
 */
import fc from 'fast-check';
import { GuestMemory } from '../../../core/memory/guest-memory';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../core/virtio/constants';
import { MockDriver } from '../../../core/virtio/testing/mock-driver';
import type { VirtioChain } from '../../../plugin-api';
import { Meter, invariant, turn } from '../harness/meter';
import type { FuzzTarget } from '../harness/target';
import { sameBuffers, VMM_INDIRECT_CAP, walkChain, type ModelChain, type TableWalk } from './queue-model';

const MEMORY_SIZE = 2 * 1024 * 1024;
const RING_BASE = 0x1000;
const DATA_START = 0x8000;
/** Sixteen 4 KiB pages for the tables of indirect recipes. */
const INDIRECT_PAGES = 0xf0000;
/** The shared table of shared-indirect recipes: the upper MiB (65536 entries fill it). */
const TABLE_AREA = 0x100000;

interface Buf { addr: bigint; len: number; write: boolean }

type Recipe =
  /** A chain through slots head, head+stride, … (stride 0 is a self-loop). */
  | { kind: 'direct'; head: number; stride: number; bufs: Buf[] }
  /** One ring descriptor pointing at a table of `bufs`, with the usual ways to get it wrong. */
  | { kind: 'indirect'; head: number; place: 'ok' | 'misaligned' | 'outside' | 'straddle'; lenDelta: number; withNext: boolean; nestAt: number; loopAt: number; tableSlot: number; bufs: Buf[] }
  /** Every ring descriptor points at one table of `entries` small buffers (issue 10 item 3). */
  | { kind: 'shared-indirect'; entries: number; write: boolean }
  /** `count` descriptors over the same `len` bytes: a chain far larger than guest RAM. */
  | { kind: 'overlap'; head: number; count: number; len: number; write: boolean }
  | { kind: 'raw'; slot: number; addr: bigint; len: number; flags: number; next: number };

type HeadChoice = { recipe: number } | { raw: number };

interface Round {
  recipes: Recipe[];
  heads: HeadChoice[];
  /** Publish an avail idx this far ahead instead (> queue size: an impossible index). */
  jump: number | null;
}

type Action = { op: 'complete'; written: number | 'all' | 'over' } | { op: 'hold' } | { op: 'undo'; count: number };

interface Scenario {
  size: number;
  eventIdx: boolean;
  indirect: boolean;
  /** The device sets NO_NOTIFY while it works (without EVENT_IDX). */
  disableWhileBusy: boolean;
  rounds: Round[];
  actions: Action[];
}

const U64_EDGES = [0n, BigInt(MEMORY_SIZE), BigInt(MEMORY_SIZE - 1), 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 16n];
const LEN_EDGES = [0, 1, MEMORY_SIZE, MEMORY_SIZE + 1, 0x7fffffff, 0x80000000, 0xffffffff];

const addrArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: DATA_START, max: MEMORY_SIZE - 1 }).map(BigInt) },
  { weight: 1, arbitrary: fc.constantFrom(...U64_EDGES) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
);
const lenArb = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 4096 }) },
  { weight: 1, arbitrary: fc.constantFrom(...LEN_EDGES) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) },
);
const hostileBufArb: fc.Arbitrary<Buf> = fc.record({ addr: addrArb, len: lenArb, write: fc.boolean() });
/** What a driver posts: inside the data area, readable buffers first. */
const goodBufsArb: fc.Arbitrary<Buf[]> = fc.array(fc.record({
  addr: fc.integer({ min: DATA_START / 64, max: INDIRECT_PAGES / 64 - 64 }).map((n) => BigInt(64 * n)),
  len: fc.integer({ min: 1, max: 4096 }),
  write: fc.boolean(),
}), { minLength: 1, maxLength: 6 }).map((bufs) => [...bufs].sort((a, b) => Number(a.write) - Number(b.write)));
const bufsArb = fc.oneof(
  { weight: 3, arbitrary: goodBufsArb },
  { weight: 1, arbitrary: fc.array(hostileBufArb, { minLength: 1, maxLength: 6 }) },
);

function recipeArb(size: number): fc.Arbitrary<Recipe> {
  const slot = fc.nat({ max: size - 1 });
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('direct' as const), head: slot, stride: fc.oneof(fc.constant(1), fc.nat({ max: size })), bufs: bufsArb }) },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('indirect' as const),
        head: slot,
        place: fc.constantFrom('ok' as const, 'ok' as const, 'ok' as const, 'misaligned' as const, 'outside' as const, 'straddle' as const),
        lenDelta: fc.constantFrom(0, 0, 0, 0, 1, -1, 8, -16),
        withNext: fc.constant(false),
        nestAt: fc.integer({ min: -1, max: 6 }),
        loopAt: fc.integer({ min: -1, max: 6 }),
        tableSlot: fc.nat({ max: 15 }),
        bufs: bufsArb,
      }).chain((r) => fc.nat({ max: 9 }).map((n) => ({ ...r, withNext: n === 0, nestAt: n === 1 ? r.nestAt : -1, loopAt: n === 2 ? r.loopAt : -1 }))),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('shared-indirect' as const), entries: fc.constantFrom(16, VMM_INDIRECT_CAP, VMM_INDIRECT_CAP + 1, 4096, 65536), write: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('overlap' as const), head: slot, count: fc.integer({ min: Math.min(2, size), max: size }), len: fc.constantFrom(4096, 0x10000, INDIRECT_PAGES - DATA_START), write: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('raw' as const), slot, addr: addrArb, len: lenArb, flags: fc.oneof(fc.nat({ max: 7 }), fc.nat({ max: 0xffff })), next: fc.oneof(fc.nat({ max: size - 1 }), fc.nat({ max: 0xffff })) }) },
  );
}

function roundArb(size: number): fc.Arbitrary<Round> {
  return fc.array(recipeArb(size), { minLength: 1, maxLength: Math.min(size, 8) }).chain((recipes) => fc.record({
    recipes: fc.constant(recipes),
    heads: fc.array(fc.oneof(
      { weight: 9, arbitrary: fc.nat({ max: recipes.length - 1 }).map((recipe): HeadChoice => ({ recipe })) },
      { weight: 1, arbitrary: fc.oneof(fc.nat({ max: size - 1 }), fc.nat({ max: 0xffff })).map((raw): HeadChoice => ({ raw })) },
    ), { minLength: 1, maxLength: size }),
    jump: fc.oneof({ weight: 19, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.integer({ min: size + 1, max: 0xffff }) }),
  }));
}

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('complete' as const), written: fc.oneof(fc.constantFrom('all' as const, 'over' as const, 0), fc.nat({ max: 0xffffffff })) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'hold' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('undo' as const), count: fc.integer({ min: 1, max: 3 }) }) },
);

export const scenarioArb: fc.Arbitrary<Scenario> = fc.constantFrom(1, 2, 8, 16, 256).chain((size) => fc.record({
  size: fc.constant(size),
  eventIdx: fc.boolean(),
  indirect: fc.boolean(),
  disableWhileBusy: fc.boolean(),
  rounds: fc.array(roundArb(size), { minLength: 1, maxLength: 4 }),
  actions: fc.array(actionArb, { minLength: 1, maxLength: 8 }),
}));

/** Write a recipe's descriptors; returns the heads it offers (more than one for shared tables). */
function writeRecipe(driver: MockDriver, scenario: Scenario, recipe: Recipe, index: number): number[] {
  const size = scenario.size;
  const table = driver.config.descTable;
  const flagsOf = (b: Buf, more: boolean): number => (b.write ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0);
  switch (recipe.kind) {
    case 'direct': {
      const slots = recipe.bufs.map((_, i) => (recipe.head + i * recipe.stride) % size);
      recipe.bufs.forEach((b, i) => driver.writeDesc(table, slots[i], { addr: b.addr, len: b.len, flags: flagsOf(b, i + 1 < slots.length), next: slots[i + 1] ?? 0 }));
      return [recipe.head];
    }
    case 'indirect': {
      // Each indirect recipe gets its own 4 KiB page in the table area (by index), so recipes
      // of one round do not overwrite each other's tables unless `tableSlot` says so.
      const page = INDIRECT_PAGES + 0x1000 * ((index + recipe.tableSlot) % 16);
      const at = recipe.place === 'ok' ? page
        : recipe.place === 'misaligned' ? page + 8
          : recipe.place === 'straddle' ? MEMORY_SIZE - 16
            : MEMORY_SIZE + 0x1000;
      const entries = recipe.bufs.length;
      if (at + 16 * entries <= MEMORY_SIZE) {
        recipe.bufs.forEach((b, i) => {
          let flags = flagsOf(b, i + 1 < entries);
          let next = i + 1;
          if (i === recipe.nestAt) flags = VIRTQ_DESC_F_INDIRECT;
          if (i === recipe.loopAt) { flags |= VIRTQ_DESC_F_NEXT; next = 0; }
          driver.writeDesc(at, i, { addr: b.addr, len: b.len, flags, next });
        });
      }
      const len = Math.max(0, 16 * entries + recipe.lenDelta);
      driver.writeDesc(table, recipe.head, { addr: at, len, flags: VIRTQ_DESC_F_INDIRECT | (recipe.withNext ? VIRTQ_DESC_F_NEXT : 0), next: (recipe.head + 1) % size });
      return [recipe.head];
    }
    case 'shared-indirect': {
      for (let i = 0; i < recipe.entries; i++) {
        driver.writeDesc(TABLE_AREA, i, { addr: DATA_START + 64 * (i % 64), len: 64, flags: (recipe.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < recipe.entries ? VIRTQ_DESC_F_NEXT : 0), next: i + 1 });
      }
      const heads: number[] = [];
      for (let h = 0; h < size; h++) {
        driver.writeDesc(table, h, { addr: TABLE_AREA, len: 16 * recipe.entries, flags: VIRTQ_DESC_F_INDIRECT, next: 0 });
        heads.push(h);
      }
      return heads;
    }
    case 'overlap': {
      // A chain through slots head, head+1, … each covering the same bytes.
      const slots = Array.from({ length: Math.min(recipe.count, size) }, (_, i) => (recipe.head + i) % size);
      slots.forEach((s, i) => driver.writeDesc(table, s, {
        addr: DATA_START, len: recipe.len, flags: (recipe.write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < slots.length ? VIRTQ_DESC_F_NEXT : 0), next: slots[i + 1] ?? 0,
      }));
      return [recipe.head];
    }
    case 'raw':
      driver.writeDesc(table, recipe.slot, { addr: recipe.addr, len: recipe.len, flags: recipe.flags, next: recipe.next });
      return [recipe.slot];
  }
}

interface Published {
  head: number;
  model: ModelChain;
}

export async function runScenario(scenario: Scenario): Promise<void> {
  const memory = new GuestMemory([{ guestAddress: 0, size: MEMORY_SIZE, buffer: new ArrayBuffer(MEMORY_SIZE) }]);
  const features = { eventIdx: scenario.eventIdx, indirect: scenario.indirect };
  const driver = new MockDriver(memory, { size: scenario.size, base: RING_BASE, features, checkUsed: false });
  const meter = new Meter();
  const size = scenario.size;
  let broken: string | null = null;
  const queue = driver.createQueue(0, {
    needsReset: (reason) => { broken = reason; },
    resume: () => { meter.call('queue resume (device notify)', deviceNotify); },
  });

  // What the queue must hand out, in order.
  let published: Published[] = [];
  let consumed = 0;
  let stash: VirtioChain[] = [];
  let held: VirtioChain[] = [];
  const availCount = new Map<number, number>();
  const completedCount = new Map<number, number>();
  let actionIndex = 0;
  let usedSeen = 0;
  let loopStuck = false;

  const complete = (head: number): void => {
    const n = (completedCount.get(head) ?? 0) + 1;
    completedCount.set(head, n);
    invariant(n <= (availCount.get(head) ?? 0), () => `head ${head} completed ${n} times but made available ${availCount.get(head) ?? 0} times`);
  };

  /** Used elements the queue itself wrote during one pop: the chains it skipped. */
  const accountSkipped = (): void => {
    for (const e of driver.usedSince(usedSeen)) {
      usedSeen = (usedSeen + 1) & 0xffff;
      invariant(consumed < published.length, () => `the queue completed head ${e.id} (len ${e.len}) with nothing left that the driver made available`);
      const p = published[consumed++];
      invariant(e.id === p.head, () => `the queue skipped head ${e.id}, but the next available entry is head ${p.head}`);
      invariant(e.len === 0, () => `the queue completed skipped head ${e.id} with len ${e.len}, not 0`);
      invariant(!p.model.ok || p.model.indirectEntries > VMM_INDIRECT_CAP, () => `the queue skipped head ${p.head}, a chain the spec allows (${p.model.descriptors} descriptors)`);
      complete(e.id);
    }
  };

  /** Checks what pop returned; true when it is a chain given back by undoPop. */
  const accountPopped = (chain: VirtioChain): boolean => {
    if (stash.length > 0) {
      const expected = stash.shift()!;
      invariant(chain.head === expected.head && sameBuffers(chain.writable, expected.writable) && sameBuffers(chain.readable, expected.readable),
        () => `after undoPop, pop returned head ${chain.head} instead of head ${expected.head}`);
      return true;
    }
    invariant(consumed < published.length, () => `pop returned head ${chain.head}, which the driver did not make available`);
    const p = published[consumed++];
    invariant(chain.head === p.head, () => `pop returned head ${chain.head}, but the next available entry is head ${p.head}`);
    const m = p.model;
    invariant(m.ok, () => `pop returned head ${chain.head}, a chain the spec forbids: ${(m as { reason: string }).reason}`);
    invariant(sameBuffers(chain.readable, m.readable) && sameBuffers(chain.writable, m.writable) && chain.writableLength === m.writableLength,
      () => `pop returned head ${chain.head} with buffers that differ from its descriptors`);
    return false;
  };

  /** What the device does with a popped chain; one given back before is completed this time. */
  const act = (chain: VirtioChain, givenBack: boolean): void => {
    const action: Action = givenBack ? { op: 'complete', written: 'all' } : scenario.actions[actionIndex++ % scenario.actions.length];
    if (action.op === 'hold') { held.push(chain); return; }
    if (action.op === 'undo') {
      held.push(chain);
      const n = Math.min(action.count, held.length);
      const back = held.splice(held.length - n, n);
      queue.undoPop(n);
      stash = [...back, ...stash];
      return;
    }
    const written = action.written === 'all' ? chain.writableLength : action.written === 'over' ? chain.writableLength + 1 : action.written;
    pushUsed(chain, written);
  };

  const pushUsed = (chain: VirtioChain, written: number): void => {
    queue.pushUsed(chain, written);
    const mine = driver.usedSince(usedSeen);
    invariant(mine.length === 1, () => `pushUsed of head ${chain.head} published ${mine.length} used elements`);
    usedSeen = (usedSeen + 1) & 0xffff;
    const expected = Math.max(0, Math.min(written, chain.writableLength));
    invariant(mine[0].id === chain.head && mine[0].len === expected, () => `pushUsed(head ${chain.head}, ${written}) wrote {id ${mine[0].id}, len ${mine[0].len}}; expected len ${expected} (writable ${chain.writableLength})`);
    complete(chain.head);
  };

  /** The device's queueNotify: pop until null, re-arm, interrupt. */
  function deviceNotify(): void {
    if (scenario.disableWhileBusy) queue.disableNotification();
    for (let guard = 0; ; guard++) {
      if (guard > 4 * size + 2 * 65536) { loopStuck = true; break; }
      const chain = queue.pop();
      accountSkipped();
      if (chain) { act(chain, accountPopped(chain)); continue; }
      if (queue.enableNotification()) continue;
      break;
    }
    queue.notify();
  }

  const notify = (what: string): void => {
    meter.call(what, deviceNotify);
    meter.check();
  };

  for (const round of scenario.rounds) {
    const offered = round.recipes.map((r, i) => writeRecipe(driver, scenario, r, i));
    const heads: number[] = [];
    for (const choice of round.heads) heads.push(...('raw' in choice ? [choice.raw] : offered[choice.recipe]));
    const entries = heads.slice(0, size);
    const cache = new Map<number, ModelChain>();
    const tables = new Map<string, TableWalk>();
    const models = entries.map((h) => {
      if (!cache.has(h)) cache.set(h, h >= size ? { ok: false, reason: 'head index out of range', descriptors: 0, indirectEntries: 0 } : walkChain(memory, driver.config.descTable, size, h, features, tables));
      return { head: h, model: cache.get(h)! };
    });
    const duplicates = new Set(entries).size !== entries.length;
    const badHead = entries.some((h) => h >= size);
    for (const h of entries) driver.putAvail(h);
    if (round.jump !== null) {
      // A broken driver: an index the ring cannot hold; none of this round's entries count.
      driver.setAvailIdx(((published.length + round.jump) & 0xffff));
      notify('queueNotify after an impossible avail idx');
      // The queue may be yielding (descriptor budget): it looks on a later turn.
      for (let turns = 0; turns < 100 && broken === null; turns++) {
        await turn();
        meter.check();
      }
      invariant(broken !== null, `an avail idx ${round.jump} ahead of the device (queue size ${size}) did not break the queue`);
      break;
    }
    for (const m of models) availCount.set(m.head, (availCount.get(m.head) ?? 0) + 1);
    published = [...published, ...models];
    if (driver.publish()) notify('queueNotify');

    // Finish the round: complete what the device holds, let resumes run, until all is done.
    for (let turns = 0; turns < 10000; turns++) {
      if (broken !== null || (consumed === published.length && stash.length === 0 && held.length === 0)) break;
      if (held.length > 0) {
        const done = held;
        held = [];
        meter.call('pushUsed of held chains', () => { for (const c of done) pushUsed(c, 0); queue.notify(); });
        meter.check();
      }
      await turn();
      meter.check();
    }
    meter.check();
    invariant(!loopStuck, 'the device loop did not end: pop or enableNotification keeps offering work that never comes');
    if (broken !== null) {
      invariant(duplicates || badHead, () => `the queue broke on a well-formed ring: ${broken}`);
      break;
    }
    invariant(consumed === published.length && stash.length === 0, () => `${published.length - consumed} chain(s) made available (${stash.length} given back) were never processed: a lost notification`);
    invariant(driver.unseenUsed() === 0, () => `${driver.unseenUsed()} used element(s) published without an interrupt the driver asked for: a lost interrupt`);
  }
  meter.check();
}

export const queueTarget: FuzzTarget = {
  name: 'queue',
  summary: 'split virtqueue: hostile descriptor tables, heads and indexes against a reference walk',
  quickRuns: 150,
  property: () => fc.asyncProperty(scenarioArb, runScenario),
};
