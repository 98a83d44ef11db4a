/** Every fuzz target, in the order `npm run fuzz -- all` runs them. */
import type { FuzzTarget } from '../harness/target';
import { controlTarget } from './control';
import { queueTarget } from './queue';
import { virtioNetTarget } from './virtio-net';
import { virtioWlTarget } from './virtio-wl';

export const FUZZ_TARGETS: readonly FuzzTarget[] = [queueTarget, virtioNetTarget, virtioWlTarget, controlTarget];
