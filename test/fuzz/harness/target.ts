/**
 * A fuzz target is a fast-check property over one guest- or client-facing entry point. The
 * same target runs briefly with a fixed seed under jest (`npm test`) and for as long as asked
 * from `npm run fuzz` (bench/fuzz/run.ts), which prints the seed and path that replay a failure.
 */
import fc from 'fast-check';

export interface FuzzTarget {
  /** Short name for the command line (`npm run fuzz -- virtio-net-tx`). */
  readonly name: string;
  /** What is fuzzed and what is checked, one line. */
  readonly summary: string;
  /** Runs for the fixed-seed check in `npm test`. */
  readonly quickRuns: number;
  /** A fresh property (each check gets its own, so state never leaks between checks). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  property(): fc.IRawProperty<any>;
}

export interface CheckOptions {
  seed: number;
  numRuns: number;
  /** Replay one counterexample (fast-check's counterexamplePath). */
  path?: string;
  /** Stop generating new runs after this many milliseconds (not a failure). */
  timeLimitMs?: number;
}

export async function checkTarget(target: FuzzTarget, options: CheckOptions): Promise<fc.RunDetails<unknown[]>> {
  const parameters: fc.Parameters<unknown[]> = {
    seed: options.seed,
    numRuns: options.numRuns,
    ...(options.path !== undefined ? { path: options.path } : {}),
    ...(options.timeLimitMs !== undefined ? { interruptAfterTimeLimit: options.timeLimitMs, markInterruptAsFailure: false } : {}),
  };
  return await fc.check(target.property(), parameters);
}

/** The failure in words, with the command that replays it. */
export function describeFailure(target: FuzzTarget, details: fc.RunDetails<unknown[]>): string {
  const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
  const example = fc.stringify(details.counterexample);
  return [
    `fuzz target ${target.name} failed after ${details.numRuns} runs (${details.numShrinks} shrinks): ${error}`,
    `  counterexample: ${example.length > 2000 ? `${example.slice(0, 2000)}…` : example}`,
    `  replay: npm run fuzz -- ${target.name} --seed ${details.seed} --path ${details.counterexamplePath ?? ''}`,
  ].join('\n');
}

/** The fixed-seed check `npm test` runs: throws with the replay command on failure. */
export async function assertTarget(target: FuzzTarget, seed: number, numRuns = target.quickRuns): Promise<void> {
  const details = await checkTarget(target, { seed, numRuns });
  if (details.failed) throw new Error(describeFailure(target, details));
}
