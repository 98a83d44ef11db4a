/**
 * The PC ports a Linux kernel probes or pokes at boot that vmm has no real device for. Registered
 * by the Vm for Linux boots only (vmlinux, bzImage): a bare test guest touching these ports is
 * still an unclaimed access.
 *
 *   0x70-0x71    CMOS/RTC: index + data. Enough of an MC146818 for Linux's
 *                mach_get_cmos_time(): status A says "no update in progress" (a read of 0xff
 *                would make it spin on UIP forever), status B says BCD and 24-hour, the time
 *                registers hold the host's UTC time in BCD. Every other register reads 0.
 *   0x80         POST code / I/O delay port (outb_p): writes are dropped, reads 0xff.
 *   0x87, 0xed   DMA page register, alternative delay port (io_delay=0xed): likewise.
 *   0x2e8, 0x2f8, 0x3e8 (8 ports each)
 *                COM4, COM2, COM3: no UART there; reads 0xff, which the 8250 driver reads
 *                as "nothing here".
 *   0xcf8-0xcff  PCI configuration mechanism #1: no host bridge; reads all ones.
 *
 * Everything runs on the vCPU thread; nothing reaches the main thread.
 */
import * as path from 'path';
import type { AccessValue, WorkerBusDevice, WorkerDeviceContext, WorkerDeviceHandler } from '../../plugin-api';

export type LegacyPortKind = 'cmos' | 'sink' | 'absent';

export interface LegacyPortOptions { kind: LegacyPortKind }

interface LegacyRange { name: string; base: number; length: number; kind: LegacyPortKind }

export const LEGACY_PORT_RANGES: readonly LegacyRange[] = Object.freeze([
  { name: 'CMOS/RTC', base: 0x70, length: 2, kind: 'cmos' },
  { name: 'POST/delay port 0x80', base: 0x80, length: 1, kind: 'sink' },
  { name: 'DMA page register 0x87', base: 0x87, length: 1, kind: 'sink' },
  { name: 'delay port 0xed', base: 0xed, length: 1, kind: 'sink' },
  { name: 'COM4 (absent)', base: 0x2e8, length: 8, kind: 'absent' },
  { name: 'COM2 (absent)', base: 0x2f8, length: 8, kind: 'absent' },
  { name: 'COM3 (absent)', base: 0x3e8, length: 8, kind: 'absent' },
  { name: 'PCI config (absent)', base: 0xcf8, length: 8, kind: 'absent' },
]);

/** The bus devices for the Vm to register; `module` is this file's compiled form. */
export function legacyPortDevices(): WorkerBusDevice[] {
  const module = path.join(__dirname, 'legacy-ports.js');
  return LEGACY_PORT_RANGES.map(({ name, base, length, kind }) => ({
    name: `legacy: ${name}`,
    base,
    length,
    worker: { module, options: { kind } satisfies LegacyPortOptions },
  }));
}

function allOnes(size: number): AccessValue {
  return size === 8 ? 0xffffffffffffffffn : 2 ** (size * 8) - 1;
}

// MC146818 registers (Linux include/linux/mc146818rtc.h)
const RTC_SECONDS = 0x00;
const RTC_MINUTES = 0x02;
const RTC_HOURS = 0x04;
const RTC_DAY_OF_WEEK = 0x06;
const RTC_DAY_OF_MONTH = 0x07;
const RTC_MONTH = 0x08;
const RTC_YEAR = 0x09;
const RTC_REG_A = 0x0a;
const RTC_REG_B = 0x0b;
const RTC_REG_C = 0x0c;
const RTC_REG_D = 0x0d;
const RTC_CENTURY = 0x32; // the register ACPI's FADT usually names; harmless without ACPI
const REG_A_DIVIDER = 0x26; // 32.768 kHz time base, 1024 Hz rate, UIP clear
const REG_B_24H = 0x02; // 24-hour mode, BCD, no interrupts
const REG_D_VRT = 0x80; // valid RAM and time

const bcd = (n: number): number => ((Math.floor(n / 10) % 10) << 4) | (n % 10);

/** The value of CMOS register `index` right now. */
export function cmosRegister(index: number, now: Date = new Date()): number {
  switch (index) {
    case RTC_SECONDS: return bcd(now.getUTCSeconds());
    case RTC_MINUTES: return bcd(now.getUTCMinutes());
    case RTC_HOURS: return bcd(now.getUTCHours());
    case RTC_DAY_OF_WEEK: return bcd(now.getUTCDay() + 1);
    case RTC_DAY_OF_MONTH: return bcd(now.getUTCDate());
    case RTC_MONTH: return bcd(now.getUTCMonth() + 1);
    case RTC_YEAR: return bcd(now.getUTCFullYear() % 100);
    case RTC_CENTURY: return bcd(Math.floor(now.getUTCFullYear() / 100));
    case RTC_REG_A: return REG_A_DIVIDER;
    case RTC_REG_B: return REG_B_24H;
    case RTC_REG_C: return 0;
    case RTC_REG_D: return REG_D_VRT;
    default: return 0;
  }
}

export function createDevice(ctx: WorkerDeviceContext): WorkerDeviceHandler {
  const { kind } = ctx.options as LegacyPortOptions;
  if (kind === 'cmos') {
    let index = 0;
    return {
      read(offset, size) {
        if (offset === 0) return allOnes(size); // the index register is write-only
        return cmosRegister(index);
      },
      write(offset, _size, value) {
        // Bit 7 of the index is the NMI mask on a PC; only the low 7 bits select the register.
        if (offset === 0) index = Number(value) & 0x7f;
      },
    };
  }
  // 'sink' and 'absent' behave the same; the names only say why the port is here.
  return { read: (_offset, size) => allOnes(size), write: () => undefined };
}
