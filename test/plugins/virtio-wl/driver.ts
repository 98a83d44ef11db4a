/**
 * A guest-side virtio-wl driver for tests: boots a real VM (the probe guest, `wait`) with the
 * virtio-wl plugin, lays out split rings and buffers in its guest RAM (from 8 MiB up), and
 * drives the device the way the transport does (queues over guest memory, activate,
 * queueNotify), reading replies and events back out of guest memory. It notifies the way
 * Linux's virtio_ring does: with VIRTIO_F_RING_EVENT_IDX only when the avail idx passes the
 * device's avail_event (so a device that never re-arms loses every request after the first),
 * without it unless the device set VIRTQ_USED_F_NO_NOTIFY.
 *
 * Also: a host peer (a Unix stream listener standing in for the compositor) built on the native
 * addon, and little encoders for the requests the Linux driver sends.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { GuestMemory, Plugin } from '../../../plugin-api';
import { native } from '../../../native';
import { Queue, vringNeedEvent } from '../../../core/virtio/queue';
import { VIRTIO_F_RING_EVENT_IDX, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY } from '../../../core/virtio/constants';
import type { Vm } from '../../../core/vm';
import wlPlugin, { wlDeviceOf } from '../../../plugins/virtio-wl/index';
import type { WlDevice } from '../../../plugins/virtio-wl/device';
import type { WlSocketRegistry } from '../../../plugins/virtio-wl/sockets';
import { VIRTIO_WL_F_TRANS_FLAGS } from '../../../plugins/virtio-wl/constants';
import { PROBE_GUEST, startGuest, type GuestRun } from '../../helpers/guest-run';
import { until } from '../../helpers/wait';

export const MiB = 1024 * 1024;
export const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex').replace(/(.{8})/g, '$1 ').trim();
}

/** One split ring's layout in guest memory, written as a driver would. */
class Ring {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  availIdx = 0;
  usedSeen = 0;
  /** avail idx at the last notification decision. */
  kickedIdx = 0;

  constructor(private readonly memory: GuestMemory, base: number, readonly size: number) {
    this.desc = base;
    this.avail = base + 16 * size;
    this.used = Math.ceil((this.avail + 6 + 2 * size) / 4096) * 4096;
    memory.view(base, this.used + 6 + 8 * size - base).fill(0);
  }

  get end(): number { return this.used + 6 + 8 * this.size; }

  /** A fresh ring (the driver re-initialises it before DRIVER_OK). */
  reset(): void {
    this.memory.view(this.desc, this.end - this.desc).fill(0);
    this.availIdx = 0;
    this.usedSeen = 0;
    this.kickedIdx = 0;
  }

  /** used.flags and used.avail_event: the device's notification suppression (§2.7.10). */
  usedFlags(): number { return this.memory.readU16(this.used); }
  availEvent(): number { return this.memory.readU16(this.used + 4 + 8 * this.size); }

  setDesc(i: number, addr: number, len: number, flags: number, next = 0): void {
    const at = this.desc + 16 * i;
    this.memory.writeU64(at, BigInt(addr));
    this.memory.writeU32(at + 8, len >>> 0);
    this.memory.writeU16(at + 12, flags);
    this.memory.writeU16(at + 14, next);
  }

  addAvail(head: number): void {
    this.memory.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.memory.writeU16(this.avail + 2, this.availIdx);
  }

  usedIdx(): number { return this.memory.readU16(this.used + 2); }

  /** The next used element not yet consumed, or undefined. */
  takeUsed(): { id: number; len: number } | undefined {
    if (this.usedIdx() === this.usedSeen) return undefined;
    const at = this.used + 4 + 8 * (this.usedSeen % this.size);
    this.usedSeen = (this.usedSeen + 1) & 0xffff;
    return { id: this.memory.readU32(at), len: this.memory.readU32(at + 4) };
  }
}

export interface Reply {
  len: number;
  /** The whole reply buffer (bytes past `len` show what the device left alone). */
  buffer: Uint8Array;
  bytes: Uint8Array;
}

