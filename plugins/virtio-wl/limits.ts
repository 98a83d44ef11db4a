/**
 * What one guest may hold through virtio-wl (issue 10, item 5): plugin options, each with a
 * default that a desktop guest does not reach, each answered with the protocol's error replies
 * when exceeded (see the README's virtio-wl section and device.ts).
 */

export interface WlLimits {
  /** VFDs held at once, guest- and host-created (each costs up to two host fds). */
  maxVfds: number;
  /** Contexts (host connections made by NEW_CTX / NEW_CTX_NAMED) open at once. */
  maxContexts: number;
  /** Bytes of guest-allocated shared memory (VFD_NEW memfds) held at once. */
  maxShmBytes: number;
  /** How long NEW_CTX waits for a listener whose backlog is full before RESP_ERR. */
  connectTimeoutMs: number;
}

/**
 * Half the guest driver's own id space (ids 1..0x7ff, spec §2.7) — room for every client's
 * context, pools, keymaps and clipboard pipes — and at most 2048 host fds (a pipe holds two),
 * far below the fd limit Node runs with, so control connections and TAPs always find fds.
 */
export const DEFAULT_MAX_VFDS = 1024;
/** One context per guest Wayland client (sommelier opens one per client), and some to spare. */
export const DEFAULT_MAX_CONTEXTS = 64;
/** A busy compositor gets this long to accept before the guest's NEW_CTX fails. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

/** Largest value accepted for a count limit (beyond it a limit means nothing). */
const MAX_COUNT = 1_000_000;
/** Largest connect timeout accepted (one minute: the guest's calling thread waits that long). */
const MAX_CONNECT_TIMEOUT_MS = 60_000;

/** Check one limit option; throws an Error naming it. */
function checkInteger(name: string, value: unknown, min: number, max: number, example: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`option '${name}' must be a whole number from ${min} to ${max} (e.g. ${example}); got ${JSON.stringify(value)}`);
  }
  return value;
}

/** The limit options given (others take their defaults; maxShmBytes undefined = guest RAM). */
export function parseLimits(given: Record<string, unknown>): Partial<WlLimits> {
  const limits: Partial<WlLimits> = {};
  if (given.maxVfds !== undefined) limits.maxVfds = checkInteger('maxVfds', given.maxVfds, 1, MAX_COUNT, String(DEFAULT_MAX_VFDS));
  if (given.maxContexts !== undefined) limits.maxContexts = checkInteger('maxContexts', given.maxContexts, 1, MAX_COUNT, String(DEFAULT_MAX_CONTEXTS));
  if (given.maxShmBytes !== undefined) limits.maxShmBytes = checkInteger('maxShmBytes', given.maxShmBytes, 0, Number.MAX_SAFE_INTEGER, '268435456');
  if (given.connectTimeoutMs !== undefined) {
    limits.connectTimeoutMs = checkInteger('connectTimeoutMs', given.connectTimeoutMs, 0, MAX_CONNECT_TIMEOUT_MS, String(DEFAULT_CONNECT_TIMEOUT_MS));
  }
  return limits;
}

/**
 * Every limit, the defaults filled in. maxShmBytes defaults to the guest's RAM size: memfd pages
 * are host memory the guest can fill at will, so by default virtio-wl can at most double what
 * the VM costs the host (and a 64 MiB test guest still fits one 3840×2160×4 buffer).
 */
export function resolveLimits(given: Partial<WlLimits>, guestRamBytes: number): WlLimits {
  return {
    maxVfds: given.maxVfds ?? DEFAULT_MAX_VFDS,
    maxContexts: given.maxContexts ?? DEFAULT_MAX_CONTEXTS,
    maxShmBytes: given.maxShmBytes ?? guestRamBytes,
    connectTimeoutMs: given.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
  };
}
