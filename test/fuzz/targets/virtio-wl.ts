/**
 * Fuzz target: every virtio-wl command through the real WlDevice, over mock in/out rings, with
 * real host peers: listening Unix sockets in a temp dir (accepting or not, so backlogs fill),
 * the host ends of every context (sending data and fds, hanging up, not reading so SENDs must
 * wait), and unrelated "decoy" fds opened meanwhile (so a reused fd number would show).
 *
 * Commands: NEW, NEW_PIPE, NEW_CTX, NEW_CTX_NAMED, CLOSE, SEND (random ids and counts, lying
 * counts, payloads up to past the 4 MiB bound, chains claiming 256 MiB), dmabuf commands,
 * garbage types and every command truncated; split over descriptors, with reply buffers from
 * none to a page; the driver also resets the device.
 *
 * Checked: no exception (nor one the device's own catch swallowed); bounded time and allocation
 * per call; chains completed once with used length ≤ writable length (MockDriver); every reply
 * and event well formed; every out chain completed once the host cooperates, under EVENT_IDX and
 * without (no lost notification), every completion interrupted; every byte a host peer sends on
 * an open context reaches the guest in order; a peer only ever receives fds the guest listed
 * (issue 10 item 1); VFDs and host fds stay within the limits; fds back to baseline after
 * shutdown.
 */
import fc from 'fast-check';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GuestMemory } from '../../../core/memory/guest-memory';
import { GuestHeap } from '../../../core/virtio/testing/guest-heap';
import { MockDriver, type Completed, type DriverBuffer } from '../../../core/virtio/testing/mock-driver';
import { VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1 } from '../../../core/virtio/constants';
import { native } from '../../../native';
import type { GuestShmMapping, VirtioChain } from '../../../plugin-api';
import { WlDevice } from '../../../plugins/virtio-wl/device';
import { WlSocketRegistry } from '../../../plugins/virtio-wl/sockets';
import { sameBytes, seededBytes, splitLengths } from '../harness/bytes';
import { InvariantError, Meter, invariant, fdSnapshot, leakedFds, openFdCount, recordingLog, settle, turn } from '../harness/meter';
import type { FuzzTarget } from '../harness/target';

const MiB = 1024 * 1024;
const MEMORY_SIZE = 8 * MiB;
const OUT_RING = 0x1000;
const IN_RING = 0x8000;
const HEAP_START = 0x10000;
const HEAP_END = 7 * MiB;
/** One MiB that large payloads and hostile chains point at. */
const BIG = 7 * MiB;

// Protocol numbers, as the guest driver writes them (spec §2.2).
const CMD = { NEW: 0x100, CLOSE: 0x101, SEND: 0x102, RECV: 0x103, NEW_CTX: 0x104, NEW_PIPE: 0x105, HUP: 0x106, NEW_DMABUF: 0x107, DMABUF_SYNC: 0x108, SEND_FOREIGN: 0x109, NEW_CTX_NAMED: 0x10a };
const RESP = { OK: 0x1000, VFD_NEW: 0x1001, ERR: 0x1100, OOM: 0x1101, INVALID_ID: 0x1102, INVALID_TYPE: 0x1103, INVALID_FLAGS: 0x1104, INVALID_CMD: 0x1105 };
const RESPONSES = new Set(Object.values(RESP));
/** The SEND_DONTWAIT extension (plugins/virtio-wl/EXTENSION.md): feature bit, header flag, reply, event. */
const F_SEND_DONTWAIT = 23;
const CTRL_FLAG_DONTWAIT = 0x1;
const RESP_WOULD_BLOCK = 0x1080;
const CMD_VFD_WRITABLE = 0x180;
const VFD_WRITE = 1;
const VFD_READ = 2;
const TRANS_FLAGS = 1;
const MAX_SEND_IDS = 28;
/** constants.ts MAX_SEND_PAYLOAD: a SEND above it is refused unread. */
const MAX_SEND_PAYLOAD = 4 * MiB;

/** Small limits, so every bound is reached (and passed by one) in a short run. */
const LIMITS = { maxVfds: 12, maxContexts: 3, maxShmBytes: 256 * 1024, connectTimeoutMs: 30 };
/** Names in the socket registry: two listeners, one whose file does not exist, one non-listening fd. */
const NAMES = ['', 'x', 'gone', 'np'];

export type WlCommand =
  | { c: 'new'; id: number; flags: number; size: number }
  | { c: 'pipe'; id: number; flags: number }
  | { c: 'ctx'; id: number }
  | { c: 'ctx-named'; id: number; name: number[] }
  | { c: 'close'; id: number }
  | { c: 'send'; id: number; ids: number[]; countDelta: number; payload: number; seed: number; flags: number }
  | { c: 'other'; type: number; len: number; seed: number };

interface ChainSpec {
  cmd: WlCommand;
  /** Keep only this many bytes of the request (a truncated struct). */
  truncate: number | null;
  split: number;
  /** Reply buffer bytes (0: no writable descriptor). */
  reply: number;
  /** The readable part is 256 descriptors over the same MiB (256 MiB claimed). */
  overlap: boolean;
}

