/**
 * Control-channel soak: `count` connections, one after another (CONCURRENCY at a time), to the
 * control socket of a real `vmm run` (the compiled CLI in a child process, the built-in demo
 * guest idling on a stdin pipe). Each connection asks `status` and closes.
 *
 * What is measured is the VMM process, after a full GC: the child runs with
 * --heapsnapshot-signal, and V8 collects all garbage before it writes a snapshot. So no control
 * command exists for the sake of this soak, and the snapshot also says what is left in the heap:
 * the control connections (plugins/control Connection) and sockets (UnixMessageSocket) still
 * alive, and the FdWatchers. Figures are taken once warm (after WARM_UP connections: V8's code
 * space and young generation and the allocator's arenas grow to their working size first) and at
 * the end, after the last connection has closed on both sides. A first snapshot is taken
 * halfway through the warm-up: the first one grows RSS for good.
 *
 * Fails (issue 10, item 8: RSS went 75 → 216 MB over 75 000 connections, 1.2 KB of heap kept per
 * connection by FdWatcher's strong callback reference) when, from warm to the end,
 *   - RSS grew by more than RSS_GROWTH_LIMIT (VmRSS of /proc/<pid>/status),
 *   - the JS heap grew by more than HEAP_GROWTH_LIMIT,
 *   - a connection, socket or FdWatcher outlived its connection (any count above warm's),
 *   - the VMM's open fd count is not back to warm's;
 * or when a connection is refused or a status fails, or vmm does not then exit 143 on SIGTERM and
 * remove its socket file.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ControlClient } from '../../plugins/control/client';

export const defaultCount = 100_000;

const MiB = 1 << 20;
/** RSS may grow this much from warm to the end, whatever the count (the figure). */
const RSS_GROWTH_LIMIT = 10 * MiB;
/** The JS heap after a GC: anything kept per connection shows here first. */
const HEAP_GROWTH_LIMIT = 2 * MiB;
/** Connections before the warm figures. */
const WARM_UP = 5000;
/** Connections open at once (the plugin's default maxConnections is 256). */
const CONCURRENCY = 8;
/** Heap-snapshot classes that belong to one control connection. */
const PER_CONNECTION_CLASSES = ['Connection', 'UnixMessageSocket', 'FdWatcher'] as const;
/** How long the VMM gets to close its side of the last connections, or to answer a request. */
const SETTLE_MS = 10_000;
/** How long a heap snapshot may take (one of a leaking VMM's heap takes tens of seconds). */
const SNAPSHOT_MS = 120_000;
/** vmm's exit code on SIGTERM (README, exit codes). */
const EXIT_SIGTERM = 143;

const CLI = path.join(__dirname, '..', '..', 'cli', 'vmm.js');

interface Figures {
  /** VmRSS before the snapshot's GC (for the log). */
  rssBeforeGc: number;
  rss: number;
  /** RssAnon, RssFile, RssShmem of /proc/<pid>/status. */
  rssParts: string;
  heap: number;
  fds: number;
  objects: Record<(typeof PER_CONNECTION_CLASSES)[number], number>;
}

