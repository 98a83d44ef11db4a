/**
 * The in-guest test program (guest/linux/tests-wl/wltest.c, with libvirtwl) for the Linux guest:
 * compiled here with the system gcc, and added to the fixture's initramfs as a second cpio
 * archive appended to it (the kernel unpacks concatenated archives in order), so the tests
 * always run the sources of this checkout.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ROOT } from '../helpers/linux-guest';

export const WLTEST_SOURCE = path.join(ROOT, 'guest', 'linux', 'tests-wl', 'wltest.c');
/** The flags scripts/guest-kernel builds the initramfs programs with. */
const CFLAGS = ['-static', '-O2', '-s', '-Wall', '-Wextra', '-Werror'];

/** gcc the program into `dir`; throws with gcc's messages. */
export function buildWltest(dir: string): string {
  const out = path.join(dir, 'wltest');
  const r = spawnSync('gcc', [...CFLAGS, '-o', out, WLTEST_SOURCE], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc could not build ${WLTEST_SOURCE}: ${r.error?.message ?? ''}${r.stderr}`);
  return out;
}

/** One newc ("070701") entry: a directory or a regular file. */
function newcEntry(ino: number, name: string, mode: number, data: Buffer): Buffer {
  const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, Buffer.byteLength(name) + 1, 0];
  const header = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const head = Buffer.concat([Buffer.from(header), Buffer.from(name), Buffer.from([0])]);
  return Buffer.concat([head, pad(head.length), data, pad(data.length)]);
}

/** `base` (a newc cpio) followed by an archive holding `files` (destination → host path). */
export function initramfsWith(base: string, files: Record<string, string>, out: string): string {
  const parts: Buffer[] = [fs.readFileSync(base)];
  // Each archive ends on a 512-byte boundary as gen_init_cpio leaves it; the kernel needs 4.
  const padTo = (n: number, to: number) => Buffer.alloc((to - (n % to)) % to);
  parts.push(padTo(parts[0].length, 4));
  let ino = 0x7000;
  const dirs = new Set<string>();
  for (const dest of Object.keys(files)) {
    for (let d = path.posix.dirname(dest); d !== '/'; d = path.posix.dirname(d)) dirs.add(d);
  }
  for (const d of [...dirs].sort((a, b) => a.length - b.length)) parts.push(newcEntry(ino++, d.slice(1), 0o040755, Buffer.alloc(0)));
  for (const [dest, src] of Object.entries(files)) parts.push(newcEntry(ino++, dest.slice(1), 0o100755, fs.readFileSync(src)));
  parts.push(newcEntry(0, 'TRAILER!!!', 0, Buffer.alloc(0)));
  const all = Buffer.concat(parts);
  fs.writeFileSync(out, Buffer.concat([all, padTo(all.length, 512)]));
  return out;
}
