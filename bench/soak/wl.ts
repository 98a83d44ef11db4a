/**
 * virtio-wl soak: `count` messages guest → host peer → guest through the real device (the
 * virtio-wl plugin of a real VM, over its guest memory) and a real host Unix socket, whose far
 * end here echoes every byte back. The guest side is the test driver (test/plugins/virtio-wl/
 * driver.ts: rings and buffers in guest RAM, kicks as Linux decides them), not the bare-metal
 * echo guest of bench/wl: that one runs at a few hundred round trips a second on an emulating
 * host and never passes fds, and this soak is about what the host keeps, so it passes fds and
 * goes through every path that owns some:
 *
 *   every message   one VFD_SEND of 64 … 4096 bytes, echoed back as VFD_RECV events
 *   every 10th      the echo carries a host memfd or pipe read end: a host VFD the guest CLOSEs
 *   every 50th      the SEND lists a new guest pipe (NEW_PIPE), the peer gets its read end
 *   every 100th     the SEND lists new shared memory (VFD_NEW, 8 KiB), the peer gets the memfd
 *   every 500th     256 KiB: more than the socket takes at once, so the SEND waits (and owns a
 *                   copy and its fds meanwhile) until the peer has read
 *   every 5000th    the context is closed and a new one opened (a fresh host connection)
 *
 * Periods of count / 20 messages alternate between EVENT_IDX negotiated and refused (a device
 * reset and a new driver in between). Fails when an echo is missing or wrong, when the process has fds open after the run
 * that it did not have before (or more mid-run than at the first period), or when, after a GC,
 * RSS less V8's young generation (see memory()) grew by more than RSS_GROWTH_LIMIT or the JS heap
 * by more than HEAP_GROWTH_LIMIT between warm (a quarter of the way) and the end.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as v8 from 'v8';
import * as vm from 'vm';
import { native } from '../../native';
import {
  ctrlVfd, HostConn, HostListener, MiB, startWlVm, tempDir, vfdNew, vfdSend, WlDriver, type WlVm,
} from '../../test/plugins/virtio-wl/driver';

export const defaultCount = 100_000;

/** RSS less V8's young generation may grow this much from warm to the end (after a GC): allocator noise, not a leak per message. */
const RSS_GROWTH_LIMIT = 16 * MiB;
/** The JS heap after a GC: anything kept per message (a chain, a Buffer, a Vfd) shows here first. */
const HEAP_GROWTH_LIMIT = 4 * MiB;
const WARM_PERIODS = 5;
const SIZES = [64, 200, 1000, 4096, 512, 3000];
const BIG = 256 * 1024;
/** No progress for this long means something was lost. */
const STALL_MS = 5000;

const OK = 0x1000, RESP_VFD_NEW = 0x1001;
const NEW = 0x100, CLOSE = 0x101, RECV = 0x103, NEW_CTX = 0x104, NEW_PIPE = 0x105, HUP = 0x106;
const CTX = 1, PIPE = 2, SHM = 3;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const mib = (bytes: number): string => (bytes / MiB).toFixed(1);
const le32 = (b: Uint8Array, at: number): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);

function openFds(): Set<string> {
  return new Set(fs.readdirSync('/proc/self/fd'));
}

/** global.gc (run.js starts node with --expose-gc), or the same collector obtained at run time (jest). */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/**
 * After a full GC: RSS, the JS heap in use, and V8's young generation (its semi-spaces). V8
 * doubles the young generation on its own when a program allocates fast (here 16 → 32 MiB
 * somewhere past 150 000 messages), all of it in RSS once touched and nothing a message keeps;
 * so the growth checked is that of RSS without it.
 */
function memory(gc: () => void): { rss: number; heap: number; young: number } {
  gc();
  const { rss, heapUsed } = process.memoryUsage();
  const young = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
  return { rss, heap: heapUsed, young };
}

/** RssAnon / RssFile / RssShmem of /proc/self/status and the ArrayBuffers outside the JS heap. */
function breakdown(): string {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const kib = (key: string): string => mib(Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) * 1024);
  return `anon ${kib('RssAnon')}, file ${kib('RssFile')}, shmem ${kib('RssShmem')}, array buffers ${mib(process.memoryUsage().arrayBuffers)}`;
}

