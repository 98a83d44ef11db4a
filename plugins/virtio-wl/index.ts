/**
 * virtio-wl: a crosvm-compatible virtio-wayland device (virtio id 63) that lets a guest's
 * Wayland clients (sommelier, Spectrum's wlroots, …) reach host compositors and other Unix
 * stream services, with shared memory mapped into the guest and fds passed both ways.
 *
 *   vmm run --plugin virtio-wl='{"sockets":{"":"/run/user/1000/wayland-0","x":"/run/x.sock"}}'
 *
 * Options:
 *   sockets           name → path of a listening Unix stream socket. The unnamed entry ("") is
 *                     what NEW_CTX connects to; other names are for NEW_CTX_NAMED. Names are at
 *                     most 32 bytes; a relative path is relative to the config file. Default {}
 *                     (add sockets at run time with `wl add`).
 *   maxVfds           VFDs the guest may hold at once, host-created ones included (1024)
 *   maxContexts       contexts open at once (64)
 *   maxShmBytes       bytes of VFD_NEW shared memory held at once (the guest's RAM size)
 *   connectTimeoutMs  how long NEW_CTX waits on a listener with a full backlog (5000)
 *   (limits.ts says why each default, device.ts what the guest is answered)
 *
 * Files: constants.ts (protocol numbers), protocol.ts (wire structs), vfd.ts (one VFD),
 * sockets.ts (the Listening / NonListening socket map), device.ts (the virtqueues), send.ts (a
 * SEND and what it owns while it waits), chain-bytes.ts (bounded reads of a chain), limits.ts
 * (the resource options), control.ts (`wl add|list|remove` on the control channel). Shared memory goes through
 * vmm.mapGuestShm (core/memory/shm-window.ts): pfn = guest-physical address >> 12.
 */
import type { FromSchema, OptionsSchema, Plugin, Vmm } from '../../plugin-api';
import { checkOptions } from '../../core/plugins/options';
import { handleWlCommand } from './control';
import { WlDevice } from './device';
import { LIMIT_OPTIONS, pickLimits, resolveLimits, type WlLimits } from './limits';
import { checkName, WlSocketRegistry } from './sockets';

export const PLUGIN_NAME = 'virtio-wl';
const DEVICE_NAME = 'virtio-wl';
export interface WlOptions extends Partial<WlLimits> {
  sockets: Record<string, string>;
}

/** The options, checked by vmm before the plugin is applied (core/plugins/options.ts). */
export const OPTIONS_SCHEMA = {
  type: 'object',
  properties: {
    sockets: {
      type: 'object',
      description: 'an object mapping names to socket paths, e.g. {"":"/run/user/1000/wayland-0"}',
      additionalProperties: {
        type: 'string',
        minLength: 1,
        resolvePath: true,
        description: 'the path of a listening Unix stream socket (relative: to the config file)',
      },
      default: {},
    },
    ...LIMIT_OPTIONS,
  },
  additionalProperties: false,
} as const satisfies OptionsSchema;

/** Check the user's options (the schema above, then the socket names); throws an Error naming the option. */
export function parseOptions(input: unknown, baseDir?: string): WlOptions {
  const checked = checkOptions<FromSchema<typeof OPTIONS_SCHEMA>>(OPTIONS_SCHEMA, input ?? {}, baseDir);
  for (const name of Object.keys(checked.sockets)) {
    // What the schema cannot say: a byte length (the NEW_CTX_NAMED field), and no '%d'.
    if (name.includes('%d')) throw new Error(`option 'sockets': '%d' names are for 'wl add'; got '${name}'`);
    try {
      checkName(name);
    } catch (error) {
      throw new Error(`option 'sockets': ${(error as Error).message}`);
    }
  }
  return { sockets: { ...checked.sockets }, ...pickLimits(checked) };
}

/** The device a VM got from this plugin (tests and tools). */
const devices = new WeakMap<Vmm, { device: WlDevice; sockets: WlSocketRegistry }>();
export function wlDeviceOf(vmm: Vmm): { device: WlDevice; sockets: WlSocketRegistry } | undefined {
  return devices.get(vmm);
}

// `satisfies`, not a type annotation: apply takes anything (it checks), so tests can hand it bad options.
const plugin = {
  name: PLUGIN_NAME,
  schema: OPTIONS_SCHEMA,
  apply(vmm: Vmm, input: unknown) {
    // Checked (and socket paths resolved) already when vmm applies the plugin; again for callers
    // that apply it directly.
    const options = parseOptions(input);
    const log = vmm.logger(PLUGIN_NAME);
    const sockets = new WlSocketRegistry();
    for (const [name, path] of Object.entries(options.sockets)) sockets.add(name, { kind: 'listening', path });
    vmm.hooks.createDevices.tapPromise(PLUGIN_NAME, async () => {
      const limits = resolveLimits(options, vmm.memory.size);
      log('limits %o', limits);
      const device = new WlDevice({ mapShm: (fd, size) => vmm.mapGuestShm(fd, size), sockets, limits, log });
      vmm.addVirtioDevice(device, { name: DEVICE_NAME });
      devices.set(vmm, { device, sockets });
    });
    vmm.hooks.controlCommand.tapPromise(PLUGIN_NAME, async (request, context) => handleWlCommand(vmm, DEVICE_NAME, sockets, request, context));
    // The transport shuts the device down (closing every VFD); the names' fds go after it.
    vmm.hooks.afterShutdown.tap(PLUGIN_NAME, () => sockets.clear());
  },
} satisfies Plugin<typeof OPTIONS_SCHEMA>;

export default plugin;
