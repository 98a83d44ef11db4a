/** Transmit path: guest tx chains → TAP (virtio 1.2 §5.1.6.2). */
import type { Debugger } from 'debug';
import { native } from '../../native';
import type { VirtioChain, VirtioQueue } from '../../plugin-api';
import { VIRTIO_NET_HDR_SIZE, VMM_NET_BUDGET, VMM_NET_MAX_FRAME } from './constants';

interface DescriptorChainLike extends VirtioChain {
  readableView?(): Uint8Array;
}

export class TxPath {
  private queue: VirtioQueue | undefined;
  /** A chain the TAP refused with EAGAIN: retried when the TAP is writable. */
  private pending: VirtioChain | null = null;
  private blocked = false;
  private scheduled: NodeJS.Immediate | undefined;
  /** Counters (tests and logs); `errors` includes the `oversized` chains. */
  readonly stats = { frames: 0, bytes: 0, errors: 0, eagain: 0, oversized: 0 };

  constructor(private readonly fd: number, private readonly log: Debugger, private readonly changed: () => void) {}

  get wantsWritable(): boolean {
    return this.queue !== undefined && this.blocked;
  }

  start(queue: VirtioQueue): void {
    this.queue = queue;
    this.pending = null;
    this.blocked = false;
  }

  stop(): void {
    this.queue = undefined;
    this.pending = null;
    this.blocked = false;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
  }

  writable(): void {
    if (!this.blocked) return;
    this.blocked = false;
    this.changed();
    this.process();
  }

  /** Send what the driver made available, up to a budget per event-loop turn. */
  process(): void {
    const queue = this.queue;
    if (!queue || this.blocked) return;
    let sent = false;
    let budget = VMM_NET_BUDGET;
    for (;;) {
      if (budget-- === 0) {
        // More work: continue on a later turn so rx and other devices get their share.
        if (!this.scheduled) this.scheduled = setImmediate(() => { this.scheduled = undefined; this.process(); });
        break;
      }
      const chain = this.pending ?? queue.pop();
      if (!chain) {
        if (queue.enableNotification()) continue;
        break;
      }
      this.pending = null;
      // §5.1.6.2: every tx packet starts with the header; the buffers are device-readable.
      if (chain.readableLength <= VIRTIO_NET_HDR_SIZE) {
        this.log('tx chain %d has %d readable bytes (the header alone is %d); returned unsent', chain.head, chain.readableLength, VIRTIO_NET_HDR_SIZE);
        this.stats.errors++;
        queue.pushUsed(chain, 0);
        sent = true;
        continue;
      }
      // Checked before anything is read: the length is the guest's claim, up to 4 GiB.
      if (chain.readableLength > VMM_NET_MAX_FRAME) {
        this.log('tx chain %d has %d readable bytes, more than the largest frame (%d); returned unsent', chain.head, chain.readableLength, VMM_NET_MAX_FRAME);
        this.stats.errors++;
        this.stats.oversized++;
        queue.pushUsed(chain, 0);
        sent = true;
        continue;
      }
      const data = (chain as DescriptorChainLike).readableView?.() ?? chain.readBytes();
      let n: number;
      try {
        n = native.write(this.fd, data);
      } catch (error) {
        // EIO (interface down), EINVAL (a header the kernel refuses): the frame is lost, as on
        // a wire; the buffer goes back to the driver.
        this.stats.errors++;
        this.log('TAP write of %d bytes failed: %s', data.length, (error as Error).message);
        queue.pushUsed(chain, 0);
        sent = true;
        continue;
      }
      if (n < 0) {
        this.stats.eagain++;
        this.pending = chain;
        this.blocked = true;
        this.changed();
        break;
      }
      this.stats.frames++;
      this.stats.bytes += data.length - VIRTIO_NET_HDR_SIZE;
      // §2.7.8: tx buffers are only read, so the used length is 0.
      queue.pushUsed(chain, 0);
      sent = true;
    }
    if (sent) queue.notify();
  }
}
