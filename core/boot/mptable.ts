/**
 * The Intel MultiProcessor table (MP spec 1.4, chapter 4), written where Linux looks for it
 * (the EBDA, §4: "the first kilobyte of the EBDA"). Without it Linux finds no IOAPIC and falls
 * back to the 8259 in virtual-wire mode, where device interrupts never reach it on KVM's
 * in-kernel irqchip. Layout and choices follow Firecracker's arch/x86_64/mptable.rs.
 */
import type { GuestMemory } from '../memory/guest-memory';
import { EBDA_START, IOAPIC_START, LAPIC_START } from './layout';

// MP spec 1.4 table 4-1, 4-2, 4-3 … 4-12
const MPF_SIGNATURE = '_MP_';
const MPC_SIGNATURE = 'PCMP';
const MP_SPEC_REV = 4; // version 1.4
const MPF_SIZE = 16;
const MPC_HEADER_SIZE = 44;
const MP_PROCESSOR = 0;
const MP_BUS = 1;
const MP_IOAPIC = 2;
const MP_INTSRC = 3;
const MP_LINTSRC = 4;
const MP_PROCESSOR_SIZE = 20;
const MP_ENTRY_SIZE = 8;
const CPU_ENABLED = 1;
const CPU_BOOTPROCESSOR = 2;
const MP_IRQ_INT = 0;
const MP_IRQ_NMI = 1;
const MP_IRQ_EXTINT = 3;
const BUS_ID_ISA = 0;
const APIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
const IOAPIC_ENABLED = 1;
/** KVM's in-kernel IOAPIC has 24 pins. */
const IOAPIC_PINS = 24;
/** Family 6 signature and FPU|APIC features, as Firecracker reports. */
const CPU_SIGNATURE = 0x600;
const CPU_FEATURES = 0x201;

/** Guest-physical address of the MP floating pointer. */
export const MPTABLE_START = EBDA_START;

export function mpTableSize(cpus: number): number {
  return MPF_SIZE + MPC_HEADER_SIZE + cpus * MP_PROCESSOR_SIZE + (2 + IOAPIC_PINS + 2) * MP_ENTRY_SIZE;
}

export function writeMpTable(memory: GuestMemory, cpus: number): void {
  const bytes = new Uint8Array(mpTableSize(cpus));
  const view = new DataView(bytes.buffer);
  const ascii = (at: number, text: string) => { for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i); };
  const ioapicId = cpus; // after the CPUs' local APIC ids

  // Configuration table, right after the floating pointer.
  const table = MPF_SIZE;
  let at = table + MPC_HEADER_SIZE;
  for (let cpu = 0; cpu < cpus; cpu++, at += MP_PROCESSOR_SIZE) {
    bytes[at] = MP_PROCESSOR;
    bytes[at + 1] = cpu;
    bytes[at + 2] = APIC_VERSION;
    bytes[at + 3] = CPU_ENABLED | (cpu === 0 ? CPU_BOOTPROCESSOR : 0);
    view.setUint32(at + 4, CPU_SIGNATURE, true);
    view.setUint32(at + 8, CPU_FEATURES, true);
  }
  bytes[at] = MP_BUS;
  bytes[at + 1] = BUS_ID_ISA;
  ascii(at + 2, 'ISA   ');
  at += MP_ENTRY_SIZE;
  bytes[at] = MP_IOAPIC;
  bytes[at + 1] = ioapicId;
  bytes[at + 2] = IOAPIC_VERSION;
  bytes[at + 3] = IOAPIC_ENABLED;
  view.setUint32(at + 4, IOAPIC_START, true);
  at += MP_ENTRY_SIZE;
  // ISA IRQ n → IOAPIC pin n, polarity and trigger "conforming to the bus" (ISA: edge, high).
  for (let irq = 0; irq < IOAPIC_PINS; irq++, at += MP_ENTRY_SIZE) {
    bytes[at] = MP_INTSRC;
    bytes[at + 1] = MP_IRQ_INT;
    bytes[at + 4] = BUS_ID_ISA;
    bytes[at + 5] = irq;
    bytes[at + 6] = ioapicId;
    bytes[at + 7] = irq;
  }
  // LINT0 is the 8259's ExtINT, LINT1 NMI (to every local APIC: id 0xff).
  bytes[at] = MP_LINTSRC;
  bytes[at + 1] = MP_IRQ_EXTINT;
  bytes[at + 6] = 0;
  bytes[at + 7] = 0;
  at += MP_ENTRY_SIZE;
  bytes[at] = MP_LINTSRC;
  bytes[at + 1] = MP_IRQ_NMI;
  bytes[at + 6] = 0xff;
  bytes[at + 7] = 1;
  at += MP_ENTRY_SIZE;

  ascii(table, MPC_SIGNATURE);
  view.setUint16(table + 4, at - table, true);
  bytes[table + 6] = MP_SPEC_REV;
  ascii(table + 8, 'VMM     ');
  ascii(table + 16, 'vmm         ');
  view.setUint16(table + 34, cpus + 2 + IOAPIC_PINS + 2, true);
  view.setUint32(table + 36, LAPIC_START, true);
  bytes[table + 7] = checksum(bytes.subarray(table, at));

  ascii(0, MPF_SIGNATURE);
  view.setUint32(4, MPTABLE_START + table, true);
  bytes[8] = 1; // length in 16-byte units
  bytes[9] = MP_SPEC_REV;
  bytes[10] = checksum(bytes.subarray(0, MPF_SIZE));

  memory.write(MPTABLE_START, bytes);
}

/** The byte that makes the sum of `data` 0 mod 256 (its own slot must still be 0). */
function checksum(data: Uint8Array): number {
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}
