/**
 * The host peer of the in-guest virtio_wl tests (guest/linux/tests-wl/wltest.c): a Unix stream
 * listener that vmm's virtio-wl device connects to for every guest context on the socket name
 * "peer". The first line a context sends names the role the peer plays on it:
 *
 *   echo                   sends back every chunk with the fds that came with it
 *   quiet                  reads lines; "write-after <ms> <text>" writes <text> after <ms>
 *   hangup-after <ms>      closes the connection after <ms>
 *   sink                   answers "sink <id>", then reads nothing until its ctl says so;
 *                          hashes everything it reads (SHA-256)
 *   ctl <id>               drives sink <id>: "drain" (read all queued now, then pause again),
 *                          "drain-later <ms>" (from then on read everything), "result"
 *                          (after the sink's end of stream: "result <bytes> <sha256>")
 *   pipe-from-host         sends "pipe" with a pipe's read end, writes a line into it, closes it
 *   memfds-from-host <n>   sends "memfds <n>" with n memfds holding "memfd <i>\n"
 *   pipe-to-host           takes one fd, reads it to the end: "got <what it read>"
 *   fds-to-host <n>        takes n fds (guest shm VFDs holding "shm <i>\n"): "fds <n> ok"
 *   count <n>              reads n bytes, then answers "counted <n>" (bench/wl's bulk figure)
 *   shm-check <size>       takes one memfd of <size> bytes holding (i*7+1)&255, writes
 *                          (i*13+5)&255 into it: "shm ok" (or "shm bad <offset>")
 *
 * Everything is non-blocking on the jest event loop; close() releases every fd and timer.
 */
import { createHash, type Hash } from 'crypto';
import * as path from 'path';
import { native, type FdWatcher } from '../../native';

type Handler = (conn: PeerConnection, data: Buffer, fds: number[]) => void;

/** One accepted connection. */
class PeerConnection {
  private watcher: FdWatcher | undefined;
  private pending = Buffer.alloc(0);
  private pendingFds: number[] = [];
  private handler: Handler | undefined;
  private paused = false;
  closed = false;
  onEof: (() => void) | undefined;

  constructor(readonly peer: WlTestPeer, readonly fd: number) {
    this.watcher = new native.FdWatcher(fd, () => this.readable());
    this.watcher.start(native.POLL_READABLE | native.POLL_DISCONNECT);
  }

  /** Stop (or resume) reading: the host socket fills up behind a paused connection. */
  setPaused(paused: boolean): void {
    if (this.closed || paused === this.paused) return;
    this.paused = paused;
    if (paused) this.watcher?.stop();
    else {
      this.watcher?.start(native.POLL_READABLE | native.POLL_DISCONNECT);
      this.readable();
    }
  }

  /** Read what is queued now; false at end of stream. */
  readAvailable(onData: (data: Buffer, fds: number[]) => void): boolean {
    for (;;) {
      if (this.closed) return false;
      const r = native.recvmsg(this.fd, 256 * 1024, 28);
      if (r === null) return true;
      if (r.data.length === 0 && r.fds.length === 0) return false;
      onData(r.data, r.fds);
    }
  }

  private readable(): void {
    if (this.paused || this.closed) return;
    let more: boolean;
    try {
      more = this.readAvailable((data, fds) => this.deliver(data, fds));
    } catch (error) {
      this.peer.note(`read failed: ${(error as Error).message}`);
      more = false;
    }
    if (!more) {
      const eof = this.onEof;
      this.close();
      eof?.();
    }
  }

  private deliver(data: Buffer, fds: number[]): void {
    if (this.handler) {
      this.handler(this, data, fds);
      return;
    }
    this.pending = Buffer.concat([this.pending, data]);
    this.pendingFds.push(...fds);
    const nl = this.pending.indexOf(0x0a);
    if (nl < 0) return;
    const line = this.pending.subarray(0, nl).toString();
    const rest = this.pending.subarray(nl + 1);
    const restFds = this.pendingFds;
    this.pending = Buffer.alloc(0);
    this.pendingFds = [];
    this.handler = this.peer.role(this, line);
    if (rest.length > 0 || restFds.length > 0) this.handler(this, rest, restFds);
  }

