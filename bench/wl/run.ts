/**
 * bench/wl: round-trip latency and throughput of virtio-wl, guest → host echo peer → guest, for
 * 64-byte and 4-KiB messages, against the same ping-pong over a plain host Unix stream socket
 * pair (the limit), printed with the ratios.
 *
 *   make -s -C guest && npx tsc -p . && node dist/bench/wl/run.js [N]
 *
 * The guest (guest/bench/wl-echo.c → guest/build/bench-wl.elf, polled virtio driver from
 * guest/lib/virtio*.c) opens one context per size on the unnamed socket and does N round trips
 * (default 200): VFD_SEND of SIZE bytes, then VFD_RECV events until SIZE bytes are back. The echo
 * peer here accepts each context's connection and writes back whatever arrives; it times each
 * connection from its first byte to the echo that completes the N-th round trip. The limit is
 * the same ping-pong between two ends of a socketpair in this process. Guest code may run under
 * an instruction emulator on nested hosts, which dominates the virtio-wl figures there.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Plugin } from '../../plugin-api';
import { DEFAULT_CONFIG } from '../../core/config';
import { Vm } from '../../core/vm';
import { native, type FdWatcher } from '../../native';
import wlPlugin from '../../plugins/virtio-wl/index';
import { socketPairRoundTrips } from './socketpair';

const ROOT = path.join(__dirname, '..', '..', '..');
const GUEST = path.join(ROOT, 'guest', 'build', 'bench-wl.elf');
const SIZES = [64, 4096];
const MiB = 1024 * 1024;

interface Figures { size: number; n: number; seconds: number }

/** The echo peer: one timing per accepted connection, in accept order. */
class EchoPeer {
  readonly results: { bytes: number; first: bigint; last: bigint }[] = [];
  private readonly fd: number;
  private readonly watchers: FdWatcher[] = [];

  constructor(readonly socketPath: string) {
    this.fd = native.unixListen(socketPath, native.SOCK_STREAM, 16);
    const w = new native.FdWatcher(this.fd, () => this.accept());
    w.start(native.POLL_READABLE);
    this.watchers.push(w);
  }

  private accept(): void {
    for (let fd = native.unixAccept(this.fd); fd !== null; fd = native.unixAccept(this.fd)) {
      const conn = fd;
      const result = { bytes: 0, first: 0n, last: 0n };
      this.results.push(result);
      const w = new native.FdWatcher(conn, () => {
        for (;;) {
          const r = native.recvmsg(conn, 65536, 0);
          if (r === null) return;
          if (r.data.length === 0) { w.close(); native.close(conn); return; }
          if (result.bytes === 0) result.first = process.hrtime.bigint();
          for (let off = 0; off < r.data.length;) {
            const sent = native.sendmsg(conn, r.data.subarray(off), []);
            if (sent > 0) off += sent;
          }
          result.bytes += r.data.length;
          result.last = process.hrtime.bigint();
        }
      });
      w.start(native.POLL_READABLE);
      this.watchers.push(w);
    }
  }

  close(): void {
    for (const w of this.watchers) w.close();
    native.close(this.fd);
    fs.rmSync(this.socketPath, { force: true });
  }
}

async function virtioWl(n: number): Promise<Figures[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-bench-wl-'));
  const socketPath = path.join(dir, 'echo.sock');
  const serial = path.join(dir, 'serial.out');
  const peer = new EchoPeer(socketPath);
  const fd = fs.openSync(serial, 'w');
  try {
    const wl: Plugin = { name: 'virtio-wl', apply: (vmm) => wlPlugin.apply(vmm, { sockets: { '': socketPath } }) };
    const vm = new Vm({ ...DEFAULT_CONFIG, memory: 64 * MiB, kernel: GUEST, cmdline: `n=${n}` },
      [{ plugin: wl, options: {}, source: 'bench' }], { serialInput: null, serialOutput: fd });
    await vm.start();
    const exit = await vm.wait();
    if (exit.exitCode !== 0) throw new Error(`the guest failed (${exit.message}):\n${fs.readFileSync(serial, 'utf8')}`);
    return SIZES.map((size, i) => {
      const r = peer.results[i];
      if (!r || r.bytes !== size * n) throw new Error(`connection ${i} echoed ${r?.bytes ?? 0} bytes, not ${size * n}`);
      // first..last covers n-1 full round trips plus the last echo: scale to n.
      return { size, n, seconds: (Number(r.last - r.first) / 1e9) * n / Math.max(1, n - 1) };
    });
  } finally {
    fs.closeSync(fd);
    peer.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The limit: the same ping-pong over a host socketpair, both ends here. */
function socketPair(n: number): Figures[] {
  return socketPairRoundTrips(SIZES, n).map((f) => ({ ...f, n }));
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 200);
  if (!Number.isInteger(n) || n < 2) throw new Error('N must be a whole number of round trips, at least 2');
  const wl = await virtioWl(n);
  const limit = socketPair(n);
  const rows = [['size', 'path', 'round trip (us)', 'throughput (MB/s, both ways)', 'ratio (limit / virtio-wl)']];
  for (let i = 0; i < SIZES.length; i++) {
    const line = (name: string, f: Figures, ratio: string) => [String(f.size), name,
      (f.seconds / f.n * 1e6).toFixed(1), ((2 * f.size * f.n) / f.seconds / 1e6).toFixed(2), ratio];
    rows.push(line('virtio-wl', wl[i], (limit[i].n / limit[i].seconds / (wl[i].n / wl[i].seconds)).toFixed(4)));
    rows.push(line('socketpair', limit[i], '1'));
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  process.stdout.write(rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ')).join('\n') + '\n');
  process.stdout.write(`(${n} round trips per size; ratio > 1: the socketpair is that many times faster)\n`);
}

main().catch((error) => {
  process.stderr.write(`bench/wl: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
});
