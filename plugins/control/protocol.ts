/**
 * The control channel's wire format (version 1), for the server, `vmm ctl` and other clients.
 *
 * Transport: a Unix socket of type SOCK_SEQPACKET. Each datagram carries one UTF-8 JSON value.
 * File descriptors travel as SCM_RIGHTS ancillary data on the request datagram and are named by
 * their index in that array.
 *
 *   request   { "command": "status", "args"?: ["…"], "fds"?: [0, …], "id"?: "…" | 123 | null }
 *   response  { "version": 1, "id"?: <echoed>, "result": { … } }
 *          or { "version": 1, "id"?: <echoed>, "error": { "code": "ERR_…", "message": "…" } }
 *   event     { "version": 1, "event": { "type": "state", "from": "running", "to": "paused" } }
 *          or { "version": 1, "event": { "type": "device", "device": "…", "event": "…", "details": { … } } }
 *
 * Every request gets exactly one response, in request order per connection. `command` is one
 * word; a plugin's subcommands come first in `args` (`wl add NAME` is
 * `{ "command": "wl", "args": ["add", "NAME"] }`). Events only flow on a connection that sent
 * `events`, and only after that request's response.
 *
 * As in JSON-RPC, an `id` is a string (at most CONTROL_MAX_ID_BYTES of UTF-8), a finite number or
 * null: a client matches responses with it, so nothing larger is useful, and whatever the server
 * echoes is known to encode. A request may nest lists and objects at most CONTROL_MAX_JSON_DEPTH
 * deep (a valid one needs 2); the depth is checked on the raw text, before anything is parsed.
 * A request rejected before its id is known is answered without one; one whose id is not an id
 * is answered with `"id": null`.
 */
import type { DeviceEvent, DeviceInfo, VmState } from '../../plugin-api';

export const PROTOCOL_VERSION = 1;

/** The longest command name; commands are one word of letters, digits, `.`, `_` and `-`. */
export const CONTROL_MAX_COMMAND_LENGTH = 64;
/** Responses longer than this are replaced by ERR_RESPONSE_TOO_LARGE (a datagram must fit the socket buffer). */
export const CONTROL_MAX_RESPONSE_BYTES = 128 * 1024;
/** Deepest nesting of lists and objects in a request; deeper ones get ERR_BAD_REQUEST unparsed. */
export const CONTROL_MAX_JSON_DEPTH = 32;
/** Longest string `id`, in UTF-8 bytes (it is echoed in the response). */
export const CONTROL_MAX_ID_BYTES = 256;
const COMMAND_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const REQUEST_KEYS = ['command', 'args', 'fds', 'id'];

/** Every error code the server and the client library use, alphabetically. */
export const CONTROL_ERRORS = Object.freeze({
  /** An `fds` index names no received descriptor, or names one twice. */
  BAD_FD_INDEX: 'ERR_BAD_FD_INDEX',
  /** A descriptor is not of the kind the command needs (e.g. a regular file for a socket). */
  BAD_FD_TYPE: 'ERR_BAD_FD_TYPE',
  /** The datagram is not UTF-8 JSON. */
  BAD_JSON: 'ERR_BAD_JSON',
  /** The JSON is not a request: not an object, a field of the wrong type, an unknown key, an
   *  `id` that is not a string, number or null, nesting deeper than CONTROL_MAX_JSON_DEPTH. */
  BAD_REQUEST: 'ERR_BAD_REQUEST',
  /** Wrong arguments for the command. */
  BAD_ARGS: 'ERR_BAD_ARGS',
  /** A command's handler failed without a code of its own. */
  COMMAND_FAILED: 'ERR_COMMAND_FAILED',
  /** (client) The socket is missing, refuses connections, or is not accessible. */
  CONNECT: 'ERR_CONNECT',
  /** (client) The connection closed before the response came. */
  CONNECTION_LOST: 'ERR_CONNECTION_LOST',
  /** A zero-length datagram. */
  EMPTY_REQUEST: 'ERR_EMPTY_REQUEST',
  /** An `events` subscriber fell too far behind and was dropped. */
  EVENTS_OVERFLOW: 'ERR_EVENTS_OVERFLOW',
  /** The peer's uid is not the VMM's (SO_PEERCRED) and allowAnyUid is off. */
  PERMISSION_DENIED: 'ERR_PERMISSION_DENIED',
  /** (client) The response is not a version-1 response. */
  PROTOCOL: 'ERR_PROTOCOL',
  /** The datagram was longer than maxRequestBytes (MSG_TRUNC). */
  REQUEST_TOO_LARGE: 'ERR_REQUEST_TOO_LARGE',
  /** The reply would not fit in one datagram. */
  RESPONSE_TOO_LARGE: 'ERR_RESPONSE_TOO_LARGE',
  /** (client) No response within the timeout. */
  TIMEOUT: 'ERR_TIMEOUT',
  /** The server already has its maximum number of connections. */
  TOO_MANY_CONNECTIONS: 'ERR_TOO_MANY_CONNECTIONS',
  /** More descriptors than maxFds came with the request (MSG_CTRUNC); all were closed. */
  TOO_MANY_FDS: 'ERR_TOO_MANY_FDS',
  /** No built-in command and no plugin answers this command. */
  UNKNOWN_COMMAND: 'ERR_UNKNOWN_COMMAND',
  /** The VM cannot do that in its current state (pause a paused VM, …). */
  VM_STATE: 'ERR_VM_STATE',
} as const);

