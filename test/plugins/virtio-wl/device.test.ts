/**
 * virtio-wl over a real VM's guest memory with a Node-side compositor stand-in: every reply and
 * event checked byte for byte against /work/shared/spec/virtio-wl.md.
 */
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../../native';
import {
  ctrlVfd, HostConn, HostListener, hex, MiB, openFdCount, respType, startWlVm, tempDir, vfdNew, vfdSend, type WlVm,
} from './driver';
import { sleep, until } from '../../helpers/wait';

const OK = 0x1000, RESP_VFD_NEW = 0x1001, ERR = 0x1100, INVALID_ID = 0x1102, INVALID_TYPE = 0x1103, INVALID_FLAGS = 0x1104, INVALID_CMD = 0x1105;
const NEW = 0x100, CLOSE = 0x101, RECV = 0x103, NEW_CTX = 0x104, NEW_PIPE = 0x105, NEW_DMABUF = 0x107, DMABUF_SYNC = 0x108, FOREIGN = 0x109, NAMED = 0x10a;
const WINDOW = 0x1_0000_0000; // 64 MiB of RAM: the shm window starts at 4 GiB

const le32 = (b: Uint8Array, off: number): number => Buffer.from(b).readUInt32LE(off);
const le64 = (b: Uint8Array, off: number): bigint => Buffer.from(b).readBigUInt64LE(off);

