/**
 * The driver half of virtio-net for tests and soaks without a guest: rings and buffers in a
 * GuestMemory fixture, written the way Linux's virtio_net uses them, against the real device
 * (plugins/virtio-net) over a real TAP.
 */
import { GuestMemory } from '../../../core/memory/guest-memory';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../core/virtio/constants';
import type { Queue } from '../../../core/virtio/queue';
import { MockQueue } from '../../../core/virtio/testing/mock-queue';
import * as C from '../../../plugins/virtio-net/constants';
import type { VirtioNetDevice } from '../../../plugins/virtio-net/device';
import { ipBytes, parseFrame, icmpEcho, udpFrame, type Parsed } from './net-fixture';

export const HDR = C.VIRTIO_NET_HDR_SIZE;
/** Room for each rx or tx slot: descriptor i of a ring always points at slot i. */
export const BUF = 4096;
const RX_RING = 0x1000;
const TX_RING = 0x8000;
const RX_BUFS = 0x100000;
const TX_BUFS = 0x200000;
/** Guest memory past the rings and slots, free for a test's own buffers. */
export const SPARE = 0x300000;

/** Where rx slot `i` (the buffer of rx descriptor i) lies. */
export const rxSlot = (i: number): number => RX_BUFS + i * BUF;

const bit = (n: number): bigint => 1n << BigInt(n);
/** VERSION_1 | MRG_RXBUF | MAC | STATUS: what the tests negotiate unless they say otherwise. */
export const MRG_FEATURES = bit(32) | bit(C.VIRTIO_NET_F_MRG_RXBUF) | bit(C.VIRTIO_NET_F_MAC) | bit(C.VIRTIO_NET_F_STATUS);
export const PLAIN_FEATURES = MRG_FEATURES & ~bit(C.VIRTIO_NET_F_MRG_RXBUF);

export interface DriverOptions {
  /** Queue size (both queues); at most 256 (the device's maximum). */
  size?: number;
  eventIdx?: boolean;
  /** Guest RAM to reuse (a driver after a reset); its rings are cleared. Default: a fresh 4 MiB. */
  memory?: GuestMemory;
}

const MEMORY_SIZE = 4 << 20;

export class MockNetDriver {
  readonly memory: GuestMemory;
  readonly size: number;
  readonly rxq: MockQueue;
  readonly txq: MockQueue;
  readonly rx: Queue;
  readonly tx: Queue;
  interrupts = 0;
  /** Every rx used element collected so far, in used-ring order. */
  readonly rxUsed: { id: number; len: number }[] = [];
  /** rx used elements too short for a header: buffers the device returned unused. */
  returnedUnused = 0;
  readonly frames: Parsed[] = [];
  /** The virtio_net_hdr of each frame collectRaw returned, in order. */
  readonly headers: Buffer[] = [];
  private rxSeen = 0;
  private rxPosted = 0;
  private txNext = 0;
  private txSeen = 0;

  constructor(readonly device: VirtioNetDevice, readonly features: bigint, options: DriverOptions = {}) {
    this.size = options.size ?? 16;
    this.memory = options.memory ?? new GuestMemory([{ guestAddress: 0, size: MEMORY_SIZE, buffer: new ArrayBuffer(MEMORY_SIZE) }]);
    // As a driver does before it hands the rings over: indices and flags start at 0.
    if (options.memory) this.memory.write(RX_RING, new Uint8Array(RX_BUFS - RX_RING));
    this.rxq = new MockQueue(this.size, 0, RX_RING, this.memory);
    this.txq = new MockQueue(this.size, 0, TX_RING, this.memory);
    const hooks = (index: number) => ({
      interrupt: () => { this.interrupts++; },
      needsReset: (reason: string) => { throw new Error(`needs reset: ${reason}`); },
      live: () => true,
      // The queue yielded (descriptor budget): the transport notifies the device again.
      resume: () => device.queueNotify(index),
    });
    const queueFeatures = { eventIdx: options.eventIdx ?? true, indirect: true };
    this.rx = this.rxq.create(queueFeatures, hooks(C.RX_QUEUE), C.RX_QUEUE);
    this.tx = this.txq.create(queueFeatures, hooks(C.TX_QUEUE), C.TX_QUEUE);
    device.activate({ features, queues: [this.rx, this.tx], memory: this.memory });
  }

  /** rx buffers the driver has made available and not got back yet. */
  get rxOutstanding(): number {
    return this.rxPosted - this.rxSeen;
  }

  /** tx chains not completed yet. */
  get txOutstanding(): number {
    return (this.memory.readU16(this.txq.config.availRing + 2) - this.txq.usedIdx()) & 0xffff;
  }