/** The host end of the context: echoes every byte back, in order, attaching `attach` to the first echo. */
class EchoPeer {
  private readonly out: Buffer[] = [];
  private attach: number[] = [];
  received = 0;
  fdsReceived = 0;

  constructor(readonly conn: HostConn) {}

  /** Send `fd` (then closed here) with the next bytes echoed. */
  attachToEcho(fd: number): void {
    this.attach.push(fd);
  }

  /** Read what arrived, echo what the device takes; fds from the guest are checked and closed. */
  pump(): void {
    for (let r = native.recvmsg(this.conn.fd, 65536, 28); r !== null; r = native.recvmsg(this.conn.fd, 65536, 28)) {
      if (r.data.length === 0 && r.fds.length === 0) throw new Error('the device closed the context');
      for (const fd of r.fds) {
        fs.fstatSync(fd);
        native.close(fd);
        this.fdsReceived++;
      }
      this.received += r.data.length;
      if (r.data.length > 0) this.out.push(r.data);
    }
    while (this.out.length > 0) {
      const chunk = this.out[0];
      const n = native.sendmsg(this.conn.fd, chunk, this.attach);
      if (n < 0) return;
      for (const fd of this.attach.splice(0)) native.close(fd);
      if (n === chunk.length) this.out.shift();
      else this.out[0] = chunk.subarray(n);
    }
  }

  close(): void {
    for (const fd of this.attach.splice(0)) native.close(fd);
    this.conn.close();
  }
}

/** The guest's side: commands and events over the test driver, waited for by event-loop turns. */
class Guest {
  private peer: EchoPeer | undefined;

  constructor(private readonly wl: WlVm, readonly driver: WlDriver, private readonly listener: HostListener) {}

