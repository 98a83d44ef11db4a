/**
 * virtio-net soak: `count` frames each way through the real device (plugins/virtio-net) over a
 * real TAP, whose far end is the kernel of a network namespace answering pings. The driver is
 * the test driver (rings in guest-memory fixtures, as Linux fills them): every echo request is a
 * tx frame, every reply an rx frame. Replies of 64 to 3000 bytes, so with MRG_RXBUF and
 * 1536-byte buffers the larger ones merge across two or three buffers.
 *
 * Every `count / 20` frames the driver resets the device and a new one comes up, alternating
 * between MRG_RXBUF with every offload and neither (4096-byte buffers); each new driver sends
 * its first pings before posting any rx buffer (the device holds a reply back and leaves the TAP
 * alone until it notifies), and offers one tx chain a byte longer than the largest frame (returned
 * unread). So the soak also goes through starvation, resets, offload changes and the oversized
 * tx path, not only the fast path.
 *
 * Fails when a reply is missing or wrong, when an fd opened during the run is still open after it
 * (or one opened after the first period is open at the end; fds a host process like jest closes
 * meanwhile are no failure), or when, after a GC, RSS grew by more than
 * RSS_GROWTH_LIMIT or the JS heap by more than HEAP_GROWTH_LIMIT between warm (a quarter of the
 * way: V8's young generation and the allocator's arenas grow to their working size over the
 * first tens of thousands of frames, tens of MiB, then stay) and the end. Needs root (a netns).
 */
import createDebug from 'debug';
import * as fs from 'fs';
import * as v8 from 'v8';
import * as vm from 'vm';
import * as C from '../../plugins/virtio-net/constants';
import { VirtioNetDevice } from '../../plugins/virtio-net/device';
import { openTap } from '../../plugins/virtio-net/tap';
import { MockNetDriver, MRG_FEATURES, PLAIN_FEATURES, SPARE } from '../../test/plugins/virtio-net/mock-driver';
import { createNamespace, deleteNamespace, GUEST_IP, HOST_IP, hostEnd, icmpEcho, ip, moveTap, NS, quietNamespace } from '../../test/plugins/virtio-net/net-fixture';

export const defaultCount = 1_000_000;

const MiB = 1 << 20;
/** RSS may grow this much from warm to the end (after a GC): allocator noise, not a leak per frame. */
const RSS_GROWTH_LIMIT = 16 * MiB;
/** The JS heap after a GC: anything kept per frame (a chain, a Buffer) shows here first. */
const HEAP_GROWTH_LIMIT = 4 * MiB;
/** Periods (of 20) before the warm figures are taken. */
const WARM_PERIODS = 5;
/** Echo requests in flight at once (each reply takes at most three 1536-byte buffers of 256). */
const WINDOW = 64;
/** Reply sizes (Ethernet frame), cycled. The namespace's TAP has an MTU above the largest. */
const REPLY_SIZES = [64, 1000, 1514, 3000, 200, 1400];
const QUEUE_SIZE = 256;
const ID = 0x50ac;
/** Where the ICMP message starts in a frame: Ethernet and IPv4 (no options) headers. */
const ICMP_AT = 14 + 20;
/** No reply for this long means one was lost. */
const STALL_MS = 5000;
const GUEST_MAC = Uint8Array.of(0x02, 0x00, 0x00, 0x50, 0xac, 0x01);
const bit = (n: number): bigint => 1n << BigInt(n);
const OFFLOADS = bit(C.VIRTIO_NET_F_GUEST_CSUM) | bit(C.VIRTIO_NET_F_GUEST_TSO4) | bit(C.VIRTIO_NET_F_GUEST_TSO6) | bit(C.VIRTIO_NET_F_GUEST_ECN);

/** The process's open fds and what each refers to ('/dev/net/tun' for a TAP). */
function openFds(): Map<string, string> {
  const fds = new Map<string, string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      fds.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // Closed meanwhile (the directory's own fd).
    }
  }
  return fds;
}

/** The fds open in `now` that were not in `then`, as "fd → target". */
function newFds(then: Map<string, string>, now: Map<string, string>): string[] {
  return [...now].filter(([fd, target]) => then.get(fd) !== target).map(([fd, target]) => `${fd} → ${target}`);
}

const tunFds = (fds: Map<string, string>): number => [...fds.values()].filter((t) => t === '/dev/net/tun').length;
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** global.gc (run.js starts node with --expose-gc), or the same collector obtained at run time (jest). */
function collector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** RSS and heap in use after a full GC. */
function memory(gc: () => void): { rss: number; heap: number } {
  gc();
  const { rss, heapUsed } = process.memoryUsage();
  return { rss, heap: heapUsed };
}

