/**
 * Helpers for command handlers that take file descriptors (`wl add NAME --fd 3`).
 *
 * A handler finds the request's descriptors in `context.fds`, in the order of the request's
 * `fds` indexes. Taking one means removing it from that array: the server closes whatever is
 * left there after the handler returns or throws.
 */
import * as fs from 'fs';
import type { ControlContext } from '../../plugin-api';
import { CONTROL_ERRORS, ControlCommandError } from './protocol';

export type FdKind = 'socket' | 'file' | 'pipe' | 'directory' | 'character-device' | 'block-device' | 'symlink';

/**
 * Take the first descriptor of the request if it is of `kind`; otherwise leave it (the server
 * closes it) and throw ERR_BAD_FD_TYPE, or ERR_BAD_ARGS when there is none.
 */
export function takeFd(context: ControlContext, kind: FdKind, what = 'the descriptor'): number {
  if (context.fds.length === 0) {
    throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `${what} is missing: send it with the request (vmm ctl … --fd N).`);
  }
  const fd = context.fds[0];
  const actual = fdKind(fd);
  if (actual !== kind) {
    throw new ControlCommandError(CONTROL_ERRORS.BAD_FD_TYPE, `${what} must be a ${kind}; got a ${actual}.`);
  }
  context.fds.shift();
  return fd;
}

/** What an open descriptor refers to (fstat). */
export function fdKind(fd: number): FdKind | 'unknown' {
  let stat: fs.Stats;
  try {
    stat = fs.fstatSync(fd);
  } catch {
    return 'unknown';
  }
  if (stat.isSocket()) return 'socket';
  if (stat.isFile()) return 'file';
  if (stat.isFIFO()) return 'pipe';
  if (stat.isDirectory()) return 'directory';
  if (stat.isCharacterDevice()) return 'character-device';
  if (stat.isBlockDevice()) return 'block-device';
  if (stat.isSymbolicLink()) return 'symlink';
  return 'unknown';
}
