/**
 * Unix-domain sockets for plugins: a typed, event-driven layer over the addon's socket calls,
 * driven by the main thread's libuv loop (one `FdWatcher` per fd). Plugins use this module and
 * never import `native/`.
 *
 *   UnixServer        listen on a path (created with a given mode), accept connections
 *   UnixMessageSocket a connected SOCK_SEQPACKET or SOCK_STREAM fd: messages with fds in, a
 *                     write queue with backpressure out
 *   connect()         a client connection
 *
 * Ownership of file descriptors, which is the whole point of this module:
 *   - a socket owns its own fd from construction on; `close()` (idempotent) closes it;
 *   - fds that arrive with a message belong to the 'message' listener from the moment it is
 *     called (with no listener they are closed at once);
 *   - fds given to `send()` stay the caller's unless `closeFds` is set, in which case the socket
 *     closes them once they are sent, or when it closes with them still queued. A caller that
 *     keeps its fds must keep them open until `onSent` is called: a queued message refers to
 *     them by number.
 * Nothing here throws out of a watcher callback: the addon calls back from the libuv loop, so
 * errors end the socket ('close' carries the error) instead.
 */
import { EventEmitter } from 'events';
import * as fs from 'fs';
import createDebug from 'debug';
import { native, type FdWatcher, type PeerCred, type RecvResult } from '../../native';

export type { PeerCred };

const log = createDebug('vmm:net');

export type UnixSocketType = 'seqpacket' | 'stream';

/** Default largest message read at once (a longer SEQPACKET datagram is reported `truncated`). */
export const VMM_DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;
/** Default most fds accepted with one message (more are reported `controlTruncated`). */
export const VMM_DEFAULT_MAX_FDS = 8;
/** Queued outgoing bytes above which `send()` returns false (as a stream's `write` does). */
export const VMM_DEFAULT_HIGH_WATER_BYTES = 256 * 1024;
/** listen(2) backlog of a server socket. */
export const VMM_LISTEN_BACKLOG = 128;
/** Messages read per readiness callback before yielding to the loop (fairness between peers). */
const READ_BATCH = 64;
/** Connections accepted per readiness callback before yielding to the loop. */
const ACCEPT_BATCH = 64;
/** After EMFILE/ENFILE the listener pauses this long instead of spinning on a ready backlog. */
const ACCEPT_RETRY_MS = 100;
/** errno names that mean the peer has gone. */
const PEER_GONE = new Set(['EPIPE', 'ECONNRESET', 'ENOTCONN']);

/** One message as received. `fds` belong to the listener (close the ones you do not keep). */
export interface UnixMessage {
  data: Buffer;
  fds: number[];
  /** MSG_TRUNC: the datagram was longer than `maxMessageBytes`; the rest was discarded. */
  truncated: boolean;
  /** MSG_CTRUNC, or more than `maxFds` fds: the kernel discarded some (the rest are in `fds`). */
  controlTruncated: boolean;
}

export interface UnixMessageSocketOptions {
  /** What the fd is; decides what a zero-length read means. Default 'seqpacket'. */
  type?: UnixSocketType;
  /** Largest message read at once. Default VMM_DEFAULT_MAX_MESSAGE_BYTES. */
  maxMessageBytes?: number;
  /** Most fds accepted with one message. Default VMM_DEFAULT_MAX_FDS. */
  maxFds?: number;
  /** Queued bytes above which `send()` returns false. Default VMM_DEFAULT_HIGH_WATER_BYTES. */
  highWaterBytes?: number;
  /**
   * When the peer shuts down its sending side: false (default) closes the socket at once;
   * true emits 'end' and leaves the socket open for replies until `end()` or `close()`.
   */
  allowHalfOpen?: boolean;
}

export interface SendOptions {
  /** The socket owns the fds from now on and closes them once sent (or when it closes). */
  closeFds?: boolean;
  /** Called once: when the message has been handed to the kernel, or with why it never will be. */
  onSent?: (error?: Error) => void;
}

interface Outgoing {
  data: Uint8Array;
  fds: number[];
  /** STREAM: part of the data went out, and the fds with it. */
  fdsSent: boolean;
  options: SendOptions;
}