  private async wait<T>(what: string, fn: () => T | undefined): Promise<T> {
    const deadline = Date.now() + STALL_MS;
    for (;;) {
      this.peer?.pump();
      const value = fn();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`no progress for ${STALL_MS} ms waiting for ${what}; ${this.state()}`);
      await turn();
    }
  }

  /** One command; returns its reply type. */
  async command(request: Uint8Array, replyLen = 64): Promise<number> {
    const { head, replyAt } = this.driver.submit(request, { replyLen });
    await this.wait('a command reply', () => this.driver.usedLen(head));
    return this.driver.memory.readU32(replyAt);
  }

  private async expect(request: Uint8Array, reply: number, what: string, replyLen = 64): Promise<void> {
    const got = await this.command(request, replyLen);
    if (got !== reply) throw new Error(`${what}: reply 0x${got.toString(16)}, expected 0x${reply.toString(16)}`);
  }

  async openContext(): Promise<void> {
    await this.expect(vfdNew(NEW_CTX, CTX, 3), RESP_VFD_NEW, 'NEW_CTX');
    this.peer = new EchoPeer(await this.wait('the context\'s connection', () => {
      const fd = native.unixAccept(this.listener.fd);
      return fd === null ? undefined : new HostConn(fd);
    }));
  }

  async closeContext(): Promise<void> {
    const peer = this.peer;
    this.peer = undefined;
    await this.expect(ctrlVfd(CLOSE, CTX), OK, 'CLOSE of the context', 8);
    peer?.close();
  }

  /** One message: SEND `size` bytes (listing `listed`), wait for all of them back, CLOSE what came with them. */
  async message(size: number, seq: number, listed: number[], hostFd?: number): Promise<void> {
    const peer = this.peer!;
    const payload = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) payload.writeUInt32LE((seq * 2654435761 + i) >>> 0, Math.min(i, size - 4));
    if (hostFd !== undefined) peer.attachToEcho(hostFd);
    const fdsBefore = peer.fdsReceived;
    const { head, replyAt } = this.driver.submit(vfdSend(CTX, listed, payload), { replyLen: 8 });
    const echoed: Buffer[] = [];
    let got = 0;
    let replied = false;
    const hostIds: number[] = [];
    await this.wait(`the echo of message ${seq} (${got} of ${size} bytes)`, () => {
      if (!replied && this.driver.usedLen(head) !== undefined) {
        replied = true;
        const reply = this.driver.memory.readU32(replyAt);
        if (reply !== OK) throw new Error(`SEND ${seq}: reply 0x${reply.toString(16)}`);
      }
      const events = this.driver.takeEvents();
      for (const e of events) {
        const type = le32(e, 0);
        // A listed pipe whose read end the peer closed hangs up: only the context must not.
        if (type === HUP && le32(e, 8) === CTX) throw new Error('the context hung up');
        if (type === NEW) hostIds.push(le32(e, 8));
        if (type === RECV && le32(e, 8) === CTX) {
          const data = Buffer.from(e.subarray(16 + 4 * le32(e, 12)));
          echoed.push(data);
          got += data.length;
        }
      }
      if (events.length > 0) this.driver.postIn(events.length);
      return replied && got >= size ? true : undefined;
    });
    if (got !== size || !Buffer.concat(echoed).equals(payload)) throw new Error(`message ${seq}: ${got} bytes came back, not the ${size} sent`);
    if (peer.fdsReceived - fdsBefore !== listed.length) throw new Error(`message ${seq}: the peer got ${peer.fdsReceived - fdsBefore} fds, not ${listed.length}`);
    if (hostIds.length !== (hostFd === undefined ? 0 : 1)) throw new Error(`message ${seq}: ${hostIds.length} host VFDs announced`);
    for (const id of hostIds) await this.expect(ctrlVfd(CLOSE, id), OK, 'CLOSE of a host VFD', 8);
  }

  async messageWithPipe(size: number, seq: number): Promise<void> {
    await this.expect(vfdNew(NEW_PIPE, PIPE, 1), RESP_VFD_NEW, 'NEW_PIPE');
    await this.message(size, seq, [PIPE]);
    await this.expect(ctrlVfd(CLOSE, PIPE), OK, 'CLOSE of the pipe', 8);
  }

  async messageWithShm(size: number, seq: number): Promise<void> {
    await this.expect(vfdNew(NEW, SHM, 0, 8192), RESP_VFD_NEW, 'VFD_NEW');
    await this.message(size, seq, [SHM]);
    await this.expect(ctrlVfd(CLOSE, SHM), OK, 'CLOSE of the shared memory', 8);
  }

  get vfds(): number {
    return this.wl.device.vfdCount;
  }

  /** The device's and the rings' state, for a stall's error. */
  private state(): string {
    const device = this.wl.device as unknown as { blocked?: unknown; connecting?: unknown; readPaused: boolean; backlog: unknown[] };
    const d = this.driver;
    return `device: ${device.blocked ? 'a SEND waits, ' : ''}${device.connecting ? 'a connect waits, ' : ''}reading ${device.readPaused ? 'paused' : 'on'}, ` +
      `${device.backlog.length} events waiting; in ring avail ${d.inRing.availIdx} used ${d.inRing.usedIdx()} event ${d.inRing.availEvent()} kicked ${d.inRing.kickedIdx} device next ${(device as unknown as { inQueue: { nextAvail: number } }).inQueue.nextAvail}; ` +
      `out ring avail ${d.outRing.availIdx} used ${d.outRing.usedIdx()} event ${d.outRing.availEvent()}; ${d.suppressed} kicks suppressed`;
  }
}

