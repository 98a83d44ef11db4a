/**
 * virtio-net (virtio 1.2 §5.1) over a TAP, on the main thread's event loop:
 *  - rx: TAP readable → frame into the guest's rx buffers (merged across chains with
 *    MRG_RXBUF). With no buffers the frame is kept and the TAP is not watched until the driver
 *    notifies the rx queue: nothing is dropped and nothing read twice.
 *  - tx: tx notify → each chain is written to the TAP as one frame. On EAGAIN the chain is kept
 *    and the TAP is watched for writable; it is retried, never dropped nor sent twice.
 * The TAP reads and writes the same 12-byte virtio_net_hdr_v1 the driver uses, so offloads
 * pass straight through; the TAP's offloads follow what the driver accepted (offloads.ts: a
 * guest's reset loop does not reach the host kernel's rtnl lock, and rx never hands the driver
 * an offload it did not accept, whatever the TAP has at that moment).
 */
import type { Debugger } from 'debug';
import { native, type FdWatcher } from '../../native';
import type { VirtioActivation, VirtioDevice, VirtioQueue, VirtioTransport } from '../../plugin-api';
import {
  RX_QUEUE, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TX_QUEUE, VIRTIO_NET_CONFIG_MAC,
  VIRTIO_NET_CONFIG_MAX_VQ_PAIRS, VIRTIO_NET_CONFIG_MTU, VIRTIO_NET_CONFIG_SIZE, VIRTIO_NET_CONFIG_STATUS,
  VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP, VMM_NET_QUEUE_SIZE,
} from './constants';
import { TapOffloads } from './offloads';
import { RxPath } from './rx';
import { setOffloads, type Tap } from './tap';
import { TxPath } from './tx';

const VIRTIO_ID_NET = 1; // virtio 1.2 §5: network card

export interface NetDeviceOptions {
  mac: Uint8Array;
  mtu?: number;
}

const bit = (n: number): bigint => 1n << BigInt(n);
export const has = (features: bigint, n: number): boolean => (features & bit(n)) !== 0n;

/** Device features for the offloads the TAP accepted (TSO needs checksum offload, §5.1.3.1). */
export function offeredFeatures(tapOffloads: number, mtu: number | undefined): bigint {
  let f = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MRG_RXBUF);
  if (mtu !== undefined) f |= bit(VIRTIO_NET_F_MTU);
  if (tapOffloads & TUN_F_CSUM) {
    f |= bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_GUEST_CSUM);
    if (tapOffloads & TUN_F_TSO4) f |= bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO4);
    if (tapOffloads & TUN_F_TSO6) f |= bit(VIRTIO_NET_F_HOST_TSO6) | bit(VIRTIO_NET_F_GUEST_TSO6);
    if ((tapOffloads & TUN_F_TSO_ECN) && (tapOffloads & (TUN_F_TSO4 | TUN_F_TSO6))) f |= bit(VIRTIO_NET_F_HOST_ECN) | bit(VIRTIO_NET_F_GUEST_ECN);
  }
  return f;
}

/** TAP offloads matching the driver's GUEST_* features (what it can receive). */
export function tapOffloadsFor(features: bigint): number {
  if (!has(features, VIRTIO_NET_F_GUEST_CSUM)) return 0;
  let flags = TUN_F_CSUM;
  if (has(features, VIRTIO_NET_F_GUEST_TSO4)) flags |= TUN_F_TSO4;
  if (has(features, VIRTIO_NET_F_GUEST_TSO6)) flags |= TUN_F_TSO6;
  if (has(features, VIRTIO_NET_F_GUEST_ECN) && (flags & (TUN_F_TSO4 | TUN_F_TSO6))) flags |= TUN_F_TSO_ECN;
  return flags;
}

export class VirtioNetDevice implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_NET;
  readonly features: bigint;
  readonly queueMaxSizes = [VMM_NET_QUEUE_SIZE, VMM_NET_QUEUE_SIZE];
  readonly config: Uint8Array;
  readonly rx: RxPath;
  readonly tx: TxPath;
  /** The TAP's TUNSETOFFLOAD flags; its stats count the ioctls. */
  readonly offloads: TapOffloads;
  private transport: VirtioTransport | undefined;
  private readonly watcher: FdWatcher;
  private watching = 0;
  private closed = false;

  constructor(readonly tap: Tap, options: NetDeviceOptions, private readonly log: Debugger) {
    this.features = offeredFeatures(tap.offloads, options.mtu);
    const config = new Uint8Array(VIRTIO_NET_CONFIG_SIZE);
    const view = new DataView(config.buffer);
    config.set(options.mac, VIRTIO_NET_CONFIG_MAC);
    view.setUint16(VIRTIO_NET_CONFIG_STATUS, VIRTIO_NET_S_LINK_UP, true);
    view.setUint16(VIRTIO_NET_CONFIG_MAX_VQ_PAIRS, 1, true);
    view.setUint16(VIRTIO_NET_CONFIG_MTU, options.mtu ?? 0, true);
    this.config = config;
    const update = () => this.updateWatch();
    this.rx = new RxPath(tap.fd, log, update);
    this.tx = new TxPath(tap.fd, log, update);
    // openTap leaves the TAP with no offloads.
    this.offloads = new TapOffloads((flags) => setOffloads(tap.fd, flags), 0, log);
    this.watcher = new native.FdWatcher(tap.fd, (events, status) => this.onTapEvent(events, status));
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
  }

  activate({ features, queues }: VirtioActivation): void {
    const rx = queues[RX_QUEUE];
    const tx = queues[TX_QUEUE];
    if (!rx || !tx) {
      this.transport?.needsReset('virtio-net needs both the receive and the transmit queue');
      return;
    }
    // Nothing reaches the kernel when a re-activated driver accepts what the last one did.
    const accepted = tapOffloadsFor(features);
    this.offloads.want(accepted);
    this.rx.start(rx as VirtioQueue, has(features, VIRTIO_NET_F_MRG_RXBUF), accepted);
    this.tx.start(tx as VirtioQueue);
    this.log('active: features 0x%s', features.toString(16));
    this.updateWatch();
  }

  queueNotify(index: number): void {
    if (this.closed) return;
    if (index === RX_QUEUE) this.rx.buffersAdded();
    else if (index === TX_QUEUE) this.tx.process();
  }

  reset(): void {
    this.rx.stop();
    this.tx.stop();
    this.updateWatch();
    // The TAP keeps its offloads (no ioctl per reset): the next activation changes them if its
    // driver accepts others, and rx checks each frame's header against what the driver took.
  }

  shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.rx.stop();
    this.tx.stop();
    this.offloads.close();
    this.watcher.close();
    native.close(this.tap.fd);
  }

  private updateWatch(): void {
    if (this.closed) return;
    const events = (this.rx.wantsTap ? native.POLL_READABLE : 0) | (this.tx.wantsWritable ? native.POLL_WRITABLE : 0);
    if (events === this.watching) return;
    this.watching = events;
    if (events === 0) this.watcher.stop();
    else {
      this.watcher.start(events);
      // The vCPU threads keep the process alive while the VM runs; the TAP must not.
      this.watcher.unref();
    }
  }

  private onTapEvent(events: number, status: number): void {
    if (this.closed) return;
    try {
      if (status < 0) this.log('TAP poll error %d', status);
      if (events & native.POLL_WRITABLE) this.tx.writable();
      if (events & native.POLL_READABLE) this.rx.tapReadable();
    } catch (error) {
      // Only a bug (or memory going away under us) gets here; never take the VMM down.
      this.log('TAP event failed: %s', (error as Error).stack);
    }
  }
}