export interface CommandOptions {
  /** Reply buffer size (default 64, as the kernel posts for the NEW family). */
  replyLen?: number;
  /** Split the request into readable descriptors of these sizes (the rest in the last one). */
  split?: number[];
  /** Raw descriptors instead (hostile tests). */
  raw?: { addr: number; len: number; write: boolean }[];
  /** Notify the device (as the driver's kick decides); false: only make the chain available. */
  notify?: boolean;
}

export interface DriverOptions {
  /** Negotiate VIRTIO_F_RING_EVENT_IDX (the Linux driver does whenever it is offered). */
  eventIdx?: boolean;
}

export class WlDriver {
  readonly memory: GuestMemory;
  readonly inRing: Ring;
  readonly outRing: Ring;
  readonly eventIdx: boolean;
  interrupts = 0;
  /** Notifications the device's suppression state made unnecessary. */
  suppressed = 0;
  private heap: number;
  private readonly inBuffers: number[] = [];
  private nextOutDesc = 0;
  private completed = new Map<number, number>();

  constructor(readonly device: WlDevice, memory: GuestMemory, options: DriverOptions = {}, readonly inSize = 64, readonly outSize = 64, base = 8 * MiB) {
    this.memory = memory;
    this.eventIdx = options.eventIdx ?? false;
    this.inRing = new Ring(memory, base, inSize);
    this.outRing = new Ring(memory, Math.ceil(this.inRing.end / 4096) * 4096, outSize);
    this.heap = Math.ceil(this.outRing.end / 4096) * 4096;
  }

  alloc(len: number): number {
    const at = this.heap;
    this.heap += Math.ceil(len / 64) * 64;
    return at;
  }

  /** Where alloc() stands; heapRelease(mark) frees everything allocated since (long runs). */
  heapMark(): number {
    return this.heap;
  }

  heapRelease(mark: number): void {
    this.heap = mark;
  }

  /** DRIVER_OK: build the queues as the transport does and activate. */
  activate(features = 1n << BigInt(VIRTIO_WL_F_TRANS_FLAGS), postIn = this.inSize): void {
    // As the transport does: resume is how a queue that yielded (descriptor budget) has the device look again.
    const hooks = (index: number) => ({
      interrupt: () => { this.interrupts++; },
      needsReset: (why: string) => { throw new Error(`needs reset: ${why}`); },
      live: () => true,
      resume: () => this.device.queueNotify(index),
    });
    const queueFeatures = { eventIdx: this.eventIdx, indirect: false };
    const inQ = new Queue(this.memory, 0, { size: this.inSize, descTable: this.inRing.desc, availRing: this.inRing.avail, usedRing: this.inRing.used }, queueFeatures, hooks(0));
    const outQ = new Queue(this.memory, 1, { size: this.outSize, descTable: this.outRing.desc, availRing: this.outRing.avail, usedRing: this.outRing.used }, queueFeatures, hooks(1));
    if (this.eventIdx) features |= 1n << BigInt(VIRTIO_F_RING_EVENT_IDX);
    this.inRing.reset();
    this.outRing.reset();
    this.completed.clear();
    this.nextOutDesc = 0;
    if (this.inBuffers.length === 0) for (let i = 0; i < this.inSize; i++) this.inBuffers.push(this.alloc(4096));
    this.device.activate({ features, queues: [inQ, outQ], memory: this.memory });
    this.postIn(postIn);
  }

  /** Post `count` more 4096-byte in-queue buffers (descriptor i ↔ buffer i) and notify. */
  postIn(count: number, len = 4096): void {
    for (let k = 0; k < count; k++) {
      const i = this.inRing.availIdx % this.inSize;
      this.memory.view(this.inBuffers[i], 4096).fill(0xee);
      this.inRing.setDesc(i, this.inBuffers[i], len, VIRTQ_DESC_F_WRITE);
      this.inRing.addAvail(i);
    }
    this.kick(this.inRing, 0);
  }

