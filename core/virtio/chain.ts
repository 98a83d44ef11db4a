/**
 * A validated descriptor chain: the device-readable and device-writable buffers, in order, with
 * helpers that hide descriptor boundaries (the Reader/Writer of rust-vmm's chain.rs). Every
 * buffer was checked against guest memory when the chain was popped (queue.ts), so the copies
 * here only fail if the VM is torn down underneath (a detached buffer), never on guest input.
 */
import type { GuestMemory, VirtioBuffer, VirtioChain } from '../../plugin-api';

export class DescriptorChain implements VirtioChain {
  readonly readable: VirtioBuffer[] = [];
  readonly writable: VirtioBuffer[] = [];
  readableLength = 0;
  writableLength = 0;

  constructor(private readonly memory: GuestMemory, readonly head: number) {}

  readBytes(): Uint8Array {
    if (this.readable.length === 1) return this.memory.read(this.readable[0].addr, this.readable[0].len);
    const out = new Uint8Array(this.readableLength);
    let at = 0;
    for (const b of this.readable) {
      out.set(this.memory.view(b.addr, b.len), at);
      at += b.len;
    }
    return out;
  }

  /** Zero-copy view when the readable part is a single buffer; a copy otherwise. */
  readableView(): Uint8Array {
    if (this.readable.length === 1) return this.memory.view(this.readable[0].addr, this.readable[0].len);
    return this.readBytes();
  }

  writeBytes(data: Uint8Array, offset = 0): number {
    let skip = offset;
    let from = 0;
    for (const b of this.writable) {
      if (from >= data.length) break;
      if (skip >= b.len) { skip -= b.len; continue; }
      const n = Math.min(b.len - skip, data.length - from);
      this.memory.view(b.addr + skip, n).set(data.subarray(from, from + n));
      from += n;
      skip = 0;
    }
    return from;
  }
}