export type ControlErrorCode = typeof CONTROL_ERRORS[keyof typeof CONTROL_ERRORS];

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** What a request's `id` may be (JSON-RPC's choice): see CONTROL_MAX_ID_BYTES. */
export type ControlRequestId = string | number | null;

/**
 * Throw this from a command handler (a plugin's controlCommand tap included) to answer with a
 * specific code; any other error is answered as ERR_COMMAND_FAILED with its message.
 */
export class ControlCommandError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlCommandError';
  }
}

// --- messages ------------------------------------------------------------------------------------

export interface ControlRequestMessage {
  command: string;
  args?: string[];
  /** Indexes into the SCM_RIGHTS array of this datagram, in the order the command takes them. */
  fds?: number[];
  /** Echoed in the response. */
  id?: ControlRequestId;
}

export interface ControlErrorBody {
  /** ERR_… (see CONTROL_ERRORS; plugin commands may add their own). */
  code: string;
  message: string;
}

export interface ControlResultResponse<R = Record<string, unknown>> {
  version: typeof PROTOCOL_VERSION;
  id?: ControlRequestId;
  result: R;
}

export interface ControlErrorResponse {
  version: typeof PROTOCOL_VERSION;
  id?: ControlRequestId;
  error: ControlErrorBody;
}

export type ControlResponse<R = Record<string, unknown>> = ControlResultResponse<R> | ControlErrorResponse;

export interface StateEvent {
  type: 'state';
  from: VmState;
  to: VmState;
}

export interface DeviceEventMessage {
  type: 'device';
  /** The device's name. */
  device: string;
  /** What happened (the plugin's DeviceEvent.type), e.g. `socket-added`. */
  event: string;
  /** The rest of the plugin's DeviceEvent. */
  details: Record<string, unknown>;
}

export type ControlEvent = StateEvent | DeviceEventMessage;

export interface ControlEventMessage {
  version: typeof PROTOCOL_VERSION;
  event: ControlEvent;
}

// --- results of the built-in commands --------------------------------------------------------------

export interface StatusResult {
  state: VmState;
  /** Number of vCPUs. */
  vcpus: number;
  /** Guest RAM in bytes. */
  memory: number;
  devices: DeviceInfo[];
  plugins: { name: string; source: string }[];
  /** The VMM's process id. */
  pid: number;
  /** Control connections open now, the asking one included. */
  connections: number;
}

/** pause, resume, stop: the state right after the command. */
export interface StateResult {
  state: VmState;
}

export interface EventsResult {
  subscribed: true;
}

