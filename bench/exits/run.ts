/**
 * bench/exits: the cost of a guest access handled by a TypeScript plugin device, against a
 * minimal C VMM (bench/exits/ref-vmm.c) running the same guest on the same machine, in one run.
 *
 *   npm run bench            (or: node dist/bench/exits/run.js [N] [ROUNDS])
 *
 * Phases (guest/bench/exits.c): N port writes (ring 0), N MMIO writes from ring 3, N MMIO
 * writes to an ioeventfd address from ring 3. Each phase is timed between marker-port writes.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Plugin, Vmm } from '../../plugin-api';
import { DEFAULT_CONFIG } from '../../core/config';
import { runVm } from '../../core/vm-runner';
import type { MarkMessage } from './bench-device';

const ROOT = path.join(__dirname, '..', '..', '..');
const GUEST = path.join(ROOT, 'guest', 'build', 'bench-exits.elf');
const REF_VMM = path.join(ROOT, 'bench', 'exits', 'build', 'ref-vmm');
const PIO_PORT = 0x510;
const MARK_PORT = 0x520;
const MMIO_ADDR = 0xd0000000;
const NOTIFY_ADDR = 0xd0001000;
const PHASES = ['pio', 'mmio', 'notify'] as const;
type Phase = typeof PHASES[number];
type Figures = Record<Phase, { n: number; seconds: number }>;

function cmdline(n: number): string {
  return `pio=${n} mmio=${n} notify=${n} pio_port=0x${PIO_PORT.toString(16)} mmio_addr=0x${MMIO_ADDR.toString(16)}`
    + ` notify_addr=0x${NOTIFY_ADDR.toString(16)} mark_port=0x${MARK_PORT.toString(16)}`;
}

/** `mainThread`: the MMIO sink is a main-thread device (plain read/write functions) instead. */
async function runVmm(n: number, mainThread = false): Promise<{ figures: Figures; notified: bigint }> {
  const marks = new Map<number, bigint>();
  let notified = 0n;
  const device = path.join(__dirname, 'bench-device.js');
  const plugin: Plugin = {
    name: 'bench-exits',
    apply(vmm: Vmm) {
      vmm.hooks.createDevices.tap('bench-exits', () => {
        vmm.pio.register({ name: 'bench sink', base: PIO_PORT, length: 4, worker: { module: device, options: { role: 'sink' } } });
        let sum = 0;
        vmm.mmio.register(mainThread
          ? { name: 'bench sink', base: MMIO_ADDR, length: 0x1000, write: (_o, _s, v) => { sum += Number(v); }, read: () => sum }
          : { name: 'bench sink', base: MMIO_ADDR, length: 0x1000, worker: { module: device, options: { role: 'sink' } } });
        vmm.pio.register({
          name: 'bench marker', base: MARK_PORT, length: 4, worker: { module: device, options: { role: 'marker' } },
          onWorkerMessage: (_vcpu, m) => { const { mark, ns } = m as MarkMessage; marks.set(mark, BigInt(ns)); },
        });
        vmm.ioevent({ address: NOTIFY_ADDR, length: 4, onNotify: (count) => { notified += count; } });
      });
    },
  };
  const devNull = fs.openSync('/dev/null', 'w');
  try {
    const exit = await runVm({ ...DEFAULT_CONFIG, kernel: GUEST, cmdline: cmdline(n) },
      [{ plugin, options: {}, source: 'bench/exits' }], { serialInput: null, serialOutput: devNull });
    if (exit.exitCode !== 0) throw new Error(`vmm run failed: ${exit.message}`);
  } finally {
    fs.closeSync(devNull);
  }
  const figures = {} as Figures;
  PHASES.forEach((phase, i) => {
    const start = marks.get(i + 1);
    const end = marks.get(0x100 | (i + 1));
    if (start === undefined || end === undefined) throw new Error(`vmm: phase ${phase} has no markers`);
    figures[phase] = { n, seconds: Number(end - start) / 1e9 };
  });
  return { figures, notified };
}

function runReference(n: number): { figures: Figures; notified: number } {
  const out = execFileSync(REF_VMM, [GUEST, cmdline(n)], { encoding: 'utf8' });
  const last = out.trim().split('\n').pop()!;
  const parsed = JSON.parse(last) as Figures & { notify: { eventfd_count: number } };
  return { figures: parsed, notified: parsed.notify.eventfd_count };
}

function row(name: string, ours: { n: number; seconds: number }, ref: { n: number; seconds: number }, target: number): string {
  const usOurs = (ours.seconds / ours.n) * 1e6;
  const usRef = (ref.seconds / ref.n) * 1e6;
  const ratio = usOurs / usRef;
  return [name.padEnd(26), usOurs.toFixed(2).padStart(9), Math.round(ours.n / ours.seconds).toString().padStart(10),
    usRef.toFixed(2).padStart(9), Math.round(ref.n / ref.seconds).toString().padStart(10), ratio.toFixed(2).padStart(7),
    `≤ ${target.toFixed(1)}×`.padStart(8), ratio <= target ? '  ok' : '  MISSED'].join(' ');
}

/** Per phase, the run with the median time: one slow run (a busy host) does not decide. */
function median(runs: Figures[]): Figures {
  const out = {} as Figures;
  for (const phase of PHASES) {
    const sorted = runs.map((r) => r[phase]).sort((a, b) => a.seconds - b.seconds);
    out[phase] = sorted[Math.floor(sorted.length / 2)];
  }
  return out;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 20000);
  const rounds = Number(process.argv[3] ?? 5);
  if (!fs.existsSync(REF_VMM)) throw new Error(`${REF_VMM} is missing; build it with make -C bench/exits`);
  const refRuns: Figures[] = [];
  const ourRuns: Figures[] = [];
  // Alternate the two so both see the same machine conditions.
  for (let i = 0; i < rounds; i++) {
    const r = runReference(n);
    const o = await runVmm(n);
    if (o.notified !== BigInt(n) || r.notified !== n) {
      throw new Error(`notify counts differ from ${n}: vmm ${o.notified}, reference ${r.notified}`);
    }
    refRuns.push(r.figures);
    ourRuns.push(o.figures);
  }
  const ref = { figures: median(refRuns) };
  const ours = { figures: median(ourRuns) };
  // One more run with the MMIO device on the main thread, to show what the worker path saves.
  const slowN = Math.min(n, 5000);
  const slow = (await runVmm(slowN, true)).figures.mmio;
  console.log(`bench/exits: ${n} guest accesses per phase, median of ${rounds} alternating runs; µs per access and accesses/s; ratio = vmm / C reference`);
  console.log(['phase'.padEnd(26), 'vmm µs'.padStart(9), 'vmm /s'.padStart(10), 'C µs'.padStart(9), 'C /s'.padStart(10),
    'ratio'.padStart(7), 'target'.padStart(8)].join(' '));
  console.log(row('PIO write (TS device)', ours.figures.pio, ref.figures.pio, 2));
  console.log(row('MMIO write (TS device)', ours.figures.mmio, ref.figures.mmio, 2));
  console.log(row('ioeventfd notify', ours.figures.notify, ref.figures.notify, 1.1));
  console.log(row('MMIO (main-thread device)', slow, ref.figures.mmio, Infinity).replace(/≤ +Infinity×.*/, '   (info)'));
}

main().catch((error) => {
  console.error(`bench/exits: ${(error as Error).message}`);
  process.exitCode = 1;
});
