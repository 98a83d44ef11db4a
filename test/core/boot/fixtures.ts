/**
 * Synthetic kernel images and guest RAM for the boot-loader tests. Builders write raw bytes
 * at literal offsets (ELF-64 gABI, Documentation/x86/boot.rst) rather than reusing the
 * loader's constants, so a wrong constant in the loader shows up as a failing test.
 */
import { GuestMemory } from '../../../core/memory/guest-memory';

export const MiB = 0x10_0000;

/** Guest RAM laid out as the VM does (GuestMemory.splitRam), backed by fresh zeroed buffers. */
export function makeRam(size: number): GuestMemory {
  return new GuestMemory(GuestMemory.splitRam(size).map((r) => ({ ...r, buffer: new ArrayBuffer(r.size) })));
}

/** True if every byte of every region is zero (a refused load must not write anything). */
export function allZero(memory: GuestMemory): boolean {
  // Buffer.equals is a memcmp; a per-byte callback over 64 MiB would take seconds.
  return memory.regions.every((r) => Buffer.from(r.buffer, 0, r.size).equals(Buffer.alloc(r.size)));
}

export interface SegmentSpec {
  /** p_type; default PT_LOAD (1). */
  type?: number;
  paddr: number | bigint;
  vaddr?: bigint;
  data?: Uint8Array;
  /** Default: data length. */
  memsz?: number | bigint;
  /** Override p_filesz / p_offset to build broken files. */
  filesz?: number | bigint;
  offset?: number | bigint;
  align?: number;
}

export interface NoteSpec {
  name: string;
  type: number;
  desc: Uint8Array;
}

export interface ElfSpec {
  entry: number | bigint;
  segments: SegmentSpec[];
  /** Put these notes in one extra PT_NOTE segment (after the others). */
  notes?: NoteSpec[];
  eType?: number;
  machine?: number;
  elfClass?: number;
  dataEncoding?: number;
  phentsize?: number;
}

const EHDR = 64;
const PHDR = 56;

/** An ELF64 little-endian x86-64 executable: header, program headers, then segment bytes. */
export function buildElf(spec: ElfSpec): Uint8Array {
  const segments = [...spec.segments];
  const noteBytes = spec.notes ? encodeNotes(spec.notes) : undefined;
  if (noteBytes) segments.push({ type: 4, paddr: 0, data: noteBytes, align: 4 });
  const phnum = segments.length;
  let cursor = align16(EHDR + phnum * PHDR);
  const offsets = segments.map((s) => {
    const at = cursor;
    cursor = align16(cursor + (s.data?.length ?? 0));
    return at;
  });
  const image = new Uint8Array(cursor);
  const view = new DataView(image.buffer);
  image.set([0x7f, 0x45, 0x4c, 0x46, spec.elfClass ?? 2, spec.dataEncoding ?? 1, 1, 0]);
  view.setUint16(0x10, spec.eType ?? 2, true);
  view.setUint16(0x12, spec.machine ?? 62, true);
  view.setUint32(0x14, 1, true);
  view.setBigUint64(0x18, BigInt(spec.entry), true);
  view.setBigUint64(0x20, BigInt(EHDR), true);
  view.setUint16(0x34, EHDR, true);
  view.setUint16(0x36, spec.phentsize ?? PHDR, true);
  view.setUint16(0x38, phnum, true);
  segments.forEach((s, i) => {
    const at = EHDR + i * PHDR;
    const size = s.data?.length ?? 0;
    view.setUint32(at, s.type ?? 1, true);
    view.setUint32(at + 0x04, 5, true); // R+X
    view.setBigUint64(at + 0x08, BigInt(s.offset ?? offsets[i]), true);
    view.setBigUint64(at + 0x10, s.vaddr ?? BigInt(s.paddr), true);
    view.setBigUint64(at + 0x18, BigInt(s.paddr), true);
    view.setBigUint64(at + 0x20, BigInt(s.filesz ?? size), true);
    view.setBigUint64(at + 0x28, BigInt(s.memsz ?? size), true);
    view.setBigUint64(at + 0x30, BigInt(s.align ?? 0x1000), true);
    if (s.data) image.set(s.data, offsets[i]);
  });
  return image;
}

/** 4-byte-aligned notes as Linux emits them. */
export function encodeNotes(notes: NoteSpec[]): Uint8Array {
  const parts: number[] = [];
  for (const note of notes) {
    const name = [...Buffer.from(note.name + '\0', 'latin1')];
    const header = new DataView(new ArrayBuffer(12));
    header.setUint32(0, name.length, true);
    header.setUint32(4, note.desc.length, true);
    header.setUint32(8, note.type, true);
    parts.push(...new Uint8Array(header.buffer), ...pad4(name), ...pad4([...note.desc]));
  }
  return Uint8Array.from(parts);
}

function pad4(bytes: number[]): number[] {
  return [...bytes, ...new Array((4 - (bytes.length % 4)) % 4).fill(0)];
}

function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}

/** Bytes 0, 1, 2, ... (mod 251, so a misplaced copy is visible). */
export function pattern(length: number, seed = 0): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i + seed) % 251);
}

export interface BzImageSpec {
  /** Raw setup_sects byte (0 means 4 to the kernel). */
  setupSects?: number;
  version?: number;
  loadflags?: number;
  xloadflags?: number;
  relocatable?: number;
  kernelAlignment?: number;
  initrdAddrMax?: number;
  cmdlineSize?: number;
  prefAddress?: bigint;
  initSize?: number;
  /** Second byte of the jump at 0x200: the header ends at 0x202 + this. */
  jumpLength?: number;
  /** The protected-mode kernel. */
  kernel?: Uint8Array;
  /** Cut the file to this length after building it. */
  truncateTo?: number;
}

/** A bzImage whose setup header holds the given fields; the setup sectors are filler. */
export function buildBzImage(spec: BzImageSpec = {}): Uint8Array {
  const rawSects = spec.setupSects ?? 4;
  const sects = rawSects === 0 ? 4 : rawSects;
  const kernel = spec.kernel ?? pattern(0x3000, 7);
  const image = new Uint8Array((sects + 1) * 512 + kernel.length);
  const view = new DataView(image.buffer);
  image.fill(0xcc, 0, (sects + 1) * 512); // filler that must not end up in the zero page
  image.fill(0, 0x1f1, 0x26c); // the header proper; 0x26c-0x28f stays filler
  image[0x1f1] = rawSects;
  view.setUint16(0x1fe, 0xaa55, true);
  image[0x200] = 0xeb;
  image[0x201] = spec.jumpLength ?? 0x6a;
  view.setUint32(0x202, 0x53726448, true);
  view.setUint16(0x206, spec.version ?? 0x020f, true);
  image[0x211] = spec.loadflags ?? 0x01;
  view.setUint32(0x214, 0x100000, true); // code32_start
  view.setUint32(0x22c, spec.initrdAddrMax ?? 0x7fffffff, true);
  view.setUint32(0x230, spec.kernelAlignment ?? 0x200000, true);
  image[0x234] = spec.relocatable ?? 1;
  view.setUint16(0x236, spec.xloadflags ?? 0x3, true);
  view.setUint32(0x238, spec.cmdlineSize ?? 2047, true);
  view.setBigUint64(0x258, spec.prefAddress ?? 0x1000000n, true);
  view.setUint32(0x260, spec.initSize ?? 0x400000, true);
  image.set(kernel, (sects + 1) * 512);
  return spec.truncateTo === undefined ? image : image.slice(0, spec.truncateTo);
}
