/**
 * The main-thread half of the COM1 UART: registers the device at 0x3f8/IRQ 4 and feeds host
 * input into the shared receive ring, raising the interrupt when the guest asked for one.
 */
import * as path from 'path';
import type { DeviceBus } from '../../../plugin-api';
import { S_IER, S_IRQ_LEVEL, UartState } from './uart-state';
import type { UartOptions } from './uart-8250';

export const COM1_PORT = 0x3f8;
export const COM1_IRQ = 4;
const UART_PORTS = 8;
const IER_RDI = 0x01;
/** How often input that did not fit in the ring is offered again. */
const RETRY_MS = 5;

export class SerialPort {
  private readonly state = new UartState();
  private pending: Buffer[] = [];
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly setIrq: (gsi: number, level: boolean) => void) {}

  register(pio: DeviceBus, outputFd: number): void {
    const options: UartOptions = { irq: COM1_IRQ, outputFd };
    pio.register({
      name: 'serial (COM1)',
      base: COM1_PORT,
      length: UART_PORTS,
      worker: { module: path.join(__dirname, 'uart-8250.js'), options, shared: this.state.buffer },
    });
  }

  /** Queue host input for the guest. Nothing is dropped: what does not fit waits. */
  input(data: Buffer): void {
    this.pending.push(data);
    this.flush();
  }

  /** Bytes the guest has not taken yet. */
  get backlog(): number {
    return this.pending.reduce((n, b) => n + b.length, 0);
  }

  close(): void {
    if (this.retry) clearInterval(this.retry);
    this.retry = undefined;
    this.pending = [];
  }

  private flush(): void {
    const s = this.state;
    s.lock();
    try {
      while (this.pending.length > 0) {
        const head = this.pending[0];
        const n = s.push(head);
        if (n < head.length) { this.pending[0] = head.subarray(n); break; }
        this.pending.shift();
      }
      if ((s.i32[S_IER] & IER_RDI) && s.rxCount() > 0 && s.i32[S_IRQ_LEVEL] === 0) {
        s.i32[S_IRQ_LEVEL] = 1;
        this.setIrq(COM1_IRQ, true);
      }
    } finally {
      s.unlock();
    }
    if (this.pending.length > 0 && !this.retry) {
      this.retry = setInterval(() => this.flush(), RETRY_MS);
      this.retry.unref();
    } else if (this.pending.length === 0 && this.retry) {
      clearInterval(this.retry);
      this.retry = undefined;
    }
  }
}
