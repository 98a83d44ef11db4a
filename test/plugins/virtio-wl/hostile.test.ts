/**
 * virtio-wl against a hostile guest (issue 10, items 1, 2, 3 and 5), over a real VM's guest
 * memory with real host sockets: a SEND that waits never passes an fd number that changed
 * meaning; guest-sized chains are refused before they are read; the out queue yields after a
 * bounded amount of work; VFDs, contexts and shared memory are bounded by the plugin's limits
 * and the host's fd count comes back to where it was.
 */
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../../native';
import { MAX_SEND_CHAIN_BYTES, OUT_COMMANDS_PER_TURN } from '../../../plugins/virtio-wl/constants';
import { parseOptions } from '../../../plugins/virtio-wl/index';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_MAX_CONTEXTS, DEFAULT_MAX_VFDS, resolveLimits } from '../../../plugins/virtio-wl/limits';
import {
  ctrlVfd, fdTarget, HostListener, MiB, openFdCount, respType, startWlVm, tempDir, vfdNew, vfdSend, WlDriver, type WlVm,
} from './driver';
import { sleep, until } from '../../helpers/wait';

const OK = 0x1000, RESP_VFD_NEW = 0x1001, ERR = 0x1100, OUT_OF_MEMORY = 0x1101, INVALID_ID = 0x1102;
const NEW = 0x100, CLOSE = 0x101, NEW_CTX = 0x104, NEW_PIPE = 0x105, HUP = 0x106;

const le32 = (b: Uint8Array, off: number): number => Buffer.from(b).readUInt32LE(off);
type Internals = { vfds: Map<number, { socket?: number }> };

