/**
 * bench/wl, Linux-guest path: libvirtwl over the virtio_wl driver in the Linux test guest,
 * against a host echo peer (test/linux-wl/peer.ts), beside the same ping-pong over a host Unix
 * socketpair (the limit). For each figure also vmm's own host-side CPU time per message: the
 * CPU time of vmm's main thread (where the virtio-wl device and the event loop run; the vCPU
 * is another thread) over the run, divided by the messages. So what the emulated guest kernel
 * costs (the round trip) and what vmm adds (its CPU per message) are separate figures.
 *
 *   npm run build && scripts/guest-kernel && node dist/bench/wl/linux.js [N] [BULK_MIB]
 *
 * N round trips per size (64 B and 4 KiB, default 200), then BULK_MIB MiB guest → host in
 * 64 KiB sends (default 8). Needs a fixture kernel with CONFIG_VIRTIO_WL=y; the in-guest program
 * (guest/linux/tests-wl/wltest.c) is built and appended to the initramfs as the tests do.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LinuxConsole } from '../../test/helpers/linux-console';
import { linuxFixture } from '../../test/helpers/linux-guest';
import { buildWltest, initramfsWith } from '../../test/linux-wl/guest-programs';
import { WlTestPeer } from '../../test/linux-wl/peer';
import { socketPairRoundTrips } from './socketpair';

const SIZES = [64, 4096];
const BULK_CHUNK = 64 * 1024;
const MiB = 1024 * 1024;
const CLOCK_TICK_S = 0.01; // USER_HZ: /proc's utime/stime are in 1/100 s

/** CPU seconds (user + system) of thread `tid` of process `pid`. */
function threadCpu(pid: number, tid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_S;
}

interface Row { what: string; size: number; usPerRoundTrip?: number; mbPerS?: number; ratio?: string; vmmUsPerMessage?: string }

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 200);
  const bulkMiB = Number(process.argv[3] ?? 8);
  if (!Number.isInteger(n) || n < 10) throw new Error('N must be a whole number of round trips, at least 10');
  if (!Number.isInteger(bulkMiB) || bulkMiB < 1) throw new Error('BULK_MIB must be a whole number of MiB, at least 1');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-bench-wl-linux-'));
  const fixture = linuxFixture();
  const initramfs = initramfsWith(fixture.initramfs, { '/bin/wltest': buildWltest(dir) }, path.join(dir, 'initramfs.cpio'));
  const peer = new WlTestPeer(dir);
  let guest: LinuxConsole | undefined;
  const rows: Row[] = [];
  try {
    guest = await LinuxConsole.boot({
      fixture: { vmlinux: fixture.vmlinux, initramfs },
      args: ['--plugin', `virtio-wl=${JSON.stringify({ sockets: { peer: peer.path } })}`],
    });
    const pid = guest.guest.child.pid!;
    const limits = socketPairRoundTrips(SIZES, n);
    for (const [i, size] of SIZES.entries()) {
      const cpu0 = threadCpu(pid, pid);
      const out = await guest.ok(`wltest bench-rtt ${size} ${n}`, 30 * 60_000);
      const cpu = threadCpu(pid, pid) - cpu0;
      const m = /^rtt \d+ (\d+) ([\d.]+)$/m.exec(out);
      if (!m) throw new Error(`wltest bench-rtt said: ${out}`);
      const us = (Number(m[2]) * 1000) / n;
      const limitUs = (limits[i].seconds * 1e6) / n;
      // two messages per round trip (out and back), plus the 10 warm-up round trips
      rows.push({ what: 'linux guest, libvirtwl', size, usPerRoundTrip: us, ratio: (us / limitUs).toFixed(1), vmmUsPerMessage: ((cpu * 1e6) / (2 * (n + 10))).toFixed(1) });
      rows.push({ what: 'host socketpair', size, usPerRoundTrip: limitUs, ratio: '1' });
    }
    const total = bulkMiB * MiB;
    const cpu0 = threadCpu(pid, pid);
    const out = await guest.ok(`wltest bench-bulk ${total} ${BULK_CHUNK}`, 30 * 60_000);
    const cpu = threadCpu(pid, pid) - cpu0;
    const m = /^bulk \d+ \d+ ([\d.]+)$/m.exec(out);
    if (!m) throw new Error(`wltest bench-bulk said: ${out}`);
    rows.push({ what: 'linux guest → host, bulk', size: BULK_CHUNK, mbPerS: total / (Number(m[1]) / 1000) / 1e6, vmmUsPerMessage: ((cpu * 1e6) / (total / BULK_CHUNK)).toFixed(1) });
  } finally {
    await guest?.stop();
    peer.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const table = [['path', 'size (B)', 'round trip (us)', 'MB/s', 'ratio (/ socketpair)', 'vmm main-thread CPU per message (us)'],
    ...rows.map((r) => [r.what, String(r.size), r.usPerRoundTrip?.toFixed(1) ?? '', r.mbPerS?.toFixed(2) ?? '', r.ratio ?? '', r.vmmUsPerMessage ?? ''])];
  const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
  process.stdout.write(table.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ')).join('\n') + '\n');
  process.stdout.write(`(${n} round trips per size after 10 to warm up; bulk ${bulkMiB} MiB in ${BULK_CHUNK / 1024} KiB sends; CPU from /proc at 10 ms resolution)\n`);
}

main().catch((error) => {
  process.stderr.write(`bench/wl/linux: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
});
