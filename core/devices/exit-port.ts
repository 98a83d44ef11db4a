/**
 * The vmm exit port: a guest writes a status to port 0xf4 to end the VM (0 = clean power-off,
 * anything else = the guest reports failure). Same port as QEMU's isa-debug-exit, so test
 * guests written for it need no change, though we do not shift the status.
 */
import type { WorkerDeviceContext, WorkerDeviceHandler } from '../../plugin-api';

export const VMM_EXIT_PORT = 0xf4;
export const VMM_EXIT_PORT_LENGTH = 4;

export interface ExitPortMessage { status: number }

export function createDevice(ctx: WorkerDeviceContext): WorkerDeviceHandler {
  return {
    write(_offset, _size, value) {
      ctx.postToMain({ status: Number(BigInt.asUintN(32, BigInt(value))) } satisfies ExitPortMessage);
    },
    read: () => 0,
  };
}
