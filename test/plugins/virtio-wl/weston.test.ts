/**
 * Against a real compositor: weston's headless backend (Debian packages `weston`,
 * `wayland-utils`). The "guest" speaks Wayland wire bytes through the device on a NEW_CTX
 * context and reads the registry back out of RECV events.
 */
import { ctrlVfd, respType, startWlVm, vfdNew, vfdSend, type WlVm } from './driver';
import { until } from '../../helpers/wait';
import { startHeadlessWeston, type Weston } from './weston-fixture';


/** One Wayland message: object id, opcode, and its argument bytes. */
interface WlMessage { object: number; opcode: number; args: Buffer }

function parseMessages(stream: Buffer): { messages: WlMessage[]; rest: Buffer } {
  const messages: WlMessage[] = [];
  let at = 0;
  while (stream.length - at >= 8) {
    const object = stream.readUInt32LE(at);
    const word = stream.readUInt32LE(at + 4);
    const size = word >>> 16;
    if (size < 8 || stream.length - at < size) break;
    messages.push({ object, opcode: word & 0xffff, args: stream.subarray(at + 8, at + size) });
    at += size;
  }
  return { messages, rest: stream.subarray(at) };
}

function wlString(args: Buffer, at: number): { value: string; next: number } {
  const len = args.readUInt32LE(at);
  const value = args.subarray(at + 4, at + 4 + len - 1).toString();
  return { value, next: at + 4 + Math.ceil(len / 4) * 4 };
}

describe('virtio-wl with weston (headless)', () => {
  let weston: Weston | undefined;
  let wl: WlVm | undefined;

  afterAll(async () => {
    await wl?.stop();
    await weston?.stop();
  });

  test('get_registry + sync on a NEW_CTX context: wl_registry.global for wl_compositor and wl_shm, then wl_callback.done', async () => {
    weston = await startHeadlessWeston('vmm-weston-');
    const socket = weston.socket;

    wl = await startWlVm({ sockets: { '': socket } });
    const d = wl.driver;
    expect(respType(await d.command(vfdNew(0x104, 1, 3)))).toBe(0x1001);
    // wl_display@1.get_registry(new_id 2); wl_display@1.sync(new_id 3)
    const request = Buffer.alloc(24);
    request.writeUInt32LE(1, 0); request.writeUInt32LE((12 << 16) | 1, 4); request.writeUInt32LE(2, 8);
    request.writeUInt32LE(1, 12); request.writeUInt32LE((12 << 16) | 0, 16); request.writeUInt32LE(3, 20);
    expect(respType(await d.command(vfdSend(1, [], request), { replyLen: 8 }))).toBe(0x1000);

    let stream: Buffer = Buffer.alloc(0);
    const messages: WlMessage[] = [];
    await until('wl_callback.done', () => {
      const events = d.takeEvents();
      if (events.length > 0) d.postIn(events.length);
      for (const event of events) {
        const b = Buffer.from(event);
        if (b.readUInt32LE(0) !== 0x103) continue;
        expect(b.readUInt32LE(8)).toBe(1);
        const count = b.readUInt32LE(12);
        stream = Buffer.concat([stream, b.subarray(16 + 4 * count)]);
      }
      const parsed = parseMessages(stream);
      messages.push(...parsed.messages);
      stream = parsed.rest;
      return messages.some((m) => m.object === 3 && m.opcode === 0);
    }, 10000);

    const globals = messages.filter((m) => m.object === 2 && m.opcode === 0).map((m) => wlString(m.args, 4).value);
    expect(globals).toContain('wl_compositor');
    expect(globals).toContain('wl_shm');
    const doneAt = messages.findIndex((m) => m.object === 3 && m.opcode === 0);
    const lastGlobal = messages.map((m) => m.object === 2).lastIndexOf(true);
    expect(lastGlobal).toBeLessThan(doneAt);
    expect(respType(await d.command(ctrlVfd(0x101, 1), { replyLen: 8 }))).toBe(0x1000);
  });
});