// Every test with the driver negotiating EVENT_IDX (as Linux does) and refusing it: under
// EVENT_IDX a device that does not re-arm its queues hears only of the first request.
describe.each([['EVENT_IDX negotiated', true], ['EVENT_IDX refused', false]])('virtio-wl device (%s)', (_mode, eventIdx) => {
  let dir: string;
  let listener: HostListener;
  let other: HostListener;
  let wl: WlVm;

  beforeAll(async () => {
    dir = tempDir();
    listener = new HostListener(path.join(dir, 'wayland-0'));
    other = new HostListener(path.join(dir, 'other'));
    wl = await startWlVm({ sockets: { '': listener.path, x: other.path, gone: path.join(dir, 'nobody') } }, [], true, { eventIdx });
  });

  afterAll(async () => {
    await wl?.stop();
    listener?.close();
    other?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Open a context with `id` on the default socket; returns the host end. */
  async function openContext(id: number): Promise<HostConn> {
    const reply = await wl.driver.command(vfdNew(NEW_CTX, id, 3));
    expect(respType(reply)).toBe(RESP_VFD_NEW);
    return listener.accept();
  }

  test('the device: id 63, two queues, TRANS_FLAGS, no config space', () => {
    expect(wl.device.deviceType).toBe(63);
    expect(wl.device.queueMaxSizes).toHaveLength(2);
    expect(wl.device.features).toBe(2n | (1n << 23n)); // TRANS_FLAGS and vmm's SEND_DONTWAIT (dontwait.test.ts)
    expect(wl.device.config.length).toBe(0);
    expect(wl.vm.devices.some((d) => d.name === 'virtio-wl' && d.bus === 'mmio' && d.length === 0x1000)).toBe(true);
  });

  test('NEW_CTX: the spec §3.12 request gives exactly the §3.12 reply (32 bytes)', async () => {
    const request = Buffer.from('04010000' + '00000000' + '01000000' + '03000000' + '00'.repeat(48), 'hex');
    const reply = await wl.driver.command(request);
    expect(reply.len).toBe(32);
    expect(hex(reply.bytes)).toBe(hex(Buffer.from('01100000 00000000 01000000 03000000 00000000 00000000 00000000 00000000'.replace(/ /g, ''), 'hex')));
    // The device writes 32 bytes; the rest of the 64-byte buffer is left alone.
    expect([...reply.buffer.subarray(32)].every((b) => b === 0xaa)).toBe(true);
    const host = await listener.accept();
    // Host → guest: 8 bytes and a memfd (a keymap): VFD_NEW (32 bytes) then RECV (28 bytes).
    const memfd = native.memfdCreate('keymap', 0x1000);
    fs.writeSync(memfd, Buffer.from('xkb_keymap {'));
    host.send(Buffer.from('ABCDEFGH'), [memfd]);
    native.close(memfd);
    const [announce, recv] = await wl.driver.events(2);
    expect(announce.length).toBe(32);
    const pfn = le64(announce, 16);
    expect(hex(announce)).toBe(hex(Buffer.concat([
      Buffer.from('00010000 00000000 00000040 00000000'.replace(/ /g, ''), 'hex'),
      (() => { const b = Buffer.alloc(8); b.writeBigUInt64LE(pfn); return b; })(),
      Buffer.from('00100000 00000000'.replace(/ /g, ''), 'hex'),
    ])));
    expect(Number(pfn) * 4096).toBeGreaterThanOrEqual(WINDOW);
    // The guest-physical pages at that pfn are the host's memfd.
    const hostVfd = (wl.device as unknown as { vfds: Map<number, { shm?: { mapping?: { view: Uint8Array; gpa: number } } }> }).vfds.get(0x40000000)!;
    expect(hostVfd.shm!.mapping!.gpa).toBe(Number(pfn) * 4096);
    expect(Buffer.from(hostVfd.shm!.mapping!.view.subarray(0, 12)).toString()).toBe('xkb_keymap {');
    expect(recv.length).toBe(28);
    expect(hex(recv)).toBe(hex(Buffer.concat([Buffer.from('03010000 00000000 01000000 01000000 00000040'.replace(/ /g, ''), 'hex'), Buffer.from('ABCDEFGH')])));
    // The guest closes both; the host sees the context end.
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, 0x40000000), { replyLen: 8 }))).toBe(OK);
    const closeReply = await wl.driver.command(ctrlVfd(CLOSE, 1), { replyLen: 8 });
    expect(closeReply.len).toBe(4);
    expect(hex(closeReply.buffer)).toBe('00100000 aaaaaaaa');
    await until('EOF on the host side', () => host.eof());
    host.close();
  });

  test('NEW_CTX_NAMED: names up to the first NUL, all 32 bytes without one; unknown names and refused connects → RESP_ERR', async () => {
    const reply = await wl.driver.command(vfdNew(NAMED, 2, 3, 0, 'x'));
    expect(reply.len).toBe(32);
    expect(le32(reply.bytes, 0)).toBe(RESP_VFD_NEW);
    expect(le32(reply.bytes, 8)).toBe(2);
    expect(le32(reply.bytes, 12)).toBe(3);
    const host = await other.accept();
    expect(respType(await wl.driver.command(vfdNew(NAMED, 3, 3, 0, 'y')))).toBe(ERR);
    expect(respType(await wl.driver.command(vfdNew(NAMED, 3, 3, 0, 'gone')))).toBe(ERR);
    // 32 bytes, no terminator: a 32-byte name (unknown here) is read whole, not overrun.
    expect(respType(await wl.driver.command(vfdNew(NAMED, 3, 3, 0, 'x'.repeat(32))))).toBe(ERR);
    // Not UTF-8
    expect(respType(await wl.driver.command(vfdNew(NAMED, 3, 3, 0, Uint8Array.from([0xff, 0xfe]))))).toBe(ERR);
    // Too short to hold the name field
    expect(respType(await wl.driver.command(vfdNew(NAMED, 3, 3, 0, 'x').subarray(0, 40)))).toBe(ERR);
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, 2), { replyLen: 8 }))).toBe(OK);
    host.close();
  });

  test('VFD_NEW: a memfd mapped at a pfn in the window, size page-rounded, flags echoed; the guest-physical pages are the memfd', async () => {
    const reply = await wl.driver.command(vfdNew(NEW, 5, 0, 5000));
    expect(reply.len).toBe(32);
    expect(le32(reply.bytes, 0)).toBe(RESP_VFD_NEW);
    expect(le32(reply.bytes, 4)).toBe(0);
    expect(le32(reply.bytes, 8)).toBe(5);
    expect(le32(reply.bytes, 12)).toBe(0);
    const pfn = le64(reply.bytes, 16);
    expect(le32(reply.bytes, 24)).toBe(8192);
    expect(le32(reply.bytes, 28)).toBe(0);
    const gpa = Number(pfn) * 4096;
    expect(gpa).toBeGreaterThanOrEqual(WINDOW);
    // KVM holds a slot there: a second slot over the same range is refused (EEXIST).
    const vmFd = (wl.vm as unknown as { vmFd: number }).vmFd;
    const probe = native.memfdCreate('probe', 4096);
    const m = native.mmapFd(probe, 4096);
    expect(() => native.setUserMemoryRegion(vmFd, 400, gpa, 4096, m.address)).toThrow(/EEXIST|File exists/);
    m.close();
    native.close(probe);
    // Send it to a host peer: the peer maps the fd and sees what the "guest" wrote at that gpa.
    const host = await openContext(6);
    const found = (wl.device as unknown as { vfds: Map<number, { shm?: { mapping?: { view: Uint8Array; gpa: number } } }> }).vfds.get(5)!;
    expect(found.shm!.mapping!.gpa).toBe(gpa);
    found.shm!.mapping!.view.set(Buffer.from('pattern from the guest'), 100);
    expect(respType(await wl.driver.command(vfdSend(6, [5], 'pool'), { replyLen: 8 }))).toBe(OK);
    const got = await host.recv(4);
    expect(got.data.toString()).toBe('pool');
    expect(got.fds).toHaveLength(1);
    expect(fs.fstatSync(got.fds[0]).size).toBe(8192);
    const peer = native.mmapFd(got.fds[0], 8192);
    expect(Buffer.from(peer.buffer, 100, 22).toString()).toBe('pattern from the guest');
    // …and what the peer writes, the guest's pages show.
    new Uint8Array(peer.buffer).set(Buffer.from('from the host'), 4096);
    expect(Buffer.from(found.shm!.mapping!.view.subarray(4096, 4096 + 13)).toString()).toBe('from the host');
    peer.close();
    native.close(got.fds[0]);
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, 5), { replyLen: 8 }))).toBe(OK);
    // The slot is gone with the VFD: the range can be registered again (then removed).
    const again = native.memfdCreate('probe', 4096);
    const m2 = native.mmapFd(again, 4096);
    native.setUserMemoryRegion(vmFd, 400, gpa, 4096, m2.address);
    native.setUserMemoryRegion(vmFd, 400, gpa, 0, 0n);
    m2.close();
    native.close(again);
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, 6), { replyLen: 8 }))).toBe(OK);
    host.close();
  });

  test('VFD_NEW with flags in transition mode → INVALID_FLAGS; size 0 → RESP_ERR', async () => {
    expect(respType(await wl.driver.command(vfdNew(NEW, 7, 1, 4096)))).toBe(INVALID_FLAGS);
    expect(respType(await wl.driver.command(vfdNew(NEW, 7, 0, 0)))).toBe(ERR);
  });

  test('NEW_PIPE READ: the host peer gets the write end; what it writes arrives as RECV, its close as HUP after the data', async () => {
    const host = await openContext(10);
    const reply = await wl.driver.command(vfdNew(NEW_PIPE, 11, 2));
    expect(hex(reply.bytes)).toBe(hex(Buffer.from('01100000 00000000 0b000000 00000000 00000000 00000000 00000000 00000000'.replace(/ /g, ''), 'hex')));
    expect(respType(await wl.driver.command(vfdSend(10, [11], 'receive'), { replyLen: 8 }))).toBe(OK);
    const got = await host.recv(7);
    expect(got.fds).toHaveLength(1);
    fs.writeSync(got.fds[0], 'clipboard data');
    native.close(got.fds[0]);
    const [recv, hup] = await wl.driver.events(2);
    expect(recv.length).toBe(16 + 14);
    expect(hex(recv)).toBe(hex(Buffer.concat([Buffer.from('03010000 00000000 0b000000 00000000'.replace(/ /g, ''), 'hex'), Buffer.from('clipboard data')])));
    expect(hex(hup)).toBe('06010000 00000000 0b000000');
    // SEND to a hung-up pipe: nothing to write to.
    expect(respType(await wl.driver.command(vfdSend(11, [], 'x'), { replyLen: 8 }))).toBe(INVALID_TYPE);
    for (const id of [11, 10]) expect(respType(await wl.driver.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
    host.close();
  });

  test('NEW_PIPE WRITE: guest SENDs go into the pipe; the remote read end goes to the host peer; fds over a pipe → INVALID_TYPE', async () => {
    const host = await openContext(12);
    expect(respType(await wl.driver.command(vfdNew(NEW_PIPE, 13, 1)))).toBe(RESP_VFD_NEW);
    expect(respType(await wl.driver.command(vfdSend(13, [], 'paste me'), { replyLen: 8 }))).toBe(OK);
    expect(respType(await wl.driver.command(vfdSend(13, [12], 'x'), { replyLen: 8 }))).toBe(INVALID_TYPE);
    expect(respType(await wl.driver.command(vfdSend(12, [13], 'offer'), { replyLen: 8 }))).toBe(OK);
    const got = await host.recv(5);
    expect(got.fds).toHaveLength(1);
    const buf = Buffer.alloc(64);
    const n = fs.readSync(got.fds[0], buf);
    expect(buf.subarray(0, n).toString()).toBe('paste me');
    // The remote end was sent: listing the pipe again has nothing to send.
    expect(respType(await wl.driver.command(vfdSend(12, [13], 'again'), { replyLen: 8 }))).toBe(INVALID_TYPE);
    // The reader goes away: the guest-write pipe hangs up.
    native.close(got.fds[0]);
    const [hup] = await wl.driver.events(1);
    expect(hex(hup)).toBe('06010000 00000000 0d000000');
    for (const id of [13, 12]) expect(respType(await wl.driver.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
    host.close();
  });

  test('NEW_PIPE flags not exactly READ or WRITE → INVALID_FLAGS', async () => {
    for (const flags of [0, 3, 4]) expect(respType(await wl.driver.command(vfdNew(NEW_PIPE, 14, flags)))).toBe(INVALID_FLAGS);
  });

  test('SEND: multi-descriptor requests; data order kept; host fds and data arrive as VFD_NEW… then one RECV', async () => {
    const host = await openContext(20);
    const payload = Buffer.alloc(10000, 0);
    for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
    const reply = await wl.driver.command(vfdSend(20, [], payload), { replyLen: 8, split: [16, 4096, 4096] });
    expect(reply.len).toBe(4);
    const got = await host.recv(payload.length);
    expect(got.data.equals(payload)).toBe(true);
    // Host → guest: 3 fds (memfd, pipe read end, pipe write end) and data.
    const memfd = native.memfdCreate('m', 100);
    const [r, w] = native.pipe();
    host.send('three fds', [memfd, r, w]);
    for (const fd of [memfd, r, w]) native.close(fd);
    const events = await wl.driver.events(4);
    const ids = events.slice(0, 3).map((e) => { expect(le32(e, 0)).toBe(NEW); expect(e.length).toBe(32); return le32(e, 8); });
    expect(ids.every((id) => (id & 0x40000000) !== 0 && (id & 0x80000000) === 0)).toBe(true);
    expect(new Set(ids).size).toBe(3);
    // flags: shm 0 (size page-rounded to 4096, pfn set); pipe read end READ; write end WRITE
    expect(le32(events[0], 12)).toBe(0);
    expect(le64(events[0], 16)).not.toBe(0n);
    expect(le32(events[0], 24)).toBe(4096);
    expect(le32(events[1], 12)).toBe(2);
    expect(le64(events[1], 16)).toBe(0n);
    expect(le32(events[2], 12)).toBe(1);
    const recv = events[3];
    expect(recv.length).toBe(16 + 12 + 9);
    expect(le32(recv, 0)).toBe(RECV);
    expect(le32(recv, 8)).toBe(20);
    expect(le32(recv, 12)).toBe(3);
    expect([le32(recv, 16), le32(recv, 20), le32(recv, 24)]).toEqual(ids);
    expect(Buffer.from(recv.subarray(28)).toString()).toBe('three fds');
    // A host shm VFD can be passed on; a host pipe-like one has nothing to send (INVALID_TYPE).
    expect(respType(await wl.driver.command(vfdSend(20, [ids[0]], 'back'), { replyLen: 8 }))).toBe(OK);
    const back = await host.recv(4);
    expect(back.fds).toHaveLength(1);
    native.close(back.fds[0]);
    expect(respType(await wl.driver.command(vfdSend(20, [ids[1]], 'no'), { replyLen: 8 }))).toBe(INVALID_TYPE);
    // Guest writes into the host pipe's write end (ids[2]); reads come from its read end (ids[1]).
    expect(respType(await wl.driver.command(vfdSend(ids[2], [], 'loop'), { replyLen: 8 }))).toBe(OK);
    const [looped] = await wl.driver.events(1);
    expect(hex(looped)).toBe(hex(Buffer.concat([Buffer.from([0x03, 1, 0, 0, 0, 0, 0, 0]), Buffer.from(Uint32Array.of(ids[1], 0).buffer), Buffer.from('loop')])));
    for (const id of [...ids, 20]) expect(respType(await wl.driver.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
    host.close();
  });

  test('a peer that hangs up after writing: its data first, then HUP; SEND afterwards → INVALID_TYPE', async () => {
    const host = await openContext(30);
    host.send('last words');
    host.close();
    const [recv, hup] = await wl.driver.events(2);
    expect(Buffer.from(recv.subarray(16)).toString()).toBe('last words');
    expect(hex(hup)).toBe('06010000 00000000 1e000000');
    expect(respType(await wl.driver.command(vfdSend(30, [], 'hello?'), { replyLen: 8 }))).toBe(INVALID_TYPE);
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, 30), { replyLen: 8 }))).toBe(OK);
  });

  test('backpressure: no in-queue buffers → host data waits in the kernel (nothing dropped); order kept when buffers come', async () => {
    const host = await openContext(40);
    // Use up every posted buffer with events, not re-posting.
    const chunks: string[] = [];
    const total = wl.driver.inSize + 20;
    let sent = 0;
    for (let i = 0; i < total; i++) {
      const s = `message ${i};`;
      chunks.push(s);
      host.send(s);
      sent += s.length;
      await sleep(1);
    }
    await sleep(100);
    const first = wl.driver.takeEvents();
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThanOrEqual(wl.driver.inSize);
    // Out of buffers: host fds are no longer watched, and at most one read's events wait.
    const state = wl.device as unknown as { readPaused: boolean; backlog: unknown[] };
    expect(state.readPaused).toBe(true);
    expect(state.backlog.length).toBeLessThanOrEqual(29);
    let text = first.map((e) => Buffer.from(e.subarray(16)).toString()).join('');
    while (text.length < sent) {
      wl.driver.postIn(4);
      const more = await wl.driver.events(1);
      text += more.map((e) => Buffer.from(e.subarray(16)).toString()).join('');
    }
    expect(text).toBe(chunks.join(''));
    wl.driver.postIn(wl.driver.inSize - 8);
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, 40), { replyLen: 8 }))).toBe(OK);
    host.close();
  });

  test('a host peer that does not read: the SEND stays pending (no reply) until it is written, then RESP_OK; later commands wait their turn', async () => {
    const host = await openContext(50);
    const big = Buffer.alloc(4 * MiB, 0x5a);
    const { head } = wl.driver.submit(vfdSend(50, [], big), { replyLen: 8 });
    const next = wl.driver.submit(vfdNew(NEW_PIPE, 51, 1));
    await sleep(200);
    expect(wl.driver.usedLen(head)).toBeUndefined();
    expect(wl.driver.usedLen(next.head)).toBeUndefined();
    const got = await host.recv(big.length, 20000);
    expect(got.data.length).toBe(big.length);
    expect(got.data.every((b) => b === 0x5a)).toBe(true);
    expect(await until('the SEND reply', () => wl.driver.usedLen(head))).toBe(4);
    expect(await until('the NEW_PIPE reply', () => wl.driver.usedLen(next.head))).toBe(32);
    for (const id of [51, 50]) expect(respType(await wl.driver.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
    host.close();
  });

  test('DMABUF and foreign-id commands are unsupported: INVALID_CMD (sommelier falls back to shm on ENOTTY)', async () => {
    expect(respType(await wl.driver.command(vfdNew(NEW_DMABUF, 60, 0, 0)))).toBe(INVALID_CMD);
    const sync = Buffer.alloc(16); sync.writeUInt32LE(DMABUF_SYNC, 0); sync.writeUInt32LE(60, 8);
    const reply = await wl.driver.command(sync, { replyLen: 8 });
    expect(reply.len).toBe(4);
    expect(hex(reply.buffer)).toBe('05110000 aaaaaaaa');
    const foreign = Buffer.alloc(24); foreign.writeUInt32LE(FOREIGN, 0);
    expect(respType(await wl.driver.command(foreign, { replyLen: 8 }))).toBe(INVALID_CMD);
  });

  test('hostile guest: unknown commands, bad and reused ids, too many vfds, short requests, bad descriptors → error replies, no crash', async () => {
    const d = wl.driver;
    const cmd = (b: Uint8Array, replyLen = 64) => d.command(b, { replyLen }).then(respType);
    expect(await cmd(Buffer.from(u32le(0xdead).concat(Array(12).fill(0))))).toBe(INVALID_CMD);
    expect(await cmd(Buffer.from(u32le(0x1000).concat(Array(12).fill(0))))).toBe(INVALID_CMD);
    expect(await cmd(Buffer.from([1, 2]))).toBe(ERR);
    // host-bit ids and ids in use
    expect(await cmd(vfdNew(NEW_CTX, 0x40000001, 3))).toBe(INVALID_ID);
    expect(await cmd(vfdNew(NEW, 0x40000001, 0, 4096))).toBe(INVALID_ID);
    expect(await cmd(vfdNew(NEW_PIPE, 0x40000001, 1))).toBe(INVALID_ID);
    expect(await cmd(vfdNew(NEW_PIPE, 70, 1))).toBe(RESP_VFD_NEW);
    expect(await cmd(vfdNew(NEW_PIPE, 70, 1))).toBe(INVALID_ID);
    expect(await cmd(vfdNew(NEW, 70, 0, 4096))).toBe(INVALID_ID);
    expect(await cmd(vfdNew(NEW_CTX, 70, 3))).toBe(INVALID_ID);
    expect(await cmd(vfdNew(NAMED, 70, 3, 0, 'x'))).toBe(INVALID_ID);
    // unknown ids
    expect(await cmd(ctrlVfd(CLOSE, 999), 8)).toBe(INVALID_ID);
    expect(await cmd(vfdSend(999, [], 'x'), 8)).toBe(INVALID_ID);
    expect(await cmd(vfdSend(70, [999], 'x'), 8)).toBe(INVALID_ID);
    // too many vfds; a count the buffer cannot hold
    expect(await cmd(vfdSend(70, Array(29).fill(70), 'x'), 8)).toBe(INVALID_CMD);
    expect(await cmd(vfdSend(70, [], '', 5), 8)).toBe(ERR);
    // short requests
    expect(await cmd(ctrlVfd(CLOSE, 70).subarray(0, 8), 8)).toBe(ERR);
    expect(await cmd(vfdNew(NEW, 71, 0, 4096).subarray(0, 20))).toBe(ERR);
    expect(await cmd(vfdNew(NEW_CTX, 71, 3).subarray(0, 10))).toBe(ERR);
    // a send to a shm VFD (no socket, no pipe) → INVALID_TYPE
    expect(await cmd(vfdNew(NEW, 72, 0, 4096))).toBe(RESP_VFD_NEW);
    expect(await cmd(vfdSend(72, [], 'x'), 8)).toBe(INVALID_TYPE);
    // a closed VFD is gone
    expect(await cmd(ctrlVfd(CLOSE, 72), 8)).toBe(OK);
    expect(await cmd(vfdSend(72, [], 'x'), 8)).toBe(INVALID_ID);
    expect(await cmd(ctrlVfd(CLOSE, 72), 8)).toBe(INVALID_ID);
    // no reply buffer at all: processed, used length 0
    expect((await d.command(ctrlVfd(CLOSE, 999), { replyLen: 0 })).len).toBe(0);
    // descriptors outside guest memory: the chain comes back with length 0, the device goes on
    const bad = d.submit(new Uint8Array(0), { raw: [{ addr: 0x7000_0000_0000, len: 64, write: false }, { addr: 0x10_0000_0000, len: 8, write: true }] });
    expect(await until('the bad chain', () => d.usedLen(bad.head))).toBe(0);
    // a chain with only a writable part
    const noRead = d.submit(new Uint8Array(0), { raw: [{ addr: d.alloc(8), len: 8, write: true }] });
    expect(await until('the write-only chain', () => d.usedLen(noRead.head))).toBe(4);
    expect(await cmd(ctrlVfd(CLOSE, 70), 8)).toBe(OK);
    // still alive
    expect(await cmd(vfdNew(NEW_PIPE, 73, 2))).toBe(RESP_VFD_NEW);
    expect(await cmd(ctrlVfd(CLOSE, 73), 8)).toBe(OK);
    expect(wl.device.vfdCount).toBe(0);
  });

  test('legacy mode (TRANS_FLAGS not acked): contexts are CONTROL, VFD_NEW takes WRITE|MAP; re-activation forgets every VFD', async () => {
    const host = await openContext(80);
    wl.driver.activate(0n);
    await until('the old context to close on re-activation', () => host.eof());
    host.close();
    const ctx = await wl.driver.command(vfdNew(NEW_CTX, 80, 0));
    expect(le32(ctx.bytes, 12)).toBe(4);
    const h2 = await listener.accept();
    const alloc = await wl.driver.command(vfdNew(NEW, 81, 3, 4096));
    expect(le32(alloc.bytes, 0)).toBe(RESP_VFD_NEW);
    expect(le32(alloc.bytes, 12)).toBe(3);
    expect(respType(await wl.driver.command(vfdNew(NEW, 82, 4, 4096)))).toBe(ERR);
    const memfd = native.memfdCreate('m', 4096);
    h2.send('k', [memfd]);
    native.close(memfd);
    const [announce] = await wl.driver.events(2);
    expect(le32(announce, 12)).toBe(3); // WRITE|MAP
    wl.device.reset();
    await until('the context to close on reset', () => h2.eof());
    h2.close();
    expect(wl.device.vfdCount).toBe(0);
    wl.driver.activate();
  });

  test('the device holds no VFD once the guest closed everything', () => {
    expect(wl.device.vfdCount).toBe(0);
  });
});

