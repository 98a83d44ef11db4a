/**
 * One VFD_SEND on its way to a host fd (spec §3.5, step 3). It is written straight from guest
 * memory when the host takes it at once. When it has to wait for the host (backpressure), it
 * first takes ownership of everything it will still use:
 *
 *   - a copy of the bytes not yet written (the guest may reuse its buffer once it has the
 *     chain back, and a view of guest memory must not outlive the call);
 *   - its own duplicates (F_DUPFD_CLOEXEC) of the listed VFDs' fds, until they have gone out.
 *     The VFDs keep their fds, and a listed context that hangs up meanwhile closes its socket:
 *     without the duplicates, that number could be reused by whatever the VMM opens next (a
 *     control connection, a TAP, another VM's context) and go to the peer as SCM_RIGHTS.
 *
 * release() closes the duplicates; call it once the send is done, failed or abandoned.
 *
 * A DONTWAIT send (the per-call flags extension) pushes with allOrNothing: if the host takes
 * nothing at once it is 'refused' and owns nothing; if the host took part of it, it is accepted
 * and its rest waits like any other (the device holds it for the VFD, device.ts heldSend).
 */
import { native } from '../../native';
import type { VirtioChain } from '../../plugin-api';
import { closeQuietly } from './sockets';
import type { Vfd } from './vfd';

export class OutgoingSend {
  private offset = 0;
  private fdsSent: boolean;
  private ownsFds = false;
  /** Some of it (a byte or the fds) went to the host. */
  private started = false;

  /**
   * `data` may be a view of guest memory (`dataIsView`); `fds` are the listed VFDs' fds, valid
   * for the duration of this call; `fd` is the target's, which stays open while the send waits
   * (the device fails a waiting send before it closes its target, device.ts hangUp).
   */
  constructor(
    readonly chain: VirtioChain,
    readonly target: Vfd,
    private readonly fd: number,
    private readonly isSocket: boolean,
    private data: Uint8Array,
    private dataIsView: boolean,
    private fds: number[],
    /** The listed VFDs, whose remote pipe ends the device drops once sent (§3.5 step 4). */
    readonly listed: readonly Vfd[],
  ) {
    this.fdsSent = fds.length === 0;
  }

  /** Payload bytes still to write. */
  get remaining(): number {
    return this.data.length - this.offset;
  }

  /**
   * Write as much as the host takes: 'sent' when every byte and fd is out, 'wait' when the rest
   * must wait for the fd to become writable. With `allOrNothing`, a host that takes nothing at
   * once gives 'refused' instead, and the send owns nothing. Throws on a host error (EPIPE, …)
   * or when it cannot take ownership (dup failing): nothing of the fds went out then.
   */
  push(allOrNothing = false): 'sent' | 'wait' | 'refused' {
    while (this.offset < this.data.length || !this.fdsSent) {
      const chunk = this.data.subarray(this.offset);
      const n = this.isSocket ? native.sendmsg(this.fd, chunk, this.fdsSent ? [] : this.fds) : native.write(this.fd, chunk);
      if (n < 0) {
        if (allOrNothing && !this.started) return 'refused';
        this.own();
        return 'wait';
      }
      this.started = true;
      if (!this.fdsSent) {
        // The first write carried them: the kernel holds its own references now.
        this.fdsSent = true;
        this.release();
      }
      this.offset += n;
      if (chunk.length === 0) break;
      if (n === 0) throw new Error('the host fd took no bytes');
    }
    return 'sent';
  }

  /**
   * Take ownership now of what a later push() still needs (a send that must wait without being
   * pushed: behind the rest of an earlier one on the same fd).
   */
  hold(): void {
    this.own();
  }

  /** Close the duplicated fds (sent, failed or abandoned); idempotent. */
  release(): void {
    if (!this.ownsFds) return;
    for (const fd of this.fds) closeQuietly(fd);
    this.fds = [];
    this.ownsFds = false;
  }

  private own(): void {
    if (!this.fdsSent && !this.ownsFds) {
      const dups: number[] = [];
      try {
        for (const fd of this.fds) dups.push(native.dup(fd));
      } catch (error) {
        for (const fd of dups) closeQuietly(fd);
        throw error;
      }
      this.fds = dups;
      this.ownsFds = true;
    }
    if (this.dataIsView) {
      this.data = this.data.slice(this.offset);
      this.offset = 0;
      this.dataIsView = false;
    }
  }
}
