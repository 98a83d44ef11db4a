/**
 * GSI allocation and line control on the in-kernel irqchip (PIC + IOAPIC). Lines 0–4 and 8 are
 * the PC's fixed wiring (PIT, keyboard, cascade, COM2, COM1, RTC); devices get the rest, from 5
 * up to 23 as Firecracker hands them out.
 */
import { native } from '../../native';
import type { Interrupts } from '../../plugin-api';
import { VmmError } from '../errors';

const FIRST_DEVICE_GSI = 5;
const LAST_GSI = 23;
const FIXED_LINES: Readonly<Record<number, string>> = { 0: 'PIT', 1: 'i8042', 2: 'PIC cascade', 3: 'COM2', 4: 'COM1', 8: 'RTC' };

export class IrqAllocator implements Interrupts {
  private readonly owners = new Map<number, string>(Object.entries(FIXED_LINES).map(([gsi, owner]) => [Number(gsi), owner]));

  constructor(private readonly vmFd: () => number) {}

  allocate(owner: string): number {
    for (let gsi = FIRST_DEVICE_GSI; gsi <= LAST_GSI; gsi++) {
      if (!this.owners.has(gsi)) {
        this.owners.set(gsi, owner);
        return gsi;
      }
    }
    throw new VmmError('ERR_IRQ_EXHAUSTED', `cannot allocate an interrupt line for '${owner}': all of GSI ${FIRST_DEVICE_GSI}–${LAST_GSI} are taken.`);
  }

  owner(gsi: number): string | undefined {
    return this.owners.get(gsi);
  }

  set(gsi: number, level: boolean): void {
    native.irqLine(this.vmFd(), gsi, level ? 1 : 0);
  }

  pulse(gsi: number): void {
    this.set(gsi, true);
    this.set(gsi, false);
  }
}