type WlAction =
  | { a: 'cmds'; chains: ChainSpec[] }
  | { a: 'post-in'; count: number; len: number }
  | { a: 'accept'; on: boolean }
  | { a: 'peer-send'; peer: number; len: number; seed: number; fds: ('memfd' | 'pipe-r' | 'pipe-w' | 'decoy' | 'socket')[] }
  | { a: 'peer-close'; peer: number }
  | { a: 'peer-read'; peer: number; on: boolean }
  | { a: 'pipe-write'; pipe: number; len: number }
  | { a: 'decoys'; count: number }
  | { a: 'idle'; ms: number }
  | { a: 'reset' };

interface WlScenario {
  outSize: number;
  inSize: number;
  eventIdx: boolean;
  indirect: boolean;
  transition: boolean;
  /** The driver accepts VIRTIO_WL_F_SEND_DONTWAIT (when the device offers it). */
  dontwait: boolean;
  actions: WlAction[];
}

/** Mostly a few ids, so commands meet the VFDs earlier commands made (host ids from 0x40000000). */
const idArb = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1, max: 3 }) },
  { weight: 2, arbitrary: fc.integer({ min: 4, max: 14 }) },
  { weight: 3, arbitrary: fc.integer({ min: 0x40000000, max: 0x40000003 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 0x7ff, 0x80000000, 0xffffffff) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) },
);
const sizeArb = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(1, 4096, 65536, 128 * 1024) }, { weight: 1, arbitrary: fc.constantFrom(0, 300 * 1024, 0x7fffffff, 0xfffff001, 0xffffffff) }, { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) });
const commandArb: fc.Arbitrary<WlCommand> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ c: fc.constant('new' as const), id: idArb, flags: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 0, 1, 3) }, { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) }), size: sizeArb }) },
  { weight: 3, arbitrary: fc.record({ c: fc.constant('pipe' as const), id: idArb, flags: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(VFD_WRITE, VFD_READ) }, { weight: 1, arbitrary: fc.constantFrom(0, 3) }, { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) }) }) },
  { weight: 3, arbitrary: fc.record({ c: fc.constant('ctx' as const), id: idArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      c: fc.constant('ctx-named' as const),
      id: idArb,
      name: fc.oneof(fc.constantFrom(...NAMES).map((n) => [...Buffer.from(n)]), fc.array(fc.nat({ max: 255 }), { maxLength: 32 })),
    }),
  },
  { weight: 3, arbitrary: fc.record({ c: fc.constant('close' as const), id: idArb }) },
  {
    weight: 5,
    arbitrary: fc.record({
      c: fc.constant('send' as const),
      id: idArb,
      ids: fc.oneof({ weight: 3, arbitrary: fc.constant<number[]>([]) }, { weight: 2, arbitrary: fc.array(idArb, { minLength: 1, maxLength: 4 }) }),
      countDelta: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 29, -1, 0x7fffffff) }),
      flags: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 4, arbitrary: fc.constant(CTRL_FLAG_DONTWAIT) }, { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) }),
      payload: fc.oneof(
        { weight: 8, arbitrary: fc.nat({ max: 4096 }) },
        { weight: 2, arbitrary: fc.constantFrom(65536, 200 * 1024) },
        { weight: 1, arbitrary: fc.constantFrom(MAX_SEND_PAYLOAD, MAX_SEND_PAYLOAD + 1) },
      ),
      seed: fc.nat(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      c: fc.constant('other' as const),
      type: fc.oneof(fc.constantFrom(CMD.NEW_DMABUF, CMD.DMABUF_SYNC, CMD.SEND_FOREIGN, CMD.RECV, CMD.HUP, 0, 0x1000), fc.nat({ max: 0xffffffff })),
      len: fc.nat({ max: 128 }),
      seed: fc.nat(),
    }),
  },
);
const chainArb: fc.Arbitrary<ChainSpec> = fc.record({
  cmd: commandArb,
  truncate: fc.oneof({ weight: 12, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat({ max: 70 }) }),
  split: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 4 }) }),
  reply: fc.oneof({ weight: 8, arbitrary: fc.constant(64) }, { weight: 1, arbitrary: fc.constantFrom(0, 3, 4, 31, 4096) }),
  overlap: fc.oneof({ weight: 40, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});
