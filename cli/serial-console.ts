/**
 * The terminal side of the guest's serial port.
 *
 * On a terminal, stdin goes to raw mode for the run so every key (Ctrl-C included) reaches the
 * guest; Ctrl-A is then the escape key, as in QEMU: Ctrl-A x quits, Ctrl-A Ctrl-A sends one
 * Ctrl-A, Ctrl-A followed by anything else sends both. The terminal mode is always restored:
 * by `close()`, and by a process 'exit' listener in case something exits without it.
 * When stdin is not a terminal (a pipe, a file) it is passed through untouched.
 */
import { Transform, type TransformCallback } from 'stream';

const CTRL_A = 0x01;
const QUIT_KEY = 'x'.charCodeAt(0);

/** Removes Ctrl-A escapes from the input and calls `onQuit` on Ctrl-A x. */
export class EscapeFilter extends Transform {
  private pendingEscape = false;

  constructor(private readonly onQuit: () => void) {
    super();
  }

  override _transform(chunk: Buffer | string, _encoding: BufferEncoding, done: TransformCallback): void {
    const input = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    const out: number[] = [];
    for (const byte of input) {
      if (this.pendingEscape) {
        // The escape may end one chunk and its key start the next; hence the state.
        this.pendingEscape = false;
        if (byte === QUIT_KEY) {
          this.onQuit();
          continue;
        }
        out.push(CTRL_A);
        if (byte !== CTRL_A) out.push(byte);
      } else if (byte === CTRL_A) {
        this.pendingEscape = true;
      } else {
        out.push(byte);
      }
    }
    if (out.length > 0) this.push(Buffer.from(out));
    done();
  }
}

export interface SerialConsole {
  /** What the guest reads: stdin, or stdin through the escape filter on a terminal. */
  readonly input: NodeJS.ReadableStream;
  /** Restore the terminal and let go of stdin so the process can exit. Idempotent. */
  close(): void;
}

export function openSerialConsole(stdin: NodeJS.ReadStream, onQuit: () => void): SerialConsole {
  if (!stdin.isTTY) {
    return { input: stdin, close: () => releaseStdin(stdin) };
  }

  const filter = new EscapeFilter(onQuit);
  const restore = () => {
    try {
      stdin.setRawMode(false);
    } catch {
      // The terminal may already be gone (hang-up); there is nothing left to restore.
    }
  };
  stdin.setRawMode(true);
  process.on('exit', restore);
  stdin.pipe(filter);

  let closed = false;
  return {
    input: filter,
    close: () => {
      if (closed) return;
      closed = true;
      stdin.unpipe(filter);
      filter.end();
      restore();
      process.removeListener('exit', restore);
      releaseStdin(stdin);
    },
  };
}

/** Stop reading stdin and drop its hold on the event loop, or the process would never exit. */
function releaseStdin(stdin: NodeJS.ReadStream): void {
  stdin.pause();
  (stdin as { unref?: () => void }).unref?.();
}