  /** QueueNotify unless the device asked not to be (virtqueue_kick_prepare). */
  kick(ring: Ring, index: number): void {
    const now = ring.availIdx;
    const old = ring.kickedIdx;
    ring.kickedIdx = now;
    const wanted = this.eventIdx ? vringNeedEvent(ring.availEvent(), now, old) : (ring.usedFlags() & VIRTQ_USED_F_NO_NOTIFY) === 0;
    if (!wanted) {
      this.suppressed++;
      return;
    }
    this.device.queueNotify(index);
  }

  /** In-queue events delivered so far and not yet taken. */
  takeEvents(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let u = this.inRing.takeUsed(); u; u = this.inRing.takeUsed()) out.push(this.memory.read(this.inBuffers[u.id], u.len));
    return out;
  }

  /** Wait for `count` events (re-posting nothing). */
  async events(count: number, timeoutMs = 5000): Promise<Uint8Array[]> {
    const got: Uint8Array[] = [];
    await until(`${count} in-queue events (got ${got.length})`, () => { got.push(...this.takeEvents()); return got.length >= count; }, timeoutMs);
    return got;
  }

  /** Submit a command chain; resolves with the used length and the reply buffer. */
  submit(request: Uint8Array, options: CommandOptions = {}): { head: number; replyAt: number; replyLen: number } {
    const replyLen = options.replyLen ?? 64;
    const replyAt = this.alloc(Math.max(replyLen, 1));
    if (replyLen > 0) this.memory.view(replyAt, replyLen).fill(0xaa);
    const pieces: { addr: number; len: number; write: boolean }[] = options.raw ? [...options.raw] : [];
    if (!options.raw) {
      let off = 0;
      for (const n of [...(options.split ?? []), request.length]) {
        const len = Math.min(n, request.length - off);
        if (len <= 0) break;
        const at = this.alloc(len);
        this.memory.write(at, request.subarray(off, off + len));
        pieces.push({ addr: at, len, write: false });
        off += len;
      }
      if (replyLen > 0) pieces.push({ addr: replyAt, len: replyLen, write: true });
    }
    const descs = pieces.map(() => { const d = this.nextOutDesc; this.nextOutDesc = (this.nextOutDesc + 1) % this.outSize; return d; });
    pieces.forEach((p, k) => {
      const last = k === pieces.length - 1;
      this.outRing.setDesc(descs[k], p.addr, p.len, (p.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : descs[k + 1]);
    });
    this.outRing.addAvail(descs[0]);
    if (options.notify !== false) this.kick(this.outRing, 1);
    return { head: descs[0], replyAt, replyLen };
  }

  /** The used length of `head` once the device has returned it, else undefined. */
  usedLen(head: number): number | undefined {
    for (let u = this.outRing.takeUsed(); u; u = this.outRing.takeUsed()) this.completed.set(u.id, u.len);
    const len = this.completed.get(head);
    if (len !== undefined) this.completed.delete(head);
    return len;
  }

  async command(request: Uint8Array | number[], options: CommandOptions = {}, timeoutMs = 5000): Promise<Reply> {
    const { head, replyAt, replyLen } = this.submit(Uint8Array.from(request), options);
    const len = await until(`the reply to a ${request.length}-byte command`, () => this.usedLen(head), timeoutMs);
    const buffer = replyLen > 0 ? this.memory.read(replyAt, replyLen) : new Uint8Array(0);
    return { len, buffer, bytes: buffer.subarray(0, len) };
  }
}

// --- requests as the Linux driver builds them --------------------------------------------------

/** A 64-byte ctrl_vfd_new. */
export function vfdNew(type: number, id: number, flags = 0, size = 0, name?: string | Uint8Array): Uint8Array {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(id >>> 0, 8);
  b.writeUInt32LE(flags >>> 0, 12);
  b.writeUInt32LE(size >>> 0, 24);
  if (name !== undefined) Buffer.from(typeof name === 'string' ? Buffer.from(name) : name).copy(b, 28, 0, 32);
  return b;
}

export function ctrlVfd(type: number, id: number): Uint8Array {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(id >>> 0, 8);
  return b;
}