const peerArb = fc.nat({ max: 7 });
const actionArb: fc.Arbitrary<WlAction> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ a: fc.constant('cmds' as const), chains: fc.array(chainArb, { minLength: 1, maxLength: 6 }) }) },
  { weight: 3, arbitrary: fc.record({ a: fc.constant('post-in' as const), count: fc.integer({ min: 1, max: 16 }), len: fc.oneof({ weight: 6, arbitrary: fc.constant(4096) }, { weight: 1, arbitrary: fc.constantFrom(0, 8, 12, 31, 64) }) }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('accept' as const), on: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      a: fc.constant('peer-send' as const),
      peer: peerArb,
      len: fc.oneof(fc.nat({ max: 5000 }), fc.constant(0)),
      seed: fc.nat(),
      fds: fc.array(fc.constantFrom('memfd' as const, 'pipe-r' as const, 'pipe-w' as const, 'decoy' as const, 'socket' as const), { maxLength: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('peer-close' as const), peer: peerArb }) },
  { weight: 2, arbitrary: fc.record({ a: fc.constant('peer-read' as const), peer: peerArb, on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('pipe-write' as const), pipe: fc.nat({ max: 7 }), len: fc.integer({ min: 1, max: 70000 }) }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('decoys' as const), count: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ a: fc.constant('idle' as const), ms: fc.integer({ min: 5, max: 40 }) }) },
  { weight: 1, arbitrary: fc.constant({ a: 'reset' as const }) },
);

export const wlScenarioArb: fc.Arbitrary<WlScenario> = fc.record({
  outSize: fc.constantFrom(16, 64, 256),
  inSize: fc.constantFrom(16, 64, 256),
  eventIdx: fc.boolean(),
  indirect: fc.boolean(),
  transition: fc.boolean(),
  dontwait: fc.boolean(),
  actions: fc.array(actionArb, { minLength: 1, maxLength: 30 }),
});

// --- encoding requests ------------------------------------------------------------------------

function ctrlVfdNew(type: number, id: number, flags: number, size: number, name?: number[]): Uint8Array {
  const out = Buffer.alloc(64);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(id >>> 0, 8);
  out.writeUInt32LE(flags >>> 0, 12);
  out.writeUInt32LE(size >>> 0, 24);
  if (name) Buffer.from(name.slice(0, 32)).copy(out, 28);
  return out;
}

/** The request bytes, except a large SEND payload, which lies in the BIG region (`bigPayload` bytes). */
function encode(cmd: WlCommand): { head: Uint8Array; bigPayload: number } {
  switch (cmd.c) {
    case 'new': return { head: ctrlVfdNew(CMD.NEW, cmd.id, cmd.flags, cmd.size), bigPayload: 0 };
    case 'pipe': return { head: ctrlVfdNew(CMD.NEW_PIPE, cmd.id, cmd.flags, 0), bigPayload: 0 };
    case 'ctx': return { head: ctrlVfdNew(CMD.NEW_CTX, cmd.id, 0, 0), bigPayload: 0 };
    case 'ctx-named': return { head: ctrlVfdNew(CMD.NEW_CTX_NAMED, cmd.id, 0, 0, cmd.name), bigPayload: 0 };
    case 'close': {
      const out = Buffer.alloc(12);
      out.writeUInt32LE(CMD.CLOSE, 0);
      out.writeUInt32LE(cmd.id >>> 0, 8);
      return { head: out, bigPayload: 0 };
    }
    case 'send': {
      const small = cmd.payload <= 4096;
      const out = Buffer.alloc(16 + 4 * cmd.ids.length + (small ? cmd.payload : 0));
      out.writeUInt32LE(CMD.SEND, 0);
      out.writeUInt32LE(cmd.flags >>> 0, 4);
      out.writeUInt32LE(cmd.id >>> 0, 8);
      out.writeUInt32LE((cmd.ids.length + cmd.countDelta) >>> 0, 12);
      cmd.ids.forEach((id, i) => out.writeUInt32LE(id >>> 0, 16 + 4 * i));
      if (small) Buffer.from(seededBytes(cmd.seed, cmd.payload)).copy(out, 16 + 4 * cmd.ids.length);
      return { head: out, bigPayload: small ? 0 : cmd.payload };
    }
    case 'other': {
      const out = Buffer.from(seededBytes(cmd.seed, Math.max(4, cmd.len)));
      out.writeUInt32LE(cmd.type >>> 0, 0);
      return { head: out, bigPayload: 0 };
    }
  }
}

// --- the host side --------------------------------------------------------------------------

/** The identity of an open file (what SCM_RIGHTS passes on), or null if the fd is not open. */
function identity(fd: number): string | null {
  try {
    const s = fs.fstatSync(fd);
    return `${s.dev}:${s.ino}`;
  } catch {
    return null;
  }
}

function describeFd(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return `fd ${fd}`;
  }
}

function closeQuietly(fd: number): void {
  try { native.close(fd); } catch { /* already closed */ }
}

/** The compositor's end of one context. */
class Peer {
  /** Bytes this end sent (what the guest must receive on the paired context, in order). */
  readonly sent: Uint8Array[] = [];
  reading = true;
  closed = false;
  eof = false;
  /** The guest context id, once paired (see WlRig.pair). */
  contextId: number | undefined;
  /** The guest closed its context (or reset the device): what this end sent may be lost. */
  guestClosed = false;
  constructor(readonly fd: number, readonly listener: string) {}
}

interface OutToken {
  spec: ChainSpec;
  allocs: number[];
  reply: DriverBuffer | null;
  /** False for chains built to be rejected (a 256 MiB claim): any reply, or none. */
  wellFormed: boolean;
}

interface InToken { allocs: number[]; buf: DriverBuffer | null }