export class UnixSocketError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnixSocketError';
  }
}

/**
 * A connected Unix socket carrying messages and fds.
 *
 * Events:
 *   'message' (message: UnixMessage)  one datagram (SEQPACKET) or one read's worth (STREAM)
 *   'drain'   ()                       the write queue has emptied
 *   'end'     ()                       the peer will send no more (only with allowHalfOpen)
 *   'close'   (error?: Error)          the fd is closed; no more events; `error` when it ended
 *                                      on something other than an orderly hangup
 */
export class UnixMessageSocket extends EventEmitter {
  readonly type: UnixSocketType;
  private fd: number;
  private readonly watcher: FdWatcher;
  private readonly maxMessageBytes: number;
  private readonly maxFds: number;
  private readonly highWaterBytes: number;
  private readonly allowHalfOpen: boolean;
  private readonly queue: Outgoing[] = [];
  private queuedBytes = 0;
  private reading = true;
  private peerShutDown = false;
  private eof = false;
  private ending = false;
  private watching = 0;
  private isClosed = false;

  /** Takes ownership of `fd` (a connected, non-blocking socket); it is closed if this throws. */
  constructor(fd: number, options: UnixMessageSocketOptions = {}) {
    super();
    this.fd = fd;
    this.type = options.type ?? 'seqpacket';
    this.maxMessageBytes = options.maxMessageBytes ?? VMM_DEFAULT_MAX_MESSAGE_BYTES;
    this.maxFds = options.maxFds ?? VMM_DEFAULT_MAX_FDS;
    this.highWaterBytes = options.highWaterBytes ?? VMM_DEFAULT_HIGH_WATER_BYTES;
    this.allowHalfOpen = options.allowHalfOpen ?? false;
    try {
      this.watcher = new native.FdWatcher(fd, (events, status) => this.onReady(events, status));
    } catch (error) {
      closeQuietly(fd);
      throw error;
    }
    this.updateWatch();
  }

  get closed(): boolean { return this.isClosed; }
  /** Bytes waiting in the write queue (not yet taken by the kernel). */
  get bufferedBytes(): number { return this.queuedBytes; }
  /** Messages waiting in the write queue. */
  get bufferedMessages(): number { return this.queue.length; }

  /** SO_PEERCRED of the connected peer: who connected (accepted sockets) or who listens. */
  peerCred(): PeerCred {
    if (this.isClosed) throw new UnixSocketError('ERR_SOCKET_CLOSED', 'the socket is closed.');
    return native.peerCred(this.fd);
  }

  /**
   * Send one message (for SEQPACKET, one datagram) with `fds` as SCM_RIGHTS. It goes out at once
   * when the kernel has room, otherwise it is queued and sent in order when the socket becomes
   * writable. Returns false when the queue is above the high-water mark: wait for 'drain'.
   */
  send(data: Uint8Array, fds: readonly number[] = [], options: SendOptions = {}): boolean {
    const item: Outgoing = { data, fds: [...fds], fdsSent: false, options };
    if (this.isClosed || this.ending) {
      this.fail(item, new UnixSocketError('ERR_SOCKET_CLOSED', 'cannot send: the socket is closed.'));
      return false;
    }
    if (this.queue.length === 0) {
      const outcome = this.trySend(item);
      if (outcome === 'sent' || outcome === 'failed') return true;
      if (outcome === 'gone') return false;
    }
    this.queue.push(item);
    this.queuedBytes += item.data.length;
    this.updateWatch();
    return this.queuedBytes < this.highWaterBytes;
  }

  /** Stop reading (backpressure towards the peer); messages stay in the kernel's queue. */
  pauseReading(): void {
    if (!this.reading) return;
    this.reading = false;
    this.updateWatch();
  }

  resumeReading(): void {
    if (this.reading || this.isClosed) return;
    this.reading = true;
    this.updateWatch();
  }

  /** Stop reading, send what is queued, then close. */
  end(): void {
    if (this.isClosed) return;
    this.ending = true;
    this.reading = false;
    this.flush();
    if (!this.isClosed) this.updateWatch();
  }

