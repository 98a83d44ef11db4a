/**
 * Fuzz target: virtio-net rx and tx through the real VirtioNetDevice (RxPath, TxPath, its fd
 * watcher) over mock rings, with a Unix datagram socket pair standing in for the TAP (the
 * device takes any fd; a TAP needs root and a namespace, a socket needs neither, and a full
 * peer queue gives the EAGAIN path for free).
 *
 * The driver posts rx buffers of every size (merged or not, direct or indirect, and hostile
 * ones: read-only, too small for the header, zero-length, outside RAM, one chain claiming
 * 256 MiB over 1 MiB of RAM), sends tx chains (split, indirect, oversized, write-only, over
 * 256 overlapping MiB), resets the device, and idles; the host side sends frames of every
 * size and reads or stops reading.
 *
 * Checked: no exception (nor a bug swallowed by the device's own catch); bounded time and
 * allocation per call; chains completed once with used length ≤ writable length (MockDriver);
 * every tx chain is completed and every frame the host must see arrives intact and in order;
 * every frame the host sent is delivered intact (num_buffers right) or counted as dropped;
 * no lost notification or interrupt; no busy spin while idle; host fds back to baseline after
 * shutdown.
 */
import fc from 'fast-check';
import { GuestMemory } from '../../../core/memory/guest-memory';
import { VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1 } from '../../../core/virtio/constants';
import { GuestHeap } from '../../../core/virtio/testing/guest-heap';
import { MockDriver, type Completed, type DriverBuffer } from '../../../core/virtio/testing/mock-driver';
import { native } from '../../../native';
import { RX_QUEUE, TX_QUEUE, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_HDR_NUM_BUFFERS, VIRTIO_NET_HDR_SIZE, VMM_NET_MAX_FRAME } from '../../../plugins/virtio-net/constants';
import { VirtioNetDevice } from '../../../plugins/virtio-net/device';
import { sameBytes, seededBytes, splitLengths } from '../harness/bytes';
import { InvariantError, Meter, fdSnapshot, invariant, leakedFds, recordingLog, settle, turn } from '../harness/meter';
import type { FuzzTarget } from '../harness/target';

const MiB = 1024 * 1024;
const MEMORY_SIZE = 4 * MiB;
const RX_RING = 0x1000;
const TX_RING = 0x8000;
const HEAP_START = 0x10000;
const HEAP_END = 3 * MiB;
/** One MiB that hostile chains point at again and again. */
const BIG = 3 * MiB;
const MAC = Uint8Array.of(0x02, 0, 0, 0xf0, 0x22, 0x01);
const bit = (n: number): bigint => 1n << BigInt(n);

type FrameSpec = { len: number; seed: number; header: 'zero' | 'csum' | 'random' };
type TxSpec = { len: number; split: number; indirect: boolean; seed: number };

type NetAction =
  | { a: 'rx-post'; count: number; bufLen: number; split: number; indirect: boolean }
  | { a: 'rx-hostile'; kind: 'readonly' | 'tiny' | 'zero' | 'outside' | 'overlap' }
  | { a: 'host-send'; frames: FrameSpec[] }
  | { a: 'tx-send'; frames: TxSpec[] }
  | { a: 'tx-hostile'; kind: 'overlap' | 'writeonly' | 'short' | 'outside' | 'mixed' | 'toolong' }
  | { a: 'host-read'; on: boolean }
  | { a: 'idle'; ms: number }
  | { a: 'reset' };

interface NetScenario {
  rxSize: number;
  txSize: number;
  eventIdx: boolean;
  indirect: boolean;
  mergeable: boolean;
  /** TUNSETOFFLOAD flags the "TAP" reports (what the device may offer). */
  tapOffloads: number;
  /** The driver accepts every offload offered (else none). */
  guestOffloads: boolean;
  actions: NetAction[];
}

