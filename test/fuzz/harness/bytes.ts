/**
 * Payload bytes from a seed: fast-check generates (and shrinks) one integer instead of a
 * 64 KiB array, and the same seed always gives the same bytes (mulberry32).
 */
export function seededBytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let a = seed >>> 0;
  for (let i = 0; i < length; i += 4) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    t = (t ^ (t >>> 14)) >>> 0;
    out[i] = t & 0xff;
    if (i + 1 < length) out[i + 1] = (t >>> 8) & 0xff;
    if (i + 2 < length) out[i + 2] = (t >>> 16) & 0xff;
    if (i + 3 < length) out[i + 3] = t >>> 24;
  }
  return out;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** `total` bytes in at most `parts` pieces, none empty (fewer pieces when total is small). */
export function splitLengths(total: number, parts: number): number[] {
  const n = Math.max(1, Math.min(parts, total));
  const base = Math.floor(total / n);
  return Array.from({ length: n }, (_, i) => base + (i < total % n ? 1 : 0));
}