describe('virtio-wl fd accounting', () => {
  test('the VMM fd count returns to where it was once everything is closed (VM stopped with VFDs still open)', async () => {
    const dir = tempDir();
    const listener = new HostListener(path.join(dir, 'wayland-0'));
    const before = openFdCount();
    const wl = await startWlVm({ sockets: { '': listener.path } });
    const d = wl.driver;
    expect(respType(await d.command(vfdNew(NEW_CTX, 1, 3)))).toBe(RESP_VFD_NEW);
    const host = await listener.accept();
    expect(respType(await d.command(vfdNew(NEW, 2, 0, 8192)))).toBe(RESP_VFD_NEW);
    expect(respType(await d.command(vfdNew(NEW_PIPE, 3, 1)))).toBe(RESP_VFD_NEW);
    expect(respType(await d.command(vfdNew(NEW_PIPE, 4, 2)))).toBe(RESP_VFD_NEW);
    const memfd = native.memfdCreate('m', 4096);
    const [r, w] = native.pipe();
    host.send('fds', [memfd, r, w]);
    for (const fd of [memfd, r, w]) native.close(fd);
    await d.events(4);
    // Some closed by the guest, the rest by the VM stopping.
    expect(respType(await d.command(ctrlVfd(CLOSE, 2), { replyLen: 8 }))).toBe(OK);
    expect(respType(await d.command(ctrlVfd(CLOSE, 0x40000000), { replyLen: 8 }))).toBe(OK);
    await wl.stop();
    await until('the context to close when the VM stops', () => host.eof());
    host.close();
    await sleep(50);
    expect(openFdCount()).toBe(before);
    listener.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}
