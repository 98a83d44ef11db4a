/**
 * vmm's per-call flags extension on the device side (guest/linux/virtio_wl/EXTENSION.md §1):
 * VIRTIO_WL_F_SEND_DONTWAIT, the DONTWAIT header flag, RESP_WOULD_BLOCK and VFD_WRITABLE, with
 * a real host peer whose socket fills up; and the device without the feature acked, which must
 * behave as crosvm does (the flag ignored, a full socket holds the SEND).
 */
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../../native';
import {
  MAX_HELD_SEND_BYTES, VIRTIO_WL_CMD_VFD_WRITABLE, VIRTIO_WL_F_SEND_DONTWAIT, VIRTIO_WL_F_TRANS_FLAGS,
  VIRTIO_WL_RESP_WOULD_BLOCK,
} from '../../../plugins/virtio-wl/constants';
import {
  ctrlVfd, HostConn, HostListener, MiB, openFdCount, respType, startWlVm, tempDir, vfdNew, vfdSend, type WlVm,
} from './driver';
import { sleep, until } from '../../helpers/wait';

const OK = 0x1000, RESP_VFD_NEW = 0x1001, HUP = 0x106, CLOSE = 0x101, NEW_CTX = 0x104, NEW_PIPE = 0x105;
const WOULD_BLOCK = VIRTIO_WL_RESP_WOULD_BLOCK, WRITABLE = VIRTIO_WL_CMD_VFD_WRITABLE;
const DONTWAIT = 0x1;
const WITH_DONTWAIT = (1n << BigInt(VIRTIO_WL_F_TRANS_FLAGS)) | (1n << BigInt(VIRTIO_WL_F_SEND_DONTWAIT));
const WITHOUT_DONTWAIT = 1n << BigInt(VIRTIO_WL_F_TRANS_FLAGS);

/** A VFD_SEND whose header flags word is `flags`. */
function send(id: number, data: Uint8Array | string, flags = DONTWAIT, ids: number[] = []): Uint8Array {
  const b = Buffer.from(vfdSend(id, ids, data));
  b.writeUInt32LE(flags, 4);
  return b;
}

function eventType(e: Uint8Array): number {
  return Buffer.from(e).readUInt32LE(0);
}

/** Distinct bytes per chunk, so order and duplicates show. */
function chunk(n: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((n * 0x10000 + i / 4) >>> 0, i);
  return b;
}

/** Everything the host side can read now (non-blocking). */
function drain(host: HostConn): Buffer {
  const parts: Buffer[] = [];
  for (;;) {
    const r = native.recvmsg(host.fd, 1 << 20, 28);
    if (r === null || (r.data.length === 0 && r.fds.length === 0)) break;
    for (const fd of r.fds) native.close(fd);
    parts.push(r.data);
  }
  return Buffer.concat(parts);
}

type DeviceState = { vfds: Map<number, { heldSend?: { remaining: number }; owesWritable: boolean }> };

