/**
 * A small client for the control channel (what `vmm ctl` uses).
 *
 *   const client = await ControlClient.connect('/run/vmm.sock');
 *   const response = await client.request('status');
 *   if ('error' in response) … else response.result.state
 *   for await (const event of client.events()) …   // until the VM stops or client.close()
 *   client.close();
 *
 * Requests may be pipelined; the server answers in order, so responses are matched to requests
 * by position (and checked against the request id). `request` resolves with the server's
 * response, an error response included, and rejects with a ControlClientError only when the
 * transport fails: ERR_CONNECTION_LOST, ERR_TIMEOUT, ERR_PROTOCOL.
 */
import {
  connect as connectSocket, type UnixMessage, type UnixMessageSocket, closeAll,
} from '../../core/net/unix-socket';
import {
  CONTROL_ERRORS, CONTROL_MAX_RESPONSE_BYTES, decodeServerMessage, encodeRequest, isEventMessage,
  type ControlErrorResponse, type ControlEvent, type ControlResponse, type ControlRequestMessage,
} from './protocol';

export class ControlClientError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlClientError';
  }
}

export interface RequestOptions {
  /** Reject with ERR_TIMEOUT (and close the connection) when no response comes in time. */
  timeoutMs?: number;
}

interface Pending {
  id: number;
  resolve(response: ControlResponse): void;
  reject(error: Error): void;
  timer?: NodeJS.Timeout;
}

/** Datagrams of events this client keeps for a consumer that is not iterating (then it drops the connection). */
export const CLIENT_EVENT_BACKLOG = 10_000;

export class ControlClient {
  private readonly pending: Pending[] = [];
  private readonly events_: ControlEvent[] = [];
  private wakeEvents: (() => void) | undefined;
  private nextId = 1;
  /** An error the server sent on its own (a refusal), answered to every later request. */
  private refusal: ControlErrorResponse | undefined;
  private closeError: ControlClientError | undefined;

  private constructor(private readonly socket: UnixMessageSocket, readonly path: string) {
    socket.on('message', (message: UnixMessage) => this.receive(message));
    socket.on('close', (error?: Error) => this.onClose(error));
  }

  /** Connect; rejects with ERR_CONNECT (the cause's code: ENOENT, ECONNREFUSED, EACCES, …). */
  static async connect(path: string): Promise<ControlClient> {
    let socket: UnixMessageSocket;
    try {
      socket = connectSocket(path, 'seqpacket', { maxMessageBytes: CONTROL_MAX_RESPONSE_BYTES + 1024, maxFds: 0 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException)?.code;
      const why = code === 'ENOENT' ? 'no such socket (is the VM running with the control plugin?)'
        : code === 'ECONNREFUSED' ? 'nobody is listening on it (the VMM has exited)'
          : code === 'EACCES' ? 'permission denied'
            : (error as Error)?.message ?? String(error);
      throw new ControlClientError(CONTROL_ERRORS.CONNECT, `cannot connect to ${path}: ${why}`, { cause: error });
    }
    return new ControlClient(socket, path);
  }

  get closed(): boolean { return this.socket.closed; }

  /**
   * Send one request with `fds` (SCM_RIGHTS; referenced as fds 0…n-1). The fds stay the
   * caller's: keep them open until the promise settles.
   */
  request(command: string, args: readonly string[] = [], fds: readonly number[] = [], options: RequestOptions = {}): Promise<ControlResponse> {
    if (this.refusal) return Promise.resolve(this.refusal);
    if (this.socket.closed) return Promise.reject(this.lostError());
    const id = this.nextId++;
    const message: ControlRequestMessage = { command, id };
    if (args.length > 0) message.args = [...args];
    if (fds.length > 0) message.fds = fds.map((_, index) => index);
    return new Promise<ControlResponse>((resolve, reject) => {
      const entry: Pending = { id, resolve, reject };
      if (options.timeoutMs !== undefined) {
        entry.timer = setTimeout(() => {
          const error = new ControlClientError(CONTROL_ERRORS.TIMEOUT, `no response to '${command}' within ${options.timeoutMs} ms.`);
          this.closeWith(error);
        }, options.timeoutMs);
      }
      this.pending.push(entry);
      this.socket.send(encodeRequest(message), fds);
    });
  }

  /**
   * Subscribe and iterate over the VM's events until the connection closes (the VM stopped) or
   * the loop is left. Throws a ControlClientError when the server refuses the subscription.
   */
  async *events(options: RequestOptions = {}): AsyncGenerator<ControlEvent, void, undefined> {
    const response = await this.request('events', [], [], options);
    if ('error' in response) throw new ControlClientError(response.error.code, response.error.message);
    for (;;) {
      const next = this.events_.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.socket.closed) {
        // Closed by the server with a reason (dropped for falling behind), or by a failure here.
        if (this.refusal) throw new ControlClientError(this.refusal.error.code, this.refusal.error.message);
        if (this.closeError) throw this.closeError;
        return;
      }
      await new Promise<void>((resolve) => { this.wakeEvents = resolve; });
    }
  }

  /** Close the connection (idempotent); pending requests reject with ERR_CONNECTION_LOST. */
  close(): void {
    this.socket.close();
  }

  private receive(message: UnixMessage): void {
    closeAll(message.fds);
    const decoded = message.truncated
      ? { ok: false as const, error: { code: CONTROL_ERRORS.PROTOCOL, message: 'the server sent a datagram longer than any response may be.' } }
      : decodeServerMessage(message.data);
    if (!decoded.ok) {
      this.closeWith(new ControlClientError(decoded.error.code, decoded.error.message));
      return;
    }
    const value = decoded.value;
    if (isEventMessage(value)) {
      this.events_.push(value.event);
      if (this.events_.length > CLIENT_EVENT_BACKLOG) {
        this.closeWith(new ControlClientError(CONTROL_ERRORS.EVENTS_OVERFLOW, `more than ${CLIENT_EVENT_BACKLOG} events are waiting to be read; the connection was closed.`));
        return;
      }
      this.wake();
      return;
    }
    const entry = this.pending.shift();
    if (!entry) {
      // A response to nothing: the server refusing this connection (or dropping it) says why.
      if ('error' in value) this.refusal = value;
      else this.closeWith(new ControlClientError(CONTROL_ERRORS.PROTOCOL, 'the server sent a response to a request this client never made.'));
      return;
    }
    if (entry.timer) clearTimeout(entry.timer);
    if (value.id !== undefined && value.id !== entry.id) {
      entry.reject(new ControlClientError(CONTROL_ERRORS.PROTOCOL, `the server answered request ${JSON.stringify(value.id)} where ${entry.id} was due.`));
      this.closeWith(new ControlClientError(CONTROL_ERRORS.PROTOCOL, 'responses came out of order.'));
      return;
    }
    entry.resolve(value);
  }

  private closeWith(error: ControlClientError): void {
    this.closeError ??= error;
    this.socket.close();
  }

  private onClose(_error?: Error): void {
    for (const entry of this.pending.splice(0)) {
      if (entry.timer) clearTimeout(entry.timer);
      if (this.refusal) entry.resolve(this.refusal);
      else entry.reject(this.lostError());
    }
    this.wake();
  }

  private lostError(): ControlClientError {
    if (this.closeError) return this.closeError;
    return new ControlClientError(CONTROL_ERRORS.CONNECTION_LOST, `the connection to ${this.path} closed before the response came.`);
  }

  private wake(): void {
    const wake = this.wakeEvents;
    this.wakeEvents = undefined;
    wake?.();
  }
}
