/** Fixed-seed fuzzing of virtio-net rx and tx (npm run fuzz -- virtio-net runs it for longer). */
import { assertTarget } from './harness/target';
import { virtioNetTarget } from './targets/virtio-net';

test('virtio-net: hostile rings and host traffic never break the device invariants', async () => {
  await assertTarget(virtioNetTarget, 0x5eed0002);
});
