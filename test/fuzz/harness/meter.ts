/**
 * What every fuzz target checks around each call into device or queue code: it must not throw,
 * must return within a time bound, and must not allocate more than a bound while it runs.
 *
 * Allocation is the peak resident set during the call (VmHWM after resetting it through
 * /proc/self/clear_refs, Linux ≥ 4.0), so a buffer allocated, filled and dropped inside one call
 * is seen even if a GC freed it before the call returned; the ArrayBuffer total
 * (process.memoryUsage().arrayBuffers) is taken too, for allocations not yet touched.
 *
 * The bounds are far above what any legitimate call needs (a frame is at most 64 KiB, a
 * descriptor walk per turn is bounded) and far below the failures the issue describes (a 1 GiB
 * allocation per chain, seconds per notify), so a loaded machine does not make them flake.
 */
import createDebug, { type Debugger } from 'debug';
import * as fs from 'fs';
import { format } from 'util';

export const MiB = 1024 * 1024;

export interface Bounds {
  /** Longest one call may take. */
  maxMs: number;
  /** Most memory one call may allocate (peak RSS growth or ArrayBuffer growth). */
  maxBytes: number;
}

export const DEFAULT_BOUNDS: Bounds = Object.freeze({
  maxMs: Number(process.env.FUZZ_MAX_MS ?? 1000),
  maxBytes: Number(process.env.FUZZ_MAX_BYTES ?? 128 * MiB),
});

/** An invariant broke: the fuzz property fails with this message. */
export class InvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantError';
  }
}

let clearRefsWorks: boolean | undefined;

/** Resident set now and its peak since the last reset, in bytes. */
function residentKiB(): { rss: number; peak: number } {
  const status = fs.readFileSync('/proc/self/status', 'latin1');
  const rss = /VmRSS:\s*(\d+)/.exec(status);
  const peak = /VmHWM:\s*(\d+)/.exec(status);
  return { rss: rss ? Number(rss[1]) * 1024 : 0, peak: peak ? Number(peak[1]) * 1024 : 0 };
}

function resetPeak(): void {
  if (clearRefsWorks === false) return;
  try {
    // "5" resets the peak RSS (VmHWM) to the current RSS (proc(5), clear_refs).
    fs.writeFileSync('/proc/self/clear_refs', '5');
    clearRefsWorks = true;
  } catch {
    clearRefsWorks = false;
  }
}

export interface CallRecord {
  what: string;
  ms: number;
  bytes: number;
}

/**
 * Measures calls and collects violations. A target wraps each entry point it calls (or that the
 * event loop calls, see `wrap`) and asks `check()` at the end of a run.
 */
export class Meter {
  readonly violations: string[] = [];
  calls = 0;
  /** Milliseconds spent in measured calls, in all (a spin shows as busy time while idle). */
  busyMs = 0;
  worst: CallRecord = { what: '', ms: 0, bytes: 0 };
  private depth = 0;

  constructor(readonly bounds: Bounds = DEFAULT_BOUNDS) {}

  /** Run `fn` as one call into the code under test; an exception is a violation, not a throw. */
  call<R>(what: string, fn: () => R): R | undefined {
    // A wrapped method called from another wrapped one is part of the outer call.
    if (this.depth > 0) return this.unmeasured(what, fn);
    this.depth++;
    this.calls++;
    resetPeak();
    const before = residentKiB();
    const buffersBefore = process.memoryUsage().arrayBuffers;
    const start = performance.now();
    let result: R | undefined;
    try {
      result = fn();
    } catch (error) {
      this.violations.push(`${what} threw: ${describe(error)}`);
    } finally {
      this.depth--;
    }
    const ms = performance.now() - start;
    this.busyMs += ms;
    const after = residentKiB();
    const grown = Math.max((clearRefsWorks ? after.peak : after.rss) - before.rss, process.memoryUsage().arrayBuffers - buffersBefore);
    if (ms > this.worst.ms) this.worst = { ...this.worst, what, ms };
    if (grown > this.worst.bytes) this.worst = { ...this.worst, bytes: grown };
    if (ms > this.bounds.maxMs) this.violations.push(`${what} took ${ms.toFixed(0)} ms (bound ${this.bounds.maxMs} ms)`);
    if (grown > this.bounds.maxBytes) this.violations.push(`${what} allocated ${(grown / MiB).toFixed(0)} MiB (bound ${(this.bounds.maxBytes / MiB).toFixed(0)} MiB)`);
    return result;
  }

