/**
 * Offloads between the TAP and the driver.
 *
 * TapOffloads sets the TAP's TUNSETOFFLOAD flags to what the driver accepted, with as few ioctls
 * as that allows: each one takes the host-wide rtnl lock, and a guest can reset and re-activate
 * the device in a loop. Nothing reaches the kernel when the wanted flags are what the TAP has;
 * a change reaches it at once if the previous ioctl was at least an interval ago, else when the
 * interval ends, with the latest wanted value (changes in between coalesce). So the kernel sees
 * at most 1000 / VMM_NET_OFFLOAD_INTERVAL_MS of these ioctls a second, whatever the guest does.
 *
 * While the TAP has offloads the driver did not accept (during that wait, or for frames the TAP
 * queued before the change), rxHeaderFits keeps them from the driver: the TAP's flags are an
 * optimization, never what correctness depends on.
 */
import type { Debugger } from 'debug';
import {
  TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
  VMM_NET_OFFLOAD_INTERVAL_MS,
} from './constants';

export class TapOffloads {
  private applied: number;
  private wanted: number;
  /** When the last ioctl was issued (ms, monotonic). */
  private last = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** ioctls issued and how many failed (tests and logs). */
  readonly stats = { ioctls: 0, failed: 0 };

  /** `current`: the flags the TAP has now (openTap leaves it at 0). */
  constructor(
    private readonly setOffloads: (flags: number) => void,
    current: number,
    private readonly log: Debugger,
    private readonly intervalMs = VMM_NET_OFFLOAD_INTERVAL_MS,
  ) {
    this.applied = current;
    this.wanted = current;
  }

  /** The flags the TAP has now (what the last successful ioctl set). */
  get current(): number {
    return this.applied;
  }

  want(flags: number): void {
    if (this.closed) return;
    this.wanted = flags;
    this.update();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private update(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.wanted === this.applied) return;
    const wait = this.last + this.intervalMs - performance.now();
    if (wait <= 0) {
      // A failure is retried by the next want(), not by a timer: a dead TAP is not polled.
      this.apply(this.wanted);
      return;
    }
    this.timer = setTimeout(() => this.update(), Math.ceil(wait) + 1);
    // A pending change must not keep the process alive.
    this.timer.unref();
  }

  private apply(flags: number): void {
    this.stats.ioctls++;
    this.last = performance.now();
    try {
      this.setOffloads(flags);
      this.applied = flags;
    } catch (error) {
      this.stats.failed++;
      this.log('TUNSETOFFLOAD 0x%s failed: %s', flags.toString(16), (error as Error).message);
    }
  }
}

/**
 * Whether an rx frame's virtio_net_hdr asks only for offloads in `accepted` (TUN_F_* flags, from
 * the driver's GUEST_* features); clears the advisory flags the driver may not see. §5.1.6.4.1:
 * without GUEST_CSUM the device sets flags to 0; without the matching GUEST_TSO* (GUEST_UFO and
 * GUEST_USO are never offered) gso_type is NONE. A frame that needs more is not ours to fix.
 */
export function rxHeaderFits(frame: Buffer, accepted: number): boolean {
  const flags = frame[0];
  if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !(accepted & TUN_F_CSUM)) return false;
  // DATA_VALID says the checksum was checked; anything else (RSC_INFO) we never offered.
  const keep = accepted & TUN_F_CSUM ? VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID : 0;
  if (flags & ~keep) frame[0] = flags & keep;
  const gso = frame[1];
  if (gso === VIRTIO_NET_HDR_GSO_NONE) return true;
  if ((gso & VIRTIO_NET_HDR_GSO_ECN) && !(accepted & TUN_F_TSO_ECN)) return false;
  switch (gso & ~VIRTIO_NET_HDR_GSO_ECN) {
    case VIRTIO_NET_HDR_GSO_TCPV4: return (accepted & TUN_F_TSO4) !== 0;
    case VIRTIO_NET_HDR_GSO_TCPV6: return (accepted & TUN_F_TSO6) !== 0;
    default: return false;
  }
}
