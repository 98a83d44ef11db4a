/**
 * The host side of test/linux/network.test.ts and bench/linux, run inside the test's network
 * namespace (`ip netns exec NS node dist/test/linux/net-peer.js MODE …`), facing the guest's
 * `netio` (guest/linux/programs/netio.c). It prints one JSON object per line on stdout: first
 * `{"ready":true}` once its socket is bound, then results; it exits by itself when done.
 *
 *   tcp-sink HOST PORT CONNS          accept CONNS connections, read none of them until all are
 *                                     open (so they are open at once), then read each to its end:
 *                                     {"bytes","sha256"} per connection, then {"done","open"}
 *   tcp-source HOST PORT BYTES CONNS  to each of CONNS connections send BYTES random bytes and
 *                                     close: {"bytes","sha256"} per connection
 *   udp-ping HOST GUEST PORT COUNT SIZE  send COUNT datagrams of SIZE random bytes to the guest's
 *                                     `netio udp-echo`, one at a time, each compared with its echo:
 *                                     {"sent","echoed","mismatched","retried","sha256"}
 *   udp-sink HOST PORT COUNT SIZE     receive COUNT datagrams from `netio udp-send`, check each
 *                                     one's pattern: {"received","bad","sha256"}
 */
import { spawn, type ChildProcess } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import * as dgram from 'dgram';
import * as net from 'net';
import type { TapNamespace } from '../helpers/tap-netns';

/** An echo later than this is taken as lost, and the datagram is sent again. */
const UDP_RETRY_MS = 3000;
const UDP_RETRIES = 3;

function emit(value: object): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function positive(text: string | undefined, name: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer; got ${JSON.stringify(text)}`);
  return n;
}

function tcpSink(host: string, port: number, conns: number): void {
  const waiting: net.Socket[] = [];
  let open = 0;
  let maxOpen = 0;
  let finished = 0;
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    waiting.push(socket);
    if (waiting.length === conns) {
      server.close();
      for (const s of waiting) read(s);
    }
  });
  const read = (socket: net.Socket) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.length; });
    socket.on('end', () => {
      emit({ bytes, sha256: hash.digest('hex') });
      socket.end();
    });
    socket.on('close', () => {
      open--;
      if (++finished === conns) emit({ done: true, open: maxOpen });
    });
    socket.resume();
  };
  server.listen(port, host, () => emit({ ready: true }));
}

function tcpSource(host: string, port: number, bytes: number, conns: number): void {
  let accepted = 0;
  const server = net.createServer((socket) => {
    if (++accepted === conns) server.close();
    const hash = createHash('sha256');
    let left = bytes;
    const more = () => {
      while (left > 0) {
        const chunk = randomBytes(Math.min(left, 1 << 20));
        left -= chunk.length;
        hash.update(chunk);
        if (!socket.write(chunk)) return void socket.once('drain', more);
      }
      socket.end(() => emit({ bytes, sha256: hash.digest('hex') }));
    };
    socket.on('error', (e) => emit({ error: e.message }));
    more();
  });
  server.listen(port, host, () => emit({ ready: true }));
}

function udpPing(host: string, guest: string, port: number, count: number, size: number): void {
  const socket = dgram.createSocket('udp4');
  const hash = createHash('sha256');
  let echoed = 0;
  let mismatched = 0;
  let retried = 0;
  let current: Buffer | undefined;
  let tries = 0;
  let timer: NodeJS.Timeout | undefined;
  const finish = () => {
    clearTimeout(timer);
    emit({ sent: count, echoed, mismatched, retried, sha256: hash.digest('hex') });
    socket.close();
  };
  const sendNext = () => {
    if (echoed + mismatched === count) return finish();
    current = randomBytes(size);
    tries = 0;
    send();
  };
  const send = () => {
    if (tries++ > UDP_RETRIES) return finish();
    if (tries > 1) retried++;
    socket.send(current!, port, guest);
    timer = setTimeout(send, UDP_RETRY_MS);
  };
  socket.on('message', (message) => {
    if (!current) return;
    clearTimeout(timer);
    if (message.equals(current)) { echoed++; hash.update(message); } else mismatched++;
    current = undefined;
    sendNext();
  });
  socket.bind(0, host, () => { emit({ ready: true }); sendNext(); });
}

function udpSink(host: string, port: number, count: number, size: number): void {
  const socket = dgram.createSocket('udp4');
  const hash = createHash('sha256');
  let received = 0;
  let bad = 0;
  socket.on('message', (message) => {
    hash.update(message);
    received++;
    // netio udp-send: a 4-byte big-endian number i, then bytes (i + j) & 0xff.
    const i = message.length >= 4 ? message.readUInt32BE(0) : -1;
    let ok = message.length === size;
    for (let j = 4; ok && j < size; j++) ok = message[j] === ((i + j) & 0xff);
    if (!ok) bad++;
    if (received === count) {
      emit({ received, bad, sha256: hash.digest('hex') });
      socket.close();
    }
  });
  socket.bind(port, host, () => emit({ ready: true }));
}

function main(argv: string[]): void {
  const [mode, ...args] = argv;
  switch (mode) {
    case 'tcp-sink': return tcpSink(args[0], positive(args[1], 'PORT'), positive(args[2], 'CONNS'));
    case 'tcp-source': return tcpSource(args[0], positive(args[1], 'PORT'), positive(args[2], 'BYTES'), positive(args[3], 'CONNS'));
    case 'udp-ping': return udpPing(args[0], args[1], positive(args[2], 'PORT'), positive(args[3], 'COUNT'), positive(args[4], 'SIZE'));
    case 'udp-sink': return udpSink(args[0], positive(args[1], 'PORT'), positive(args[2], 'COUNT'), positive(args[3], 'SIZE'));
    default: throw new Error(`unknown mode ${JSON.stringify(mode)}: tcp-sink, tcp-source, udp-ping or udp-sink`);
  }
}

/** A peer started in a namespace, from the test's side: its JSON lines, in order. */
export class NetPeer {
  private readonly child: ChildProcess;
  private readonly lines: object[] = [];
  private readonly waiters: (() => void)[] = [];
  private stderr = '';
  private exited = false;

  constructor(ns: Pick<TapNamespace, 'wrap'>, mode: string, args: (string | number)[]) {
    const [command, argv] = ns.wrap(process.execPath, [__filename, mode, ...args.map(String)]);
    this.child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let buffered = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) this.lines.push(JSON.parse(line) as object);
      this.wake();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (chunk: string) => { this.stderr += chunk; });
    this.child.on('close', () => { this.exited = true; this.wake(); });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The next line, or a rejection if the peer exits first or `timeoutMs` passes. */
  async next<T = Record<string, unknown>>(timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.exited) throw new Error(`the host peer exited without a result; its stderr: ${this.stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`the host peer printed nothing within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
    return this.lines.shift() as T;
  }

  /** Resolves once it is listening (its first line). */
  async ready(): Promise<this> {
    await this.next(30_000);
    return this;
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

if (require.main === module) main(process.argv.slice(2));