/** A stand-in for vmm.mapGuestShm: the window's bounds and its errors, without mapping anything. */
class FakeShmWindow {
  private next = 0x1_0000_0000;
  live = 0;
  map(fd: number, size: number): GuestShmMapping {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`cannot map ${size} bytes into the guest`);
    if (identity(fd) === null) throw new Error(`mapShm: fd ${fd} is not open`);
    if (this.live >= 500 || this.next + size > 0x1_0000_0000 + 64 * 1024 * MiB) {
      throw Object.assign(new Error('no room in the guest shared-memory window'), { code: 'ERR_SHM_WINDOW_FULL' });
    }
    const gpa = this.next;
    this.next += Math.ceil(size / 4096) * 4096;
    this.live++;
    let mapped = true;
    return { gpa, size, view: new Uint8Array(0), unmap: () => { if (mapped) { mapped = false; this.live--; } } };
  }
}

class WlRig {
  readonly memory = new GuestMemory([{ guestAddress: 0, size: MEMORY_SIZE, buffer: new ArrayBuffer(MEMORY_SIZE) }]);
  readonly heap = new GuestHeap(HEAP_START, HEAP_END);
  readonly meter = new Meter();
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-fuzz-wl-'));
  readonly listeners = new Map<string, number>();
  readonly sockets = new WlSocketRegistry();
  readonly device: WlDevice;
  readonly peers: Peer[] = [];
  /** Host fds the harness holds: decoys, fds peers received, pipe ends. */
  readonly held: number[] = [];
  /** Write ends of guest-read pipes that reached a peer. */
  readonly peerPipes: number[] = [];
  /** Identities of every fd the guest listed in a SEND, when the device took that SEND. */
  readonly listed = new Set<string>();
  /** NEW_CTX successes by socket name, not yet paired with an accepted peer. */
  private readonly contextsByName = new Map<string, number[]>();
  private readonly peersByName = new Map<string, Peer[]>();
  /** Socket names whose contexts cannot be paired with peers any more (a reply the driver could not read). */
  private readonly unpairable = new Set<string>();
  /** Data RECV events carried, per VFD id. */
  readonly received = new Map<number, Uint8Array[]>();
  /** Read ends the harness drains: guest-write pipes (the device's write end went to the guest). */
  readonly readEnds: number[] = [];
  out!: MockDriver<OutToken>;
  in!: MockDriver<InToken>;
  accepting = true;
  /** Reply types seen (FUZZ_VERBOSE). */
  readonly replies = new Map<string, number>();
  needsReset: string | null = null;
  /** SEND_DONTWAIT negotiated: the device offers it and the driver took it. */
  readonly dontwait: boolean;
  private generation = 0;
  private decoyFile: string;

  constructor(readonly scenario: WlScenario) {
    for (const name of ['', 'x']) {
      const file = path.join(this.dir, name === '' ? 'wayland-0' : name);
      // A backlog of 1: a compositor that does not accept makes NEW_CTX wait (and time out).
      this.listeners.set(name, native.unixListen(file, native.SOCK_STREAM, 1));
      this.sockets.add(name, { kind: 'listening', path: file });
    }
    this.sockets.add('gone', { kind: 'listening', path: path.join(this.dir, 'nobody-listens') });
    const [np, npHost] = native.unixPair(native.SOCK_STREAM);
    const npPeer = new Peer(npHost, 'np');
    this.peers.push(npPeer);
    this.peersByName.set('np', [npPeer]);
    this.sockets.add('np', { kind: 'non-listening', fd: np, consumed: false });
    this.decoyFile = path.join(this.dir, 'decoy');
    fs.writeFileSync(this.decoyFile, 'not for the guest');
    const shm = new FakeShmWindow();
    this.device = new WlDevice({ mapShm: (fd, size) => shm.map(fd, size), sockets: this.sockets, limits: LIMITS, log: recordingLog('virtio-wl', this.meter) } as ConstructorParameters<typeof WlDevice>[0]);
    const device = this.device as unknown as Record<string, unknown>;
    // Every entry from the loop is measured: notifies, fd callbacks, timers and later turns.
    for (const method of ['queueNotify', 'ready', 'processOut', 'retryConnect', 'pumpIn', 'resumeSend']) {
      if (typeof device[method] === 'function') this.meter.wrap(device, method, `virtio-wl ${method}`);
    }
    // The fd callback was bound at construction: route it through the measured method.
    if (typeof device.onReady === 'function') device.onReady = (...args: unknown[]) => (device.ready as (...a: unknown[]) => void).apply(this.device, args);
    this.watchSends(device);
    this.dontwait = this.scenario.dontwait && (this.device.features & bit(F_SEND_DONTWAIT)) !== 0n;
    this.activate();
  }

