/**
 * The host sockets a guest context can be opened on, by name (spec §5.1, §5.3):
 *
 *   Listening(path)    connect(2) anew for every NEW_CTX / NEW_CTX_NAMED (a compositor's socket)
 *   NonListening(fd)   an already-connected stream (e.g. one a proxy accept(2)ed), used directly
 *                      by exactly one context; the name stays listed as consumed while that
 *                      context is open and disappears when the guest closes it
 *
 * The unnamed entry ("") is what NEW_CTX uses. A name given with `%d` gets the lowest number
 * that makes it unused (`wl-conn-%d` → `wl-conn-0`, then `wl-conn-1`, …).
 */
import { native } from '../../native';
import { NAME_LENGTH } from './constants';

export type WlSocket =
  | { kind: 'listening'; path: string }
  | { kind: 'non-listening'; fd: number; consumed: boolean };

export interface WlSocketInfo {
  name: string;
  kind: 'listening' | 'non-listening';
  path?: string;
  consumed: boolean;
}

/** Why a context could not get a socket (all answered with RESP_ERR). */
export class WlSocketError extends Error {
  constructor(readonly code: 'unknown-name' | 'consumed' | 'connect', message: string) {
    super(message);
    this.name = 'WlSocketError';
  }
}

/** A non-blocking connect: null when the backlog is full. */
function connectWithoutWaiting(path: string): number | null {
  return native.unixConnect(path, native.SOCK_STREAM, false);
}

/** Most numbers tried for one `%d` name. */
const MAX_NUMBERED = 1_000_000;

export function checkName(name: string): void {
  if (Buffer.byteLength(name) > NAME_LENGTH) throw new Error(`socket name '${name}' is longer than ${NAME_LENGTH} bytes (the NEW_CTX_NAMED name field)`);
  if (name.includes('\0')) throw new Error('a socket name cannot contain NUL');
}

export class WlSocketRegistry {
  private readonly entries = new Map<string, WlSocket>();

  /**
   * Add a socket; `%d` in the name (once) is replaced by the lowest free number. Returns the name
   * used. Throws when the name is taken or too long; a non-listening fd is then left to the caller.
   */
  add(template: string, socket: WlSocket): string {
    const parts = template.split('%d');
    if (parts.length > 2) throw new Error(`socket name '${template}' may contain '%d' at most once`);
    let name = template;
    if (parts.length === 2) {
      let n = 0;
      while (this.entries.has(parts[0] + n + parts[1])) {
        if (++n >= MAX_NUMBERED) throw new Error(`no free number for '${template}'`);
      }
      name = parts[0] + n + parts[1];
    }
    checkName(name);
    if (this.entries.has(name)) throw new Error(`wayland socket name already used: '${name}'`);
    this.entries.set(name, socket.kind === 'listening' ? { ...socket } : { ...socket, consumed: false });
    return name;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /**
   * A connected stream fd for a new context on `name` (the caller owns it), or null when the
   * listener's backlog is full (try again later). Listening: a fresh connect that never blocks
   * the event loop. Non-listening: its fd, once; `release` (the context's close) then drops the
   * name.
   */
  open(name: string): { fd: number; release?: () => void } | null {
    const entry = this.entries.get(name);
    if (!entry) throw new WlSocketError('unknown-name', `no wayland socket named '${name}'`);
    if (entry.kind === 'listening') {
      let fd: number | null;
      try {
        fd = connectWithoutWaiting(entry.path);
      } catch (error) {
        throw new WlSocketError('connect', `cannot connect to ${entry.path}: ${(error as Error).message}`);
      }
      return fd === null ? null : { fd };
    }
    if (entry.consumed) throw new WlSocketError('consumed', `wayland socket '${name}' was already used by a context`);
    entry.consumed = true;
    return {
      fd: entry.fd,
      release: () => { if (this.entries.get(name) === entry) this.entries.delete(name); },
    };
  }

  /** Remove a name; an unconsumed non-listening fd is closed. False when there is no such name. */
  remove(name: string): boolean {
    const entry = this.entries.get(name);
    if (!entry) return false;
    this.entries.delete(name);
    if (entry.kind === 'non-listening' && !entry.consumed) closeQuietly(entry.fd);
    return true;
  }

  list(): WlSocketInfo[] {
    return [...this.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, s]) => (s.kind === 'listening'
      ? { name, kind: s.kind, path: s.path, consumed: false }
      : { name, kind: s.kind, consumed: s.consumed }));
  }

  /** Close every unconsumed fd and forget everything (VM shutdown). */
  clear(): void {
    for (const name of [...this.entries.keys()]) this.remove(name);
  }
}

export function closeQuietly(fd: number): void {
  try {
    native.close(fd);
  } catch {
    // already closed
  }
}