const frameLenArb = fc.oneof(
  { weight: 1, arbitrary: fc.integer({ min: 1, max: VIRTIO_NET_HDR_SIZE }) },
  { weight: 4, arbitrary: fc.integer({ min: VIRTIO_NET_HDR_SIZE + 1, max: 1526 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1527, max: VMM_NET_MAX_FRAME }) },
  { weight: 1, arbitrary: fc.constantFrom(VIRTIO_NET_HDR_SIZE + 1, 1526, 4096, 4097, VMM_NET_MAX_FRAME) },
);
const frameArb: fc.Arbitrary<FrameSpec> = fc.record({ len: frameLenArb, seed: fc.nat(), header: fc.constantFrom('zero' as const, 'zero' as const, 'zero' as const, 'csum' as const, 'random' as const) });
const txLenArb = fc.oneof(
  { weight: 6, arbitrary: frameLenArb },
  { weight: 1, arbitrary: fc.constantFrom(VMM_NET_MAX_FRAME + 1, 2 * VMM_NET_MAX_FRAME) },
);
const txArb: fc.Arbitrary<TxSpec> = fc.record({ len: txLenArb, split: fc.integer({ min: 1, max: 5 }), indirect: fc.boolean(), seed: fc.nat() });

const actionArb: fc.Arbitrary<NetAction> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ a: fc.constant('rx-post' as const), count: fc.integer({ min: 1, max: 64 }), bufLen: fc.constantFrom(64, 1526, 4096, 4096, VMM_NET_MAX_FRAME, 100), split: fc.integer({ min: 1, max: 3 }), indirect: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('rx-hostile' as const), kind: fc.constantFrom('readonly' as const, 'tiny' as const, 'zero' as const, 'outside' as const, 'overlap' as const) }) },
  { weight: 4, arbitrary: fc.record({ a: fc.constant('host-send' as const), frames: fc.array(frameArb, { minLength: 1, maxLength: 12 }) }) },
  { weight: 4, arbitrary: fc.record({ a: fc.constant('tx-send' as const), frames: fc.array(txArb, { minLength: 1, maxLength: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('tx-hostile' as const), kind: fc.constantFrom('overlap' as const, 'writeonly' as const, 'short' as const, 'outside' as const, 'mixed' as const, 'toolong' as const) }) },
  { weight: 2, arbitrary: fc.record({ a: fc.constant('host-read' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('idle' as const), ms: fc.integer({ min: 5, max: 40 }) }) },
  { weight: 1, arbitrary: fc.constant({ a: 'reset' as const }) },
);

export const netScenarioArb: fc.Arbitrary<NetScenario> = fc.record({
  rxSize: fc.constantFrom(8, 64, 256),
  txSize: fc.constantFrom(8, 64, 256),
  eventIdx: fc.boolean(),
  indirect: fc.boolean(),
  mergeable: fc.boolean(),
  tapOffloads: fc.constantFrom(0, TUN_F_CSUM, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN),
  guestOffloads: fc.boolean(),
  actions: fc.array(actionArb, { minLength: 1, maxLength: 25 }),
});

interface RxToken { allocs: number[]; bufs: DriverBuffer[] }
interface TxToken { allocs: number[]; frame: Uint8Array | null; must: boolean }

/** One device, its two rings and the host end of its "TAP". */
class NetRig {
  readonly memory = new GuestMemory([{ guestAddress: 0, size: MEMORY_SIZE, buffer: new ArrayBuffer(MEMORY_SIZE) }]);
  readonly heap = new GuestHeap(HEAP_START, HEAP_END);
  readonly meter = new Meter();
  readonly device: VirtioNetDevice;
  readonly hostFd: number;
  rx!: MockDriver<RxToken>;
  tx!: MockDriver<TxToken>;
  /** tx chains with a frame, in the order they were made available. */
  readonly txExpected: TxToken[] = [];
  /** Datagrams the host read (what the device transmitted). */
  readonly received: Uint8Array[] = [];
  /** Frames the host wrote into the device's socket, and those still waiting to be written. */
  readonly sent: Uint8Array[] = [];
  readonly backlog: Uint8Array[] = [];
  /** Frames the driver got, reassembled from their buffers. */
  readonly delivered: { frame: Uint8Array; buffers: number }[] = [];
  private partial: { need: number; parts: Uint8Array[] } | null = null;
  hostReading = true;
  tapEvents = 0;
  /** Times the rx ring was wedged (see rxWedged) and the driver reset the device. */
  wedges = 0;
  private rxQueue: unknown;
  needsReset: string | null = null;
  private generation = 0;
  private readonly features: bigint;

  constructor(readonly scenario: NetScenario) {
    const [deviceFd, hostFd] = native.unixPair(native.SOCK_DGRAM);
    this.hostFd = hostFd;
    const log = recordingLog('virtio-net', this.meter);
    this.device = new VirtioNetDevice({ fd: deviceFd, name: '', offloads: scenario.tapOffloads }, { mac: MAC }, log);
    this.device.attach({ updateConfig: () => undefined, needsReset: (reason) => { this.needsReset = reason; } });
    const device = this.device as unknown as Record<string, unknown>;
    // Every way the loop enters the device is measured; TAP callbacks are also counted (spin).
    this.meter.wrap(device, 'queueNotify', 'queueNotify');
    this.meter.wrap(device, 'onTapEvent', 'TAP event');
    const measured = device.onTapEvent as (...args: unknown[]) => void;
    device.onTapEvent = (...args: unknown[]) => { this.tapEvents++; measured.apply(this.device, args); };
    const mask = scenario.guestOffloads ? ~0n : bit(VIRTIO_NET_F_MRG_RXBUF) | 0xffff_0000n;
    this.features = (this.device.features & mask & ~(scenario.mergeable ? 0n : bit(VIRTIO_NET_F_MRG_RXBUF)))
      | bit(VIRTIO_F_VERSION_1) | (scenario.eventIdx ? bit(VIRTIO_F_RING_EVENT_IDX) : 0n) | (scenario.indirect ? bit(VIRTIO_F_INDIRECT_DESC) : 0n);
    this.activate();
  }

  get mergeable(): boolean {
    return (this.features & bit(VIRTIO_NET_F_MRG_RXBUF)) !== 0n;
  }

  /** DRIVER_OK with fresh rings (what a driver does after a reset). */
  activate(): void {
    const generation = ++this.generation;
    const features = { eventIdx: this.scenario.eventIdx, indirect: this.scenario.indirect };
    this.rx = new MockDriver<RxToken>(this.memory, { size: this.scenario.rxSize, base: RX_RING, features });
    this.tx = new MockDriver<TxToken>(this.memory, { size: this.scenario.txSize, base: TX_RING, features });
    this.rx.onCompleted = (c) => this.rxCompleted(c);
    this.tx.onCompleted = (c) => this.release(c.token.allocs);
    const hooks = (index: number) => ({
      needsReset: (reason: string) => { this.needsReset = reason; },
      live: () => this.generation === generation,
      resume: () => { this.meter.call('queue resume', () => this.device.queueNotify(index)); },
    });
    const queues = [this.rx.createQueue(RX_QUEUE, hooks(RX_QUEUE)), this.tx.createQueue(TX_QUEUE, hooks(TX_QUEUE))];
    this.rxQueue = queues[0];
    this.meter.call('activate', () => this.device.activate({ features: this.features, queues, memory: this.memory }));
  }

  /** Status 0: the device forgets the rings; the driver takes its buffers back. */
  reset(): void {
    this.rx.poll();
    this.tx.poll();
    this.meter.call('reset', () => this.device.reset());
    this.generation++;
    for (const c of this.rx.pending()) this.release(c.token.allocs);
    for (const c of this.tx.pending()) {
      this.release(c.token.allocs);
      // Sent or not before the reset: either is right.
      c.token.must = false;
    }
    this.partial = null;
    this.needsReset = null;
    this.activate();
  }

  // --- rx -------------------------------------------------------------------------------------

  postRx(count: number, bufLen: number, split: number, indirect: boolean): void {
    for (let k = 0; k < count; k++) {
      const useIndirect = indirect && this.scenario.indirect && split > 1;
      if (this.rx.freeCount < (useIndirect ? 1 : split)) break;
      const allocs: number[] = [];
      const bufs: DriverBuffer[] = [];
      let left = bufLen;
      for (const len of splitLengths(bufLen, split)) {
        const at = this.heap.alloc(len);
        if (at === null) break;
        allocs.push(at);
        bufs.push({ addr: at, len, write: true });
        left -= len;
      }
      const table = useIndirect ? this.heap.alloc(16 * bufs.length) : null;
      if (left > 0 || (useIndirect && table === null)) {
        this.release(allocs);
        if (table !== null) this.heap.release(table);
        break;
      }
      if (table !== null) allocs.push(table);
      this.rx.addChain(bufs, { allocs, bufs }, table ?? undefined);
    }
    this.kick(this.rx, RX_QUEUE);
  }

  postHostileRx(kind: 'readonly' | 'tiny' | 'zero' | 'outside' | 'overlap'): void {
    const at = this.heap.alloc(64);
    if (at === null) return;
    let bufs: DriverBuffer[];
    switch (kind) {
      case 'readonly': bufs = [{ addr: at, len: 64, write: false }]; break;
      case 'tiny': bufs = [{ addr: at, len: VIRTIO_NET_HDR_SIZE - 1, write: true }]; break;
      case 'zero': bufs = [{ addr: at, len: 0, write: true }]; break;
      case 'outside': bufs = [{ addr: MEMORY_SIZE + 0x1000, len: 64, write: true }]; break;
      case 'overlap': bufs = Array.from({ length: Math.min(this.rx.freeCount, 256) }, () => ({ addr: BIG, len: MiB, write: true })); break;
    }
    if (bufs.length === 0 || this.rx.addChain(bufs, { allocs: [at], bufs: bufs.filter((b) => b.write) }) === null) {
      this.heap.release(at);
      return;
    }
    this.kick(this.rx, RX_QUEUE);
  }

  private rxCompleted(c: Completed<RxToken>): void {
    this.release(c.token.allocs);
    if (c.len === 0) return;
    const data = new Uint8Array(c.len);
    let at = 0;
    for (const b of c.token.bufs) {
      if (at >= c.len) break;
      const n = Math.min(b.len, c.len - at);
      data.set(this.memory.view(b.addr, n), at);
      at += n;
    }
    if (!this.partial) {
      if (data.length < VIRTIO_NET_HDR_SIZE) throw new InvariantError(`rx chain ${c.head} starts a frame with ${data.length} bytes, less than the header`);
      const need = data[VIRTIO_NET_HDR_NUM_BUFFERS] | (data[VIRTIO_NET_HDR_NUM_BUFFERS + 1] << 8);
      if (need === 0 || (!this.mergeable && need !== 1)) throw new InvariantError(`rx frame with num_buffers ${need} (MRG_RXBUF ${this.mergeable})`);
      this.partial = { need, parts: [] };
    }
    this.partial.parts.push(data);
    if (this.partial.parts.length === this.partial.need) {
      this.delivered.push({ frame: Buffer.concat(this.partial.parts), buffers: this.partial.need });
      this.partial = null;
    }
  }

  /** The host writes frames into the "TAP" (as many as its queue takes now). */
  hostSend(frames: FrameSpec[]): void {
    for (const f of frames) {
      const frame = seededBytes(f.seed, f.len);
      if (f.len >= VIRTIO_NET_HDR_SIZE && f.header !== 'random') {
        frame.fill(0, 0, VIRTIO_NET_HDR_SIZE);
        if (f.header === 'csum') frame[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
      }
      this.backlog.push(frame);
    }
    this.flushHost();
  }

  flushHost(): void {
    while (this.backlog.length > 0) {
      if (native.write(this.hostFd, this.backlog[0]) < 0) break;
      this.sent.push(this.backlog.shift()!);
    }
    if (this.hostReading) {
      for (let d = native.read(this.hostFd, 2 * VMM_NET_MAX_FRAME); d !== null; d = native.read(this.hostFd, 2 * VMM_NET_MAX_FRAME)) this.received.push(d);
    }
  }

  // --- tx -------------------------------------------------------------------------------------

  sendTx(frames: TxSpec[]): void {
    for (const f of frames) {
      const frame = seededBytes(f.seed, f.len);
      frame.fill(0, 0, Math.min(VIRTIO_NET_HDR_SIZE, f.len));
      // A zero-length frame becomes one zero-length descriptor: a malformed chain.
      const lengths = f.len === 0 ? [0] : splitLengths(f.len, f.split);
      const split = lengths.length;
      const useIndirect = f.indirect && this.scenario.indirect && split > 1;
      if (this.tx.freeCount < (useIndirect ? 1 : split)) break;
      const allocs: number[] = [];
      const bufs: DriverBuffer[] = [];
      let from = 0;
      for (const len of lengths) {
        const at = this.heap.alloc(Math.max(1, len));
        if (at === null) break;
        allocs.push(at);
        this.memory.write(at, frame.subarray(from, from + len));
        bufs.push({ addr: at, len, write: false });
        from += len;
      }
      const table = useIndirect ? this.heap.alloc(16 * bufs.length) : null;
      if (bufs.length < split || (useIndirect && table === null)) {
        this.release(allocs);
        if (table !== null) this.heap.release(table);
        break;
      }
      if (table !== null) allocs.push(table);
      const token: TxToken = { allocs, frame, must: f.len > VIRTIO_NET_HDR_SIZE && f.len <= VMM_NET_MAX_FRAME };
      this.tx.addChain(bufs, token, table ?? undefined);
      this.txExpected.push(token);
    }
    this.kick(this.tx, TX_QUEUE);
  }

  sendHostileTx(kind: 'overlap' | 'writeonly' | 'short' | 'outside' | 'mixed' | 'toolong'): void {
    const at = this.heap.alloc(256);
    if (at === null) return;
    const payload = seededBytes(at, 200);
    payload.fill(0, 0, VIRTIO_NET_HDR_SIZE);
    this.memory.write(at, payload);
    let bufs: DriverBuffer[];
    let frame: Uint8Array | null = null;
    switch (kind) {
      // 256 descriptors over the same MiB: 256 MiB "readable" in a 4 MiB guest (issue 10 item 2).
      case 'overlap': bufs = Array.from({ length: Math.max(2, Math.min(this.tx.freeCount, 256)) }, () => ({ addr: BIG, len: MiB, write: false })); break;
      case 'toolong': bufs = [{ addr: HEAP_START, len: VMM_NET_MAX_FRAME + 1, write: false }]; break;
      case 'writeonly': bufs = [{ addr: at, len: 200, write: true }]; break;
      case 'short': bufs = [{ addr: at, len: VIRTIO_NET_HDR_SIZE, write: false }]; break;
      case 'outside': bufs = [{ addr: MEMORY_SIZE - 16, len: 200, write: false }]; break;
      case 'mixed': bufs = [{ addr: at, len: 100, write: false }, { addr: at + 128, len: 64, write: true }]; frame = payload.subarray(0, 100).slice(); break;
    }
    const token: TxToken = { allocs: [at], frame, must: frame !== null };
    if (this.tx.addChain(bufs, token) === null) {
      this.heap.release(at);
      return;
    }
    if (frame) this.txExpected.push(token);
    this.kick(this.tx, TX_QUEUE);
  }

  // --- common ---------------------------------------------------------------------------------

  private kick(driver: MockDriver<RxToken> | MockDriver<TxToken>, index: number): void {
    if (driver.publish()) this.meter.call('queueNotify', () => this.device.queueNotify(index));
  }

  private release(allocs: number[]): void {
    for (const a of allocs) this.heap.release(a);
    allocs.length = 0;
  }

  /** Post rx buffers so that any frame fits: a full ring of pages (merged), or a few 64 KiB chains. */
  refillForAnyFrame(): void {
    if (this.mergeable) {
      if (this.rx.freeCount > 0) this.postRx(this.rx.freeCount, 4096, 1, false);
    } else if (this.rx.inFlightCount < 4) {
      this.postRx(4 - this.rx.inFlightCount, VMM_NET_MAX_FRAME, 2, true);
    }
  }

  /**
   * A known limit, not a failure: with MRG_RXBUF, a frame waits for more buffers while the
   * device holds every rx descriptor (chains of several descriptors, so fewer chains than the
   * queue size): no buffer can ever come, and only a reset frees the ring. (The device bounds
   * a merged frame by the queue size in chains, not in descriptors.) Seen from here: the driver
   * has no free descriptor, the device popped everything, and it still holds a frame.
   */
  rxWedged(): boolean {
    const consumed = (this.rxQueue as { nextAvail?: number }).nextAvail;
    const pending = (this.device.rx as unknown as { pending?: unknown }).pending;
    return this.mergeable && this.rx.freeCount === 0 && consumed === this.rx.availIndex && pending !== null && pending !== undefined;
  }

  allSettled(): boolean {
    const stats = this.device.rx.stats;
    return this.backlog.length === 0 && this.tx.inFlightCount === 0 && stats.frames + stats.dropped === this.sent.length;
  }
}

export async function runNetScenario(scenario: NetScenario): Promise<void> {
  const before = fdSnapshot();
  const rig = new NetRig(scenario);
  const { meter } = rig;
  let closed = false;
  try {
    for (const action of scenario.actions) {
      switch (action.a) {
        case 'rx-post': rig.postRx(action.count, action.bufLen, action.split, action.indirect); break;
        case 'rx-hostile': rig.postHostileRx(action.kind); break;
        case 'host-send': rig.hostSend(action.frames); break;
        case 'tx-send': rig.sendTx(action.frames); break;
        case 'tx-hostile': rig.sendHostileTx(action.kind); break;
        case 'host-read': rig.hostReading = action.on; break;
        case 'reset': rig.reset(); break;
        case 'idle': {
          // Nothing happens meanwhile: the device may finish what it has, then must rest. A
          // spin shows as callbacks without end, or as the loop kept busy in the device.
          await turn();
          const events = rig.tapEvents;
          const busy = meter.busyMs;
          const start = performance.now();
          await settle(action.ms);
          const elapsed = performance.now() - start;
          const spent = meter.busyMs - busy;
          invariant(rig.tapEvents - events <= Math.max(40, 2 * action.ms) && spent <= Math.max(10, elapsed / 2),
            () => `${rig.tapEvents - events} TAP callbacks, ${spent.toFixed(0)} ms in the device, during ${elapsed.toFixed(0)} ms with nothing to do: a busy spin`);
          break;
        }
      }
      if (rig.needsReset) rig.reset();
      rig.flushHost();
      await turn();
      rig.flushHost();
      meter.check();
    }

    // The end: the host reads everything and the driver posts buffers for any frame, until
    // every chain and frame is accounted for.
    rig.hostReading = true;
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      rig.flushHost();
      if (rig.needsReset) rig.reset();
      rig.refillForAnyFrame();
      if (rig.allSettled()) break;
      if (rig.rxWedged()) {
        rig.wedges++;
        rig.reset();
      }
      await settle(2);
    }
    await turn();
    rig.flushHost();
    meter.check();
    const stats = rig.device.rx.stats;
    invariant(rig.rx.unseenUsed() === 0 && rig.tx.unseenUsed() === 0, () => `used buffers without an interrupt (rx ${rig.rx.unseenUsed()}, tx ${rig.tx.unseenUsed()}): a lost interrupt`);
    invariant(rig.tx.inFlightCount === 0, () => `${rig.tx.inFlightCount} tx chain(s) made available were never completed: a lost notification or a stuck queue`);
    invariant(rig.backlog.length === 0, () => `the device stopped reading its TAP: ${rig.backlog.length} frame(s) could not be written to it`);
    invariant(stats.frames + stats.dropped === rig.sent.length, () => `${rig.sent.length} frames sent to the TAP, ${stats.frames} delivered and ${stats.dropped} dropped: the rest were lost (a lost rx notification?)`);
    invariant(rig.delivered.length === stats.frames, () => `the device counted ${stats.frames} frames delivered, the driver got ${rig.delivered.length}`);

    // Delivered frames: the frames sent, in order, some dropped; header flags may only be cleared.
    let j = 0;
    for (const [i, d] of rig.delivered.entries()) {
      while (j < rig.sent.length && !sameFrame(d.frame, rig.sent[j], d.buffers)) j++;
      invariant(j < rig.sent.length, () => `rx frame ${i} (${d.frame.length} bytes in ${d.buffers} buffers) is not one the host sent, in order`);
      j++;
    }
    // Transmitted frames: the chains' bytes, in order; every frame that must go out did.
    let k = 0;
    for (const [i, frame] of rig.received.entries()) {
      while (k < rig.txExpected.length && !(rig.txExpected[k].frame && sameBytes(rig.txExpected[k].frame!, frame))) {
        invariant(!rig.txExpected[k].must, () => `tx chain ${k} (${rig.txExpected[k].frame?.length} bytes) was never transmitted, but a later one was`);
        k++;
      }
      invariant(k < rig.txExpected.length, () => `the host received a ${frame.length}-byte frame ${i} that no tx chain holds (or out of order)`);
      k++;
    }
    for (; k < rig.txExpected.length; k++) invariant(!rig.txExpected[k].must, () => `tx chain ${k} (${rig.txExpected[k].frame?.length} bytes) was never transmitted`);

    if (process.env.FUZZ_VERBOSE) console.log(`virtio-net: ${rig.sent.length} frames in (${stats.frames} delivered, ${stats.dropped} dropped), ${rig.txExpected.length} tx chains, ${rig.received.length} frames out, ${rig.wedges} wedges, worst call ${meter.worst.ms.toFixed(1)} ms / ${(meter.worst.bytes / MiB).toFixed(1)} MiB`);
    meter.call('shutdown', () => rig.device.shutdown());
    native.close(rig.hostFd);
    closed = true;
    meter.check();
    const leaked = await leakedFds(before);
    invariant(leaked.length === 0, () => `fds left open after shutdown: ${leaked.join(', ')}`);
  } finally {
    if (!closed) {
      try { rig.device.shutdown(); } catch { /* reported above */ }
      try { native.close(rig.hostFd); } catch { /* already closed */ }
    }
  }
}

/** An rx frame as delivered vs as sent: num_buffers set, header flags only cleared. */
function sameFrame(delivered: Uint8Array, sent: Uint8Array, buffers: number): boolean {
  if (delivered.length !== sent.length) return false;
  if ((delivered[0] & ~sent[0]) !== 0) return false;
  if ((delivered[VIRTIO_NET_HDR_NUM_BUFFERS] | (delivered[VIRTIO_NET_HDR_NUM_BUFFERS + 1] << 8)) !== buffers) return false;
  return sameBytes(delivered.subarray(1, VIRTIO_NET_HDR_NUM_BUFFERS), sent.subarray(1, VIRTIO_NET_HDR_NUM_BUFFERS))
    && sameBytes(delivered.subarray(VIRTIO_NET_HDR_SIZE), sent.subarray(VIRTIO_NET_HDR_SIZE));
}

export const virtioNetTarget: FuzzTarget = {
  name: 'virtio-net',
  summary: 'virtio-net rx and tx through VirtioNetDevice over mock rings and a socket-pair TAP',
  quickRuns: 200,
  property: () => fc.asyncProperty(netScenarioArb, runNetScenario),
};