// --- encode / decode ---------------------------------------------------------------------------------

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: ControlErrorBody; id?: ControlRequestId };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parse and validate one request datagram. Never throws. */
export function decodeRequest(data: Uint8Array): Decoded<Required<Pick<ControlRequestMessage, 'command' | 'args' | 'fds'>> & Pick<ControlRequestMessage, 'id'>> {
  const parsed = parseJson(data, CONTROL_MAX_JSON_DEPTH);
  if (!parsed.ok) return parsed;
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return bad(CONTROL_ERRORS.BAD_REQUEST, `a request must be a JSON object like {"command":"status"}; got ${kindOf(value)}.`);
  }
  const request = value as Record<string, JsonValue>;
  if ('id' in request && !isRequestId(request.id)) {
    const message = `'id' must be a string of at most ${CONTROL_MAX_ID_BYTES} bytes, a finite number or null; got ${describeId(request.id)}.`;
    return { ok: false, error: { code: CONTROL_ERRORS.BAD_REQUEST, message }, id: null };
  }
  const id = 'id' in request ? request.id as ControlRequestId : undefined;
  const fail = (message: string): Decoded<never> => ({ ok: false, error: { code: CONTROL_ERRORS.BAD_REQUEST, message }, ...(id !== undefined ? { id } : {}) });

  const unknown = Object.keys(request).filter((key) => !REQUEST_KEYS.includes(key));
  if (unknown.length > 0) return fail(`unknown request key '${unknown[0]}'; a request has ${REQUEST_KEYS.join(', ')}.`);
  const { command, args = [], fds = [] } = request;
  if (typeof command !== 'string' || command === '') return fail(`'command' must be a non-empty string; got ${kindOf(command)}.`);
  if (command.length > CONTROL_MAX_COMMAND_LENGTH || !COMMAND_PATTERN.test(command)) {
    return fail(`'command' must be one word of letters, digits, '.', '_' or '-' (at most ${CONTROL_MAX_COMMAND_LENGTH}); put subcommands in 'args'.`);
  }
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string')) return fail(`'args' must be a list of strings; got ${kindOf(args)}.`);
  if (!Array.isArray(fds) || !fds.every((i) => typeof i === 'number' && Number.isInteger(i) && i >= 0)) {
    return fail(`'fds' must be a list of indexes (0, 1, …) into the descriptors sent with the request; got ${kindOf(fds)}.`);
  }
  return { ok: true, value: { command, args: args as string[], fds: fds as number[], ...(id !== undefined ? { id } : {}) } };
}

export function encodeRequest(request: ControlRequestMessage): Buffer {
  return Buffer.from(JSON.stringify(request));
}

/**
 * Encode a response. A result that JSON cannot carry (a BigInt, a cycle, nesting too deep for the
 * stack) or one too long for a datagram becomes an error response instead, so the client always
 * gets exactly one answer. The replacement is flat (an id, a code, a short message) and is
 * never sent back through here: it carries the id if that is a valid one, null for any other.
 */
export function encodeResponse(response: ControlResponse<unknown>): Buffer {
  let text: string;
  try {
    text = JSON.stringify(response);
  } catch (error) {
    return encodeFallback(CONTROL_ERRORS.COMMAND_FAILED, `the reply cannot be encoded as JSON: ${clip(messageOfError(error))}.`, response.id);
  }
  const data = Buffer.from(text);
  if (data.length > CONTROL_MAX_RESPONSE_BYTES) {
    return encodeFallback(CONTROL_ERRORS.RESPONSE_TOO_LARGE, `the reply is ${data.length} bytes; a reply may have at most ${CONTROL_MAX_RESPONSE_BYTES}.`, response.id);
  }
  return data;
}

/** True for what a request's `id` may be (see ControlRequestId). */
export function isRequestId(value: unknown): value is ControlRequestId {
  if (value === null) return true;
  if (typeof value === 'number') return Number.isFinite(value);
  return typeof value === 'string' && Buffer.byteLength(value) <= CONTROL_MAX_ID_BYTES;
}

/** The last resort reply; if even this cannot be encoded, one that certainly can. */
function encodeFallback(code: string, message: string, id: unknown): Buffer {
  try {
    return Buffer.from(JSON.stringify(errorResponse(code, message, id === undefined || isRequestId(id) ? id : null)));
  } catch {
    return Buffer.from(JSON.stringify(errorResponse(code, 'the reply cannot be encoded.', null)));
  }
}

export function errorResponse(code: string, message: string, id?: ControlRequestId): ControlErrorResponse {
  return { version: PROTOCOL_VERSION, ...(id !== undefined ? { id } : {}), error: { code, message } };
}

export function resultResponse<R>(result: R, id?: ControlRequestId): ControlResultResponse<R> {
  return { version: PROTOCOL_VERSION, ...(id !== undefined ? { id } : {}), result };
}

export function stateEvent(from: VmState, to: VmState): ControlEventMessage {
  return { version: PROTOCOL_VERSION, event: { type: 'state', from, to } };
}