export async function soak(count: number, log: (line: string) => void): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-soak-control-'));
  const vmm = await VmmProcess.start(dir);
  try {
    // A first snapshot during the warm-up: taking one grows RSS for good (V8's and the
    // allocator's buffers for it), which must not count as growth of the connections.
    await connectMany(vmm.socket, WARM_UP / 2);
    await vmm.figures();
    await connectMany(vmm.socket, WARM_UP / 2);
    const warm = await vmm.figures();
    log(`warm (after ${WARM_UP} connections): ${describe(warm)}`);

    const started = Date.now();
    await connectMany(vmm.socket, count);
    const seconds = (Date.now() - started) / 1000;
    log(`${count} connections in ${seconds.toFixed(1)} s (${Math.round(count / seconds)}/s), each a status request`);

    const end = await vmm.figures(warm.fds);
    log(`end: ${describe(end)}`);
    const rssGrowth = end.rss - warm.rss;
    const heapGrowth = end.heap - warm.heap;
    log(`from warm to the end: RSS ${signed(rssGrowth)} (limit ${mib(RSS_GROWTH_LIMIT)}), heap ${signed(heapGrowth)} (limit ${mib(HEAP_GROWTH_LIMIT)}), fds ${end.fds - warm.fds >= 0 ? '+' : ''}${end.fds - warm.fds}`);

    const problems: string[] = [];
    if (rssGrowth > RSS_GROWTH_LIMIT) problems.push(`the VMM's RSS grew by ${mib(rssGrowth)} (the limit is ${mib(RSS_GROWTH_LIMIT)})`);
    if (heapGrowth > HEAP_GROWTH_LIMIT) problems.push(`the VMM's JS heap grew by ${mib(heapGrowth)} after a GC (the limit is ${mib(HEAP_GROWTH_LIMIT)})`);
    for (const name of PER_CONNECTION_CLASSES) {
      if (end.objects[name] > warm.objects[name]) problems.push(`${end.objects[name] - warm.objects[name]} ${name} objects outlived their connections`);
    }
    if (end.fds !== warm.fds) problems.push(`the VMM has ${end.fds} fds open, ${warm.fds} once warm`);
    if (problems.length > 0) throw new Error(`after ${count} control connections, ${problems.join('; ')}.`);

    await vmm.stop();
    log(`vmm exited ${EXIT_SIGTERM} on SIGTERM and removed its socket`);
  } finally {
    await vmm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `total` connections, CONCURRENCY at a time: connect, status, close. */
async function connectMany(socket: string, total: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      const client = await ControlClient.connect(socket);
      try {
        const response = await client.request('status', [], [], { timeoutMs: SETTLE_MS });
        if (!('result' in response)) throw new Error(`a status request failed: ${response.error.message} (${response.error.code})`);
      } finally {
        client.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, total) }, worker));
}

/** `vmm run --plugin control=…` with the demo guest, in `dir` (where its heap snapshots go). */
class VmmProcess {
  private constructor(readonly child: ChildProcess, readonly socket: string, private readonly dir: string, private readonly ended: Promise<{ code: number | null; stderr: string }>) {}

  static async start(dir: string): Promise<VmmProcess> {
    const socket = path.join(dir, 'control.sock');
    const child = spawn(process.execPath, [
      '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`,
      CLI, 'run', '--plugin', `control=${JSON.stringify({ socket })}`,
    ], { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => { stderr += d; });
    const ended = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
    const vmm = new VmmProcess(child, socket, dir, ended);
    const deadline = Date.now() + 30_000;
    while (!(await vmm.running())) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`vmm run ended before its VM ran: ${stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`vmm run's VM did not reach running within 30 s: ${stderr.trim()}`);
      await sleep(20);
    }
    return vmm;
  }

  private async running(timeoutMs = SETTLE_MS): Promise<boolean> {
    if (!fs.existsSync(this.socket)) return false;
    let client: ControlClient;
    try {
      client = await ControlClient.connect(this.socket);
    } catch {
      return false; // bound, not listening yet
    }
    try {
      const status = await client.request('status', [], [], { timeoutMs });
      return 'result' in status && status.result.state === 'running';
    } finally {
      client.close();
    }
  }

  /** RSS, heap and objects after a GC, and fds, once the fd count is `expectedFds` or has settled. */
  async figures(expectedFds?: number): Promise<Figures> {
    const fds = await this.settledFds(expectedFds);
    const rssBeforeGc = this.status('VmRSS');
    const snapshot = await this.heapSnapshot();
    // Read after the snapshot's GC; the snapshot's own buffers are freed by then.
    const rssParts = `anon ${mib(this.status('RssAnon'))}, file ${mib(this.status('RssFile'))}, shmem ${mib(this.status('RssShmem'))}`;
    return { rssBeforeGc, rss: this.status('VmRSS'), rssParts, heap: snapshot.heap, fds, objects: snapshot.objects };
  }

  /** A size from /proc/<pid>/status, in bytes. */
  private status(key: string): number {
    const text = fs.readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  }