  /**
   * Fail everything still queued (closing the fds it owns), e.g. before a last message to a
   * peer that fell too far behind.
   */
  discardQueued(reason: Error = new UnixSocketError('ERR_SOCKET_DISCARDED', 'the message was discarded unsent.')): void {
    for (const item of this.queue.splice(0)) this.fail(item, reason);
    this.queuedBytes = 0;
    this.updateWatch();
  }

  /**
   * Close now (idempotent): stops the watcher, closes the fd and every fd it owns, and fails
   * what is still queued. With `flush`, first gives the queue one non-blocking attempt.
   */
  close(error?: Error, options: { flush?: boolean } = {}): void {
    if (this.isClosed) return;
    if (options.flush) this.flush();
    if (this.isClosed) return;
    this.isClosed = true;
    // The uv_poll handle must stop before its fd is closed (libuv requires it); close() does.
    this.watcher.close();
    closeQuietly(this.fd);
    this.fd = -1;
    const reason = error ?? new UnixSocketError('ERR_SOCKET_CLOSED', 'the socket was closed before this message was sent.');
    for (const item of this.queue.splice(0)) this.fail(item, reason);
    this.queuedBytes = 0;
    this.emit('close', error);
  }

  /** Keep (default) or stop keeping the process alive while this socket is open. */
  ref(): void { if (!this.isClosed) this.watcher.ref(); }
  unref(): void { if (!this.isClosed) this.watcher.unref(); }

  // --- readiness -----------------------------------------------------------------------------

  private onReady(events: number, status: number): void {
    try {
      if (this.isClosed) return;
      if (status < 0) {
        // libuv reports POLLERR as a status (and stops polling). For a Unix socket that is the
        // peer closing with data of ours unread (sk_err = ECONNRESET); what it sent before
        // leaving is still queued for us.
        this.drainThenClose();
        return;
      }
      if (events & native.POLL_DISCONNECT) {
        this.peerShutDown = true;
        this.updateWatch();
      }
      if (events & native.POLL_WRITABLE) this.flush();
      if (!this.isClosed && this.reading && (events & (native.POLL_READABLE | native.POLL_DISCONNECT))) this.readBatch();
    } catch (error) {
      // A 'message' or 'drain' listener threw: never let it unwind into the addon's callback.
      log('socket fd %d: a listener threw: %s', this.fd, (error as Error)?.stack ?? error);
      this.close(asError(error));
    }
  }

  private readBatch(): void {
    for (let i = 0; i < READ_BATCH && this.reading && !this.isClosed; i++) {
      let received: RecvResult | null;
      try {
        received = native.recvmsg(this.fd, this.maxMessageBytes, this.maxFds);
      } catch (error) {
        if (errorCode(error) === 'ECONNRESET') this.drainThenClose();
        else this.close(asError(error));
        return;
      }
      if (received === null) return;
      if (this.isEndOfFile(received)) {
        this.onEndOfFile();
        return;
      }
      this.deliver(received);
      // A zero-length SEQPACKET read without a known hangup was taken as an empty datagram; it
      // could also have been the end of file if the peer left just now. Yield, so the next
      // readiness report (which then carries the hangup) decides, and never spin on it.
      if (received.data.length === 0) return;
    }
  }

  /**
   * recvmsg returns 0 both for the end of the stream and (SEQPACKET) for an empty datagram. A
   * STREAM read of 0 is always the end; a SEQPACKET read of 0 is the end once the peer is
   * known to have shut down (POLL_DISCONNECT), and an empty datagram otherwise.
   */
  private isEndOfFile(r: RecvResult): boolean {
    if (r.data.length !== 0 || r.fds.length !== 0 || r.truncated || r.controlTruncated) return false;
    return this.type === 'stream' || this.peerShutDown;
  }

  private deliver(r: RecvResult): void {
    const message: UnixMessage = {
      data: r.data,
      fds: r.fds,
      truncated: r.truncated,
      // The control buffer may hold a few more fds than asked for (CMSG_SPACE rounds up).
      controlTruncated: r.controlTruncated || r.fds.length > this.maxFds,
    };
    if (this.listenerCount('message') === 0) {
      closeAll(message.fds);
      return;
    }
    this.emit('message', message);
  }

