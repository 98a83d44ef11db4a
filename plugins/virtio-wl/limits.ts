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

const count = (what: string, min: number, fallback: number) => ({
  type: 'integer',
  minimum: min,
  maximum: MAX_COUNT,
  description: `a whole number from ${min} to ${MAX_COUNT} (e.g. ${fallback}): ${what}`,
}) as const;

/** The limit options' schemas (part of the plugin's options schema, index.ts). */
export const LIMIT_OPTIONS = {
  maxVfds: count('VFDs held at once (default 1024)', 1, DEFAULT_MAX_VFDS),
  maxContexts: count('contexts open at once (default 64)', 1, DEFAULT_MAX_CONTEXTS),
  maxShmBytes: {
    type: 'integer',
    minimum: 0,
    maximum: Number.MAX_SAFE_INTEGER,
    description: `a whole number from 0 to ${Number.MAX_SAFE_INTEGER} (e.g. 268435456): bytes of guest-allocated shared memory held at once (default: the guest's RAM size)`,
  },
  connectTimeoutMs: {
    type: 'integer',
    minimum: 0,
    maximum: MAX_CONNECT_TIMEOUT_MS,
    description: `a whole number from 0 to ${MAX_CONNECT_TIMEOUT_MS} (e.g. ${DEFAULT_CONNECT_TIMEOUT_MS}): milliseconds NEW_CTX waits for a busy listener (default ${DEFAULT_CONNECT_TIMEOUT_MS})`,
  },
} as const;

/** The limit options given, from options the schema already checked (others take their defaults). */
export function pickLimits(given: Partial<WlLimits>): Partial<WlLimits> {
  const limits: Partial<WlLimits> = {};
  for (const name of Object.keys(LIMIT_OPTIONS) as (keyof WlLimits)[]) {
    if (given[name] !== undefined) limits[name] = given[name];
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
