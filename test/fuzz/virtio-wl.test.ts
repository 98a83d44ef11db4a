/** Fixed-seed fuzzing of every virtio-wl command (npm run fuzz -- virtio-wl runs it for longer). */
import { assertTarget } from './harness/target';
import { virtioWlTarget } from './targets/virtio-wl';

test('virtio-wl: hostile commands and host peers never break the device invariants', async () => {
  await assertTarget(virtioWlTarget, 0x5eed0003);
});
