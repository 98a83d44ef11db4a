/**
 * Just enough of the i8042 keyboard controller for a guest to reset the machine (command 0xfe
 * on port 0x64, how Linux reboots without ACPI). There is no keyboard. The data port reads as
 * absent hardware does (0xff), and so does the status port except for "input buffer full":
 *  - "output buffer full" that never empties makes Linux's probe say "No controller found" at
 *    once, where a status of 0 ("empty, ready") had it wait for a reply to its read-CTR
 *    command, a second of timeouts per boot;
 *  - "input buffer full" clear lets Linux's reboot path (kb_wait, which polls that bit before
 *    each 0xfe) write the reset at once instead of after 65536 polls.
 * Port 0x61 (system control port B, between the two) reads as 0 so probes of the PC speaker gate
 * find nothing.
 */
import type { WorkerDeviceContext, WorkerDeviceHandler } from '../../plugin-api';

export const I8042_BASE = 0x60;
export const I8042_LENGTH = 5; // 0x60 data … 0x64 command/status
const DATA_OFFSET = 0;
const COMMAND_OFFSET = 4;
const CMD_RESET_CPU = 0xfe;
const ABSENT = 0xff;
const STATUS_INPUT_FULL = 0x02;
const STATUS = ABSENT & ~STATUS_INPUT_FULL;

export interface I8042Message { reset: true }

export function createDevice(ctx: WorkerDeviceContext): WorkerDeviceHandler {
  return {
    read: (offset) => (offset === COMMAND_OFFSET ? STATUS : offset === DATA_OFFSET ? ABSENT : 0),
    write(offset, _size, value) {
      if (offset === COMMAND_OFFSET && Number(value) === CMD_RESET_CPU) ctx.postToMain({ reset: true } satisfies I8042Message);
    },
  };
}
