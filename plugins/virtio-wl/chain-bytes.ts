/**
 * Reading a command out of an out-queue chain without letting the guest size the allocation:
 * chain.readBytes() copies every readable byte (up to 4 GiB, descriptors may even overlap), so
 * the device reads at most what the protocol allows for the command at hand (constants.ts
 * MAX_COMMAND_BYTES, MAX_SEND_CHAIN_BYTES) and checks readableLength before reading at all.
 */
import type { GuestMemory, VirtioChain } from '../../plugin-api';

/**
 * The first `max` readable bytes of `chain`. A view of guest memory when they lie in its first
 * descriptor (valid while the VM runs; the guest may change it underneath, so decode what
 * matters at once, and copy what must outlive the call), otherwise a copy of exactly that many.
 */
export function readableBytes(memory: GuestMemory, chain: VirtioChain, max: number): { bytes: Uint8Array; isView: boolean } {
  const length = Math.min(max, chain.readableLength);
  const first = chain.readable[0];
  if (first === undefined || length === 0) return { bytes: new Uint8Array(0), isView: false };
  if (first.len >= length) return { bytes: memory.view(first.addr, length), isView: true };
  const out = new Uint8Array(length);
  let at = 0;
  for (const b of chain.readable) {
    const n = Math.min(b.len, length - at);
    out.set(memory.view(b.addr, n), at);
    at += n;
    if (at === length) break;
  }
  return { bytes: out, isView: false };
}