const mib = (bytes: number): string => (bytes / MiB).toFixed(1);

/** An ICMP echo request whose reply is `replySize` bytes; only the sequence number changes. */
class EchoRequest {
  private readonly frame: Uint8Array;
  /** One's-complement sum of the ICMP message with sequence 0. */
  private readonly sum: number;

  constructor(hostMac: Uint8Array, replySize: number) {
    const payload = Uint8Array.from({ length: replySize - ICMP_AT - 8 }, (_, i) => (i * 13) & 0xff);
    this.frame = icmpEcho(GUEST_MAC, hostMac, GUEST_IP, HOST_IP, 8, ID, 0, payload);
    this.sum = ~((this.frame[ICMP_AT + 2] << 8) | this.frame[ICMP_AT + 3]) & 0xffff;
  }

  /** The frame with sequence `seq` (RFC 1624 checksum update); valid until the next call. */
  withSequence(seq: number): Uint8Array {
    let sum = this.sum + seq;
    sum = (sum & 0xffff) + (sum >> 16);
    const check = ~sum & 0xffff;
    this.frame[ICMP_AT + 2] = check >> 8;
    this.frame[ICMP_AT + 3] = check & 0xff;
    this.frame[ICMP_AT + 6] = seq >> 8;
    this.frame[ICMP_AT + 7] = seq & 0xff;
    return this.frame;
  }
}