  /** Note the identity of every fd a SEND lists, as the device takes it (before it can change). */
  private watchSends(device: Record<string, unknown>): void {
    const send = device.send;
    if (typeof send !== 'function') return;
    device.send = (chain: VirtioChain, ...rest: unknown[]) => {
      const head = this.firstBytes(chain, 16 + 4 * MAX_SEND_IDS);
      if (head.length >= 16) {
        const view = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
        const count = view.readUInt32LE(12);
        const vfds = (this.device as unknown as { vfds: Map<number, { sendFd?: number }> }).vfds;
        for (let i = 0; i < Math.min(count, MAX_SEND_IDS) && 16 + 4 * i + 4 <= head.length; i++) {
          const fd = vfds.get(view.readUInt32LE(16 + 4 * i))?.sendFd;
          const id = fd === undefined ? null : identity(fd);
          if (id) this.listed.add(id);
        }
      }
      return (send as (...a: unknown[]) => unknown).call(this.device, chain, ...rest);
    };
  }

  private firstBytes(chain: VirtioChain, max: number): Uint8Array {
    const parts: Uint8Array[] = [];
    let left = max;
    for (const b of chain.readable) {
      if (left === 0) break;
      const n = Math.min(b.len, left);
      parts.push(this.memory.view(b.addr, n));
      left -= n;
    }
    return Buffer.concat(parts);
  }

  activate(): void {
    const generation = ++this.generation;
    const ring = { eventIdx: this.scenario.eventIdx, indirect: this.scenario.indirect };
    this.in = new MockDriver<InToken>(this.memory, { size: this.scenario.inSize, base: IN_RING, features: ring });
    this.out = new MockDriver<OutToken>(this.memory, { size: this.scenario.outSize, base: OUT_RING, features: ring });
    this.in.onCompleted = (c) => this.inCompleted(c);
    this.out.onCompleted = (c) => this.outCompleted(c);
    const hooks = (index: number) => ({
      needsReset: (reason: string) => { this.needsReset = reason; },
      live: () => this.generation === generation,
      resume: () => { this.meter.call('queue resume', () => this.device.queueNotify(index)); },
    });
    const queues = [this.in.createQueue(0, hooks(0)), this.out.createQueue(1, hooks(1))];
    const features = bit(VIRTIO_F_VERSION_1) | (this.scenario.transition ? bit(TRANS_FLAGS) : 0n) | (this.dontwait ? bit(F_SEND_DONTWAIT) : 0n)
      | (this.scenario.eventIdx ? bit(VIRTIO_F_RING_EVENT_IDX) : 0n) | (this.scenario.indirect ? bit(VIRTIO_F_INDIRECT_DESC) : 0n);
    this.meter.call('activate', () => this.device.activate({ features, queues, memory: this.memory }));
    this.postIn(Math.min(8, this.scenario.inSize), 4096);
  }

  reset(): void {
    this.in.poll();
    this.out.poll();
    this.meter.call('reset', () => this.device.reset());
    this.generation++;
    for (const c of [...this.in.pending(), ...this.out.pending()]) this.release(c.token.allocs);
    // Every context is gone with the reset (its data may be lost); none pairs any more.
    for (const p of this.peers) {
      p.guestClosed = true;
      p.contextId = p.contextId ?? -1;
    }
    this.contextsByName.clear();
    this.peersByName.clear();
    this.received.clear();
    this.needsReset = null;
    this.activate();
  }

  // --- guest side -------------------------------------------------------------------------------

  commands(chains: ChainSpec[]): void {
    for (const spec of chains) {
      const { head, bigPayload } = encode(spec.cmd);
      const request = spec.truncate === null ? head : head.subarray(0, Math.min(spec.truncate, head.length));
      const allocs: number[] = [];
      const bufs: DriverBuffer[] = [];
      let ok = true;
      if (spec.overlap) {
        this.memory.write(BIG, head.subarray(0, Math.min(head.length, 64)));
        for (let i = 0; i < 256; i++) bufs.push({ addr: BIG, len: MiB, write: false });
      } else {
        let from = 0;
        for (const len of request.length > 0 ? splitLengths(request.length, spec.split) : []) {
          const at = this.heap.alloc(len);
          if (at === null) { ok = false; break; }
          allocs.push(at);
          this.memory.write(at, request.subarray(from, from + len));
          bufs.push({ addr: at, len, write: false });
          from += len;
        }
        // A large payload: whole MiBs of the BIG region, then the rest.
        for (let left = spec.truncate === null ? bigPayload : 0; left > 0; left -= Math.min(left, MiB)) bufs.push({ addr: BIG, len: Math.min(left, MiB), write: false });
      }
      let reply: DriverBuffer | null = null;
      if (ok && spec.reply > 0) {
        const at = this.heap.alloc(spec.reply);
        if (at === null) ok = false;
        else {
          allocs.push(at);
          this.memory.view(at, spec.reply).fill(0xaa);
          reply = { addr: at, len: spec.reply, write: true };
          bufs.push(reply);
        }
      }
      const indirect = this.scenario.indirect && bufs.length > 1 && bufs.length <= 64 && spec.split > 2;
      const table = indirect ? this.heap.alloc(16 * bufs.length) : null;
      if (table !== null) allocs.push(table);
      if (!ok || bufs.length === 0 || this.out.freeCount < (table !== null ? 1 : bufs.length)) {
        this.release(allocs);
        continue;
      }
      this.out.addChain(bufs, { spec, allocs, reply, wellFormed: !spec.overlap }, table ?? undefined);
    }
    if (this.out.publish()) this.meter.call('out queueNotify', () => this.device.queueNotify(1));
  }

