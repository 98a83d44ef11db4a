/**
 * The main thread's handle on one vCPU thread: starts the worker, relays its events, and
 * pauses, resumes and stops it through the shared command word plus a kick (a signal that makes
 * KVM_RUN return at once, even if it lands just before the ioctl).
 */
import * as path from 'path';
import { Worker } from 'worker_threads';
import { native } from '../../native';
import type { AccessValue } from '../../plugin-api';
import {
  CALL_FLAG, CALL_RESULT_HI, CALL_RESULT_LO, CALL_WORDS, CMD_PAUSE, CMD_RUN, CMD_STOP, CTL_COMMAND,
  type VcpuEvent, type VcpuWorkerData,
} from './protocol';

const WORKER_SCRIPT = path.join(__dirname, 'vcpu-worker.js');

/** Answers of a blocking call: the vCPU thread waits for one of these in CALL_FLAG. */
export const CALL_DONE = 1;
export const CALL_FAILED = 2;

export type VcpuEventHandler = (vcpu: VcpuThread, event: VcpuEvent) => AccessValue | void;

export class VcpuThread {
  private readonly worker: Worker;
  private readonly control: Int32Array;
  private readonly call: Int32Array;
  private threadId: bigint | undefined;
  private readonly exited: Promise<void>;
  private waiters: { paused: (() => void)[]; resumed: (() => void)[] } = { paused: [], resumed: [] };
  private ready!: Promise<void>;

  constructor(readonly id: number, data: Omit<VcpuWorkerData, 'control' | 'call'>, private readonly onEvent: VcpuEventHandler) {
    const control = new SharedArrayBuffer(4 * 4);
    const call = new SharedArrayBuffer(CALL_WORDS * 4);
    this.control = new Int32Array(control);
    this.call = new Int32Array(call);
    this.worker = new Worker(WORKER_SCRIPT, { workerData: { ...data, control, call } satisfies VcpuWorkerData });
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('error', reject);
      this.worker.on('message', (event: VcpuEvent) => {
        if (event.type === 'ready') { this.threadId = event.threadId; resolve(); }
        this.dispatch(event);
      });
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.on('error', (error) => this.onEvent(this, { type: 'error', message: `vCPU ${id} thread failed: ${error.message}` }));
  }

  /** Resolves once the thread runs the guest. */
  started(): Promise<void> {
    return this.ready;
  }

  async pause(): Promise<void> {
    const paused = new Promise<void>((resolve) => this.waiters.paused.push(resolve));
    this.command(CMD_PAUSE);
    await Promise.race([paused, this.exited]);
  }

  async resume(): Promise<void> {
    const resumed = new Promise<void>((resolve) => this.waiters.resumed.push(resolve));
    this.command(CMD_RUN);
    await Promise.race([resumed, this.exited]);
  }

  /** Stops the thread and waits until it has exited (joined); idempotent. */
  async stop(): Promise<void> {
    this.command(CMD_STOP);
    await this.exited;
  }

  private command(cmd: number): void {
    Atomics.store(this.control, CTL_COMMAND, cmd);
    Atomics.notify(this.control, CTL_COMMAND);
    if (this.threadId !== undefined) native.threadKick(this.threadId);
  }

  private dispatch(event: VcpuEvent): void {
    switch (event.type) {
      case 'paused': this.waiters.paused.splice(0).forEach((w) => w()); return;
      case 'resumed': this.waiters.resumed.splice(0).forEach((w) => w()); return;
      case 'call':
      case 'unhandled': {
        // The vCPU thread is blocked until we answer, whatever happens.
        let flag = CALL_DONE;
        let result: AccessValue | void = 0;
        try {
          result = this.onEvent(this, event);
        } catch {
          flag = CALL_FAILED;
        }
        const v = BigInt.asUintN(64, BigInt(result ?? 0));
        this.call[CALL_RESULT_LO] = Number(v & 0xffffffffn) | 0;
        this.call[CALL_RESULT_HI] = Number(v >> 32n) | 0;
        Atomics.store(this.call, CALL_FLAG, flag);
        Atomics.notify(this.call, CALL_FLAG);
        return;
      }
      default:
        this.onEvent(this, event);
    }
  }
}
