/**
 * Long soaks: `npm run soak [name|all] [count]`. Each soak (bench/soak/<name>.ts) drives a real
 * entry point `count` times and throws when memory or fd counts grew past its bound; npm test
 * runs each with a small count. Node runs with --expose-gc so soaks can measure after a GC.
 */
import * as path from 'path';

interface Soak {
  defaultCount: number;
  soak(count: number, log: (line: string) => void): Promise<void>;
}

const SOAKS = ['control', 'net', 'wl'] as const;

function usage(message: string): never {
  console.error(`soak: ${message}\nusage: npm run soak -- [${SOAKS.join('|')}|all] [count]`);
  process.exit(2);
}

async function main(): Promise<void> {
  const [which = 'all', countArg] = process.argv.slice(2);
  const names = which === 'all' ? [...SOAKS] : SOAKS.filter((n) => n === which);
  if (names.length === 0) usage(`unknown soak '${which}'`);
  let count: number | undefined;
  if (countArg !== undefined) {
    count = Number(countArg);
    if (!Number.isInteger(count) || count < 1) usage(`count must be a positive integer, not '${countArg}'`);
  }
  let failed = 0;
  for (const name of names) {
    const mod = require(path.join(__dirname, name)) as Soak;
    const n = count ?? mod.defaultCount;
    const started = Date.now();
    console.log(`soak ${name}: ${n} iterations`);
    try {
      await mod.soak(n, (line) => console.log(`  ${line}`));
      console.log(`soak ${name}: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } catch (error) {
      failed++;
      console.log(`soak ${name}: FAILED: ${(error as Error).message}`);
    }
  }
  process.exit(failed === 0 ? 0 : 1);
}

void main();
