/**
 * core/net/unix-socket.ts, the transport under the control channel (and later virtio-wl's
 * Wayland sockets): messages with fds, empty datagrams, truncation, the write queue and its
 * backpressure, partial STREAM writes, and fd ownership on every path.
 */
import * as fs from 'fs';
import { socketPair, type UnixMessage, type UnixMessageSocket } from '../../../core/net/unix-socket';
import { expectFdCount, settledFdCount } from './control-fixture';
import { sleep, until } from '../../helpers/wait';

function collect(socket: UnixMessageSocket): UnixMessage[] {
  const messages: UnixMessage[] = [];
  socket.on('message', (m: UnixMessage) => messages.push(m));
  return messages;
}

function closeFds(messages: UnixMessage[]): void {
  for (const m of messages) for (const fd of m.fds) fs.closeSync(fd);
}

describe('UnixMessageSocket', () => {
  let baseline: number;
  beforeEach(async () => { baseline = await settledFdCount(); });
  afterEach(async () => { await expectFdCount(baseline); });

  test('a SEQPACKET message carries its fds; the receiver owns them', async () => {
    const [a, b] = socketPair('seqpacket');
    const got = collect(b);
    const file = fs.openSync('/dev/null', 'r');
    a.send(Buffer.from('hello'), [file]);
    fs.closeSync(file);
    await until('one message', () => got.length === 1);
    expect(got[0].data.toString()).toBe('hello');
    expect(got[0].fds).toHaveLength(1);
    expect(fs.fstatSync(got[0].fds[0]).isCharacterDevice()).toBe(true);
    closeFds(got);
    a.close();
    b.close();
  });

  test('a zero-length datagram is a message, not the end; the end comes when the peer closes', async () => {
    const [a, b] = socketPair('seqpacket');
    const got = collect(b);
    const closed = new Promise<Error | undefined>((resolve) => b.on('close', resolve));
    a.send(Buffer.alloc(0));
    a.send(Buffer.from('x'));
    await until('two messages', () => got.length === 2);
    expect(got.map((m) => m.data.length)).toEqual([0, 1]);
    expect(b.closed).toBe(false);
    a.send(Buffer.alloc(0));
    a.close();
    expect(await closed).toBeUndefined();
    expect(b.closed).toBe(true);
  });

  test('MSG_TRUNC and MSG_CTRUNC are reported; the fds that did arrive are handed over', async () => {
    const [a, b] = socketPair('seqpacket', { maxMessageBytes: 16, maxFds: 1 });
    const got = collect(b);
    const files = [fs.openSync('/dev/null', 'r'), fs.openSync('/dev/null', 'r'), fs.openSync('/dev/null', 'r')];
    a.send(Buffer.alloc(32, 1));
    a.send(Buffer.from('{}'), files);
    for (const fd of files) fs.closeSync(fd);
    await until('two messages', () => got.length === 2);
    expect(got[0]).toMatchObject({ truncated: true, controlTruncated: false });
    expect(got[0].data).toHaveLength(16);
    expect(got[1]).toMatchObject({ truncated: false, controlTruncated: true });
    closeFds(got);
    a.close();
    b.close();
  });

  test('a reader that stops reading: send() queues, reports backpressure, and drains in order', async () => {
    const [a, b] = socketPair('seqpacket', { highWaterBytes: 64 * 1024 });
    b.pauseReading();
    const got = collect(b);
    let sent = 0;
    while (a.send(Buffer.from(JSON.stringify({ n: sent, pad: 'x'.repeat(1000) })))) sent++;
    sent++;
    expect(a.bufferedMessages).toBeGreaterThan(0);
    const drained = new Promise<void>((resolve) => a.once('drain', resolve));
    b.resumeReading();
    await drained;
    await until('every message', () => got.length === sent);
    expect(got.map((m) => JSON.parse(m.data.toString()).n)).toEqual(Array.from({ length: sent }, (_, i) => i));
    a.close();
    b.close();
  });

  test('close() closes the fds it owns in the queue, and fails what is queued; idempotent', async () => {
    const [a, b] = socketPair('seqpacket');
    b.pauseReading();
    const outcomes: (Error | undefined)[] = [];
    let queuedWithFds = 0;
    for (let i = 0; i < 2000 && (a.bufferedMessages === 0 || queuedWithFds < 5); i++) {
      const fd = fs.openSync('/dev/null', 'r');
      const wasQueued = a.bufferedMessages > 0;
      a.send(Buffer.alloc(2000), [fd], { closeFds: true, onSent: (error) => outcomes.push(error) });
      if (wasQueued) queuedWithFds++;
    }
    expect(queuedWithFds).toBe(5);
    a.close();
    a.close();
    expect(outcomes.filter((e) => e !== undefined).length).toBeGreaterThanOrEqual(5);
    expect(outcomes.filter((e) => e !== undefined)[0]).toMatchObject({ code: 'ERR_SOCKET_CLOSED' });
    // Sending after close fails at once and still closes an owned fd.
    const late = fs.openSync('/dev/null', 'r');
    let lateError: Error | undefined;
    expect(a.send(Buffer.from('x'), [late], { closeFds: true, onSent: (e) => { lateError = e; } })).toBe(false);
    expect(lateError).toMatchObject({ code: 'ERR_SOCKET_CLOSED' });
    // The receiver drops what is in flight to it (the kernel closes those fds with the socket).
    b.close();
  });

  test('STREAM: a large write goes out in parts, its fds with the first part', async () => {
    const [a, b] = socketPair('stream', { maxMessageBytes: 64 * 1024 });
    const got = collect(b);
    const file = fs.openSync('/dev/null', 'r');
    const big = Buffer.alloc(2 * 1024 * 1024, 7);
    let sent = false;
    a.send(big, [file], { closeFds: true, onSent: () => { sent = true; } });
    await until('all bytes', () => got.reduce((n, m) => n + m.data.length, 0) === big.length, 10000);
    expect(sent).toBe(true);
    expect(got.flatMap((m) => m.fds)).toHaveLength(1);
    expect(got[0].fds).toHaveLength(1);
    closeFds(got);
    a.close();
    await sleep(10);
    b.close();
  });

  test('a listener that throws does not crash the loop: the socket closes with the error', async () => {
    const [a, b] = socketPair('seqpacket');
    b.on('message', () => { throw new Error('listener bug'); });
    const closed = new Promise<Error | undefined>((resolve) => b.on('close', resolve));
    a.send(Buffer.from('x'));
    expect(await closed).toMatchObject({ message: 'listener bug' });
    a.close();
  });
});
