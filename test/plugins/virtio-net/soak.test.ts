/** The virtio-net soak (bench/soak/net.ts) with a small count: frames both ways, resets, starvation, fds and memory flat. */
import { soak } from '../../../bench/soak/net';

test('20 000 frames each way through the device and a real TAP: every reply right, fds back, memory flat', async () => {
  const lines: string[] = [];
  await soak(20000, (line) => lines.push(line));
  expect(lines.some((l) => l.startsWith('from warm to the end'))).toBe(true);
  expect(lines.at(-1)).toMatch(/^open fds: .*\(TAP fds (\d+), \1\)$/);
});