  /** Waits (at most SETTLE_MS) until the fd count is `expected`, or unchanged for 500 ms. */
  private async settledFds(expected?: number): Promise<number> {
    const count = () => fs.readdirSync(`/proc/${this.child.pid}/fd`).length;
    const deadline = Date.now() + SETTLE_MS;
    let last = count();
    let since = Date.now();
    while (Date.now() < deadline && last !== expected && Date.now() - since < 500) {
      await sleep(20);
      const now = count();
      if (now !== last) {
        last = now;
        since = Date.now();
      }
    }
    return last;
  }

  /** SIGUSR2 → a heap snapshot (after a full GC) in `dir`; its total size and our objects. */
  private async heapSnapshot(): Promise<{ heap: number; objects: Figures['objects'] }> {
    const before = new Set(fs.readdirSync(this.dir));
    this.child.kill('SIGUSR2');
    const deadline = Date.now() + SNAPSHOT_MS;
    let file: string | undefined;
    while (file === undefined) {
      if (Date.now() > deadline) throw new Error(`vmm wrote no heap snapshot within ${SNAPSHOT_MS} ms of SIGUSR2`);
      await sleep(20);
      file = fs.readdirSync(this.dir).find((name) => name.endsWith('.heapsnapshot') && !before.has(name));
    }
    // The snapshot is written by the main thread in one go: once a request is answered, it is complete.
    if (!(await this.running(SNAPSHOT_MS))) throw new Error('the VM stopped running while its heap snapshot was taken');
    const full = path.join(this.dir, file);
    const parsed = summarize(JSON.parse(fs.readFileSync(full, 'utf8')) as HeapSnapshot);
    fs.rmSync(full);
    return parsed;
  }

  /** SIGTERM: vmm must exit 143 and remove its socket. */
  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    const { code, stderr } = await this.ended;
    if (code !== EXIT_SIGTERM) throw new Error(`vmm exited ${code} on SIGTERM, not ${EXIT_SIGTERM}: ${stderr.trim()}`);
    if (fs.existsSync(this.socket)) throw new Error(`vmm left its socket file ${this.socket} behind`);
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.ended;
  }
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/**
 * The JS heap (the self sizes of every node but the 'native' ones: those are memory outside it,
 * the guest RAM's 64 MiB ArrayBuffer above all), and how many instances of each
 * PER_CONNECTION_CLASSES there are.
 */
function summarize(snapshot: HeapSnapshot): { heap: number; objects: Figures['objects'] } {
  const { node_fields: fields, node_types: [types] } = snapshot.snapshot.meta;
  const width = fields.length;
  const TYPE = fields.indexOf('type');
  const NAME = fields.indexOf('name');
  const SIZE = fields.indexOf('self_size');
  const objectType = types.indexOf('object');
  const nativeType = types.indexOf('native');
  const wanted = new Map<number, (typeof PER_CONNECTION_CLASSES)[number]>();
  snapshot.strings.forEach((s, i) => {
    if ((PER_CONNECTION_CLASSES as readonly string[]).includes(s)) wanted.set(i, s as (typeof PER_CONNECTION_CLASSES)[number]);
  });
  const objects = Object.fromEntries(PER_CONNECTION_CLASSES.map((name) => [name, 0])) as Figures['objects'];
  let heap = 0;
  const { nodes } = snapshot;
  for (let i = 0; i < nodes.length; i += width) {
    const type = nodes[i + TYPE];
    if (type !== nativeType) heap += nodes[i + SIZE];
    if (type !== objectType) continue;
    const name = wanted.get(nodes[i + NAME]);
    if (name) objects[name]++;
  }
  return { heap, objects };
}

function describe(f: Figures): string {
  const objects = PER_CONNECTION_CLASSES.map((name) => `${name} ${f.objects[name]}`).join(', ');
  return `RSS ${mib(f.rss)} (${f.rssParts}; ${mib(f.rssBeforeGc)} before the GC), heap ${mib(f.heap)}, fds ${f.fds}; ${objects}`;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function signed(bytes: number): string {
  return `${bytes >= 0 ? '+' : ''}${mib(bytes)}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
