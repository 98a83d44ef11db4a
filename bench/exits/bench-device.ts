/**
 * The benchmark's devices, run on the vCPU thread like any worker device: a register that
 * accumulates what the guest writes (PIO and MMIO), and a marker port the guest writes at the
 * start and end of each phase, timestamped with the process-wide monotonic clock.
 */
import type { WorkerDeviceContext, WorkerDeviceHandler } from '../../plugin-api';

export interface MarkMessage { mark: number; ns: string }

export function createDevice(ctx: WorkerDeviceContext): WorkerDeviceHandler {
  const role = (ctx.options as { role: 'sink' | 'marker' }).role;
  if (role === 'marker') {
    return {
      write(_offset, _size, value) {
        ctx.postToMain({ mark: Number(value), ns: process.hrtime.bigint().toString() } satisfies MarkMessage);
      },
    };
  }
  let sum = 0;
  return {
    write(_offset, _size, value) { sum = (sum + Number(value)) | 0; },
    read: () => sum,
  };
}
