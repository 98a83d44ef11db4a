/**
 * bench/control: requests per second and p50/p99 latency of the control channel's `status`,
 * against the limit: a minimal SOCK_SEQPACKET server in C (bench/control/echo-server.c) that
 * answers each datagram with a fixed small JSON, on the same machine, in one run.
 *
 *   make -C bench/control && node dist/bench/control/run.js [N] [K]
 *
 * N requests (default 20000) are measured twice per server: sequentially on one connection,
 * and spread over K concurrent connections (default 16), each sequential. The client is the
 * same for both servers (plugins/control/client.ts) and runs in its own process, so the VMM's
 * event loop serves only the socket, as it would for `vmm ctl`.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_CONFIG } from '../../core/config';
import { loadPlugin } from '../../core/plugins/loader';
import { Vm } from '../../core/vm';
import { ControlClient } from '../../plugins/control/client';

const ROOT = path.join(__dirname, '..', '..', '..');
const ECHO_SERVER = path.join(ROOT, 'bench', 'control', 'build', 'echo-server');
const DEFAULT_N = 20_000;
const DEFAULT_K = 16;
const WARMUP = 2_000;
const MiB = 1024 * 1024;

interface Figures {
  requests: number;
  connections: number;
  seconds: number;
  p50us: number;
  p99us: number;
}

// --- client side (a child process) -------------------------------------------------------------

async function measure(socket: string, n: number, k: number): Promise<Figures> {
  const clients = await Promise.all(Array.from({ length: k }, () => ControlClient.connect(socket)));
  try {
    const latencies: number[] = [];
    const perClient = Math.ceil(n / k);
    const start = process.hrtime.bigint();
    await Promise.all(clients.map(async (client) => {
      for (let i = 0; i < perClient; i++) {
        const t0 = process.hrtime.bigint();
        const response = await client.request('status');
        latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
        if (!('result' in response)) throw new Error(`status failed: ${JSON.stringify(response)}`);
      }
    }));
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    latencies.sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
    return { requests: perClient * k, connections: k, seconds, p50us: at(0.5), p99us: at(0.99) };
  } finally {
    for (const c of clients) c.close();
  }
}

async function clientMain(socket: string, n: number, k: number): Promise<void> {
  await measure(socket, WARMUP, 1);
  const sequential = await measure(socket, n, 1);
  const concurrent = await measure(socket, n, k);
  process.stdout.write(`${JSON.stringify({ sequential, concurrent })}\n`);
}

function runClient(socket: string, n: number, k: number): Promise<{ sequential: Figures; concurrent: Figures }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, '--client', socket, String(n), String(k)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`the benchmark client failed (exit ${code})`));
      else resolve(JSON.parse(out.trim().split('\n').pop()!));
    });
  });
}

// --- servers ---------------------------------------------------------------------------------------

async function benchVmm(dir: string, n: number, k: number) {
  const socket = path.join(dir, 'vmm.sock');
  const control = loadPlugin({ name: 'control', options: { socket } }, ROOT);
  const devNull = fs.openSync('/dev/null', 'w');
  const vm = new Vm({ ...DEFAULT_CONFIG, memory: 64 * MiB }, [control], { serialInput: null, serialOutput: devNull });
  try {
    await vm.start();
    return await runClient(socket, n, k);
  } finally {
    await vm.stop();
    fs.closeSync(devNull);
  }
}

async function benchEcho(dir: string, n: number, k: number) {
  if (!fs.existsSync(ECHO_SERVER)) execFileSync('make', ['-s', '-C', path.dirname(path.dirname(ECHO_SERVER))], { stdio: 'inherit' });
  const socket = path.join(dir, 'echo.sock');
  const server = spawn(ECHO_SERVER, [socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout.once('data', () => resolve());
      server.once('error', reject);
      server.once('exit', (code) => reject(new Error(`echo-server exited (${code})`)));
    });
    return await runClient(socket, n, k);
  } finally {
    server.kill('SIGTERM');
  }
}

function row(name: string, ours: Figures, limit: Figures): string {
  const rate = (f: Figures) => f.requests / f.seconds;
  const cells = [
    name.padEnd(22),
    `${rate(ours).toFixed(0).padStart(8)} req/s  p50 ${ours.p50us.toFixed(1).padStart(7)} µs  p99 ${ours.p99us.toFixed(1).padStart(7)} µs`,
    `${rate(limit).toFixed(0).padStart(8)} req/s  p50 ${limit.p50us.toFixed(1).padStart(7)} µs  p99 ${limit.p99us.toFixed(1).padStart(7)} µs`,
    `${(rate(limit) / rate(ours)).toFixed(2)}× / ${(ours.p50us / limit.p50us).toFixed(2)}× / ${(ours.p99us / limit.p99us).toFixed(2)}×`,
  ];
  return cells.join(' | ');
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? DEFAULT_N);
  const k = Number(process.argv[3] ?? DEFAULT_K);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(k) || k < 1) throw new Error('usage: run.js [N requests] [K connections]');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-bench-control-'));
  try {
    const vmm = await benchVmm(dir, n, k);
    const echo = await benchEcho(dir, n, k);
    console.log(`bench/control: ${n} status requests per line; client in its own process (${os.cpus().length} CPUs)`);
    console.log(`${''.padEnd(22)} | ${'vmm control plugin'.padEnd(49)} | ${'C SEQPACKET echo server (limit)'.padEnd(49)} | slower by (req/s / p50 / p99)`);
    console.log(row('sequential, 1 conn', vmm.sequential, echo.sequential));
    console.log(row(`concurrent, ${k} conns`, vmm.concurrent, echo.concurrent));
    console.log(JSON.stringify({ vmm, echo }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--client') {
  clientMain(process.argv[3], Number(process.argv[4]), Number(process.argv[5])).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  main().catch((error) => {
    console.error(`bench/control: ${(error as Error).message}`);
    process.exitCode = 1;
  });
}
