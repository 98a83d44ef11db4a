/**
 * A strict reader for ELF64 little-endian x86-64 executables (System V gABI, "ELF-64 Object
 * File Format"). Only what the loaders need: the file header, program headers and notes.
 *
 * Kernel images come from users, so every offset and size is checked against the file
 * length before it is used, and every refusal is a KernelLoadError that says which header
 * was wrong. Addresses stay bigint here: vmlinux virtual addresses (0xffffffff81000000)
 * exceed 2^53; the loaders convert what they use after range checks.
 */
import { hex, kernelLoadError } from './boot-setup';

/** "\x7fELF" (gABI e_ident[EI_MAG0..3]). */
export const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46] as const;
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const ET_EXEC = 2;
/** AMD x86-64 (gABI e_machine). */
export const EM_X86_64 = 62;
export const ELF64_HEADER_SIZE = 64;
export const ELF64_PHDR_SIZE = 56;
/** e_phnum value meaning "the real count is in section 0" (gABI); never used by kernels. */
export const PN_XNUM = 0xffff;

export const PT_NULL = 0;
export const PT_LOAD = 1;
export const PT_NOTE = 4;

/** Size of a note header: namesz, descsz, type (u32 each). */
const NOTE_HEADER_SIZE = 12;

export interface ElfProgramHeader {
  /** Position in the program header table, for error messages. */
  index: number;
  type: number;
  flags: number;
  /** File offset and size, checked to lie within the file. */
  offset: number;
  fileSize: number;
  virtualAddress: bigint;
  physicalAddress: bigint;
  memorySize: bigint;
  align: bigint;
}

export interface ElfFile {
  entry: bigint;
  programHeaders: ElfProgramHeader[];
}

export interface ElfNote {
  /** Owner name without the trailing NUL ("Linux", "Xen", "GNU"). */
  name: string;
  type: number;
  desc: Uint8Array;
}

export function hasElfMagic(image: Uint8Array): boolean {
  return image.length >= ELF_MAGIC.length && ELF_MAGIC.every((byte, i) => image[i] === byte);
}

/** Parse and validate the file and program headers of an x86-64 ELF64 executable. */
export function parseElf(image: Uint8Array, sourceName: string): ElfFile {
  const fail = (reason: string) => kernelLoadError(sourceName, reason);
  if (!hasElfMagic(image)) throw fail('it is not an ELF file (bad magic)');
  if (image.length < ELF64_HEADER_SIZE) {
    throw fail(`it is not an ELF executable or a Linux bzImage (its ELF header is truncated: ${image.length} of ${ELF64_HEADER_SIZE} bytes)`);
  }
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (image[4] !== ELFCLASS64) throw fail(`it is not a 64-bit ELF file (EI_CLASS ${image[4]})`);
  if (image[5] !== ELFDATA2LSB) throw fail(`it is not a little-endian ELF file (EI_DATA ${image[5]})`);
  if (image[6] !== EV_CURRENT) throw fail(`unsupported ELF version ${image[6]}`);
  const type = view.getUint16(0x10, true);
  if (type !== ET_EXEC) throw fail(`it is not an ELF executable (e_type ${type}; only ET_EXEC can be loaded)`);
  const machine = view.getUint16(0x12, true);
  if (machine !== EM_X86_64) throw fail(`it is built for ELF machine ${machine}, not x86-64 (${EM_X86_64})`);
  const entry = view.getBigUint64(0x18, true);
  const phoff = view.getBigUint64(0x20, true);
  const ehsize = view.getUint16(0x34, true);
  const phentsize = view.getUint16(0x36, true);
  const phnum = view.getUint16(0x38, true);
  if (ehsize < ELF64_HEADER_SIZE) throw fail(`its ELF header size ${ehsize} is smaller than ${ELF64_HEADER_SIZE}`);
  if (phnum === 0) throw fail('it has no program headers');
  if (phnum === PN_XNUM) throw fail('it uses an extended program header count (PN_XNUM), which is not supported');
  if (phentsize !== ELF64_PHDR_SIZE) throw fail(`its program header size is ${phentsize}, not ${ELF64_PHDR_SIZE}`);
  if (phoff + BigInt(phnum * ELF64_PHDR_SIZE) > BigInt(image.length)) {
    throw fail(`its program header table (${phnum} entries at offset ${hex(phoff)}) extends past the end of the file`);
  }
  const programHeaders: ElfProgramHeader[] = [];
  for (let index = 0; index < phnum; index++) {
    programHeaders.push(readProgramHeader(view, Number(phoff) + index * ELF64_PHDR_SIZE, index, image.length, fail));
  }
  return { entry, programHeaders };
}

