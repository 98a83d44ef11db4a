/** cli/serial-console.ts: the Ctrl-A escape filter (raw-mode handling needs a real terminal). */
import { PassThrough } from 'stream';
import { EscapeFilter, openSerialConsole } from '../../cli/serial-console';

async function filter(chunks: number[][]): Promise<{ out: number[]; quits: number }> {
  let quits = 0;
  const f = new EscapeFilter(() => quits++);
  const out: number[] = [];
  f.on('data', (b: Buffer) => out.push(...b));
  for (const chunk of chunks) f.write(Buffer.from(chunk));
  f.end();
  await new Promise((resolve) => f.on('end', resolve));
  return { out, quits };
}

const A = 0x01;
const x = 0x78;

describe('EscapeFilter', () => {
  test.each<[string, number[][], number[], number]>([
    ['plain bytes pass through', [[0x61, 0x03, 0x62]], [0x61, 0x03, 0x62], 0],
    ['Ctrl-A x quits and is not sent', [[0x61, A, x, 0x62]], [0x61, 0x62], 1],
    ['Ctrl-A x split across chunks', [[0x61, A], [x]], [0x61], 1],
    ['Ctrl-A Ctrl-A sends one Ctrl-A', [[A, A, 0x62]], [A, 0x62], 0],
    ['Ctrl-A then another key sends both', [[A, 0x63]], [A, 0x63], 0],
    ['x alone is just x', [[x]], [x], 0],
  ])('%s', async (_name, chunks, expected, quits) => {
    await expect(filter(chunks)).resolves.toEqual({ out: expected, quits });
  });
});

describe('openSerialConsole', () => {
  test('a non-terminal stdin is passed through and released on close', () => {
    const stdin = new PassThrough() as unknown as NodeJS.ReadStream;
    const serial = openSerialConsole(stdin, () => undefined);
    expect(serial.input).toBe(stdin);
    serial.close();
    expect((stdin as unknown as PassThrough).isPaused()).toBe(true);
  });

  test('a terminal goes to raw mode, is filtered, and is always restored', async () => {
    const exitListeners = process.listenerCount('exit');
    const modes: boolean[] = [];
    const stdin = Object.assign(new PassThrough(), {
      isTTY: true,
      setRawMode: (mode: boolean) => {
        modes.push(mode);
      },
    }) as unknown as NodeJS.ReadStream;
    let quit = 0;
    const serial = openSerialConsole(stdin, () => quit++);
    expect(serial.input).toBeInstanceOf(EscapeFilter);
    expect(modes).toEqual([true]);
    expect(process.listenerCount('exit')).toBe(exitListeners + 1);
    (stdin as unknown as PassThrough).write(Buffer.from([A, x]));
    await new Promise((resolve) => setImmediate(resolve));
    expect(quit).toBe(1);
    serial.close();
    serial.close();
    expect(modes).toEqual([true, false]);
    expect(process.listenerCount('exit')).toBe(exitListeners);
  });
});
