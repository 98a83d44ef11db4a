/**
 * 8250/16550A UART, handled on the vCPU thread so serial output never waits for the main
 * event loop. Register semantics follow the PC16550D datasheet; the parts Linux's 8250 driver
 * probes (scratch, IER read-back, loopback MSR, FIFO bits in IIR) behave as on hardware.
 */
import * as fs from 'fs';
import type { WorkerDeviceContext, WorkerDeviceHandler } from '../../../plugin-api';
import {
  S_DLL, S_DLM, S_FIFO_ENABLED, S_IER, S_IRQ_LEVEL, S_LCR, S_MCR, S_SCR, S_SLEEP, S_THRE_PENDING, UartState,
} from './uart-state';

// Register offsets (PC16550D, table 2)
const RBR_THR = 0;
const IER = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const LCR_DLAB = 0x80;
const IER_RDI = 0x01;
const IER_THRI = 0x02;
const IIR_NO_INT = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_FIFO_BITS = 0xc0;
const FCR_ENABLE = 0x01;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MCR_LOOP = 0x10;
// Modem status with nothing attached: carrier detect, data set ready, clear to send.
const MSR_IDLE = 0xb0;

export interface UartOptions {
  irq: number;
  /** Where transmitted bytes go (written synchronously). */
  outputFd: number;
}

export function createDevice(ctx: WorkerDeviceContext): WorkerDeviceHandler {
  const { irq, outputFd } = ctx.options as UartOptions;
  const s = new UartState(ctx.shared);
  const r = s.i32;
  const one = Buffer.alloc(1);

  function transmit(byte: number): void {
    one[0] = byte;
    for (;;) {
      try {
        fs.writeSync(outputFd, one, 0, 1);
        return;
      } catch (e) {
        // stdout may be a non-blocking pipe (libuv sets that); wait for the reader instead of
        // dropping guest output.
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        Atomics.wait(r, S_SLEEP, 0, 1);
      }
    }
  }

  function updateIrq(): void {
    const level = ((r[S_IER] & IER_RDI) && s.rxCount() > 0) || ((r[S_IER] & IER_THRI) && r[S_THRE_PENDING]) ? 1 : 0;
    if (level !== r[S_IRQ_LEVEL]) {
      r[S_IRQ_LEVEL] = level;
      ctx.irq.set(irq, level === 1);
    }
  }

  function read(offset: number): number {
    const dlab = r[S_LCR] & LCR_DLAB;
    switch (offset) {
      case RBR_THR: {
        if (dlab) return r[S_DLL];
        const byte = s.pop();
        updateIrq();
        return byte < 0 ? 0 : byte;
      }
      case IER: return dlab ? r[S_DLM] : r[S_IER];
      case IIR_FCR: {
        const fifo = r[S_FIFO_ENABLED] ? IIR_FIFO_BITS : 0;
        if ((r[S_IER] & IER_RDI) && s.rxCount() > 0) return IIR_RDI | fifo;
        if ((r[S_IER] & IER_THRI) && r[S_THRE_PENDING]) {
          // Reading IIR while it reports THRE clears that interrupt (16550 datasheet).
          r[S_THRE_PENDING] = 0;
          updateIrq();
          return IIR_THRI | fifo;
        }
        return IIR_NO_INT | fifo;
      }
      case LCR: return r[S_LCR];
      case MCR: return r[S_MCR];
      case LSR: return LSR_THRE | LSR_TEMT | (s.rxCount() > 0 ? LSR_DR : 0);
      case MSR: {
        const mcr = r[S_MCR];
        if (!(mcr & MCR_LOOP)) return MSR_IDLE;
        // Loopback: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD (Linux's autoconfig checks this).
        return ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4);
      }
      case SCR: return r[S_SCR];
      default: return 0xff;
    }
  }

  /** Returns the byte to transmit once the lock is released, or -1. */
  function write(offset: number, value: number): number {
    const dlab = r[S_LCR] & LCR_DLAB;
    switch (offset) {
      case RBR_THR: {
        if (dlab) { r[S_DLL] = value; return -1; }
        const loop = r[S_MCR] & MCR_LOOP;
        if (loop) s.push(Uint8Array.of(value));
        // The byte leaves at once, so the holding register is empty again.
        r[S_THRE_PENDING] = 1;
        updateIrq();
        return loop ? -1 : value;
      }
      case IER:
        if (dlab) { r[S_DLM] = value; return -1; }
        r[S_IER] = value & 0x0f;
        // Enabling THRI with an empty holding register raises the interrupt at once.
        if (value & IER_THRI) r[S_THRE_PENDING] = 1;
        updateIrq();
        return -1;
      case IIR_FCR: r[S_FIFO_ENABLED] = value & FCR_ENABLE; return -1;
      case LCR: r[S_LCR] = value; return -1;
      case MCR: r[S_MCR] = value & 0x1f; return -1;
      case SCR: r[S_SCR] = value; return -1;
      default: return -1; // LSR and MSR are read-only
    }
  }

  return {
    read(offset) {
      s.lock();
      try { return read(offset); } finally { s.unlock(); }
    },
    write(offset, _size, value) {
      s.lock();
      let out: number;
      try { out = write(offset, Number(value) & 0xff); } finally { s.unlock(); }
      // Outside the lock: a slow reader must not stall host input on the main thread.
      if (out >= 0) transmit(out);
    },
  };
}