export function deviceEvent(e: DeviceEvent): ControlEventMessage {
  const { device, type, ...details } = e;
  return { version: PROTOCOL_VERSION, event: { type: 'device', device: String(device), event: String(type), details } };
}

export function encodeEvent(event: ControlEventMessage): Buffer {
  try {
    return Buffer.from(JSON.stringify(event));
  } catch (error) {
    // A plugin put something JSON cannot carry in its event; say so instead of losing the event.
    const e = event.event;
    return Buffer.from(JSON.stringify({
      version: PROTOCOL_VERSION,
      event: e.type === 'device' ? { ...e, details: { unencodable: (error as Error).message } } : e,
    }));
  }
}

/** What a client reads: a response or an event. Validates the envelope; never throws. */
export function decodeServerMessage(data: Uint8Array): Decoded<ControlResponse | ControlEventMessage> {
  const parsed = parseJson(data);
  if (!parsed.ok) return { ok: false, error: { code: CONTROL_ERRORS.PROTOCOL, message: `the server sent something that is not JSON: ${parsed.error.message}` } };
  const m = parsed.value as Record<string, unknown> | null;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return protocolError(`the server sent ${kindOf(parsed.value)}, not an object.`);
  if (m.version !== PROTOCOL_VERSION) return protocolError(`the server speaks protocol version ${kindOf(m.version as JsonValue)}; this client speaks ${PROTOCOL_VERSION}.`);
  if ('event' in m) {
    const e = m.event as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || (e.type !== 'state' && e.type !== 'device')) return protocolError('the server sent an event of unknown type.');
    return { ok: true, value: m as unknown as ControlEventMessage };
  }
  if ('error' in m) {
    const e = m.error as Record<string, unknown> | null;
    if (typeof e !== 'object' || e === null || typeof e.code !== 'string' || typeof e.message !== 'string') return protocolError('the server sent a malformed error.');
    return { ok: true, value: m as unknown as ControlErrorResponse };
  }
  if ('result' in m && typeof m.result === 'object' && m.result !== null) return { ok: true, value: m as unknown as ControlResultResponse };
  return protocolError('the server sent neither a result, an error nor an event.');
}

export function isEventMessage(m: ControlResponse | ControlEventMessage): m is ControlEventMessage {
  return 'event' in m;
}

export function isErrorResponse(m: ControlResponse<unknown>): m is ControlErrorResponse {
  return 'error' in m;
}

// --- helpers -----------------------------------------------------------------------------------------

function parseJson(data: Uint8Array, maxDepth = Infinity): Decoded<JsonValue> {
  let text: string;
  try {
    text = utf8.decode(data);
  } catch {
    return bad(CONTROL_ERRORS.BAD_JSON, 'the request is not valid UTF-8.');
  }
  if (nestingExceeds(text, maxDepth)) {
    return bad(CONTROL_ERRORS.BAD_REQUEST, `the request nests lists or objects more than ${maxDepth} deep; a request needs 2.`);
  }
  try {
    return { ok: true, value: JSON.parse(text) as JsonValue };
  } catch (error) {
    return bad(CONTROL_ERRORS.BAD_JSON, `the request is not valid JSON: ${(error as Error).message}.`);
  }
}

/**
 * Whether `text` opens more than `maxDepth` lists or objects inside one another. One pass over
 * the characters, skipping strings, and nothing is built: a deep value must be refused before
 * JSON.parse makes it (and long before JSON.stringify recurses through it when it is echoed).
 * Text that is not JSON at all is left for JSON.parse to report.
 */
function nestingExceeds(text: string, maxDepth: number): boolean {
  if (!Number.isFinite(maxDepth)) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--;
    }
  }
  return false;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

function bad(code: string, message: string): Decoded<never> {
  return { ok: false, error: { code, message } };
}

function protocolError(message: string): Decoded<never> {
  return bad(CONTROL_ERRORS.PROTOCOL, message);
}

function describeId(value: JsonValue | undefined): string {
  if (typeof value === 'string') return `a string of ${Buffer.byteLength(value)} bytes`;
  return kindOf(value);
}

function messageOfError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Keeps a replacement reply small whatever the error said. */
function clip(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function kindOf(value: JsonValue | undefined): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  return `${typeof value} ${String(value)}`;
}
