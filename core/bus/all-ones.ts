import type { AccessValue } from '../../plugin-api';

/** What a read from nothing returns on a PC bus: every data line floats high. */
export function allOnes(size: number): AccessValue {
  return size > 4 ? (1n << BigInt(8 * Math.min(size, 8))) - 1n : 2 ** (size * 8) - 1;
}