  private onEndOfFile(): void {
    this.eof = true;
    this.reading = false;
    if (!this.allowHalfOpen) {
      this.close();
      return;
    }
    this.updateWatch();
    this.emit('end');
  }

  // --- writing -------------------------------------------------------------------------------

  /** 'sent': done; 'again': kernel full (item unchanged or partly sent); 'failed': dropped; 'gone': closed. */
  private trySend(item: Outgoing): 'sent' | 'again' | 'failed' | 'gone' {
    let n: number;
    try {
      n = native.sendmsg(this.fd, item.data, item.fdsSent ? [] : item.fds);
    } catch (error) {
      const code = errorCode(error);
      if (code !== undefined && PEER_GONE.has(code)) {
        this.onSendHangup(item);
        return 'gone';
      }
      // This message cannot go (EMSGSIZE, EBADF for one of its fds, …); the socket can.
      if (!item.options.onSent) {
        this.fail(item, asError(error));
        this.close(asError(error));
        return 'gone';
      }
      this.fail(item, asError(error));
      return 'failed';
    }
    if (n < 0) return 'again';
    if (n < item.data.length) {
      // Only a STREAM socket sends part of a message; the fds went with the first byte.
      item.data = item.data.subarray(n);
      item.fdsSent = true;
      // The kernel holds its own references now.
      if (item.options.closeFds) closeAll(item.fds);
      item.fds = [];
      return 'again';
    }
    this.succeed(item);
    return 'sent';
  }

  private onSendHangup(item: Outgoing): void {
    this.fail(item, new UnixSocketError('ERR_SOCKET_CLOSED', 'the peer closed the connection.'));
    this.drainThenClose();
  }

  /**
   * The peer has gone. Whatever it sent before leaving is still in our receive queue (a server
   * may have said why it refused us, then closed): deliver it, then close. The kernel reports
   * ECONNRESET once (when the peer left our data unread) before the queued datagrams.
   */
  private drainThenClose(): void {
    this.peerShutDown = true;
    let resets = 0;
    while (this.reading && !this.isClosed && !this.eof) {
      let received: RecvResult | null;
      try {
        received = native.recvmsg(this.fd, this.maxMessageBytes, this.maxFds);
      } catch (error) {
        if (errorCode(error) === 'ECONNRESET' && resets++ === 0) continue;
        break;
      }
      if (received === null || this.isEndOfFile(received)) break;
      this.deliver(received);
    }
    this.close();
  }

  private flush(): void {
    const hadQueue = this.queue.length > 0;
    while (this.queue.length > 0 && !this.isClosed) {
      // Off the queue while it is tried, so a close() inside trySend cannot fail it twice.
      const head = this.queue.shift()!;
      const before = head.data.length;
      this.queuedBytes -= before;
      const outcome = this.trySend(head);
      if (outcome === 'gone') return;
      if (outcome === 'again') {
        this.queue.unshift(head);
        this.queuedBytes += head.data.length;
        break;
      }
    }
    if (this.isClosed) return;
    if (this.queue.length === 0) {
      if (this.ending) {
        this.close();
        return;
      }
      if (hadQueue) {
        this.updateWatch();
        this.emit('drain');
      }
    }
  }

  private succeed(item: Outgoing): void {
    if (item.options.closeFds) closeAll(item.fds);
    item.options.onSent?.();
  }

  private fail(item: Outgoing, error: Error): void {
    if (item.options.closeFds) closeAll(item.fds);
    item.options.onSent?.(error);
  }

  /** Watch for exactly what can make progress, so a level-triggered poll never spins. */
  private updateWatch(): void {
    if (this.isClosed) return;
    let events = 0;
    if (this.reading && !this.eof) events |= native.POLL_READABLE;
    if (!this.peerShutDown) events |= native.POLL_DISCONNECT;
    if (this.queue.length > 0) events |= native.POLL_WRITABLE;
    if (events === this.watching) return;
    this.watching = events;
    if (events === 0) this.watcher.stop();
    else this.watcher.start(events);
  }
}

// -----------------------------------------------------------------------------------------------

