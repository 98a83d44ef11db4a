/** Receive path: TAP → guest rx buffers (virtio 1.2 §5.1.6.3, §5.1.6.4). */
import type { Debugger } from 'debug';
import { native } from '../../native';
import type { VirtioChain, VirtioQueue } from '../../plugin-api';
import { VIRTIO_NET_HDR_NUM_BUFFERS, VIRTIO_NET_HDR_SIZE, VMM_NET_BUDGET, VMM_NET_MAX_FRAME } from './constants';
import { rxHeaderFits } from './offloads';

type Delivery = 'delivered' | 'no-buffers' | 'dropped';

export class RxPath {
  private queue: VirtioQueue | undefined;
  private mergeable = false;
  /** TUN_F_* offloads the driver accepted (its GUEST_* features). */
  private accepted = 0;
  /** A frame read from the TAP that is waiting for guest buffers. */
  private pending: Buffer | null = null;
  /** No guest buffers: the TAP is not read until the driver adds some. */
  private starved = false;
  private dead = false;
  /**
   * Counters (tests and logs). `starved`: times the frame held back found too few buffers and
   * the TAP was left alone until the driver's next notify; `badChains`: rx chains too small
   * for the header, returned unused; `offloadDropped` (also in `dropped`): frames with a
   * checksum or GSO offload the driver did not accept (the TAP still had it).
   */
  readonly stats = { frames: 0, bytes: 0, dropped: 0, starved: 0, badChains: 0, offloadDropped: 0 };

  constructor(private readonly fd: number, private readonly log: Debugger, private readonly changed: () => void) {}

  get wantsTap(): boolean {
    return this.queue !== undefined && !this.starved && !this.dead;
  }

  start(queue: VirtioQueue, mergeable: boolean, acceptedOffloads: number): void {
    this.queue = queue;
    this.mergeable = mergeable;
    this.accepted = acceptedOffloads;
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
    for (let budget = VMM_NET_BUDGET; budget > 0 && !this.starved; budget--) {
      if (!this.pending) {
        let frame: Buffer | null;
        try {
          frame = native.read(this.fd, VMM_NET_MAX_FRAME);
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
        // Ask for a notification; go on at once only if the driver added chains meanwhile.
        // The chains this frame could not use wait in the queue's stash, so they are not
        // counted as new: with too few of them the TAP is left alone (its poll is
        // level-triggered) until the driver notifies, instead of spinning on them.
        if (queue.enableNotification()) continue;
        this.stats.starved++;
        this.starved = true;
        this.changed();
        break;
      }
      this.pending = null;
    }
    // Also for chains returned unused without a frame (the queue interrupts only if it published).
    queue.notify();
  }

  private deliver(queue: VirtioQueue, frame: Buffer): Delivery {
    if (frame.length <= VIRTIO_NET_HDR_SIZE) {
      this.stats.dropped++;
      return 'dropped';
    }
    if (!rxHeaderFits(frame, this.accepted)) {
      this.stats.dropped++;
      this.stats.offloadDropped++;
      this.log('rx frame with offload flags 0x%s gso_type 0x%s the driver did not accept; dropped', frame[0].toString(16), frame[1].toString(16));
      return 'dropped';
    }
    const chains: VirtioChain[] = [];
    let room = 0;
    // A merged frame uses at most one ring's worth of chains: the driver cannot post more than
    // the queue size, so waiting for more would wait forever. (This also keeps num_buffers, a
    // u16, exact: our queues have at most 256 entries.)
    while (room < frame.length && chains.length < queue.size) {
      const chain = queue.pop();
      if (!chain) {
        // The chains taken so far go to the queue's stash: the next pops return them first.
        queue.undoPop(chains.length);
        return 'no-buffers';
      }
      // §5.1.6.3.1: every rx buffer holds at least the header (Linux never posts less). A chain
      // that cannot is returned unused at once, ahead of this frame's chains in the used ring.
      if (chain.writableLength < VIRTIO_NET_HDR_SIZE) {
        this.log('rx chain %d has %d writable bytes; returned unused', chain.head, chain.writableLength);
        this.stats.badChains++;
        queue.pushUsed(chain, 0);
        continue;
      }
      chains.push(chain);
      room += chain.writableLength;
      if (!this.mergeable) break;
    }
    if (room < frame.length) {
      // Without MRG_RXBUF a frame must fit one chain (§5.1.6.3.1), and with it one ring: the
      // driver's buffers are too small for it (e.g. an MTU above what it posts). Drop the
      // frame, keep the buffers for the next one.
      queue.undoPop(chains.length);
      this.stats.dropped++;
      this.log('rx frame of %d bytes does not fit (%d bytes in %d buffers); dropped', frame.length, room, chains.length);
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