function readProgramHeader(
  view: DataView, at: number, index: number, fileLength: number, fail: (reason: string) => Error,
): ElfProgramHeader {
  const type = view.getUint32(at, true);
  const offset = view.getBigUint64(at + 0x08, true);
  const fileSize = view.getBigUint64(at + 0x20, true);
  const memorySize = view.getBigUint64(at + 0x28, true);
  // PT_NULL entries are unused by definition (gABI) and may hold anything.
  if (type !== PT_NULL && fileSize > 0n && offset + fileSize > BigInt(fileLength)) {
    throw fail(`program header ${index} extends past the end of the file`);
  }
  if (type === PT_LOAD && fileSize > memorySize) {
    throw fail(`program header ${index} has a file size (${hex(fileSize)}) larger than its memory size (${hex(memorySize)})`);
  }
  const inFile = type !== PT_NULL && fileSize > 0n;
  return {
    index,
    type,
    flags: view.getUint32(at + 0x04, true),
    offset: inFile ? Number(offset) : 0,
    fileSize: inFile ? Number(fileSize) : 0,
    virtualAddress: view.getBigUint64(at + 0x10, true),
    physicalAddress: view.getBigUint64(at + 0x18, true),
    memorySize,
    align: view.getBigUint64(at + 0x30, true),
  };
}

/** All notes in all PT_NOTE segments, validated against each segment's bounds. */
export function readNotes(image: Uint8Array, elf: ElfFile, sourceName: string): ElfNote[] {
  const notes: ElfNote[] = [];
  for (const ph of elf.programHeaders) {
    if (ph.type !== PT_NOTE) continue;
    notes.push(...readNoteSegment(image, ph, sourceName));
  }
  return notes;
}

function readNoteSegment(image: Uint8Array, ph: ElfProgramHeader, sourceName: string): ElfNote[] {
  // Notes are padded to 4 bytes in practice (Linux, binutils) and to 8 where the segment
  // says so (GNU property notes); gABI leaves it to p_align.
  const alignment = ph.align === 8n ? 8 : 4;
  const segment = image.subarray(ph.offset, ph.offset + ph.fileSize);
  const view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength);
  const notes: ElfNote[] = [];
  let at = 0;
  for (let n = 0; at < segment.length; n++) {
    const truncated = () =>
      kernelLoadError(sourceName, `note ${n} in program header ${ph.index} extends past the end of its segment`);
    if (at + NOTE_HEADER_SIZE > segment.length) throw truncated();
    const nameSize = view.getUint32(at, true);
    const descSize = view.getUint32(at + 4, true);
    const type = view.getUint32(at + 8, true);
    const nameStart = at + NOTE_HEADER_SIZE;
    const descStart = nameStart + alignUp(nameSize, alignment);
    if (descStart + descSize > segment.length) throw truncated();
    let nameEnd = nameStart + nameSize;
    while (nameEnd > nameStart && segment[nameEnd - 1] === 0) nameEnd--;
    notes.push({
      name: new TextDecoder('latin1').decode(segment.subarray(nameStart, nameEnd)),
      type,
      desc: segment.slice(descStart, descStart + descSize),
    });
    at = descStart + alignUp(descSize, alignment);
  }
  return notes;
}

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}