describe.each([['EVENT_IDX negotiated', true], ['EVENT_IDX refused', false]])('virtio-wl DONTWAIT extension (%s)', (_mode, eventIdx) => {
  let dir: string;
  let listener: HostListener;
  let wl: WlVm;
  let nextId = 1;

  beforeAll(async () => {
    dir = tempDir();
    listener = new HostListener(path.join(dir, 'wayland-0'), 64);
    wl = await startWlVm({ sockets: { '': listener.path } }, [], false, { eventIdx });
    wl.driver.activate(WITH_DONTWAIT);
  });

  afterAll(async () => {
    await wl?.stop();
    listener?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const vfds = () => (wl.device as unknown as DeviceState).vfds;

  async function context(): Promise<{ id: number; host: HostConn }> {
    const id = nextId++;
    expect(respType(await wl.driver.command(vfdNew(NEW_CTX, id, 3)))).toBe(RESP_VFD_NEW);
    return { id, host: await listener.accept() };
  }

  async function close(id: number, host?: HostConn): Promise<void> {
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
    host?.close();
  }

  /** DONTWAIT sends of `size` bytes until one is WOULD_BLOCK; returns what was accepted. */
  async function fill(id: number, size: number, from = 0): Promise<Buffer[]> {
    const accepted: Buffer[] = [];
    for (let n = from; ; n++) {
      const data = chunk(n, size);
      const type = respType(await wl.driver.command(send(id, data), { replyLen: 8 }));
      if (type === WOULD_BLOCK) return accepted;
      expect(type).toBe(OK);
      accepted.push(data);
      if (accepted.length > 10_000) throw new Error('the host socket never filled');
    }
  }

  /**
   * Fill the host socket, then read it empty: the last fill chunk may have been taken in part
   * (held), so read until that rest is out and the owed VFD_WRITABLE came. Returns the bytes.
   */
  async function fillAndEmpty(id: number, host: HostConn, size: number): Promise<Buffer> {
    await fill(id, size);
    const got: Buffer[] = [];
    await until(`the filled socket to empty (${JSON.stringify({ held: vfds().get(id)!.heldSend?.remaining, owes: vfds().get(id)!.owesWritable })})`, () => {
      got.push(drain(host));
      return vfds().get(id)!.heldSend === undefined && !vfds().get(id)!.owesWritable;
    }, 20000);
    await wl.driver.events(1);
    wl.driver.takeEvents();
    return Buffer.concat(got);
  }

  test('the device offers SEND_DONTWAIT (bit 23) with TRANS_FLAGS', () => {
    expect(wl.device.features & (1n << 23n)).toBe(1n << 23n);
    expect(wl.device.features & 2n).toBe(2n);
  });

  test('a DONTWAIT send the host takes: RESP_OK (4 bytes) and the bytes arrive', async () => {
    const { id, host } = await context();
    const reply = await wl.driver.command(send(id, 'hello'), { replyLen: 8 });
    expect(reply.len).toBe(4);
    expect(respType(reply)).toBe(OK);
    expect((await host.recv(5)).data.toString()).toBe('hello');
    await close(id, host);
  });

  test('a full host socket: WOULD_BLOCK at once with nothing sent, one VFD_WRITABLE once the peer reads, every accepted byte once and in order', async () => {
    const { id, host } = await context();
    wl.driver.takeEvents();
    const accepted = await fill(id, 4096);
    expect(accepted.length).toBeGreaterThan(0);
    // More refusals in the same blocked period: answered at once, no event yet.
    const refused = chunk(99999, 4096);
    const reply = await wl.driver.command(send(id, refused), { replyLen: 8 });
    expect(reply.len).toBe(4);
    expect(respType(reply)).toBe(WOULD_BLOCK);
    expect(respType(await wl.driver.command(send(id, refused), { replyLen: 8 }))).toBe(WOULD_BLOCK);
    await sleep(100);
    expect(wl.driver.takeEvents()).toEqual([]);
    const got = [drain(host)];
    const [event] = await wl.driver.events(1);
    expect(event.length).toBe(12);
    expect(eventType(event)).toBe(WRITABLE);
    expect(Buffer.from(event).readUInt32LE(8)).toBe(id);
    await sleep(100);
    expect(wl.driver.takeEvents()).toEqual([]);
    // Writable again: accepted; then everything the host read is what was accepted.
    const after = chunk(100000, 4096);
    expect(respType(await wl.driver.command(send(id, after), { replyLen: 8 }))).toBe(OK);
    got.push((await host.recv(4096)).data);
    expect(Buffer.concat(got).equals(Buffer.concat([...accepted, after]))).toBe(true);
    await close(id, host);
  });

  test('a refused send lists fds: none goes to the host, the pipe keeps its remote end until a send is accepted', async () => {
    const { id, host } = await context();
    const pipeId = nextId++;
    expect(respType(await wl.driver.command(vfdNew(NEW_PIPE, pipeId, 1)))).toBe(RESP_VFD_NEW);
    await fill(id, 8192);
    expect(respType(await wl.driver.command(send(id, 'p', DONTWAIT, [pipeId]), { replyLen: 8 }))).toBe(WOULD_BLOCK);
    let fds = 0;
    for (;;) {
      const r = native.recvmsg(host.fd, 1 << 20, 28);
      if (r === null) break;
      fds += r.fds.length;
      r.fds.forEach((fd) => native.close(fd));
    }
    expect(fds).toBe(0);
    expect((vfds().get(pipeId) as unknown as { remotePipe?: number }).remotePipe).toBeDefined();
    await wl.driver.events(1);
    expect(respType(await wl.driver.command(send(id, 'p', DONTWAIT, [pipeId]), { replyLen: 8 }))).toBe(OK);
    const got = await host.recv(1);
    expect(got.fds.length).toBe(1);
    got.fds.forEach((fd) => native.close(fd));
    expect((vfds().get(pipeId) as unknown as { remotePipe?: number }).remotePipe).toBeUndefined();
    await close(pipeId);
    await close(id, host);
  });

  test('a send the host takes part of is accepted; its rest is held and goes first; a blocking send waits behind it; all in order', async () => {
    const { id, host } = await context();
    wl.driver.takeEvents();
    const got = [await fillAndEmpty(id, host, 4096)];
    const accepted: Buffer[] = [];
    // More than the socket holds: a large DONTWAIT send is partly written, so accepted with a held rest.
    const big = chunk(7, 1 * MiB);
    expect(respType(await wl.driver.command(send(id, big), { replyLen: 8 }))).toBe(OK);
    const held = vfds().get(id)!.heldSend;
    expect(held).toBeDefined();
    expect(held!.remaining).toBeGreaterThan(0);
    expect(held!.remaining).toBeLessThan(big.length);
    // Behind the held rest: DONTWAIT refused, a blocking send waits (no reply).
    expect(respType(await wl.driver.command(send(id, 'x'), { replyLen: 8 }))).toBe(WOULD_BLOCK);
    const tail = chunk(8, 4096);
    const blocking = wl.driver.submit(send(id, tail, 0), { replyLen: 8 });
    await sleep(100);
    expect(wl.driver.usedLen(blocking.head)).toBeUndefined();
    const total = Buffer.concat([got[0], big, tail]).length;
    const have = got.reduce((n, b) => n + b.length, 0);
    got.push((await host.recv(total - have, 20000)).data);
    expect(await until('the blocking send to complete', () => wl.driver.usedLen(blocking.head))).toBe(4);
    expect(Buffer.concat(got).equals(Buffer.concat([got[0], ...accepted, big, tail]))).toBe(true);
    expect(vfds().get(id)!.heldSend).toBeUndefined();
    // The WOULD_BLOCK above is answered once the rest is out.
    const events = await wl.driver.events(1);
    expect(events.map(eventType)).toEqual([WRITABLE]);
    await close(id, host);
  });

  test(`held bytes are bounded (${MAX_HELD_SEND_BYTES / MiB} MiB): past the bound a DONTWAIT send is refused before anything is written, and told when room comes back`, async () => {
    const contexts: { id: number; host: HostConn }[] = [];
    const size = 4 * MiB;
    // Each context: its socket filled, then a 4 MiB send accepted with most of it held.
    while (((wl.device as unknown as { heldBytes: number }).heldBytes) + size <= MAX_HELD_SEND_BYTES) {
      const c = await context();
      contexts.push(c);
      await fillAndEmpty(c.id, c.host, 65536);
      expect(respType(await wl.driver.command(send(c.id, chunk(1, size)), { replyLen: 8 }))).toBe(OK);
      expect(vfds().get(c.id)!.heldSend).toBeDefined();
      if (contexts.length > 8) throw new Error('held bytes did not grow');
    }
    wl.driver.takeEvents();
    const last = await context();
    expect(respType(await wl.driver.command(send(last.id, chunk(2, size)), { replyLen: 8 }))).toBe(WOULD_BLOCK);
    await sleep(100);
    expect(drain(last.host).length).toBe(0);
    // Its socket is empty, yet no VFD_WRITABLE (and no wake-up spin) while there is no room.
    expect(vfds().get(last.id)!.owesWritable).toBe(true);
    expect(wl.driver.takeEvents().filter((e) => Buffer.from(e).readUInt32LE(8) === last.id)).toEqual([]);
    for (const c of contexts) await c.host.recv(1, 5000).catch(() => undefined);
    await until('the held sends to go out', () => {
      for (const c of contexts) drain(c.host);
      return contexts.every((c) => vfds().get(c.id)!.heldSend === undefined);
    }, 30000);
    const events = await wl.driver.events(1);
    expect(events.some((e) => eventType(e) === WRITABLE && Buffer.from(e).readUInt32LE(8) === last.id)).toBe(true);
    for (const c of [...contexts, last]) await close(c.id, c.host);
  });

  test('the peer hangs up while a rest is held: HUP, the rest dropped, no VFD_WRITABLE; CLOSE leaves no fd behind', async () => {
    const before = openFdCount();
    const { id, host } = await context();
    await fillAndEmpty(id, host, 4096);
    expect(respType(await wl.driver.command(send(id, chunk(3, 1 * MiB)), { replyLen: 8 }))).toBe(OK);
    expect(vfds().get(id)!.heldSend).toBeDefined();
    expect(respType(await wl.driver.command(send(id, 'x'), { replyLen: 8 }))).toBe(WOULD_BLOCK);
    host.close();
    const events = await wl.driver.events(1, 10000);
    await sleep(100);
    events.push(...wl.driver.takeEvents());
    expect(events.map(eventType)).toEqual([HUP]);
    expect(vfds().get(id)!.heldSend).toBeUndefined();
    await close(id);
    expect(openFdCount()).toBe(before);
  });

  test('a guest write-pipe: WOULD_BLOCK when the host pipe is full, VFD_WRITABLE when its reader reads', async () => {
    const { id, host } = await context();
    const pipeId = nextId++;
    expect(respType(await wl.driver.command(vfdNew(NEW_PIPE, pipeId, 1)))).toBe(RESP_VFD_NEW);
    // Hand the read end to the host peer.
    expect(respType(await wl.driver.command(send(id, 'p', 0, [pipeId]), { replyLen: 8 }))).toBe(OK);
    const [readEnd] = (await host.recv(1)).fds;
    native.setNonBlocking(readEnd, true);
    wl.driver.takeEvents();
    const accepted = await fill(pipeId, 4096);
    expect(accepted.length).toBeGreaterThan(0);
    const parts: Buffer[] = [];
    for (let b = native.read(readEnd, 1 << 20); b && b.length > 0; b = native.read(readEnd, 1 << 20)) parts.push(b);
    const [event] = await wl.driver.events(1);
    expect(eventType(event)).toBe(WRITABLE);
    expect(Buffer.from(event).readUInt32LE(8)).toBe(pipeId);
    const want = Buffer.concat(accepted);
    await until('the held rest of the pipe', () => {
      for (let b = native.read(readEnd, 1 << 20); b && b.length > 0; b = native.read(readEnd, 1 << 20)) parts.push(b);
      return Buffer.concat(parts).length >= want.length;
    });
    expect(Buffer.concat(parts).equals(want)).toBe(true);
    native.close(readEnd);
    await close(pipeId);
    await close(id, host);
  });
});

describe('virtio-wl without the DONTWAIT extension acked (crosvm behaviour)', () => {
  test('the DONTWAIT flag is ignored: a full host socket holds the SEND (no reply) until the peer reads; no WOULD_BLOCK, no VFD_WRITABLE', async () => {
    const dir = tempDir();
    const listener = new HostListener(path.join(dir, 'wayland-0'));
    const wl = await startWlVm({ sockets: { '': listener.path } }, [], false, { eventIdx: true });
    try {
      wl.driver.activate(WITHOUT_DONTWAIT);
      expect(respType(await wl.driver.command(vfdNew(NEW_CTX, 1, 3)))).toBe(RESP_VFD_NEW);
      const host = await listener.accept();
      const big = chunk(5, 4 * MiB);
      const { head } = wl.driver.submit(send(1, big), { replyLen: 8 });
      await sleep(200);
      expect(wl.driver.usedLen(head)).toBeUndefined();
      const got = await host.recv(big.length, 20000);
      expect(got.data.equals(big)).toBe(true);
      expect(await until('the SEND reply', () => wl.driver.usedLen(head))).toBe(4);
      await sleep(100);
      expect(wl.driver.takeEvents()).toEqual([]);
      host.close();
    } finally {
      await wl.stop();
      listener.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
