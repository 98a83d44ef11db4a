/**
 * Just enough of the i8042 keyboard controller for a guest to reset the machine (command 0xfe
 * on port 0x64, how Linux reboots without ACPI). There is no keyboard, and the controller reads
 * as absent hardware does, all ones, on its data and status ports: Linux's probe then says "No
 * controller found" at once, where a status of 0 ("empty, ready") made it wait for a reply to
 * its read-CTR command, a second of timeouts per boot. Port 0x61 (system control port B, between
 * the two) reads as 0 so probes of the PC speaker gate find nothing.
 */
import type { WorkerDeviceContext, WorkerDeviceHandler } from '../../plugin-api';

export const I8042_BASE = 0x60;
export const I8042_LENGTH = 5; // 0x60 data … 0x64 command/status
const DATA_OFFSET = 0;
const COMMAND_OFFSET = 4;
const CMD_RESET_CPU = 0xfe;
const ABSENT = 0xff;

export interface I8042Message { reset: true }

export function createDevice(ctx: WorkerDeviceContext): WorkerDeviceHandler {
  return {
    read: (offset) => (offset === DATA_OFFSET || offset === COMMAND_OFFSET ? ABSENT : 0),
    write(offset, _size, value) {
      if (offset === COMMAND_OFFSET && Number(value) === CMD_RESET_CPU) ctx.postToMain({ reset: true } satisfies I8042Message);
    },
  };
}
