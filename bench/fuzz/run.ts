/**
 * npm run fuzz -- [TARGET|all] [--seconds N] [--seed S [--path P]] [--runs N]
 *
 * Runs fuzz targets (test/fuzz/targets) for as long as asked: each target gets its share of
 * --seconds (default 60 per target), in rounds with a new random seed each, so a long run keeps
 * exploring. A failure prints the target, the shrunk counterexample and the command that
 * replays it (--seed and --path), and the run exits 1 once every target had its time. With
 * --seed alone, one round runs from that seed (--runs, default 1000); with --path too, exactly
 * that counterexample runs again.
 */
import { checkTarget, describeFailure, type FuzzTarget } from '../../test/fuzz/harness/target';
import { FUZZ_TARGETS } from '../../test/fuzz/targets';

const USAGE = `usage: npm run fuzz -- [TARGET|all] [--seconds N] [--seed S [--path P]] [--runs N]
targets: ${FUZZ_TARGETS.map((t) => t.name).join(', ')}`;

interface Options {
  targets: FuzzTarget[];
  seconds: number;
  seed?: number;
  path?: string;
  runs?: number;
}

function parse(argv: string[]): Options {
  let name = 'all';
  const options: Partial<Options> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const integer = (text: string, min: number): number => {
      const n = Number(text);
      if (!Number.isSafeInteger(n) || n < min) throw new Error(`${arg} must be a whole number of at least ${min}; got '${text}'`);
      return n;
    };
    if (arg === '--seconds') options.seconds = integer(value(), 1);
    else if (arg === '--seed') options.seed = integer(value(), -(2 ** 31)) | 0;
    else if (arg === '--path') options.path = value();
    else if (arg === '--runs') options.runs = integer(value(), 1);
    else if (arg === '--help' || arg === '-h') throw new Error('');
    else if (arg.startsWith('-')) throw new Error(`unknown option '${arg}'`);
    else name = arg;
  }
  const targets = name === 'all' ? [...FUZZ_TARGETS] : FUZZ_TARGETS.filter((t) => t.name === name);
  if (targets.length === 0) throw new Error(`no fuzz target named '${name}'`);
  if (options.path !== undefined && options.seed === undefined) throw new Error('--path replays a counterexample of one seed: give --seed too');
  if (options.path !== undefined && targets.length !== 1) throw new Error('--path belongs to one target: name it');
  return { targets, seconds: options.seconds ?? 60 * targets.length, seed: options.seed, path: options.path, runs: options.runs };
}

function randomSeed(): number {
  return (Math.random() * 2 ** 32) | 0;
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parse(process.argv.slice(2));
  } catch (error) {
    const message = (error as Error).message;
    if (!message) {
      console.log(USAGE);
      return 0;
    }
    console.error(`${message}\n${USAGE}`);
    return 2;
  }
  const failures: string[] = [];
  if (options.seed !== undefined) {
    // A replay (or one round from a known seed): no time limit.
    for (const target of options.targets) {
      const details = await checkTarget(target, { seed: options.seed, numRuns: options.runs ?? 1000, path: options.path });
      if (details.failed) failures.push(describeFailure(target, details));
      console.log(`${target.name}: seed ${options.seed}${options.path ? ` path ${options.path}` : ''}: ${details.failed ? 'FAILED' : `ok, ${details.numRuns} runs`}`);
    }
  } else {
    const share = (options.seconds * 1000) / options.targets.length;
    for (const target of options.targets) {
      const end = Date.now() + share;
      let runs = 0;
      let rounds = 0;
      while (Date.now() < end) {
        const seed = randomSeed();
        // Rounds of at most a minute, each from a new seed: a long run keeps exploring.
        const details = await checkTarget(target, { seed, numRuns: options.runs ?? 1_000_000, timeLimitMs: Math.min(60_000, end - Date.now()) });
        runs += details.numRuns;
        rounds++;
        if (details.failed) {
          const text = describeFailure(target, details);
          console.log(text);
          failures.push(text);
          break;
        }
      }
      console.log(`${target.name}: ${runs} runs in ${rounds} round(s) of ${(share / 1000).toFixed(0)} s: ${failures.some((f) => f.includes(`target ${target.name} `)) ? 'FAILED' : 'ok'}`);
    }
  }
  if (failures.length > 0) {
    console.error(`\n${failures.length} target(s) failed:\n${failures.join('\n\n')}`);
    return 1;
  }
  return 0;
}

main().then((code) => { process.exitCode = code; }, (error) => {
  console.error(`internal error: ${(error as Error)?.stack ?? error}`);
  process.exitCode = 1;
});