  /** Make up to `n` more `len`-byte receive buffers available; returns how many. */
  postRx(n: number, { len = BUF, notify = true }: { len?: number; notify?: boolean } = {}): number {
    // Only buffers the device gave back (and we collected) can be posted again.
    n = Math.min(n, this.size - this.rxOutstanding);
    for (let k = 0; k < n; k++) this.postRxDesc({ addr: rxSlot(this.rxPosted % this.size), len, flags: VIRTQ_DESC_F_WRITE });
    if (notify && n > 0) this.device.queueNotify(C.RX_QUEUE);
    return n;
  }

  /** Post the next rx slot with descriptor `d` (malformed ones too); returns its head. */
  postRxDesc(d: { addr: number; len: number; flags?: number }): number {
    const i = this.rxPosted++ % this.size;
    this.rxq.setDesc(i, d);
    this.rxq.addAvail(i);
    return i;
  }

  /** Frames the device put in the used ring (merged buffers joined by num_buffers), headers removed. */
  collectRaw(): Buffer[] {
    const got: Buffer[] = [];
    while (this.rxSeen !== this.rxq.usedIdx()) {
      const first = this.rxq.used(this.rxSeen);
      if (first.len < HDR) {
        // Linux drops these ("packet too short") and recycles the buffer.
        this.rxUsed.push(first);
        this.rxSeen++;
        this.returnedUnused++;
        continue;
      }
      const numBuffers = this.memory.readU16(rxSlot(first.id) + C.VIRTIO_NET_HDR_NUM_BUFFERS);
      const parts: Uint8Array[] = [];
      for (let k = 0; k < numBuffers; k++) {
        const u = this.rxq.used(this.rxSeen++);
        this.rxUsed.push(u);
        parts.push(this.memory.read(rxSlot(u.id), u.len));
      }
      const all = Buffer.concat(parts);
      this.headers.push(all.subarray(0, HDR));
      got.push(all.subarray(HDR));
    }
    return got;
  }

  collect(): Parsed[] {
    const got = this.collectRaw().map((f) => parseFrame(f));
    this.frames.push(...got);
    return got;
  }

  /** Transmit a frame; `split` puts the header in its own descriptor, as Linux often does. */
  send(frame: Uint8Array, { split = true, notify = true }: { split?: boolean; notify?: boolean } = {}): void {
    if (this.txOutstanding >= this.size / 2) throw new Error('the tx ring is full (the device has not completed earlier frames)');
    const slot = (this.txNext++ % (this.size / 2)) * 2;
    const at = TX_BUFS + slot * BUF;
    if (HDR + frame.length > 2 * BUF) throw new Error(`a tx frame of ${frame.length} bytes does not fit two ${BUF}-byte slots`);
    this.memory.write(at, new Uint8Array(HDR));
    this.memory.write(at + HDR, frame);
    if (split) {
      this.txq.setDesc(slot, { addr: at, len: HDR, flags: VIRTQ_DESC_F_NEXT, next: slot + 1 });
      this.txq.setDesc(slot + 1, { addr: at + HDR, len: frame.length });
    } else {
      this.txq.setDesc(slot, { addr: at, len: HDR + frame.length });
    }
    this.txq.addAvail(slot);
    if (notify) this.device.queueNotify(C.TX_QUEUE);
  }

  /** tx used elements since the last call. */
  txCompleted(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    while (this.txSeen !== this.txq.usedIdx()) out.push(this.txq.used(this.txSeen++));
    return out;
  }

  /** Answer ARP, ping and UDP for `guestIp` (what a guest kernel would do). */
  respond(frames: Parsed[], guestMac: Uint8Array, guestIp: string): void {
    for (const f of frames) {
      if (f.arp && f.arp.op === 1 && f.arp.targetIp === guestIp) {
        this.send(Uint8Array.from([...f.src, ...guestMac, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2,
          ...guestMac, ...ipBytes(guestIp), ...f.arp.senderMac, ...ipBytes(f.arp.senderIp)]));
      }
      const icmp = f.ipv4?.icmp;
      if (icmp && icmp.type === 8 && f.ipv4!.dst === guestIp) {
        this.send(icmpEcho(guestMac, Uint8Array.from(f.src), guestIp, f.ipv4!.src, 0, icmp.id, icmp.seq, icmp.payload));
      }
      const udp = f.ipv4?.udp;
      if (udp && f.ipv4!.dst === guestIp) {
        this.send(udpFrame(guestMac, Uint8Array.from(f.src), guestIp, f.ipv4!.src, udp.dstPort, udp.srcPort, udp.payload));
      }
    }
  }
}