  postIn(count: number, len: number): void {
    for (let k = 0; k < count && this.in.freeCount > 0; k++) {
      if (len === 0) {
        // A read-only buffer: unusable for an event.
        const at = this.heap.alloc(64);
        if (at === null) break;
        this.in.addChain([{ addr: at, len: 64, write: false }], { allocs: [at], buf: null });
        continue;
      }
      const at = this.heap.alloc(len);
      if (at === null) break;
      const buf = { addr: at, len, write: true };
      this.in.addChain([buf], { allocs: [at], buf });
    }
    if (this.in.publish()) this.meter.call('in queueNotify', () => this.device.queueNotify(0));
  }

  private outCompleted(c: Completed<OutToken>): void {
    const { spec, reply, wellFormed } = c.token;
    const bytes = reply ? Buffer.from(this.memory.read(reply.addr, c.len)) : Buffer.alloc(0);
    this.release(c.token.allocs);
    if (!wellFormed) return;
    const isContext = spec.cmd.c === 'ctx' || spec.cmd.c === 'ctx-named';
    const name = spec.cmd.c === 'ctx' ? '' : spec.cmd.c === 'ctx-named' ? Buffer.from(spec.cmd.name.slice(0, 32)).toString('latin1').split('\0')[0] : '';
    // Without a reply the driver cannot tell whether a context opened: pairing by order is off.
    if (isContext && (!reply || reply.len < 4)) this.unpairable.add(name);
    if (reply && reply.len >= 4) {
      if (c.len < 4) throw new InvariantError(`${spec.cmd.c} got a ${c.len}-byte reply in a ${reply.len}-byte buffer`);
      const type = bytes.readUInt32LE(0);
      const key = `${spec.cmd.c}:${type.toString(16)}`;
      this.replies.set(key, (this.replies.get(key) ?? 0) + 1);
      if (!RESPONSES.has(type) && !(type === RESP_WOULD_BLOCK && this.dontwait && spec.cmd.c === 'send')) throw new InvariantError(`${spec.cmd.c} got reply type 0x${type.toString(16)}, not a response`);
      if (type === RESP.VFD_NEW && reply.len >= 32 && c.len !== 32) throw new InvariantError(`RESP_VFD_NEW of ${c.len} bytes, not 32`);
      if (type === RESP.VFD_NEW && isContext) {
        this.contextsByName.set(name, [...(this.contextsByName.get(name) ?? []), (spec.cmd as { id: number }).id >>> 0]);
        this.pair(name);
      }
      if (type === RESP.OK && spec.cmd.c === 'close') this.closed(spec.cmd.id);
    } else if (spec.cmd.c === 'close') {
      // A CLOSE whose answer the driver cannot read may have closed the context.
      this.closed(spec.cmd.id);
    }
  }

  /** The guest closed VFD `id`: a context's peer data may be lost, and the id may name a new one. */
  private closed(id: number): void {
    for (const p of this.peers) {
      if (p.contextId !== id) continue;
      p.guestClosed = true;
      p.contextId = -1;
    }
    // Not paired yet (its connection not accepted): the peer that gets it is not checked.
    for (const ids of this.contextsByName.values()) ids.forEach((x, i) => { if (x === id >>> 0) ids[i] = -1; });
    this.received.delete(id >>> 0);
  }

  private inCompleted(c: Completed<InToken>): void {
    const buf = c.token.buf;
    const bytes = buf ? Buffer.from(this.memory.read(buf.addr, c.len)) : Buffer.alloc(0);
    this.release(c.token.allocs);
    if (c.len === 0) return;
    if (c.len < 12) throw new InvariantError(`an in-queue event of ${c.len} bytes`);
    const type = bytes.readUInt32LE(0);
    const id = bytes.readUInt32LE(8);
    switch (type) {
      case CMD.NEW: invariant(c.len === 32, () => `a VFD_NEW event of ${c.len} bytes`); break;
      case CMD.HUP: invariant(c.len === 12, () => `a VFD_HUP event of ${c.len} bytes`); break;
      case CMD_VFD_WRITABLE: invariant(this.dontwait && c.len === 12, () => `a VFD_WRITABLE event of ${c.len} bytes (SEND_DONTWAIT ${this.dontwait ? 'on' : 'off'})`); break;
      case CMD.RECV: {
        invariant(c.len >= 16, () => `a VFD_RECV event of ${c.len} bytes`);
        const count = bytes.readUInt32LE(12);
        invariant(count <= MAX_SEND_IDS && 16 + 4 * count <= c.len, () => `a VFD_RECV event with ${count} ids in ${c.len} bytes`);
        this.received.set(id, [...(this.received.get(id) ?? []), bytes.subarray(16 + 4 * count)]);
        break;
      }
      default: throw new InvariantError(`an in-queue event of type 0x${type.toString(16)}`);
    }
  }