export interface UnixServerOptions {
  /** Default 'seqpacket'. */
  type?: UnixSocketType;
  /** Permission bits of the socket file. Default 0o600 (only the owner may connect). */
  mode?: number;
  backlog?: number;
  /** Options for every accepted connection (its type is the server's). */
  connection?: Omit<UnixMessageSocketOptions, 'type'>;
  /** Emit accepted fds as they are ('fd' events) instead of wrapping them in a UnixMessageSocket. */
  rawFds?: boolean;
}

/**
 * A listening Unix socket (SOCK_SEQPACKET or SOCK_STREAM) on a path.
 *
 * Events:
 *   'connection' (socket: UnixMessageSocket)  a new peer (closed at once if nobody listens)
 *   'fd'         (fd: number)                 with rawFds: a new peer's fd, owned by the listener
 *   'close'      ()
 */
export class UnixServer extends EventEmitter {
  readonly path: string;
  private fd: number;
  private readonly watcher: FdWatcher;
  private readonly connectionOptions: UnixMessageSocketOptions;
  private readonly rawFds: boolean;
  private identity: { dev: number; ino: number } | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private isClosed = false;

  /**
   * Bind and listen on `path`, which must not exist (callers decide what to do with a stale
   * socket file first). The file is created with `mode` (the socket's mode is set before
   * bind(2)), so no other user can connect between bind and chmod.
   */
  static listen(path: string, options: UnixServerOptions = {}): UnixServer {
    const mode = options.mode ?? 0o600;
    const fd = bindWithMode(path, options.type ?? 'seqpacket', mode, options.backlog ?? VMM_LISTEN_BACKLOG);
    try {
      return new UnixServer(path, fd, options);
    } catch (error) {
      closeQuietly(fd);
      unlinkQuietly(path);
      throw error;
    }
  }

  private constructor(path: string, fd: number, options: UnixServerOptions) {
    super();
    this.path = path;
    this.fd = fd;
    this.connectionOptions = { ...options.connection, type: options.type ?? 'seqpacket' };
    this.rawFds = options.rawFds ?? false;
    const stat = fs.statSync(path);
    this.identity = { dev: stat.dev, ino: stat.ino };
    this.watcher = new native.FdWatcher(fd, (_events, status) => this.onReady(status));
    this.watcher.start(native.POLL_READABLE);
  }

  get closed(): boolean { return this.isClosed; }

  /** Stop accepting, close the listening fd and remove the socket file (if it is still ours). Idempotent. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.watcher.close();
    closeQuietly(this.fd);
    this.fd = -1;
    // Another VMM may have replaced a file we thought stale; only remove our own inode.
    try {
      const stat = fs.lstatSync(this.path);
      if (this.identity && stat.dev === this.identity.dev && stat.ino === this.identity.ino) fs.unlinkSync(this.path);
    } catch { /* already gone */ }
    this.emit('close');
  }

  ref(): void { if (!this.isClosed) this.watcher.ref(); }
  unref(): void { if (!this.isClosed) this.watcher.unref(); }

  private onReady(status: number): void {
    if (this.isClosed) return;
    if (status < 0) {
      log('listener %s: poll status %d', this.path, status);
      return;
    }
    for (let i = 0; i < ACCEPT_BATCH && !this.isClosed; i++) {
      let fd: number | null;
      try {
        fd = native.unixAccept(this.fd);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException)?.code;
        if (code === 'ECONNABORTED' || code === 'EINTR') continue;
        // Out of fds (or another resource): the backlog stays ready, so pause instead of spinning.
        log('listener %s: accept failed (%s); retrying in %d ms', this.path, (error as Error)?.message, ACCEPT_RETRY_MS);
        this.watcher.stop();
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          if (!this.isClosed) this.watcher.start(native.POLL_READABLE);
        }, ACCEPT_RETRY_MS);
        return;
      }
      if (fd === null) return;
      if (this.rawFds) {
        if (this.listenerCount('fd') === 0) closeQuietly(fd);
        else this.emit('fd', fd);
        continue;
      }
      let socket: UnixMessageSocket;
      try {
        socket = new UnixMessageSocket(fd, this.connectionOptions);
      } catch (error) {
        log('listener %s: cannot watch a new connection: %s', this.path, (error as Error)?.message);
        continue;
      }
      if (this.listenerCount('connection') === 0) socket.close();
      else {
        try {
          this.emit('connection', socket);
        } catch (error) {
          log('listener %s: a connection listener threw: %s', this.path, (error as Error)?.stack ?? error);
          socket.close();
        }
      }
    }
  }
}

