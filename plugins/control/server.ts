/**
 * The control server: owns the listening socket and its connections, turns datagrams into
 * commands and commands into replies, and fans VM events out to subscribers.
 *
 * Every descriptor that arrives is accounted for: those a command takes (removes from
 * `context.fds`) become the command's; every other one, including those of refused, malformed
 * or oversized requests, is closed once the reply is ready.
 */
import type { Debugger } from 'debug';
import { messageOf } from '../../core/errors';
import type { ControlContext, ControlRequest, DeviceEvent, Vmm, VmState } from '../../plugin-api';
import {
  UnixServer, claimSocketPath, closeAll, type UnixMessage, type UnixMessageSocket,
} from '../../core/net/unix-socket';
import { BUILTIN_COMMAND_NAMES, builtinCommand, type CommandOutcome, type CommandRequest } from './commands';
import { Connection, type Reply } from './connection';
import {
  CONTROL_ERRORS, ControlCommandError, decodeRequest, deviceEvent, encodeEvent, encodeResponse,
  errorResponse, resultResponse, stateEvent, type ControlEventMessage, type ControlRequestId,
} from './protocol';

/** The socket file's permission bits: the VMM's user only (SO_PEERCRED is checked as well). */
export const CONTROL_SOCKET_MODE = 0o600;

export interface ControlServerOptions {
  socket: string;
  allowAnyUid: boolean;
  maxRequestBytes: number;
  maxFds: number;
  stopTimeoutMs: number;
  maxConnections: number;
}

export class ControlServer {
  private listener: UnixServer | undefined;
  private readonly connections = new Set<Connection>();
  private readonly uid = process.geteuid?.() ?? -1;
  private stopRequested = false;

  constructor(private readonly vmm: Vmm, private readonly options: ControlServerOptions, private readonly log: Debugger) {}

  /** Connections being served now (refused ones are not counted). */
  get connectionCount(): number { return this.connections.size; }

  /** Create the socket, replacing a stale one; refuses a live one or a path that is not a socket. */
  start(): void {
    const path = this.options.socket;
    prepareSocketPath(path, this.log);
    try {
      this.listener = UnixServer.listen(path, {
        mode: CONTROL_SOCKET_MODE,
        connection: { maxMessageBytes: this.options.maxRequestBytes, maxFds: this.options.maxFds, allowHalfOpen: true },
      });
    } catch (error) {
      throw new Error(`cannot listen on ${path}: ${messageOf(error)}`, { cause: error });
    }
    this.listener.on('connection', (socket: UnixMessageSocket) => this.accept(socket));
    this.log('listening on %s', path);
  }

  /** No new connections; the socket file goes. Open connections still get the last events. */
  stopListening(): void {
    this.listener?.close();
  }

  /** Close everything (idempotent). Replies and events already queued get one last chance. */
  close(): void {
    this.stopListening();
    for (const connection of [...this.connections]) connection.close();
    this.connections.clear();
  }

  publishState(from: VmState, to: VmState): void {
    this.publish(stateEvent(from, to));
  }

  publishDevice(event: DeviceEvent): void {
    this.publish(deviceEvent(event));
  }

  private publish(event: ControlEventMessage): void {
    let data: Buffer | undefined;
    for (const connection of this.connections) {
      if (!connection.subscribed) continue;
      data ??= encodeEvent(event);
      connection.sendEvent(data);
    }
  }

  // --- connections ---------------------------------------------------------------------------

  private accept(socket: UnixMessageSocket): void {
    let peer;
    try {
      peer = socket.peerCred();
    } catch (error) {
      this.log('cannot read the credentials of a new connection: %s', messageOf(error));
      socket.close();
      return;
    }
    if (!this.options.allowAnyUid && peer.uid !== this.uid) {
      this.log('refused pid %d: uid %d is not ours (%d)', peer.pid, peer.uid, this.uid);
      refuse(socket, CONTROL_ERRORS.PERMISSION_DENIED,
        `uid ${peer.uid} may not use this control socket: the VMM runs as uid ${this.uid} and only accepts its own user (option allowAnyUid).`);
      return;
    }
    if (this.connections.size >= this.options.maxConnections) {
      this.log('refused pid %d: %d connections already', peer.pid, this.connections.size);
      refuse(socket, CONTROL_ERRORS.TOO_MANY_CONNECTIONS,
        `the control socket already serves ${this.connections.size} connections (the limit is ${this.options.maxConnections}); try again later.`);
      return;
    }
    const connection = new Connection(socket, peer, (message, c) => this.handle(message, c), this.log);
    this.connections.add(connection);
    socket.on('close', () => this.connections.delete(connection));
  }

  // --- requests ------------------------------------------------------------------------------

  /** One request → one reply. Never throws; every received fd is taken by the command or closed. */
  private async handle(message: UnixMessage, connection: Connection): Promise<Reply> {
    const received = message.fds;
    const context: ControlContext = { fds: [] };
    let handed: number[] = [];
    let id: ControlRequestId | undefined;
    try {
      const request = this.parse(message);
      id = request.id;
      handed = request.fds.map((index) => received[index]);
      context.fds = [...handed];
      const outcome = await this.execute({ command: request.command, args: request.args }, context, connection);
      return { data: encodeResponse(resultResponse(outcome.result, id)), after: outcome.after };
    } catch (error) {
      if (error instanceof RequestError) id = error.id;
      return { data: encodeResponse(errorResponse(codeOf(error), messageOf(error), id)) };
    } finally {
      // Taken = handed to the command and no longer in its array. Close everything else.
      const left = new Set(context.fds);
      const taken = new Set(handed.filter((fd) => !left.has(fd)));
      closeAll(received.filter((fd) => !taken.has(fd)));
    }
  }