  // --- host side --------------------------------------------------------------------------------

  /** Accept waiting connections (while the compositor accepts), read what peers were sent. */
  host(): void {
    if (this.accepting) {
      for (const [name, fd] of this.listeners) {
        for (let c = native.unixAccept(fd); c !== null; c = native.unixAccept(fd)) {
          const peer = new Peer(c, name);
          this.peers.push(peer);
          this.peersByName.set(name, [...(this.peersByName.get(name) ?? []), peer]);
          this.pair(name);
        }
      }
    }
    for (const peer of this.peers) {
      if (!peer.reading || peer.closed || peer.eof) continue;
      for (;;) {
        let r;
        try { r = native.recvmsg(peer.fd, 256 * 1024, 64); } catch { peer.eof = true; break; }
        if (r === null) break;
        for (const fd of r.fds) this.receivedFd(fd);
        if (r.data.length === 0 && r.fds.length === 0) { peer.eof = true; break; }
      }
    }
    for (const fd of this.readEnds) {
      try { while (native.read(fd, 65536)?.length) { /* drained */ } } catch { /* the writer went away */ }
    }
  }

  private receivedFd(fd: number): void {
    const id = identity(fd);
    if (id === null || !this.listed.has(id)) {
      this.meter.violations.push(`a host peer received ${describeFd(fd)}, which the guest never listed in a SEND (an fd number that changed meaning?)`);
    }
    try { native.setNonBlocking(fd, true); } catch { /* not every fd takes it */ }
    this.held.push(fd);
    try {
      if ((fs.fstatSync(fd).mode & 0o170000) !== 0o010000) return;
      const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0', 8);
      // O_WRONLY: the write end of a guest-read pipe; else a guest-write pipe's read end.
      if ((flags & 3) === 1) this.peerPipes.push(fd);
      else this.readEnds.push(fd);
    } catch { /* gone */ }
  }

  /** Pair NEW_CTX successes with accepted connections on the same listener, in order. */
  private pair(name: string): void {
    const ids = this.contextsByName.get(name) ?? [];
    const peers = this.peersByName.get(name) ?? [];
    while (ids.length > 0 && peers.length > 0) peers.shift()!.contextId = this.unpairable.has(name) ? -1 : ids.shift();
  }

  peerSend(index: number, len: number, seed: number, kinds: ('memfd' | 'pipe-r' | 'pipe-w' | 'decoy' | 'socket')[]): void {
    const peer = this.peers[index % Math.max(1, this.peers.length)];
    if (!peer || peer.closed) return;
    const fds: number[] = [];
    const close: number[] = [];
    for (const kind of kinds) {
      if (kind === 'memfd') fds.push(native.memfdCreate('fuzz-host-shm', 4096 * (seed % 3)));
      else if (kind === 'decoy') fds.push(fs.openSync(this.decoyFile, 'r'));
      else if (kind === 'socket') { const [a, b] = native.unixPair(native.SOCK_STREAM); fds.push(a); close.push(b); }
      else {
        const [r, w] = native.pipe();
        fds.push(kind === 'pipe-r' ? r : w);
        // Keep the other end, so the guest's end stays alive and (for pipe-r) can be written.
        this.held.push(kind === 'pipe-r' ? w : r);
        if (kind === 'pipe-r') this.peerPipes.push(w);
        else this.readEnds.push(r);
      }
    }
    const data = seededBytes(seed, len);
    let n = -1;
    try { n = native.sendmsg(peer.fd, data, fds); } catch { /* the device hung up */ }
    for (const fd of [...fds, ...close]) closeQuietly(fd);
    if (n > 0) peer.sent.push(data.subarray(0, n));
  }

  peerClose(index: number): void {
    const peer = this.peers[index % Math.max(1, this.peers.length)];
    if (!peer || peer.closed) return;
    peer.closed = true;
    native.close(peer.fd);
  }

  pipeWrite(index: number, len: number): void {
    const fd = this.peerPipes[index % Math.max(1, this.peerPipes.length)];
    if (fd === undefined) return;
    try { native.write(fd, seededBytes(index, len)); } catch { /* the reader went away */ }
  }

  decoys(count: number): void {
    for (let i = 0; i < count; i++) this.held.push(fs.openSync(this.decoyFile, 'r'));
  }

  release(allocs: number[]): void {
    for (const a of allocs) this.heap.release(a);
    allocs.length = 0;
  }

  /** Host fds in use beyond the harness's own: at most two per VFD, plus what a waiting SEND duplicates. */
  checkBounds(baseline: number): void {
    const vfds = this.device.vfdCount;
    invariant(vfds <= LIMITS.maxVfds, () => `the device holds ${vfds} VFDs (maxVfds ${LIMITS.maxVfds})`);
    // The harness's own: held fds, open peers, listeners, the registry's unconsumed 'np' end.
    const harness = this.held.length + this.peers.filter((p) => !p.closed).length + this.listeners.size + 1;
    const extra = openFdCount() - baseline - harness;
    invariant(extra <= 2 * LIMITS.maxVfds + MAX_SEND_IDS + 4, () => `the device holds ${extra} host fds for ${vfds} VFDs`);
  }