describe.each([['EVENT_IDX negotiated', true], ['EVENT_IDX refused', false]])('virtio-wl, hostile guest (%s)', (_mode, eventIdx) => {
  let dir: string;
  let listener: HostListener;
  let wl: WlVm;

  beforeAll(async () => {
    dir = tempDir();
    listener = new HostListener(path.join(dir, 'wayland-0'));
    wl = await startWlVm({ sockets: { '': listener.path } }, [], true, { eventIdx });
  });

  afterAll(async () => {
    await wl?.stop();
    listener?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function close(...ids: number[]): Promise<void> {
    for (const id of ids) expect(respType(await wl.driver.command(ctrlVfd(CLOSE, id), { replyLen: 8 }))).toBe(OK);
  }

  /** Bytes one sendmsg puts on a fresh context before the socket is full (peer not reading). */
  async function fillSize(id: number): Promise<number> {
    const d = wl.driver;
    expect(respType(await d.command(vfdNew(NEW_CTX, id, 3)))).toBe(RESP_VFD_NEW);
    const peer = await listener.accept();
    const send = d.submit(vfdSend(id, [], Buffer.alloc(2 * MiB, 1)), { replyLen: 8 });
    await sleep(50);
    expect(d.usedLen(send.head)).toBeUndefined();
    // One synchronous drain: the device cannot write more until the event loop runs.
    let filled = 0;
    for (let r = native.recvmsg(peer.fd, 1 << 20, 0); r !== null; r = native.recvmsg(peer.fd, 1 << 20, 0)) filled += r.data.length;
    await peer.recv(2 * MiB - filled, 20_000);
    expect(await until('the calibrating SEND', () => d.usedLen(send.head))).toBe(4);
    await close(id);
    peer.close();
    return filled;
  }

  test('item 1: a SEND that waits before any byte went out, whose listed context hangs up and whose fd number is reused: the peer gets that context, never the new file', async () => {
    const d = wl.driver;
    const fill = await fillSize(9);
    expect(respType(await d.command(vfdNew(NEW_CTX, 1, 3)))).toBe(RESP_VFD_NEW);
    const peerA = await listener.accept();
    expect(respType(await d.command(vfdNew(NEW_CTX, 2, 3)))).toBe(RESP_VFD_NEW);
    const peerB = await listener.accept();
    const numberB = (wl.device as unknown as Internals).vfds.get(2)!.socket!;
    const contextB = fdTarget(numberB);
    expect(contextB).toMatch(/^socket:/);

    // Fill peer A's socket exactly (that SEND completes), so the next one cannot write a byte
    // and waits with context 2's fd not yet sent.
    expect(respType(await d.command(vfdSend(1, [], Buffer.alloc(fill, 0x41)), { replyLen: 8 }))).toBe(OK);
    const send = d.submit(vfdSend(1, [2], 'listing context 2'), { replyLen: 8 });
    await sleep(50);
    expect(d.usedLen(send.head)).toBeUndefined();

    // Context 2's peer hangs up: the device closes its socket (HUP) while the SEND waits …
    peerB.close();
    const [hup] = await d.events(1);
    expect([le32(hup, 0), le32(hup, 8)]).toEqual([HUP, 2]);
    d.postIn(1);
    // … and the VMM opens something else, which gets the freed number.
    const opened: number[] = [];
    let unrelated = -1;
    for (let i = 0; i < 64 && unrelated !== numberB; i++) {
      unrelated = native.memfdCreate('unrelated', 4096);
      opened.push(unrelated);
    }
    expect(unrelated).toBe(numberB);
    expect(fdTarget(unrelated)).not.toBe(contextB);

    const got = await peerA.recv(fill + 'listing context 2'.length, 20_000);
    expect(got.data.subarray(fill).toString()).toBe('listing context 2');
    expect(got.fds).toHaveLength(1);
    expect(fdTarget(got.fds[0])).toBe(contextB);
    expect(await until('the SEND reply', () => d.usedLen(send.head))).toBe(4);
    expect(d.memory.readU32(send.replyAt)).toBe(OK);
    for (const fd of [...got.fds, ...opened]) native.close(fd);
    await close(1, 2);
    peerA.close();
  });

  test('item 1: a waiting SEND whose target stops sending (half-close: EOF, no error) fails with RESP_ERR, and the commands behind it are answered', async () => {
    const d = wl.driver;
    expect(respType(await d.command(vfdNew(NEW_CTX, 3, 3)))).toBe(RESP_VFD_NEW);
    const peer = await listener.accept();
    const send = d.submit(vfdSend(3, [], Buffer.alloc(2 * MiB, 1)), { replyLen: 8 });
    const next = d.submit(vfdNew(NEW_PIPE, 4, 1));
    await sleep(100);
    expect(d.usedLen(send.head)).toBeUndefined();
    native.shutdown(peer.fd, 'write');
    expect(await until('the SEND reply', () => d.usedLen(send.head))).toBe(4);
    expect(d.memory.readU32(send.replyAt)).toBe(ERR);
    expect(await until('the NEW_PIPE reply', () => d.usedLen(next.head))).toBe(32);
    const [hup] = await d.events(1);
    expect([le32(hup, 0), le32(hup, 8)]).toEqual([HUP, 3]);
    d.postIn(1);
    await close(3, 4);
    peer.close();
  });

  test('item 2: a SEND of exactly MAX_SEND_CHAIN_BYTES goes through; one byte more → RESP_ERR, nothing sent', async () => {
    const d = wl.driver;
    expect(respType(await d.command(vfdNew(NEW_CTX, 5, 3)))).toBe(RESP_VFD_NEW);
    const peer = await listener.accept();
    const payloadBytes = MAX_SEND_CHAIN_BYTES - 16;
    const atBound = d.submit(vfdSend(5, [], Buffer.alloc(payloadBytes, 7)), { replyLen: 8 });
    const got = await peer.recv(payloadBytes, 20_000);
    expect(got.data.length).toBe(payloadBytes);
    expect(await until('the SEND reply', () => d.usedLen(atBound.head))).toBe(4);
    const over = await d.command(vfdSend(5, [], Buffer.alloc(payloadBytes + 1, 7)), { replyLen: 8 });
    expect(respType(over)).toBe(ERR);
    await sleep(50);
    expect(native.recvmsg(peer.fd, 65536, 0)).toBeNull();
    await close(5);
    peer.close();
  });

  test('item 2: descriptors overlapping to 3.5 GiB: a SEND is refused without reading, another command reads only its struct', async () => {
    const d = wl.driver;
    // 59 descriptors over the same 60 MiB of guest RAM after a 64-byte request.
    const spread = Array.from({ length: 59 }, () => ({ addr: 1 * MiB, len: 60 * MiB, write: false }));
    const chain = (request: Uint8Array): { addr: number; len: number; write: boolean }[] => {
      const at = d.alloc(64);
      d.memory.view(at, 64).fill(0);
      d.memory.write(at, request);
      return [{ addr: at, len: 64, write: false }, ...spread, { addr: d.alloc(64), len: 64, write: true }];
    };
    expect(respType(await d.command(vfdNew(NEW_CTX, 6, 3)))).toBe(RESP_VFD_NEW);
    const peer = await listener.accept();
    const started = Date.now();
    const send = d.submit(new Uint8Array(0), { raw: chain(vfdSend(6, [], '')) });
    expect(await until('the huge SEND', () => d.usedLen(send.head))).toBe(4);
    const pipe = d.submit(new Uint8Array(0), { raw: chain(vfdNew(NEW_PIPE, 7, 1)) });
    expect(await until('the huge NEW_PIPE', () => d.usedLen(pipe.head))).toBe(32);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(native.recvmsg(peer.fd, 65536, 0)).toBeNull();
    expect(wl.device.vfdCount).toBe(2);
    await close(6, 7);
    peer.close();
  });

  test(`item 3: ${OUT_COMMANDS_PER_TURN + 344} commands behind one notification: at most ${OUT_COMMANDS_PER_TURN} run before the event loop gets a turn, all are answered`, async () => {
    // A driver with a ring big enough to make them all available at once.
    const big = new WlDriver(wl.device, wl.vm.memory, { eventIdx }, 64, 2048, 24 * MiB);
    big.activate();
    const total = OUT_COMMANDS_PER_TURN + 344;
    const heads: number[] = [];
    for (let i = 0; i < total; i++) heads.push(big.submit(ctrlVfd(CLOSE, 999), { replyLen: 8, notify: false }).head);
    let seenByLoop = -1;
    setImmediate(() => { seenByLoop = big.outRing.usedIdx(); });
    big.kick(big.outRing, 1);
    const inThatTurn = big.outRing.usedIdx();
    expect(inThatTurn).toBeGreaterThan(0);
    expect(inThatTurn).toBeLessThanOrEqual(OUT_COMMANDS_PER_TURN);
    await until(`all ${total} replies`, () => big.outRing.usedIdx() === total);
    expect(seenByLoop).toBeGreaterThanOrEqual(0);
    expect(seenByLoop).toBeLessThan(total);
    for (const head of heads) expect(big.usedLen(head)).toBe(4);
    // Back to the suite's driver (re-activation forgets everything).
    wl.driver.activate();
    expect(respType(await wl.driver.command(ctrlVfd(CLOSE, 999), { replyLen: 8 }))).toBe(INVALID_ID);
  });
});

describe('virtio-wl limits (item 5): bound + 1 of each through the guest, host fds back to baseline', () => {
  const limits = { maxVfds: 6, maxContexts: 2, maxShmBytes: 3 * 4096 };
  let dir: string;
  let listener: HostListener;
  let wl: WlVm;
  let baseline: number;

  beforeAll(async () => {
    dir = tempDir();
    listener = new HostListener(path.join(dir, 'wayland-0'));
    wl = await startWlVm({ sockets: { '': listener.path }, ...limits }, [], true, { eventIdx: true });
    baseline = openFdCount();
  });

  afterAll(async () => {
    await wl?.stop();
    listener?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const cmd = (b: Uint8Array, replyLen = 64): Promise<number> => wl.driver.command(b, { replyLen }).then(respType);
  async function close(...ids: number[]): Promise<void> {
    for (const id of ids) expect(await cmd(ctrlVfd(CLOSE, id), 8)).toBe(OK);
  }

  test('maxContexts 2: a third context → RESP_ERR (no connection made); after a CLOSE it opens', async () => {
    expect(await cmd(vfdNew(NEW_CTX, 1, 3))).toBe(RESP_VFD_NEW);
    expect(await cmd(vfdNew(NEW_CTX, 2, 3))).toBe(RESP_VFD_NEW);
    const peers = [await listener.accept(), await listener.accept()];
    expect(await cmd(vfdNew(NEW_CTX, 3, 3))).toBe(ERR);
    expect(native.unixAccept(listener.fd)).toBeNull();
    await close(1);
    expect(await cmd(vfdNew(NEW_CTX, 3, 3))).toBe(RESP_VFD_NEW);
    peers.push(await listener.accept());
    await close(2, 3);
    for (const p of peers) p.close();
  });

  test('maxShmBytes 12 KiB: 8 KiB + 4 KiB fit exactly; one page more → RESP_OUT_OF_MEMORY; freed by CLOSE', async () => {
    expect(await cmd(vfdNew(NEW, 10, 0, 8192))).toBe(RESP_VFD_NEW);
    expect(await cmd(vfdNew(NEW, 11, 0, 8192))).toBe(OUT_OF_MEMORY);
    expect(await cmd(vfdNew(NEW, 11, 0, 4096))).toBe(RESP_VFD_NEW);
    expect(await cmd(vfdNew(NEW, 12, 0, 1))).toBe(OUT_OF_MEMORY);
    await close(10);
    expect(await cmd(vfdNew(NEW, 12, 0, 8192))).toBe(RESP_VFD_NEW);
    await close(11, 12);
  });

  test('maxVfds 6: the seventh VFD (pipe, shared memory or context) → RESP_OUT_OF_MEMORY', async () => {
    for (let id = 20; id < 26; id++) expect(await cmd(vfdNew(NEW_PIPE, id, 1))).toBe(RESP_VFD_NEW);
    expect(await cmd(vfdNew(NEW_PIPE, 26, 1))).toBe(OUT_OF_MEMORY);
    expect(await cmd(vfdNew(NEW, 26, 0, 4096))).toBe(OUT_OF_MEMORY);
    expect(await cmd(vfdNew(NEW_CTX, 26, 3))).toBe(OUT_OF_MEMORY);
    expect(native.unixAccept(listener.fd)).toBeNull();
    expect(wl.device.vfdCount).toBe(6);
    await close(25);
    expect(await cmd(vfdNew(NEW_PIPE, 26, 1))).toBe(RESP_VFD_NEW);
    await close(20, 21, 22, 23, 24, 26);
  });

  test('maxVfds 6: fds from the host beyond it are closed (the data still arrives, with the ids that fit)', async () => {
    const d = wl.driver;
    expect(await cmd(vfdNew(NEW_CTX, 30, 3))).toBe(RESP_VFD_NEW);
    const peer = await listener.accept();
    for (let id = 31; id < 35; id++) expect(await cmd(vfdNew(NEW_PIPE, id, 2))).toBe(RESP_VFD_NEW);
    // 5 held: of three host fds one fits.
    const memfd = native.memfdCreate('m', 4096);
    const [r, w] = native.pipe();
    peer.send('abc', [memfd, r, w]);
    for (const fd of [memfd, r, w]) native.close(fd);
    const [announce, recv] = await d.events(2);
    expect(le32(announce, 0)).toBe(NEW);
    const hostId = le32(announce, 8);
    expect(le32(recv, 12)).toBe(1);
    expect(le32(recv, 16)).toBe(hostId);
    expect(Buffer.from(recv.subarray(20)).toString()).toBe('abc');
    expect(wl.device.vfdCount).toBe(6);
    d.postIn(2);
    await close(hostId, 31, 32, 33, 34, 30);
    peer.close();
    expect(wl.device.vfdCount).toBe(0);
    await sleep(20);
    expect(openFdCount()).toBe(baseline);
  });
});

describe('virtio-wl limit options', () => {
  test('defaults: 1024 VFDs, 64 contexts, shared memory up to the guest RAM size, 5 s connect timeout', () => {
    expect(resolveLimits(parseOptions({}), 64 * MiB)).toEqual({ maxVfds: 1024, maxContexts: 64, maxShmBytes: 64 * MiB, connectTimeoutMs: 5000 });
    expect([DEFAULT_MAX_VFDS, DEFAULT_MAX_CONTEXTS, DEFAULT_CONNECT_TIMEOUT_MS]).toEqual([1024, 64, 5000]);
    expect(resolveLimits(parseOptions({ maxVfds: 10, maxContexts: 1, maxShmBytes: 0, connectTimeoutMs: 0 }), 64 * MiB))
      .toEqual({ maxVfds: 10, maxContexts: 1, maxShmBytes: 0, connectTimeoutMs: 0 });
  });

  test('bad values are refused with the option named', () => {
    expect(() => parseOptions({ maxVfds: 0 })).toThrow(/option 'maxVfds' must be a whole number from 1 to 1000000/);
    expect(() => parseOptions({ maxVfds: 1.5 })).toThrow(/option 'maxVfds'/);
    expect(() => parseOptions({ maxContexts: '4' })).toThrow(/option 'maxContexts' must be a whole number.*got "4"/);
    expect(() => parseOptions({ maxShmBytes: -1 })).toThrow(/option 'maxShmBytes'/);
    expect(() => parseOptions({ connectTimeoutMs: 60_001 })).toThrow(/option 'connectTimeoutMs' must be a whole number from 0 to 60000/);
    expect(() => parseOptions({ maxFds: 3 })).toThrow(/unknown option 'maxFds'; the options are sockets, maxVfds, maxContexts, maxShmBytes, connectTimeoutMs/);
  });
});
