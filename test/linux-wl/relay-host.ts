/**
 * Host side of the relay tests: reads the shm pools a host weston mapped from vmm (memfds named
 * "virtwl_alloc", the NEW_ALLOC memory the guest relay copies client pixels into).
 */
import * as fs from 'fs';

/**
 * The contents of every virtio-wl shared-memory file weston (`pid`) has mapped: libwayland-server
 * closes a pool's fd once it has mapped it, so its mappings are read instead.
 */
export function vmmPools(pid: number): Buffer[] {
  const out: Buffer[] = [];
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.includes('memfd:virtwl_alloc'));
  const mem = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of maps) {
      const [from, to] = line.split(' ')[0].split('-').map((h) => BigInt(`0x${h}`));
      const b = Buffer.alloc(Number(to - from));
      try { fs.readSync(mem, b, 0, b.length, from); out.push(b); } catch { /* unmapped meanwhile */ }
    }
  } finally {
    fs.closeSync(mem);
  }
  return out;
}

/** Distinct 32-bit values in the first `bytes` of `b`, up to `cap`. */
export function distinctWords(b: Buffer, bytes: number, cap = 1000): number {
  const seen = new Set<number>();
  for (let i = 0; i + 4 <= Math.min(bytes, b.length) && seen.size < cap; i += 4) seen.add(b.readUInt32LE(i));
  return seen.size;
}