  /** Close everything the harness opened. */
  close(): void {
    for (const p of this.peers) if (!p.closed) { p.closed = true; closeQuietly(p.fd); }
    for (const fd of this.held.splice(0)) closeQuietly(fd);
    for (const fd of this.listeners.values()) closeQuietly(fd);
    this.listeners.clear();
    this.sockets.clear();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const bit = (n: number): bigint => 1n << BigInt(n);

export async function runWlScenario(scenario: WlScenario): Promise<void> {
  const baseline = openFdCount();
  const before = fdSnapshot();
  const rig = new WlRig(scenario);
  const { meter } = rig;
  let shut = false;
  try {
    for (const action of scenario.actions) {
      switch (action.a) {
        case 'cmds': rig.commands(action.chains); break;
        case 'post-in': rig.postIn(action.count, action.len); break;
        case 'accept': rig.accepting = action.on; break;
        case 'peer-send': rig.peerSend(action.peer, action.len, action.seed, action.fds); break;
        case 'peer-close': rig.peerClose(action.peer); break;
        case 'peer-read': { const p = rig.peers[action.peer % Math.max(1, rig.peers.length)]; if (p) p.reading = action.on; break; }
        case 'pipe-write': rig.pipeWrite(action.pipe, action.len); break;
        case 'decoys': rig.decoys(action.count); break;
        case 'idle': await settle(action.ms); break;
        case 'reset': rig.reset(); break;
      }
      if (rig.needsReset) rig.reset();
      rig.host();
      await turn();
      rig.host();
      rig.checkBounds(baseline);
      meter.check();
    }

    // The end: the compositor accepts and reads everything, the driver keeps buffers posted.
    rig.accepting = true;
    for (const p of rig.peers) p.reading = true;
    const deadline = Date.now() + 3000;
    let quiet = 0;
    while (Date.now() < deadline) {
      rig.host();
      if (rig.needsReset) rig.reset();
      if (rig.in.inFlightCount < 8) rig.postIn(8 - rig.in.inFlightCount, 4096);
      const before = `${rig.out.inFlightCount}:${rig.in.inFlightCount}:${[...rig.received.values()].reduce((n, r) => n + r.length, 0)}`;
      await settle(2);
      rig.host();
      const after = `${rig.out.inFlightCount}:${rig.in.inFlightCount}:${[...rig.received.values()].reduce((n, r) => n + r.length, 0)}`;
      quiet = before === after && rig.out.inFlightCount === 0 ? quiet + 1 : 0;
      if (quiet >= 10) break;
    }
    meter.check();
    invariant(rig.out.unseenUsed() === 0 && rig.in.unseenUsed() === 0, () => `used buffers without an interrupt (out ${rig.out.unseenUsed()}, in ${rig.in.unseenUsed()}): a lost interrupt`);
    invariant(rig.out.inFlightCount === 0, () => `${rig.out.inFlightCount} command chain(s) made available were never answered: a lost notification or a stuck queue`);
    for (const peer of rig.peers) {
      const id = peer.contextId;
      if (id === undefined || id < 0 || peer.guestClosed) continue;
      const sent = Buffer.concat(peer.sent);
      const got = Buffer.concat(rig.received.get(id) ?? []);
      invariant(sameBytes(sent, got), () => `context ${id}: its peer sent ${sent.length} bytes, the guest received ${got.length}${got.length <= sent.length && sameBytes(sent.subarray(0, got.length), got) ? ' (a prefix: data left unread)' : ' (different bytes)'}`);
    }
    rig.checkBounds(baseline);
    if (process.env.FUZZ_VERBOSE) {
      const paired = rig.peers.filter((p) => p.contextId !== undefined && p.contextId >= 0 && !p.guestClosed);
      console.log(`virtio-wl: ${[...rig.replies].map(([k, n]) => `${k}×${n}`).join(' ')}; ${rig.peers.length} peers, ${paired.length} checked (${paired.reduce((n, p) => n + Buffer.concat(p.sent).length, 0)} bytes), ${rig.listed.size} fds listed, worst ${meter.worst.ms.toFixed(1)} ms / ${(meter.worst.bytes / MiB).toFixed(1)} MiB`);
    }

    meter.call('shutdown', () => rig.device.shutdown());
    shut = true;
    rig.close();
    meter.check();
    const leaked = await leakedFds(before);
    invariant(leaked.length === 0, () => `fds left open after shutdown: ${leaked.join(', ')}`);
  } finally {
    if (!shut) {
      try { rig.device.shutdown(); } catch { /* reported above */ }
      rig.close();
    }
  }
}

export const virtioWlTarget: FuzzTarget = {
  name: 'virtio-wl',
  summary: 'every virtio-wl command through WlDevice with real host peers, decoy fds and small limits',
  quickRuns: 100,
  property: () => fc.asyncProperty(wlScenarioArb, runWlScenario),
};
