/** Fixed-seed fuzzing of the split virtqueue (npm run fuzz -- queue runs it for longer). */
import { assertTarget } from './harness/target';
import { queueTarget } from './targets/queue';

test('split virtqueue: hostile rings never break the queue invariants', async () => {
  await assertTarget(queueTarget, 0x5eed0001);
});
