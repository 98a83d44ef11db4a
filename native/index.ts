/**
 * Typed facade over the C++ addon. Only `core/` imports this; plugins see the typed API in
 * `plugin-api.d.ts`, never raw fds or ioctls.
 */
import * as path from 'path';
import type { Native } from './types';

export * from './types';

// Compiled to dist/native/index.js; the addon stays in native/build at the package root.
const ADDON = path.join(__dirname, '..', '..', 'native', 'build', 'Release', 'vmm_native.node');

// eslint-disable-next-line @typescript-eslint/no-var-requires
export const native: Native = require(ADDON);
