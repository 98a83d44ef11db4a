/** Fixed-seed fuzzing of the control protocol (npm run fuzz -- control runs it for longer). */
import { assertTarget } from './harness/target';
import { controlTarget } from './targets/control';

test('control protocol: any datagram gets exactly one encodable, readable response', async () => {
  await assertTarget(controlTarget, 0x5eed0004);
});
