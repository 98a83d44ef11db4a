/**
 * The package's runtime entry (`require('vmm')`, package.json "main"; its types are
 * plugin-api.d.ts). Plugins need little at run time: everything else reaches them as the `vmm`
 * argument of `apply`.
 */
import type * as Api from '../plugin-api';

/** Returns the plugin unchanged; in TypeScript it types `apply`'s options from the schema. */
export const definePlugin: typeof Api.definePlugin = ((plugin: unknown) => plugin) as typeof Api.definePlugin;