export function vfdSend(id: number, ids: number[], data: Uint8Array | string = '', count = ids.length): Uint8Array {
  const payload = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
  const b = Buffer.alloc(16 + 4 * ids.length + payload.length);
  b.writeUInt32LE(0x102, 0);
  b.writeUInt32LE(id >>> 0, 8);
  b.writeUInt32LE(count >>> 0, 12);
  ids.forEach((x, i) => b.writeUInt32LE(x >>> 0, 16 + 4 * i));
  payload.copy(b, 16 + 4 * ids.length);
  return b;
}

export function respType(reply: Reply): number {
  return Buffer.from(reply.buffer).readUInt32LE(0);
}

// --- the VM ------------------------------------------------------------------------------------

export interface WlVm {
  run: GuestRun;
  vm: Vm;
  device: WlDevice;
  sockets: WlSocketRegistry;
  driver: WlDriver;
  stop(): Promise<void>;
}

/** Boot the probe guest (`wait`) with virtio-wl (and `extra` plugins) and set up a driver. */
export async function startWlVm(options: Record<string, unknown>, extra: Plugin[] = [], activate = true, driverOptions: DriverOptions = {}): Promise<WlVm> {
  const wl: Plugin = { name: 'virtio-wl', apply: (vmm) => wlPlugin.apply(vmm, options) };
  const run = startGuest({ kernel: PROBE_GUEST, cmdline: 'wait', memory: 64 * MiB }, [wl, ...extra]);
  await run.waitFor('probe: start', 30000);
  const found = wlDeviceOf(run.vm);
  if (!found) throw new Error('the virtio-wl plugin made no device');
  const driver = new WlDriver(found.device, run.vm.memory, driverOptions);
  if (activate) driver.activate();
  return {
    run, vm: run.vm, device: found.device, sockets: found.sockets, driver,
    async stop() { await run.vm.stop(); await run.exit; },
  };
}

// --- host peers ----------------------------------------------------------------------------------

export function tempDir(prefix = 'vmm-wl-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A listening Unix stream socket: the compositor stand-in. */
export class HostListener {
  readonly fd: number;
  constructor(readonly path: string, backlog = 16) {
    this.fd = native.unixListen(path, native.SOCK_STREAM, backlog);
  }

  async accept(timeoutMs = 5000): Promise<HostConn> {
    const fd = await until(`a connection on ${this.path}`, () => native.unixAccept(this.fd), timeoutMs);
    return new HostConn(fd);
  }

  private closed = false;

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.close(this.fd);
    fs.rmSync(this.path, { force: true });
  }
}

/** One connected host stream socket (non-blocking), read and written by polling. */
export class HostConn {
  constructor(readonly fd: number) {}

  /** Read until `bytes` bytes (and any fds) arrived. */
  async recv(bytes: number, timeoutMs = 5000): Promise<{ data: Buffer; fds: number[] }> {
    const chunks: Buffer[] = [];
    const fds: number[] = [];
    let have = 0;
    await until(`${bytes} bytes from the device`, () => {
      for (;;) {
        const r = native.recvmsg(this.fd, 65536, 64);
        if (r === null) break;
        if (r.data.length === 0 && r.fds.length === 0) return true;
        chunks.push(r.data);
        fds.push(...r.fds);
        have += r.data.length;
      }
      return have >= bytes;
    }, timeoutMs);
    return { data: Buffer.concat(chunks), fds };
  }

  /** True once the device closed its end (EOF). */
  eof(): boolean {
    const r = native.recvmsg(this.fd, 65536, 64);
    if (r === null) return false;
    for (const fd of r.fds) native.close(fd);
    return r.data.length === 0 && r.fds.length === 0;
  }

  send(data: Uint8Array | string, fds: number[] = []): number {
    return native.sendmsg(this.fd, typeof data === 'string' ? Buffer.from(data) : data, fds);
  }

  close(): void {
    try { native.close(this.fd); } catch { /* closed */ }
  }
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** What an fd of this process is (`socket:[123]`, `/memfd:x (deleted)`, …). */
export function fdTarget(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}