// -----------------------------------------------------------------------------------------------

/** Connect to a listening socket. Throws the addon's error (`code` ENOENT, ECONNREFUSED, EACCES, …). */
export function connect(path: string, type: UnixSocketType = 'seqpacket', options: Omit<UnixMessageSocketOptions, 'type'> = {}): UnixMessageSocket {
  const fd = native.unixConnect(path, socketType(type));
  return new UnixMessageSocket(fd, { ...options, type });
}

/** A connected pair (tests, in-process peers). */
export function socketPair(type: UnixSocketType = 'seqpacket', options: Omit<UnixMessageSocketOptions, 'type'> = {}): [UnixMessageSocket, UnixMessageSocket] {
  const [a, b] = native.unixPair(socketType(type));
  let first: UnixMessageSocket;
  try {
    first = new UnixMessageSocket(a, { ...options, type });
  } catch (error) {
    closeQuietly(b);
    throw error;
  }
  return [first, new UnixMessageSocket(b, { ...options, type })];
}

/**
 * Make `path` free for a new listener: a stale socket file (nobody listens on it) is removed.
 * Returns what was there; 'live' and 'other' are left alone for the caller to refuse, each in its
 * own words.
 */
export function claimSocketPath(path: string, type: UnixSocketType = 'seqpacket'): 'none' | 'live' | 'stale' | 'other' {
  const found = probeSocketPath(path, type);
  if (found === 'stale') {
    try {
      fs.unlinkSync(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return found;
}

/**
 * What is at `path`: 'none' (nothing), 'live' (a socket someone accepts on), 'stale' (a socket
 * file nobody listens on: ECONNREFUSED), 'other' (not a socket). Probing connects and closes at
 * once; the listener sees a connection that hangs up.
 */
export function probeSocketPath(path: string, type: UnixSocketType = 'seqpacket'): 'none' | 'live' | 'stale' | 'other' {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    throw error;
  }
  if (!stat.isSocket()) return 'other';
  let fd: number;
  try {
    fd = native.unixConnect(path, socketType(type));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException)?.code;
    if (code === 'ECONNREFUSED') return 'stale';
    // EPROTOTYPE: a live socket of another type; anything else we cannot judge, so not stale.
    if (code === 'EPROTOTYPE') return 'live';
    throw error;
  }
  closeQuietly(fd);
  return 'live';
}

/** Close each fd, ignoring EBADF (for cleanup paths that must not throw). */
export function closeAll(fds: readonly number[]): void {
  for (const fd of fds) closeQuietly(fd);
}

export function closeQuietly(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0) return;
  try {
    native.close(fd);
  } catch (error) {
    log('close(%d) failed: %s', fd, (error as Error)?.message);
  }
}

function socketType(type: UnixSocketType): number {
  return type === 'stream' ? native.SOCK_STREAM : native.SOCK_SEQPACKET;
}

function bindWithMode(path: string, type: UnixSocketType, mode: number, backlog: number): number {
  // The addon sets the mode on the socket before bind(2) (so the file is never more open than
  // `mode`) and chmods the file after it (so it is exactly `mode`, whatever the umask).
  return native.unixListen(path, socketType(type), backlog, mode);
}

function unlinkQuietly(path: string): void {
  try { fs.unlinkSync(path); } catch { /* already gone */ }
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function asError(error: unknown): Error {
  // Errors from another realm (the addon's, or a jest test's) are Errors all the same.
  if (error instanceof Error || (typeof error === 'object' && error !== null && typeof (error as Error).message === 'string' && 'stack' in error)) return error as Error;
  // Errors made by the addon belong to another realm under jest; keep message and code.
  const e = error as { message?: unknown; code?: unknown } | null;
  const wrapped = new UnixSocketError(typeof e?.code === 'string' ? e.code : 'ERR_SOCKET', typeof e?.message === 'string' ? e.message : String(error));
  return wrapped;
}
