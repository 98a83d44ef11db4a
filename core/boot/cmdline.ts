/**
 * The kernel command line: a NUL-terminated byte string at CMDLINE_START.
 */
import type { GuestMemory } from '../memory/guest-memory';
import { kernelLoadError } from './boot-setup';
import { CMDLINE_MAX, CMDLINE_START } from './layout';

/** Longest command line accepted by default: COMMAND_LINE_SIZE minus the terminating NUL. */
export const CMDLINE_MAX_LENGTH = CMDLINE_MAX - 1;

/**
 * Encode `cmdline` as UTF-8 plus a NUL, refusing what the kernel would truncate or misread.
 * `maxLength` counts bytes without the NUL (a bzImage header may lower it via cmdline_size).
 */
export function encodeCmdline(cmdline: string, sourceName: string, maxLength: number = CMDLINE_MAX_LENGTH): Uint8Array {
  const text = new TextEncoder().encode(cmdline);
  if (text.includes(0)) {
    throw kernelLoadError(sourceName, 'the kernel command line contains a NUL character');
  }
  if (text.length > maxLength) {
    throw kernelLoadError(
      sourceName,
      `the kernel command line is ${text.length} bytes long; the limit is ${maxLength} bytes` +
        (maxLength === CMDLINE_MAX_LENGTH ? ` (Linux COMMAND_LINE_SIZE ${CMDLINE_MAX} including the terminating NUL)` : ' (cmdline_size in the kernel header)'),
    );
  }
  const bytes = new Uint8Array(text.length + 1);
  bytes.set(text);
  return bytes;
}

/** Write an encoded command line (with its NUL) at CMDLINE_START. */
export function writeCmdline(memory: GuestMemory, encoded: Uint8Array): void {
  memory.write(CMDLINE_START, encoded);
}