  /**
   * Replace `object[method]` by a measured version, so calls the event loop makes (fd watcher
   * callbacks, setImmediate resumes) are checked like the target's own.
   */
  wrap<O extends object>(object: O, method: string, what = method): void {
    const target = object as Record<string, unknown>;
    const original = target[method];
    if (typeof original !== 'function') throw new TypeError(`${method} is not a method`);
    const meter = this;
    target[method] = function wrapped(this: unknown, ...args: unknown[]) {
      return meter.call(what, () => (original as (...a: unknown[]) => unknown).apply(this, args));
    };
  }

  /** Fail with every violation seen so far. */
  check(context = ''): void {
    if (this.violations.length === 0) return;
    const unique = [...new Set(this.violations)];
    throw new InvariantError(`${context ? `${context}: ` : ''}${unique.slice(0, 5).join('; ')}${unique.length > 5 ? ` (and ${unique.length - 5} more)` : ''}`);
  }

  private unmeasured<R>(what: string, fn: () => R): R | undefined {
    try {
      return fn();
    } catch (error) {
      this.violations.push(`${what} threw: ${describe(error)}`);
      return undefined;
    }
  }
}

export function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/** The open fds now, as "n→what" (what /proc/self/fd/n links to). */
export function fdSnapshot(): Set<string> {
  return new Set(openFdList());
}

/**
 * The fds open now that were not open at `before` (same number and file): what a run left
 * open. Fds the test runner itself closed meanwhile do not count either way.
 */
export async function leakedFds(before: Set<string>): Promise<string[]> {
  let leaked: string[] = [];
  // Closing can lag a turn (a watcher's handle, a socket the peer closed).
  for (let i = 0; i < 5; i++) {
    // An fd that no longer links anywhere was the listing's own directory fd.
    leaked = openFdList().filter((fd) => fd.includes('→') && !before.has(fd));
    if (leaked.length === 0) break;
    await turn();
  }
  return leaked;
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** The open fds with what they point at (for a message when the count is off). */
export function openFdList(): string[] {
  return fs.readdirSync('/proc/self/fd').map((fd) => {
    try {
      return `${fd}→${fs.readlinkSync(`/proc/self/fd/${fd}`)}`;
    } catch {
      return fd;
    }
  });
}

export function invariant(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new InvariantError(typeof message === 'string' ? message : message());
}

/** Let the event loop run fd callbacks and immediates for about `ms`. */
export function settle(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One full turn of the loop: pending immediates and poll callbacks run. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Error names that mean a programming error, not a host refusal, when a device's safety net logs them. */
const BUG_PATTERN = /\b(TypeError|RangeError|ReferenceError|SyntaxError|InvariantError|DriverViolation)\b|Maximum call stack/;

/**
 * A `debug` logger that keeps what devices log, so a bug their own try/catch swallowed (a
 * TypeError in an fd callback, logged with its stack) still fails the run.
 */
export function recordingLog(namespace: string, meter: Meter): Debugger {
  const log = createDebug(`vmm:fuzz:${namespace}`);
  log.enabled = true;
  log.log = (...args: unknown[]) => {
    const line = format(...args);
    if (BUG_PATTERN.test(line)) meter.violations.push(`${namespace} logged a caught bug: ${line.slice(0, 400)}`);
  };
  return log;
}