export async function soak(count: number, log: (line: string) => void): Promise<void> {
  const fdsBefore = openFds();
  const dir = tempDir('vmm-soak-wl-');
  const listener = new HostListener(path.join(dir, 'echo'));
  let wl: WlVm | undefined;
  try {
    wl = await startWlVm({ sockets: { '': listener.path } }, [], false);
    const gc = collector();
    const period = Math.max(100, Math.ceil(count / 20));
    let warm: { rss: number; heap: number; young: number } | undefined;
    let fdsAtFirstPeriod: number | undefined;
    const started = Date.now();
    let done = 0;
    // One period with EVENT_IDX negotiated, the next with it refused, and so on: a device
    // reset and a fresh driver each time.
    for (let phase = 0; done < count; phase++) {
      const eventIdx = phase % 2 === 0;
      const driver = new WlDriver(wl.device, wl.vm.memory, { eventIdx });
      driver.activate();
      const mark = driver.heapMark();
      const guest = new Guest(wl, driver, listener);
      await guest.openContext();
      const end = Math.min(count, done + period);
      for (; done < end; done++) {
        const seq = done + 1;
        const size = seq % 500 === 0 ? BIG : SIZES[seq % SIZES.length];
        if (seq % 100 === 0) await guest.messageWithShm(size, seq);
        else if (seq % 50 === 0) await guest.messageWithPipe(size, seq);
        else if (seq % 20 === 0) await guest.message(size, seq, [], native.memfdCreate('soak', 4096));
        else if (seq % 10 === 0) {
          // A pipe's read end; the write end stays here until the guest has closed its VFD
          // (closing it first would end the guest's VFD with a HUP instead).
          const [readEnd, writeEnd] = native.pipe();
          await guest.message(size, seq, [], readEnd);
          native.close(writeEnd);
        } else await guest.message(size, seq, []);
        if (seq % 5000 === 0) {
          await guest.closeContext();
          await guest.openContext();
        }
        driver.heapRelease(mark);
        if (seq % period === 0) {
          if (guest.vfds !== 1) throw new Error(`the device holds ${guest.vfds} VFDs after message ${seq}, not just the context`);
          const now = memory(gc);
          const fds = openFds().size;
          fdsAtFirstPeriod ??= fds;
          if (fds > fdsAtFirstPeriod) throw new Error(`${fds} fds open after ${seq} messages, ${fdsAtFirstPeriod} after the first ${period}`);
          if (seq === WARM_PERIODS * period) warm = now;
          log(`${seq} messages (EVENT_IDX ${eventIdx ? 'on' : 'off'}): RSS ${mib(now.rss)} MiB (${breakdown()}; V8 young generation ${mib(now.young)}), heap ${mib(now.heap)} MiB, open fds ${fds}${now === warm ? ' (warm)' : ''}`);
        }
      }
      await guest.closeContext();
    }
    const seconds = (Date.now() - started) / 1000;
    const end = memory(gc);
    log(`${count} messages guest → host → guest in ${seconds.toFixed(1)} s (${Math.round(count / seconds)} round trips/s)`);
    if (!warm) {
      log(`RSS ${mib(end.rss)} MiB, heap ${mib(end.heap)} MiB at the end; too few messages for a warm figure (${WARM_PERIODS * period} at least)`);
    } else {
      const measured = count - WARM_PERIODS * period;
      const grown = (end.rss - end.young) - (warm.rss - warm.young);
      log(`from warm to the end (${measured} messages): RSS ${mib(warm.rss)} → ${mib(end.rss)} MiB, without V8's young generation (${mib(warm.young)} → ${mib(end.young)} MiB) ${mib(warm.rss - warm.young)} → ${mib(end.rss - end.young)} MiB (limit +${mib(RSS_GROWTH_LIMIT)}), heap ${mib(warm.heap)} → ${mib(end.heap)} MiB (limit +${mib(HEAP_GROWTH_LIMIT)})`);
      if (grown > RSS_GROWTH_LIMIT) throw new Error(`RSS (less V8's young generation) grew by ${mib(grown)} MiB over ${measured} messages (limit ${mib(RSS_GROWTH_LIMIT)} MiB)`);
      if (end.heap - warm.heap > HEAP_GROWTH_LIMIT) throw new Error(`the JS heap grew by ${mib(end.heap - warm.heap)} MiB over ${measured} messages (limit ${mib(HEAP_GROWTH_LIMIT)} MiB)`);
    }
  } finally {
    await wl?.stop();
    listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const fdsAfter = openFds();
  log(`open fds: ${fdsBefore.size} before, ${fdsAfter.size} after`);
  const left = [...fdsAfter].filter((fd) => !fdsBefore.has(fd));
  if (left.length > 0) throw new Error(`the soak left fds open: ${left.join(', ')}`);
}
