/** Receive path: TAP → guest rx buffers (virtio 1.2 §5.1.6.3, §5.1.6.4). */
import type { Debugger } from 'debug';
import { native } from '../../native';
import type { VirtioChain, VirtioQueue } from '../../plugin-api';
import { VIRTIO_NET_HDR_NUM_BUFFERS, VIRTIO_NET_HDR_SIZE, VMM_NET_BUDGET, VMM_NET_MAX_READ } from './constants';

type Delivery = 'delivered' | 'no-buffers' | 'dropped';

export class RxPath {
  private queue: VirtioQueue | undefined;
  private mergeable = false;
  /** A frame read from the TAP that is waiting for guest buffers. */
  private pending: Buffer | null = null;
  /** No guest buffers: the TAP is not read until the driver adds some. */
  private starved = false;
  private dead = false;
  /** Counters (tests and logs). */
  readonly stats = { frames: 0, bytes: 0, dropped: 0, starved: 0 };

  constructor(private readonly fd: number, private readonly log: Debugger, private readonly changed: () => void) {}

  get wantsTap(): boolean {
    return this.queue !== undefined && !this.starved && !this.dead;
  }

  start(queue: VirtioQueue, mergeable: boolean): void {
    this.queue = queue;
    this.mergeable = mergeable;
    this.starved = false;
  }

  stop(): void {
    this.queue = undefined;
    this.starved = false;
    // A frame read for the old driver instance is dropped with it (a link reset).
    if (this.pending) this.stats.dropped++;
    this.pending = null;
  }

  /** The driver notified the rx queue. */
  buffersAdded(): void {
    if (!this.queue) return;
    if (this.starved) {
      this.starved = false;
      this.changed();
    }
    this.tapReadable();
  }

  /** The TAP has frames (or we were starved and may go on). */
  tapReadable(): void {
    const queue = this.queue;
    if (!queue || this.dead) return;
    let delivered = false;
    for (let budget = VMM_NET_BUDGET; budget > 0 && !this.starved; budget--) {
      if (!this.pending) {
        let frame: Buffer | null;
        try {
          frame = native.read(this.fd, VMM_NET_MAX_READ);
        } catch (error) {
          // EBADFD/EIO: the interface went away. Stop reading rather than spin.
          this.log('TAP read failed, receive stopped: %s', (error as Error).message);
          this.dead = true;
          this.changed();
          break;
        }
        if (frame === null || frame.length === 0) break;
        this.pending = frame;
      }
      const result = this.deliver(queue, this.pending);
      if (result === 'no-buffers') {
        this.stats.starved++;
        // Ask for a notification; if buffers arrived meanwhile, go on at once.
        if (queue.enableNotification()) continue;
        this.starved = true;
        this.changed();
        break;
      }
      if (result === 'delivered') delivered = true;
      this.pending = null;
    }
    if (delivered) queue.notify();
  }

  private deliver(queue: VirtioQueue, frame: Buffer): Delivery {
    if (frame.length <= VIRTIO_NET_HDR_SIZE) {
      this.stats.dropped++;
      return 'dropped';
    }
    const chains: VirtioChain[] = [];
    let room = 0;
    while (room < frame.length) {
      const chain = queue.pop();
      if (!chain) {
        queue.undoPop(chains.length);
        return 'no-buffers';
      }
      // §5.1.6.3.1: each rx buffer must at least hold the header; Linux never posts less.
      if (chain.writableLength < VIRTIO_NET_HDR_SIZE) {
        this.log('rx chain %d has %d writable bytes; returned unused', chain.head, chain.writableLength);
        if (chains.length > 0) { queue.undoPop(1); break; }
        queue.pushUsed(chain, 0);
        continue;
      }
      chains.push(chain);
      room += chain.writableLength;
      if (!this.mergeable) break;
    }
    if (room < frame.length) {
      // Without MRG_RXBUF a frame must fit one chain (§5.1.6.3.1): the driver's buffers are too
      // small for it (e.g. an MTU above what it posts). Drop the frame, keep the buffers.
      queue.undoPop(chains.length);
      this.stats.dropped++;
      this.log('rx frame of %d bytes does not fit (%d bytes of buffers); dropped', frame.length, room);
      return 'dropped';
    }
    // §5.1.6.4: num_buffers = how many chains this packet uses.
    frame.writeUInt16LE(chains.length, VIRTIO_NET_HDR_NUM_BUFFERS);
    const used: { chain: VirtioChain; written: number }[] = [];
    let offset = 0;
    for (const chain of chains) {
      const n = chain.writeBytes(frame.subarray(offset, offset + chain.writableLength));
      used.push({ chain, written: n });
      offset += n;
    }
    queue.pushUsedBatch(used);
    this.stats.frames++;
    this.stats.bytes += frame.length - VIRTIO_NET_HDR_SIZE;
    return 'delivered';
  }
}
