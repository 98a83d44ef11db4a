/**
 * Placing ELF PT_LOAD segments in guest RAM, shared by the plain-ELF and vmlinux loaders.
 *
 * Planning is separate from copying so that a loader can check everything (segments,
 * command line, initrd) before it writes a single byte of guest memory.
 */
import type { GuestMemory } from '../memory/guest-memory';
import { hex, hexRange, kernelLoadError } from './boot-setup';
import { PT_LOAD, type ElfFile } from './elf';
import { BOOT_IDENTITY_MAP_SIZE, HIMEM_START } from './layout';

export interface PlannedSegment {
  /** Program header index, for messages. */
  index: number;
  /** Guest-physical load address (p_paddr). */
  address: number;
  fileOffset: number;
  fileSize: number;
  /** Bytes occupied in RAM; fileSize..memorySize is zero-filled (.bss). */
  memorySize: number;
}

export interface SegmentPlan {
  segments: PlannedSegment[];
  /** Guest-physical entry point, inside one of the segments. */
  entry: number;
  /** One past the highest byte any segment occupies. */
  end: number;
}

/**
 * Check every PT_LOAD segment: it must lie in RAM at or above HIMEM_START (the first MiB
 * holds the boot structures) and below 4 GiB (the identity map), must not overlap another segment, and the entry point must be
 * inside one of them (guests run identity-mapped, so e_entry is a physical address).
 */
export function planSegments(memory: GuestMemory, elf: ElfFile, sourceName: string): SegmentPlan {
  const segments: PlannedSegment[] = [];
  for (const ph of elf.programHeaders) {
    if (ph.type !== PT_LOAD || ph.memorySize === 0n) continue;
    const where = `program header ${ph.index} (physical ${hex(ph.physicalAddress)}, ${hex(ph.memorySize)} bytes)`;
    if (ph.physicalAddress + ph.memorySize > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw kernelLoadError(sourceName, `${where} is outside guest RAM`);
    }
    const address = Number(ph.physicalAddress);
    const memorySize = Number(ph.memorySize);
    if (address < HIMEM_START) {
      throw kernelLoadError(sourceName, `${where} starts below ${hex(HIMEM_START)}, where the boot structures live`);
    }
    if (!memory.contains(address, memorySize)) {
      throw kernelLoadError(sourceName, `${where} is outside guest RAM`);
    }
    if (address + memorySize > BOOT_IDENTITY_MAP_SIZE) {
      throw kernelLoadError(sourceName, `${where} ends above ${hex(BOOT_IDENTITY_MAP_SIZE)}, beyond what the boot page tables map`);
    }
    segments.push({ index: ph.index, address, fileOffset: ph.offset, fileSize: ph.fileSize, memorySize });
  }
  if (segments.length === 0) throw kernelLoadError(sourceName, 'it has no loadable (PT_LOAD) segments');

  const byAddress = [...segments].sort((a, b) => a.address - b.address);
  for (let i = 1; i < byAddress.length; i++) {
    const prev = byAddress[i - 1];
    const cur = byAddress[i];
    if (cur.address < prev.address + prev.memorySize) {
      throw kernelLoadError(
        sourceName,
        `program headers ${prev.index} (${hexRange(prev.address, prev.memorySize)}) and ` +
          `${cur.index} (${hexRange(cur.address, cur.memorySize)}) overlap`,
      );
    }
  }

  const entrySegment = segments.find((s) => elf.entry >= BigInt(s.address) && elf.entry < BigInt(s.address + s.memorySize));
  if (!entrySegment) {
    throw kernelLoadError(sourceName, `its entry point ${hex(elf.entry)} is not inside any loadable segment`);
  }
  const last = byAddress[byAddress.length - 1];
  return { segments, entry: Number(elf.entry), end: last.address + last.memorySize };
}

/** Copy planned segments from the image and zero their .bss tails. */
export function copySegments(memory: GuestMemory, image: Uint8Array, plan: SegmentPlan): void {
  for (const s of plan.segments) {
    memory.write(s.address, image.subarray(s.fileOffset, s.fileOffset + s.fileSize));
    // Guest RAM is not guaranteed to be zero (reboots, reused buffers).
    memory.view(s.address + s.fileSize, s.memorySize - s.fileSize).fill(0);
  }
}