  private parse(message: UnixMessage): { command: string; args: string[]; fds: number[]; id?: ControlRequestId } {
    const { maxRequestBytes, maxFds } = this.options;
    if (message.truncated) {
      throw new ControlCommandError(CONTROL_ERRORS.REQUEST_TOO_LARGE, `the request is longer than ${maxRequestBytes} bytes (option maxRequestBytes); it was discarded.`);
    }
    if (message.controlTruncated) {
      throw new ControlCommandError(CONTROL_ERRORS.TOO_MANY_FDS, `more than ${maxFds} file descriptors came with the request (option maxFds); all were closed.`);
    }
    if (message.data.length === 0) {
      throw new ControlCommandError(CONTROL_ERRORS.EMPTY_REQUEST, 'an empty datagram is not a request; send one JSON object per datagram.');
    }
    const decoded = decodeRequest(message.data);
    if (!decoded.ok) throw new RequestError(decoded.error.code, decoded.error.message, decoded.id);
    const request = decoded.value;
    const seen = new Set<number>();
    for (const index of request.fds) {
      if (index >= message.fds.length) {
        throw new RequestError(CONTROL_ERRORS.BAD_FD_INDEX, `'fds' names descriptor ${index}, but the request carried ${message.fds.length}.`, request.id);
      }
      if (seen.has(index)) {
        throw new RequestError(CONTROL_ERRORS.BAD_FD_INDEX, `'fds' names descriptor ${index} twice.`, request.id);
      }
      seen.add(index);
    }
    return request;
  }

  private async execute(request: CommandRequest, context: ControlContext, connection: Connection): Promise<CommandOutcome> {
    const builtin = builtinCommand(request.command);
    if (builtin) {
      const scope = { vmm: this.vmm, subscribe: () => connection.subscribe(), stopVm: () => this.stopVm(), connections: this.connections.size };
      return builtin(scope, request);
    }
    const hookRequest: ControlRequest = { command: request.command, args: [...request.args] };
    const reply = await this.vmm.hooks.controlCommand.promise(hookRequest, context);
    if (reply === undefined) {
      throw new ControlCommandError(CONTROL_ERRORS.UNKNOWN_COMMAND,
        `unknown command '${request.command}'; the built-in commands are ${BUILTIN_COMMAND_NAMES.join(', ')}, and no plugin answers '${request.command}'.`);
    }
    if (typeof reply !== 'object' || reply === null || Array.isArray(reply)) {
      throw new ControlCommandError(CONTROL_ERRORS.COMMAND_FAILED, `the plugin answering '${request.command}' replied with something other than an object.`);
    }
    return { result: reply };
  }

  /**
   * vm.stop() is already the forced stop (it kicks the vCPUs out of KVM_RUN). The guests vmm
   * runs have no graceful shutdown protocol yet, so the graceful phase is empty and
   * stopTimeoutMs bounds how long the teardown may take before we say so in the log.
   */
  private stopVm(): void {
    if (this.stopRequested) return;
    this.stopRequested = true;
    const { stopTimeoutMs } = this.options;
    const timer = setTimeout(() => {
      this.log('the VM has not finished stopping %d ms after the stop command (option stopTimeoutMs)', stopTimeoutMs);
    }, stopTimeoutMs);
    timer.unref();
    this.vmm.stop().then(
      (exit) => this.log('stopped on request: %s', exit.message),
      (error) => this.log('stop failed: %s', messageOf(error)),
    ).finally(() => clearTimeout(timer));
  }
}

/**
 * Make `path` free for a new socket: nothing there is fine; a socket nobody accepts on (the
 * file a dead VMM left, ECONNREFUSED) is removed; a live socket or any other file is refused.
 */
export function prepareSocketPath(path: string, log: Debugger): void {
  let found: ReturnType<typeof claimSocketPath>;
  try {
    found = claimSocketPath(path);
  } catch (error) {
    throw new Error(`cannot check or replace ${path}: ${messageOf(error)}`, { cause: error });
  }
  if (found === 'stale') log('replaced the stale socket %s (nobody listened on it)', path);
  if (found === 'live') throw new Error(`another VMM is listening on ${path}; stop it or choose another socket path.`);
  if (found === 'other') throw new Error(`${path} exists and is not a socket; refusing to replace it.`);
}

/** A request the server rejects before any command runs; keeps the id to echo, when there was one. */
class RequestError extends ControlCommandError {
  constructor(code: string, message: string, readonly id?: ControlRequestId) {
    super(code, message);
  }
}

function refuse(socket: UnixMessageSocket, code: string, message: string): void {
  socket.send(encodeResponse(errorResponse(code, message)));
  socket.end();
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_') ? code : CONTROL_ERRORS.COMMAND_FAILED;
}

