/** The control-channel soak (bench/soak/control.ts) with a small count, against a real `vmm run`. */
import { soak } from '../../../bench/soak/control';

test('2000 control connections to vmm run: none outlives itself; RSS, heap and fds flat; SIGTERM exits 143', async () => {
  const lines: string[] = [];
  await soak(2000, (line) => lines.push(line));
  expect(lines.find((l) => l.startsWith('end:'))).toMatch(/Connection 0, UnixMessageSocket 0, FdWatcher \d+$/);
  expect(lines.find((l) => l.startsWith('from warm to the end:'))).toMatch(/fds \+0$/);
  expect(lines.at(-1)).toBe('vmm exited 143 on SIGTERM and removed its socket');
});
