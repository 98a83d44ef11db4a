/**
 * Typed facade over the C++ addon. `core/` and the first-party plugins that own host fds (the
 * TAP of virtio-net, the sockets and pipes of virtio-wl) import this; third-party plugins see
 * only the typed API in `plugin-api.d.ts`.
 */
import * as path from 'path';
import type { Native } from './types';

export * from './types';

// Compiled to dist/native/index.js; the addon stays in native/build at the package root.
const ADDON = path.join(__dirname, '..', '..', 'native', 'build', 'Release', 'vmm_native.node');

// eslint-disable-next-line @typescript-eslint/no-var-requires
export const native: Native = require(ADDON);
