/**
 * The TAP's offloads (TUNSETOFFLOAD) as the driver's features want them, with as few ioctls as
 * that allows. Each TUNSETOFFLOAD takes the host-wide rtnl lock, and a guest can reset and
 * re-activate the device in a loop, so:
 *  - nothing reaches the kernel when the wanted flags are what the TAP has already;
 *  - raising (offloads the TAP does not have yet) happens at most once per interval; a raise
 *    that comes sooner is applied when the interval ends, with the latest wanted value. A TAP
 *    with fewer offloads than the driver accepted is always correct, only slower;
 *  - lowering happens at once: the driver must never get checksum-less or GSO frames it did
 *    not accept. There is only something to lower after a raise, and each lowering removes at
 *    least one of the four flags, so lowerings are bounded by raises;
 *  - after a failed ioctl (the interface went away) every change waits for the interval too,
 *    and is retried only when something is wanted again, never by a timer alone.
 * The device lowers to 0 at every reset, so a reset/activate loop costs the host at most two
 * ioctls per interval (one raise, one lowering).
 */
import type { Debugger } from 'debug';
import { TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, VMM_NET_OFFLOAD_INTERVAL_MS } from './constants';

/** if_tun.h: TSO_ECN means nothing (and TUNSETOFFLOAD refuses it) without TSO4 or TSO6. */
function consistent(flags: number): number {
  return flags & (TUN_F_TSO4 | TUN_F_TSO6) ? flags : flags & ~TUN_F_TSO_ECN;
}

export class TapOffloads {
  private applied: number;
  private wanted: number;
  /** When the last raise, or the last failed ioctl, happened (ms, monotonic). */
  private lastLimited = -Infinity;
  private lastFailed = false;
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

  /** What the TAP has now (what the last successful ioctl set). */
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
    const target = this.wanted;
    if (target === this.applied) return;
    const wait = this.lastLimited + this.intervalMs - performance.now();
    if (wait <= 0) {
      // A failure is retried by the next want(), not by a timer: a dead TAP is not polled.
      this.apply(target, (target & ~this.applied) !== 0);
      return;
    }
    if (!this.lastFailed) {
      // Too soon to raise: lower at once what the driver did not accept; the raise waits.
      const lowered = consistent(this.applied & target);
      if (lowered !== this.applied) this.apply(lowered, false);
    }
    if (this.wanted === this.applied) return;
    this.timer = setTimeout(() => this.update(), Math.ceil(wait) + 1);
    // A pending raise must not keep the process alive.
    this.timer.unref();
  }

  private apply(flags: number, limited: boolean): void {
    this.stats.ioctls++;
    try {
      this.setOffloads(flags);
      this.applied = flags;
      this.lastFailed = false;
      if (limited) this.lastLimited = performance.now();
    } catch (error) {
      this.stats.failed++;
      this.lastFailed = true;
      this.lastLimited = performance.now();
      this.log('TUNSETOFFLOAD 0x%s failed: %s', flags.toString(16), (error as Error).message);
    }
  }
}
