/**
 * The accept proxy behind `vmm wl-proxy` (spec §5.3, Spectrum's idea): lets a Wayland
 * compositor running *inside* a VM accept clients that run on the host or in other VMs.
 *
 *   host client ──connect──▶ LISTEN path (this proxy accepts)
 *                                 │ `wl add wl-conn-%d --fd` (the accepted fd, SCM_RIGHTS)
 *                                 ▼
 *                            the VMM's control socket → a NonListening virtio-wl socket
 *                                 │ reply { name: "wl-conn-N" }
 *                                 ▼
 *   guest ◀── "wl-conn-N\n" ── NOTIFY path (a listening stream socket this proxy serves; the
 *                              guest reaches it through a named virtio-wl socket, e.g.
 *                              `sockets: {"wl-proxy": NOTIFY}`, and NEW_CTX_NAMED "wl-proxy")
 *   guest: NEW_CTX_NAMED "wl-conn-N" → that very client connection, used once.
 *
 * Notification format (the NOTIFY stream, proxy → guest):
 *   ASCII lines `NAME\n`, one per accepted connection, in accept order, where NAME is the
 *   socket name the VMM chose (at most 32 bytes, no NUL, no newline). Nothing else is ever
 *   written to the stream; the proxy ignores (discards) anything the guest writes to it. Every
 *   connected notification stream gets every line. Lines for connections accepted while no
 *   notification stream is connected are kept and all delivered, in order, to the first stream
 *   that connects (so the guest may open its notification context after the first client).
 *   A connection whose `wl add` fails is closed and announced nowhere.
 *
 * Names: `wl add` picks the lowest unused number for `%d`, and the VMM forgets a name once the
 * guest closes the context opened on it; so a name can come back (wl-conn-0 again) after its
 * previous connection is finished. Each name still stands for exactly one connection at a time.
 */
import { EventEmitter } from 'events';
import { ControlClient } from '../control/client';
import { UnixMessageSocket, UnixServer, claimSocketPath, closeQuietly } from '../../core/net/unix-socket';

export const DEFAULT_NAME_PREFIX = 'wl-conn-';
/** listen(2) backlog of both listening sockets. */
const BACKLOG = 64;
/** How long one `wl add` may take before the proxy gives up on the VMM. */
const ADD_TIMEOUT_MS = 10_000;

export interface WlProxyOptions {
  /** The VMM's control socket (plugin `control`). */
  control: string;
  /** Where Wayland clients connect (a socket path; WAYLAND_DISPLAY may name it absolutely). */
  listen: string;
  /** The notification socket the guest connects to through virtio-wl. */
  notify: string;
  /** Name template prefix; `%d` is appended unless the prefix already contains it. */
  namePrefix?: string;
  /** Permission bits of both socket files (default 0o600). */
  mode?: number;
}

export class WlProxyError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WlProxyError';
  }
}

