/**
 * Shared state of the 8250 UART. The registers live in a SharedArrayBuffer because the guest
 * touches them from vCPU threads while host input arrives on the main thread; a spinlock
 * (held for a few instructions) keeps the receive ring and the interrupt line consistent.
 */

// Int32 slots
export const S_LOCK = 0;
export const S_IER = 1;
export const S_LCR = 2;
export const S_MCR = 3;
export const S_SCR = 4;
export const S_DLL = 5;
export const S_DLM = 6;
/** Transmit-holding-register-empty interrupt pending (cleared by reading IIR or writing THR). */
export const S_THRE_PENDING = 7;
export const S_FIFO_ENABLED = 8;
/** Receive ring indices: the consumer (guest) advances HEAD, the producer (host) TAIL. */
export const S_RX_HEAD = 9;
export const S_RX_TAIL = 10;
/** Level last driven on the IRQ line, so the line is only touched when it changes. */
export const S_IRQ_LEVEL = 11;
/** Never written: vCPU threads sleep on it while the output pipe is full. */
export const S_SLEEP = 12;
const INT_SLOTS = 16;

export const RX_CAPACITY = 4096;

export class UartState {
  readonly i32: Int32Array;
  readonly rx: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(INT_SLOTS * 4 + RX_CAPACITY)) {
    this.i32 = new Int32Array(buffer, 0, INT_SLOTS);
    this.rx = new Uint8Array(buffer, INT_SLOTS * 4, RX_CAPACITY);
  }

  lock(): void {
    while (Atomics.compareExchange(this.i32, S_LOCK, 0, 1) !== 0) { /* held for a few instructions */ }
  }

  unlock(): void {
    Atomics.store(this.i32, S_LOCK, 0);
  }

  rxCount(): number {
    return (this.i32[S_RX_TAIL] - this.i32[S_RX_HEAD] + RX_CAPACITY) % RX_CAPACITY;
  }

  /** Host side: queue as many bytes as fit (one slot stays empty to tell full from empty). */
  push(data: Uint8Array): number {
    let tail = this.i32[S_RX_TAIL];
    let n = 0;
    while (n < data.length && (tail + 1) % RX_CAPACITY !== this.i32[S_RX_HEAD]) {
      this.rx[tail] = data[n++];
      tail = (tail + 1) % RX_CAPACITY;
    }
    this.i32[S_RX_TAIL] = tail;
    return n;
  }

  /** Guest side: take one byte, or -1. */
  pop(): number {
    const head = this.i32[S_RX_HEAD];
    if (head === this.i32[S_RX_TAIL]) return -1;
    this.i32[S_RX_HEAD] = (head + 1) % RX_CAPACITY;
    return this.rx[head];
  }
}
