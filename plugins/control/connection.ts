/**
 * One client of the control channel: its requests are answered strictly one after another, in
 * the order they came, each with exactly one response.
 *
 * Bounds, so that no client can make the VMM grow without limit:
 *   - at most CONTROL_INBOX_MAX requests wait; then the socket stops reading (the kernel's
 *     queue, then the client's send, fills up);
 *   - a client that does not read its responses stops being served once its write queue is
 *     above the socket's high-water mark, until it drains;
 *   - an events subscriber whose queue passes CONTROL_EVENT_BACKLOG_BYTES is dropped (it would
 *     otherwise hold every event forever), with a last datagram saying why.
 */
import type { PeerCred, UnixMessage, UnixMessageSocket } from '../../core/net/unix-socket';
import { closeAll } from '../../core/net/unix-socket';
import { CONTROL_ERRORS, encodeResponse, errorResponse } from './protocol';

/** Requests read ahead of the one being handled before the socket stops reading. */
export const CONTROL_INBOX_MAX = 32;
/** Unsent bytes after which an events subscriber is dropped. */
export const CONTROL_EVENT_BACKLOG_BYTES = 1024 * 1024;
/** How long a dropped client has to read the reason before its socket is closed anyway. */
export const CONTROL_DROP_GRACE_MS = 5000;

/** What the server sends back for one request, and what to do once it is on its way. */
export interface Reply {
  data: Buffer;
  /** Runs right after the reply is queued (before the next request), e.g. subscribe or stop. */
  after?: () => void;
}

export type RequestHandler = (message: UnixMessage, connection: Connection) => Promise<Reply>;

export class Connection {
  private readonly inbox: UnixMessage[] = [];
  private serving = false;
  private peerDone = false;
  private subscribedToEvents = false;
  private dropped = false;

  constructor(
    readonly socket: UnixMessageSocket,
    readonly peer: PeerCred,
    private readonly handle: RequestHandler,
    private readonly log: (format: string, ...args: unknown[]) => void,
  ) {
    socket.on('message', (message: UnixMessage) => this.receive(message));
    socket.on('end', () => {
      // The client sent its last request; answer what is queued, then close.
      this.peerDone = true;
      if (!this.serving && this.inbox.length === 0) socket.end();
    });
    socket.on('close', (error?: Error) => {
      if (error) this.log('connection from pid %d closed: %s', peer.pid, error.message);
      for (const message of this.inbox.splice(0)) closeAll(message.fds);
    });
  }

  get closed(): boolean { return this.socket.closed; }
  get subscribed(): boolean { return this.subscribedToEvents && !this.socket.closed; }

  /** From now on this connection receives events (call right after the `events` reply). */
  subscribe(): void {
    this.subscribedToEvents = true;
  }

  sendEvent(data: Buffer): void {
    if (!this.subscribed) return;
    this.socket.send(data);
    if (this.socket.bufferedBytes > CONTROL_EVENT_BACKLOG_BYTES) {
      const message = `this connection stopped reading events and fell ${this.socket.bufferedBytes} bytes behind (the limit is ${CONTROL_EVENT_BACKLOG_BYTES}); it was dropped.`;
      this.log('dropping events subscriber pid %d: %s', this.peer.pid, message);
      this.drop(encodeResponse(errorResponse(CONTROL_ERRORS.EVENTS_OVERFLOW, message)));
    }
  }

  /**
   * Give up on this client: forget what it has not read, stop serving it, and close once it
   * has read `reason` (or after CONTROL_DROP_GRACE_MS). Holds at most that one message.
   */
  private drop(reason: Buffer): void {
    this.subscribedToEvents = false;
    this.dropped = true;
    for (const message of this.inbox.splice(0)) closeAll(message.fds);
    this.socket.discardQueued();
    this.socket.send(reason);
    this.socket.end();
    if (!this.socket.closed) setTimeout(() => this.socket.close(), CONTROL_DROP_GRACE_MS).unref();
  }

  /** Send what can go without waiting, then close (the VM is gone). */
  close(): void {
    this.socket.close(undefined, { flush: true });
  }

  private receive(message: UnixMessage): void {
    if (this.dropped) {
      closeAll(message.fds);
      return;
    }
    this.inbox.push(message);
    if (this.inbox.length >= CONTROL_INBOX_MAX) this.socket.pauseReading();
    if (!this.serving) void this.serve();
  }

  private async serve(): Promise<void> {
    this.serving = true;
    try {
      while (this.inbox.length > 0 && !this.socket.closed) {
        const message = this.inbox.shift()!;
        if (this.inbox.length < CONTROL_INBOX_MAX && !this.peerDone) this.socket.resumeReading();
        // handle() never throws and always disposes of the message's fds.
        const reply = await this.handle(message, this);
        const roomLeft = this.socket.closed || this.dropped ? true : this.socket.send(reply.data);
        try {
          reply.after?.();
        } catch (error) {
          this.log('after-reply action failed: %s', (error as Error)?.message);
        }
        if (!roomLeft) await this.drained();
      }
    } finally {
      this.serving = false;
    }
    if (this.peerDone && this.inbox.length === 0) this.socket.end();
  }

  /** Resolves once the client has read enough of its responses (or is gone). */
  private drained(): Promise<void> {
    if (this.socket.closed || this.socket.bufferedMessages === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }
}