/** A listening stream socket whose accepted fds arrive as 'fd' events. */
function listenStream(path: string, mode: number): UnixServer {
  prepareSocketPath(path);
  try {
    return UnixServer.listen(path, { type: 'stream', mode, backlog: BACKLOG, rawFds: true });
  } catch (error) {
    throw new WlProxyError('ERR_LISTEN', `cannot listen on ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Refuse a live or non-socket path; remove a stale socket file. */
function prepareSocketPath(path: string): void {
  let state: ReturnType<typeof claimSocketPath>;
  try {
    state = claimSocketPath(path, 'stream');
  } catch (error) {
    throw new WlProxyError('ERR_LISTEN', `cannot use ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (state === 'live') throw new WlProxyError('ERR_LISTEN', `${path} is in use: something is already listening there.`);
  if (state === 'other') throw new WlProxyError('ERR_LISTEN', `${path} exists and is not a socket; refusing to replace it.`);
}

/**
 * Events:
 *   'connection' ({ name })   a client was handed to the VM as `name` and announced
 *   'rejected'   ({ error })  a client could not be handed over (closed; the proxy goes on)
 *   'close'      (error?)     the proxy stopped; `error` when it had to (the VMM went away)
 */
export class WlProxy extends EventEmitter {
  private readonly template: string;
  private readonly servers: UnixServer[] = [];
  private readonly subscribers = new Set<UnixMessageSocket>();
  /** Names announced while nobody was subscribed. */
  private readonly backlog: string[] = [];
  /** Accepted fds waiting for their turn (handed over one at a time, in accept order). */
  private readonly queue: number[] = [];
  private busy = false;
  private closed = false;

  private constructor(private readonly client: ControlClient, readonly options: WlProxyOptions) {
    super();
    const prefix = options.namePrefix ?? DEFAULT_NAME_PREFIX;
    this.template = prefix.includes('%d') ? prefix : `${prefix}%d`;
  }

  /** Connect to the VMM and listen on both paths. Rejects with a WlProxyError / ControlClientError. */
  static async start(options: WlProxyOptions): Promise<WlProxy> {
    const prefix = options.namePrefix ?? DEFAULT_NAME_PREFIX;
    if (prefix.includes('\n') || prefix.includes('\0') || prefix.split('%d').length > 2) {
      throw new WlProxyError('ERR_BAD_NAME', `--name-prefix '${prefix}' may not contain a newline or NUL, and '%d' at most once.`);
    }
    const client = await ControlClient.connect(options.control);
    const proxy = new WlProxy(client, options);
    try {
      // Is the VMM answering wl commands at all (the virtio-wl plugin loaded)?
      const probe = await client.request('wl', ['list'], [], { timeoutMs: ADD_TIMEOUT_MS });
      if ('error' in probe) throw new WlProxyError(probe.error.code, `the VMM at ${options.control} does not take wl commands: ${probe.error.message}`);
      const mode = options.mode ?? 0o600;
      proxy.servers.push(listenStream(options.notify, mode).on('fd', (fd: number) => proxy.subscribe(fd)));
      proxy.servers.push(listenStream(options.listen, mode).on('fd', (fd: number) => proxy.accepted(fd)));
    } catch (error) {
      proxy.close();
      throw error;
    }
    void proxy.watchControl();
    return proxy;
  }

  get isClosed(): boolean { return this.closed; }

  /** Stop: close both listeners (removing the socket files), the notification streams and queued fds. */
  close(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.servers.splice(0)) l.close();
    for (const s of [...this.subscribers]) s.close();
    this.subscribers.clear();
    for (const fd of this.queue.splice(0)) closeQuietly(fd);
    this.client.close();
    this.emit('close', error);
  }

  /** Notice the VMM going away even while no client connects (a request only fails then). */
  private async watchControl(): Promise<void> {
    while (!this.closed) {
      await new Promise((r) => setTimeout(r, 500).unref());
      if (this.client.closed && !this.closed) {
        this.close(new WlProxyError('ERR_CONNECTION_LOST', `the connection to the VMM (${this.options.control}) closed.`));
      }
    }
  }

  private subscribe(fd: number): void {
    let socket: UnixMessageSocket;
    try {
      socket = new UnixMessageSocket(fd, { type: 'stream', maxFds: 0 });
    } catch (error) {
      closeQuietly(fd);
      this.emit('rejected', { error });
      return;
    }
    this.subscribers.add(socket);
    socket.on('message', () => undefined); // the stream is one-way; input is dropped
    socket.on('close', () => this.subscribers.delete(socket));
    if (this.backlog.length > 0) socket.send(Buffer.from(this.backlog.splice(0).map((n) => `${n}\n`).join('')));
  }

  private accepted(fd: number): void {
    if (this.closed) {
      closeQuietly(fd);
      return;
    }
    this.queue.push(fd);
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (!this.closed && this.queue.length > 0) {
        const fd = this.queue.shift()!;
        try {
          const response = await this.client.request('wl', ['add', this.template, '--fd'], [fd], { timeoutMs: ADD_TIMEOUT_MS });
          if ('error' in response) {
            this.emit('rejected', { error: new WlProxyError(response.error.code, `wl add ${this.template} failed: ${response.error.message}`) });
            continue;
          }
          const name = response.result.name;
          if (typeof name !== 'string' || name === '' || name.includes('\n')) {
            this.emit('rejected', { error: new WlProxyError('ERR_PROTOCOL', `wl add answered without a usable name: ${JSON.stringify(response.result)}`) });
            continue;
          }
          this.announce(name);
          this.emit('connection', { name });
        } catch (error) {
          // The control connection failed: nothing more can be handed over.
          this.close(error as Error);
        } finally {
          closeQuietly(fd); // the VMM has its own copy now (or none)
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private announce(name: string): void {
    if (this.subscribers.size === 0) {
      this.backlog.push(name);
      return;
    }
    const line = Buffer.from(`${name}\n`);
    for (const s of this.subscribers) s.send(line);
  }
}