  /** Write it all (the guest reads promptly; a short wait loop is enough for test replies). */
  write(data: Buffer | string, fds: number[] = []): void {
    let bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let first = true;
    const deadline = Date.now() + 10_000;
    while (!this.closed && (bytes.length > 0 || first)) {
      const n = native.sendmsg(this.fd, bytes, first ? fds : []);
      if (n < 0) {
        if (Date.now() > deadline) throw new Error('the guest did not read a reply for 10 s');
        continue;
      }
      first = false;
      bytes = bytes.subarray(n);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    closeAll(this.pendingFds);
    native.close(this.fd);
    this.peer.forget(this);
  }
}

interface Sink {
  conn: PeerConnection;
  hash: Hash;
  bytes: number;
  done: boolean;
  onDone: (() => void)[];
}

function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) {
    try {
      native.close(fd);
    } catch {
      // already closed
    }
  }
}

/** Collects one line (and the fds before it) from a connection, then calls back. */
function onLine(callback: (line: string, fds: number[], conn: PeerConnection) => void): Handler {
  let text = '';
  const fds: number[] = [];
  return (conn, data, received) => {
    fds.push(...received);
    text += data.toString('latin1');
    const nl = text.indexOf('\n');
    if (nl >= 0) {
      const line = text.slice(0, nl);
      text = text.slice(nl + 1);
      callback(line, fds.splice(0), conn);
    }
  };
}

export class WlTestPeer {
  readonly path: string;
  /** Problems a role met (the test asserts there are none). */
  readonly problems: string[] = [];
  private readonly listenFd: number;
  private listener: FdWatcher | undefined;
  private readonly connections = new Set<PeerConnection>();
  private readonly sinks = new Map<number, Sink>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly pipeReaders = new Set<{ watcher: FdWatcher; fd: number }>();
  private nextSink = 1;

  constructor(dir: string) {
    this.path = path.join(dir, 'peer.sock');
    this.listenFd = native.unixListen(this.path, native.SOCK_STREAM, 64);
    this.listener = new native.FdWatcher(this.listenFd, () => {
      for (;;) {
        const fd = native.unixAccept(this.listenFd);
        if (fd === null) return;
        this.connections.add(new PeerConnection(this, fd));
      }
    });
    this.listener.start(native.POLL_READABLE);
  }

  /** Connections open now (each guest context on "peer" is one). */
  get openConnections(): number {
    return this.connections.size;
  }

  note(problem: string): void {
    this.problems.push(problem);
  }

  forget(conn: PeerConnection): void {
    this.connections.delete(conn);
  }

