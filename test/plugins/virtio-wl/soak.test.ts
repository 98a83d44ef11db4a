/** The virtio-wl soak (bench/soak/wl.ts) with a small count: echoes right, fds back, memory flat. */
import { soak } from '../../../bench/soak/wl';

test('4 000 messages guest → host → guest with fds both ways, waiting SENDs, EVENT_IDX on and off by turns: every echo right, fds back, memory flat', async () => {
  const lines: string[] = [];
  await soak(4000, (line) => lines.push(line));
  expect(lines.some((l) => l.startsWith('from warm to the end'))).toBe(true);
  expect(lines.at(-1)).toMatch(/^open fds: (\d+) before, \d+ after$/);
}, 120_000);
