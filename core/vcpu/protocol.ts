/**
 * What the main thread and a vCPU thread share. Commands travel through a small Int32Array on a
 * SharedArrayBuffer (the vCPU thread never runs an event loop while the guest runs, so it
 * cannot receive messages); events travel back with postMessage.
 */
import type { AccessValue, UnhandledExit } from '../../plugin-api';

/** Int32 slots of `VcpuWorkerData.control`. */
export const CTL_COMMAND = 0;
/** Int32 slots used by a blocking call to the main thread: flag, then result words. */
export const CALL_FLAG = 0;
export const CALL_RESULT_LO = 1;
export const CALL_RESULT_HI = 2;
export const CALL_WORDS = 4;

export const CMD_RUN = 0;
export const CMD_PAUSE = 1;
export const CMD_STOP = 2;

/** A device as the vCPU thread sees it: handled right there, or forwarded to the main thread. */
export interface WorkerDeviceSpec {
  name: string;
  /** The plugin that registered it (undefined: vmm's own device). */
  owner?: string;
  base: number;
  length: number;
  /** Index in the main thread's device table (for forwarded calls and postToMain). */
  index: number;
  /** Absent for main-thread devices. */
  module?: string;
  options?: unknown;
  shared?: SharedArrayBuffer;
}

export interface MemoryRegionSpec {
  guestAddress: number;
  size: number;
  /** Offset of this region in the memfd. */
  fileOffset: number;
}

export interface VcpuWorkerData {
  vcpu: number;
  vcpuFd: number;
  vmFd: number;
  mmapSize: number;
  memFd: number;
  regions: MemoryRegionSpec[];
  pio: WorkerDeviceSpec[];
  mmio: WorkerDeviceSpec[];
  control: SharedArrayBuffer;
  call: SharedArrayBuffer;
  debug: string | undefined;
}

/** vCPU thread → main thread. */
export type VcpuEvent =
  | { type: 'ready'; threadId: bigint }
  | { type: 'paused' }
  | { type: 'resumed' }
  | { type: 'call'; bus: 'pio' | 'mmio'; index: number; offset: number; size: number; isWrite: boolean; value: AccessValue }
  | { type: 'unhandled'; exit: UnhandledExit }
  | { type: 'device-message'; bus: 'pio' | 'mmio'; index: number; message: unknown }
  | { type: 'guest-exit'; reason: 'poweroff' | 'reset' | 'guest-failure'; status: number }
  | { type: 'crash'; message: string }
  | { type: 'error'; message: string }
  | { type: 'stopped' };

/** "device 'x' (plugin 'y')": how errors name a device, on either thread. */
export function describeDevice(name: string, owner: string | undefined): string {
  return `device '${name}'${owner !== undefined ? ` (plugin '${owner}')` : ''}`;
}
