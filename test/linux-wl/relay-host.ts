/**
 * Host side of the relay tests: a headless weston that counts the wl_surface commits it receives
 * (WAYLAND_DEBUG=server) and lets a test read the shm pools it mapped from vmm (memfds named
 * "virtwl_alloc", the NEW_ALLOC memory the guest relay copies client pixels into).
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { sleep, until } from '../helpers/wait';

export interface CountingWeston {
  socket: string;
  pid: number;
  /** wl_surface.commit requests weston has received so far (all clients). */
  commits(): number;
  /** The contents of every virtio-wl shared-memory file weston holds. */
  vmmPools(): Buffer[];
  stop(): Promise<void>;
}

const COMMIT = /wl_surface@\d+\.commit\(\)/g;

export async function startCountingWeston(): Promise<CountingWeston> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-relay-weston-'));
  fs.chmodSync(dir, 0o700);
  const socket = path.join(dir, 'wl-test');
  let commits = 0;
  let tail = '';
  let log = '';
  const weston = spawn('weston', ['--backend=headless-backend.so', '--socket=wl-test', '--idle-time=0'], {
    env: { ...process.env, XDG_RUNTIME_DIR: dir, WAYLAND_DEBUG: 'server' }, stdio: ['ignore', 'ignore', 'pipe'], cwd: dir,
  });
  weston.stderr!.setEncoding('utf8');
  weston.stderr!.on('data', (chunk: string) => {
    const text = tail + chunk;
    const cut = text.lastIndexOf('\n') + 1;
    commits += (text.slice(0, cut).match(COMMIT) ?? []).length;
    tail = text.slice(cut);
    if (log.length < 4000) log += chunk.slice(0, 4000 - log.length);
  });
  const stop = async () => {
    if (weston.exitCode === null && weston.signalCode === null) {
      weston.kill('SIGTERM');
      await new Promise((r) => weston.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(`weston's socket (log: ${log})`, () => fs.existsSync(socket), 20000);
    await sleep(200);
  } catch (error) {
    await stop();
    throw error;
  }
  // libwayland-server closes a pool's fd once it has mapped it: read weston's mappings instead.
  const vmmPools = () => {
    const out: Buffer[] = [];
    const maps = fs.readFileSync(`/proc/${weston.pid}/maps`, 'utf8').split('\n').filter((l) => l.includes('memfd:virtwl_alloc'));
    const mem = fs.openSync(`/proc/${weston.pid}/mem`, 'r');
    try {
      for (const line of maps) {
        const [from, to] = line.split(' ')[0].split('-').map((h) => BigInt(`0x${h}`));
        const b = Buffer.alloc(Number(to - from));
        try { fs.readSync(mem, b, 0, b.length, from); out.push(b); } catch { /* unmapped meanwhile */ }
      }
    } finally {
      fs.closeSync(mem);
    }
    return out;
  };
  return { socket, pid: weston.pid!, commits: () => commits, vmmPools, stop };
}

/** Globals as host wayland-info lists them against `socket`: "interface version" lines. */
export function hostGlobals(socket: string): string[] {
  const r = spawnSync('wayland-info', [], {
    encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: path.dirname(socket), WAYLAND_DISPLAY: path.basename(socket) },
  });
  if (r.status !== 0) throw new Error(`host wayland-info failed (${r.error?.message ?? r.status}): ${r.stderr}`);
  return parseGlobals(r.stdout);
}

export function parseGlobals(text: string): string[] {
  return [...text.matchAll(/interface: '([^']+)',\s*version:\s*(\d+)/g)].map((m) => `${m[1]} ${m[2]}`).sort();
}

/** Distinct 32-bit values in the first `bytes` of `b`, up to `cap`. */
export function distinctWords(b: Buffer, bytes: number, cap = 1000): number {
  const seen = new Set<number>();
  for (let i = 0; i + 4 <= Math.min(bytes, b.length) && seen.size < cap; i += 4) seen.add(b.readUInt32LE(i));
  return seen.size;
}
