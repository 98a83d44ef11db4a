/**
 * A reference walk of one descriptor chain, written from virtio 1.2 §2.7.5 and rust-vmm's
 * chain rules independently of core/virtio/queue.ts, for differential fuzzing: whatever chain
 * the queue hands a device must be exactly this walk, and a chain the queue skips must be one
 * this walk rejects (or one above the VMM's own indirect-table cap).
 */
import type { GuestMemory } from '../../../plugin-api';

const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;
const DESC_SIZE = 16;
/** §2.4.4: a chain carries at most 2^32 − 1 bytes each way. */
const MAX_CHAIN_BYTES = 2 ** 32 - 1;
/** plugin-api.d.ts (VirtioQueue.pop): the VMM refuses indirect tables above this many entries. */
export const VMM_INDIRECT_CAP = 1024;

export interface ModelBuffer {
  addr: number;
  len: number;
}

export type ModelChain =
  | { ok: true; readable: ModelBuffer[]; writable: ModelBuffer[]; writableLength: number; descriptors: number; indirectEntries: number }
  | { ok: false; reason: string; descriptors: number; indirectEntries: number };

export interface ModelFeatures {
  indirect: boolean;
}

/** What walking one indirect table gave (memoized: many heads may share a table). */
export interface TableWalk {
  bad?: string;
  readable: ModelBuffer[];
  writable: ModelBuffer[];
  readableLength: number;
  writableLength: number;
  descriptors: number;
  /** The table held a writable buffer. */
  sawWritable: boolean;
}

/**
 * `cache` may be shared by the walks of one unchanged descriptor state (a round of the fuzzer),
 * so that a table shared by every head is walked once.
 */
export function walkChain(memory: GuestMemory, descTable: number, size: number, head: number, features: ModelFeatures, cache?: Map<string, TableWalk>): ModelChain {
  let index = head;
  let hops = size;
  let sawWritable = false;
  let readableLength = 0;
  let writableLength = 0;
  let descriptors = 0;
  let indirectEntries = 0;
  const readable: ModelBuffer[] = [];
  const writable: ModelBuffer[] = [];
  const bad = (reason: string): ModelChain => ({ ok: false, reason, descriptors, indirectEntries });
  if (head >= size) return bad('head index out of range');
  for (;;) {
    if (hops === 0) return bad('more descriptors than the table holds (a loop)');
    hops--;
    if (index >= size) return bad('next index out of range');
    descriptors++;
    const at = descTable + DESC_SIZE * index;
    const addr = memory.readU64(at);
    const len = memory.readU32(at + 8);
    const flags = memory.readU16(at + 12);
    const next = memory.readU16(at + 14);
    if (flags & F_INDIRECT) {
      if (!features.indirect) return bad('indirect without VIRTIO_F_INDIRECT_DESC');
      if (flags & F_NEXT) return bad('indirect with NEXT');
      if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > 65536) return bad('indirect table length');
      if (addr % 16n !== 0n) return bad('misaligned indirect table');
      if (!inside(memory, addr, len)) return bad('indirect table outside guest RAM');
      // The table ends the chain (an indirect descriptor has no NEXT): walk it once per state.
      indirectEntries = Math.max(indirectEntries, len / DESC_SIZE);
      const key = `${addr}:${len}:${sawWritable}`;
      let walked = cache?.get(key);
      if (!walked) {
        walked = walkTable(memory, Number(addr), len / DESC_SIZE, sawWritable);
        cache?.set(key, walked);
      }
      descriptors += walked.descriptors;
      if (walked.bad) return bad(walked.bad);
      if (readableLength + walked.readableLength > MAX_CHAIN_BYTES) return bad('more than 2^32 - 1 readable bytes');
      if (writableLength + walked.writableLength > MAX_CHAIN_BYTES) return bad('more than 2^32 - 1 writable bytes');
      return {
        ok: true, readable: [...readable, ...walked.readable], writable: [...writable, ...walked.writable],
        writableLength: writableLength + walked.writableLength, descriptors, indirectEntries,
      };
    }
    if (len === 0) return bad('zero-length buffer');
    if (!inside(memory, addr, len)) return bad('buffer outside guest RAM');
    if (flags & F_WRITE) {
      sawWritable = true;
      if (writableLength + len > MAX_CHAIN_BYTES) return bad('more than 2^32 - 1 writable bytes');
      writableLength += len;
      writable.push({ addr: Number(addr), len });
    } else {
      if (sawWritable) return bad('readable after writable');
      if (readableLength + len > MAX_CHAIN_BYTES) return bad('more than 2^32 - 1 readable bytes');
      readableLength += len;
      readable.push({ addr: Number(addr), len });
    }
    if (!(flags & F_NEXT)) return { ok: true, readable, writable, writableLength, descriptors, indirectEntries };
    index = next;
  }
}

/** The descriptors of one indirect table, from entry 0 (§2.7.5.3.2). */
function walkTable(memory: GuestMemory, table: number, tableSize: number, sawWritableBefore: boolean): TableWalk {
  const out: TableWalk = { readable: [], writable: [], readableLength: 0, writableLength: 0, descriptors: 0, sawWritable: sawWritableBefore };
  let index = 0;
  for (let hops = tableSize; ; hops--) {
    if (hops === 0) return { ...out, bad: 'more descriptors than the table holds (a loop)' };
    if (index >= tableSize) return { ...out, bad: 'next index out of range' };
    out.descriptors++;
    const at = table + DESC_SIZE * index;
    const addr = memory.readU64(at);
    const len = memory.readU32(at + 8);
    const flags = memory.readU16(at + 12);
    if (flags & F_INDIRECT) return { ...out, bad: 'nested indirect table' };
    if (len === 0) return { ...out, bad: 'zero-length buffer' };
    if (!inside(memory, addr, len)) return { ...out, bad: 'buffer outside guest RAM' };
    if (flags & F_WRITE) {
      out.sawWritable = true;
      out.writableLength += len;
      if (out.writableLength > MAX_CHAIN_BYTES) return { ...out, bad: 'more than 2^32 - 1 writable bytes' };
      out.writable.push({ addr: Number(addr), len });
    } else {
      if (out.sawWritable) return { ...out, bad: 'readable after writable' };
      out.readableLength += len;
      if (out.readableLength > MAX_CHAIN_BYTES) return { ...out, bad: 'more than 2^32 - 1 readable bytes' };
      out.readable.push({ addr: Number(addr), len });
    }
    if (!(flags & F_NEXT)) return out;
    index = memory.readU16(at + 14);
  }
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function inside(memory: GuestMemory, addr: bigint, len: number): boolean {
  if (addr > SAFE) return false;
  const a = Number(addr);
  return a + len <= Number.MAX_SAFE_INTEGER && memory.contains(a, len);
}

export function sameBuffers(a: readonly ModelBuffer[], b: readonly ModelBuffer[]): boolean {
  return a.length === b.length && a.every((x, i) => x.addr === b[i].addr && x.len === b[i].len);
}