  private later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      try {
        fn();
      } catch (error) {
        this.note((error as Error).message);
      }
    }, ms);
    this.timers.add(timer);
  }

  /** The handler for the role a connection's first line names. */
  role(conn: PeerConnection, line: string): Handler {
    const [name, arg] = line.split(' ');
    const n = Number(arg);
    switch (name) {
      case 'echo':
        return (c, data, fds) => {
          try {
            c.write(data, fds);
          } finally {
            closeAll(fds);
          }
        };
      case 'quiet':
        return onLine((text, fds, c) => {
          closeAll(fds);
          const m = /^write-after (\d+) (.*)$/.exec(text);
          if (m) this.later(Number(m[1]), () => c.write(m[2]));
        });
      case 'hangup-after':
        this.later(n, () => conn.close());
        return (_c, _data, fds) => closeAll(fds);
      case 'sink':
        return this.sink(conn);
      case 'ctl':
        return this.ctl(n);
      case 'pipe-from-host': {
        const [readFd, writeFd] = native.pipe();
        native.setNonBlocking(writeFd, false);
        conn.write('pipe\n', [readFd]);
        native.close(readFd);
        native.write(writeFd, Buffer.from('through a host pipe\n'));
        native.close(writeFd);
        return (_c, _data, fds) => closeAll(fds);
      }
      case 'memfds-from-host': {
        const fds: number[] = [];
        for (let i = 0; i < n; i++) {
          const fd = native.memfdCreate(`wltest-${i}`, 4096);
          const map = native.mmapFd(fd, 4096);
          Buffer.from(map.buffer).write(`memfd ${i}\n`);
          map.close();
          fds.push(fd);
        }
        try {
          conn.write(`memfds ${n}\n`, fds);
        } finally {
          closeAll(fds);
        }
        return (_c, _data, received) => closeAll(received);
      }
      case 'pipe-to-host':
        return onLine((_text, fds, c) => {
          if (fds.length !== 1) {
            closeAll(fds);
            c.write(`got ${fds.length} fds\n`);
            return;
          }
          this.readToEnd(fds[0], (text) => c.write(`got ${text}\n`));
        });
      case 'fds-to-host':
        return onLine((_text, fds, c) => {
          let bad = fds.length === n ? '' : `${fds.length} fds`;
          fds.forEach((fd, i) => {
            if (bad) return;
            const map = native.mmapFd(fd, 4096);
            const text = Buffer.from(map.buffer).toString('latin1', 0, 16);
            map.close();
            if (!text.startsWith(`shm ${i}\n`)) bad = `fd ${i} holds ${JSON.stringify(text)}`;
          });
          closeAll(fds);
          c.write(bad ? `fds bad ${bad}\n` : `fds ${n} ok\n`);
        });
      case 'count': {
        let have = 0;
        return (c, data, fds) => {
          closeAll(fds);
          have += data.length;
          if (have === n) c.write(`counted ${n}\n`);
        };
      }
      case 'shm-check':
        return onLine((_text, fds, c) => {
          if (fds.length !== 1) {
            closeAll(fds);
            c.write(`shm bad ${fds.length} fds\n`);
            return;
          }
          const map = native.mmapFd(fds[0], n);
          const bytes = new Uint8Array(map.buffer);
          let bad = -1;
          for (let i = 0; i < n && bad < 0; i++) if (bytes[i] !== ((i * 7 + 1) & 255)) bad = i;
          for (let i = 0; i < n; i++) bytes[i] = (i * 13 + 5) & 255;
          map.close();
          closeAll(fds);
          c.write(bad < 0 ? 'shm ok\n' : `shm bad ${bad}\n`);
        });
      default:
        this.note(`unknown role '${line}'`);
        conn.close();
        return () => undefined;
    }
  }

  private sink(conn: PeerConnection): Handler {
    const id = this.nextSink++;
    const sink: Sink = { conn, hash: createHash('sha256'), bytes: 0, done: false, onDone: [] };
    this.sinks.set(id, sink);
    conn.onEof = () => {
      sink.done = true;
      for (const f of sink.onDone.splice(0)) f();
    };
    conn.write(`sink ${id}\n`);
    conn.setPaused(true);
    return (_c, data, fds) => {
      closeAll(fds);
      sink.hash.update(data);
      sink.bytes += data.length;
    };
  }

  private ctl(id: number): Handler {
    return onLine((text, fds, c) => {
      closeAll(fds);
      const sink = this.sinks.get(id);
      if (!sink) {
        c.write(`no sink ${id}\n`);
        return;
      }
      const [command, arg] = text.split(' ');
      if (command === 'drain') {
        const more = sink.conn.readAvailable((data) => {
          sink.hash.update(data);
          sink.bytes += data.length;
        });
        if (!more) {
          sink.conn.close();
          sink.conn.onEof?.();
        }
      } else if (command === 'drain-later') {
        this.later(Number(arg), () => sink.conn.setPaused(false));
      } else if (command === 'result') {
        const answer = () => c.write(`result ${sink.bytes} ${sink.hash.digest('hex')}\n`);
        if (sink.done) answer();
        else sink.onDone.push(answer);
      }
    });
  }

  /** Read a pipe fd the guest sent until its end, without blocking the event loop. */
  private readToEnd(fd: number, done: (text: string) => void): void {
    native.setNonBlocking(fd, true);
    let text = '';
    const reader = {
      fd,
      watcher: new native.FdWatcher(fd, () => {
        for (;;) {
          const chunk = native.read(fd, 65536);
          if (chunk === null) return;
          if (chunk.length === 0) {
            this.stopReader(reader);
            done(text);
            return;
          }
          text += chunk.toString('latin1');
        }
      }),
    };
    this.pipeReaders.add(reader);
    reader.watcher.start(native.POLL_READABLE | native.POLL_DISCONNECT);
  }

  private stopReader(reader: { watcher: FdWatcher; fd: number }): void {
    if (!this.pipeReaders.delete(reader)) return;
    reader.watcher.close();
    native.close(reader.fd);
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const conn of [...this.connections]) conn.close();
    for (const reader of [...this.pipeReaders]) this.stopReader(reader);
    this.listener?.close();
    this.listener = undefined;
    native.close(this.listenFd);
  }
}