export async function soak(count: number, log: (line: string) => void): Promise<void> {
  const fdsBefore = openFds();
  const name = `vmms${process.pid % 100000}`;
  createNamespace();
  let device: VirtioNetDevice | undefined;
  try {
    quietNamespace();
    // The device owns the TAP's fd from here on (shutdown closes it).
    device = new VirtioNetDevice(openTap({ tap: name }), { mac: GUEST_MAC }, createDebug('vmm:virtio-net'));
    const net = device;
    moveTap(name);
    ip('-n', NS, 'link', 'set', 'dev', name, 'mtu', '9000');
    const hostMac = hostEnd(name, GUEST_MAC);
    let fdsRunning: Map<string, string> | undefined;

    const period = Math.max(1000, Math.ceil(count / 20));
    let driver: MockNetDriver | undefined;
    let mergeable = false;
    let sent = 0;
    let received = 0;
    let resets = 0;
    const gc = collector();
    let warm: { rss: number; heap: number } | undefined;
    const started = performance.now();

    /** A reset and a new driver; the first pings go out before any rx buffer is posted. */
    const newDriver = async (): Promise<MockNetDriver> => {
      if (driver) { net.reset(); resets++; }
      mergeable = !mergeable;
      const features = mergeable ? MRG_FEATURES | (net.features & OFFLOADS) : PLAIN_FEATURES;
      // Guest RAM outlives a reset, as in a VM.
      const d = new MockNetDriver(net, features, { size: QUEUE_SIZE, memory: driver?.memory });
      oversizedTx(d);
      const starvedBefore = net.rx.stats.starved;
      sendPings(d, Math.min(WINDOW, count - sent));
      const deadline = performance.now() + STALL_MS;
      while (net.rx.stats.starved === starvedBefore && sent > received) {
        if (performance.now() > deadline) throw new Error('the device never ran out of rx buffers with none posted');
        await pause(1);
      }
      return d;
    };

    /** One tx chain a byte longer than the largest frame: returned unsent, unread. */
    const oversizedTx = (d: MockNetDriver): void => {
      const before = net.tx.stats.oversized;
      d.txq.setDesc(QUEUE_SIZE - 1, { addr: SPARE, len: C.VMM_NET_MAX_FRAME + 1 });
      d.txq.addAvail(QUEUE_SIZE - 1);
      net.queueNotify(C.TX_QUEUE);
      const [done] = d.txCompleted();
      if (net.tx.stats.oversized !== before + 1 || done?.len !== 0) throw new Error('an oversized tx chain was not returned unsent');
    };

    const requests = REPLY_SIZES.map((size) => new EchoRequest(hostMac, size));
    const sendPings = (d: MockNetDriver, n: number): void => {
      for (let k = 0; k < n; k++, sent++) d.send(requests[sent % REPLY_SIZES.length].withSequence(sent & 0xffff), { notify: false });
      if (n > 0) net.queueNotify(C.TX_QUEUE);
      d.txCompleted();
    };

    const bufferSize = (): number => (mergeable ? 1536 : 4096);

    driver = await newDriver();
    driver.postRx(QUEUE_SIZE, { len: bufferSize() });
    let nextReset = Math.min(period, count);
    let lastProgress = performance.now();
    let idle = 0;
    while (received < count) {
      const d: MockNetDriver = driver;
      // Up to the next reset, then drain: the reset comes with nothing in flight.
      sendPings(d, Math.min(WINDOW - (sent - received), nextReset - sent));
      if (idle < 16) await turn(); else await pause(1);
      const frames = d.collectRaw();
      for (const frame of frames) {
        const expected = REPLY_SIZES[received % REPLY_SIZES.length];
        // An echo reply (type 0) with the next sequence number, at the size asked.
        const seq = (frame[ICMP_AT + 6] << 8) | frame[ICMP_AT + 7];
        if (frame.length !== expected || frame[ICMP_AT] !== 0 || seq !== (received & 0xffff)) {
          throw new Error(`reply ${received} is wrong: ${frame.length} bytes (expected ${expected}), ICMP type ${frame[ICMP_AT]}, sequence ${seq}`);
        }
        received++;
      }
      if (frames.length > 0) {
        d.postRx(QUEUE_SIZE, { len: bufferSize() });
        lastProgress = performance.now();
        idle = 0;
      } else if (++idle > 0 && performance.now() - lastProgress > STALL_MS) {
        throw new Error(`no reply for ${STALL_MS} ms after ${received} of ${count} (${sent - received} in flight; device rx ${JSON.stringify(net.rx.stats)})`);
      }
      if (received === nextReset && received < count) {
        const now = memory(gc);
        if (received === WARM_PERIODS * period) warm = now;
        fdsRunning ??= openFds();
        log(`${received} frames each way: RSS ${mib(now.rss)} MiB, heap ${mib(now.heap)} MiB, open fds ${openFds().size}${now === warm ? ' (warm)' : ''}`);
        nextReset = Math.min(nextReset + period, count);
        driver = await newDriver();
        driver.postRx(QUEUE_SIZE, { len: bufferSize() });
        lastProgress = performance.now();
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const end = memory(gc);
    const fdsEnd = openFds();
    const { rx, tx } = net;
    log(`${count} frames each way in ${seconds.toFixed(1)} s (${Math.round((2 * count) / seconds)} frames/s), ${resets} resets`);
    log(`rx: ${rx.stats.frames} frames, ${rx.stats.starved} times starved, ${rx.stats.dropped} dropped; tx: ${tx.stats.frames} frames, ${tx.stats.oversized} oversized chains refused; TUNSETOFFLOAD ${net.offloads.stats.ioctls} times`);
    if (rx.stats.frames !== count || tx.stats.frames !== count) throw new Error(`the device counted ${tx.stats.frames} tx and ${rx.stats.frames} rx frames, not ${count} each`);
    const opened = fdsRunning ? newFds(fdsRunning, fdsEnd) : [];
    if (opened.length > 0) throw new Error(`fds were opened while frames ran through the device and are still open: ${opened.join(', ')}`);
    if (!warm) {
      log(`RSS ${mib(end.rss)} MiB, heap ${mib(end.heap)} MiB at the end; too few frames for a warm figure (${WARM_PERIODS * period + 1} at least)`);
    } else {
      const measured = count - WARM_PERIODS * period;
      log(`from warm to the end (${measured} frames each way): RSS ${mib(warm.rss)} → ${mib(end.rss)} MiB (limit +${mib(RSS_GROWTH_LIMIT)}), heap ${mib(warm.heap)} → ${mib(end.heap)} MiB (limit +${mib(HEAP_GROWTH_LIMIT)})`);
      if (end.rss - warm.rss > RSS_GROWTH_LIMIT) throw new Error(`RSS grew by ${mib(end.rss - warm.rss)} MiB over ${measured} frames each way (limit ${mib(RSS_GROWTH_LIMIT)} MiB)`);
      if (end.heap - warm.heap > HEAP_GROWTH_LIMIT) throw new Error(`the JS heap grew by ${mib(end.heap - warm.heap)} MiB over ${measured} frames each way (limit ${mib(HEAP_GROWTH_LIMIT)} MiB)`);
    }
  } finally {
    device?.shutdown();
    deleteNamespace();
  }
  const fdsAfter = openFds();
  log(`open fds: ${fdsBefore.size} before, ${fdsAfter.size} after (TAP fds ${tunFds(fdsBefore)}, ${tunFds(fdsAfter)})`);
  const left = newFds(fdsBefore, fdsAfter);
  if (left.length > 0) throw new Error(`the soak left fds open: ${left.join(', ')}`);
}
