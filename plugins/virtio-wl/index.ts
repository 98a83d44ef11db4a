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
 *                     most 32 bytes. Default {} (add sockets at run time with `wl add`).
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
import type { Plugin, Vmm } from '../../plugin-api';
import { handleWlCommand } from './control';
import { WlDevice } from './device';
import { parseLimits, resolveLimits, type WlLimits } from './limits';
import { checkName, WlSocketRegistry } from './sockets';

export const PLUGIN_NAME = 'virtio-wl';
const DEVICE_NAME = 'virtio-wl';
const OPTION_NAMES = ['sockets', 'maxVfds', 'maxContexts', 'maxShmBytes', 'connectTimeoutMs'];

export interface WlOptions extends Partial<WlLimits> {
  sockets: Record<string, string>;
}

/** Check the user's options; throws an Error naming the option. */
export function parseOptions(input: unknown): WlOptions {
  if (input === undefined || input === null) return { sockets: {} };
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new Error(`options must be an object like {"sockets":{"":"/run/user/1000/wayland-0"}}`);
  }
  const given = input as Record<string, unknown>;
  const unknown = Object.keys(given).filter((key) => !OPTION_NAMES.includes(key));
  if (unknown.length > 0) throw new Error(`unknown option '${unknown[0]}'; the options are ${OPTION_NAMES.join(', ')}`);
  const sockets: Record<string, string> = {};
  if (given.sockets !== undefined) {
    if (typeof given.sockets !== 'object' || given.sockets === null || Array.isArray(given.sockets)) {
      throw new Error(`option 'sockets' must map names to socket paths, e.g. {"":"/run/user/1000/wayland-0"}`);
    }
    for (const [name, path] of Object.entries(given.sockets as Record<string, unknown>)) {
      if (typeof path !== 'string' || path === '') throw new Error(`option 'sockets': the path for '${name}' must be a non-empty string`);
      if (name.includes('%d')) throw new Error(`option 'sockets': '%d' names are for 'wl add'; got '${name}'`);
      try {
        checkName(name);
      } catch (error) {
        throw new Error(`option 'sockets': ${(error as Error).message}`);
      }
      sockets[name] = path;
    }
  }
  return { sockets, ...parseLimits(given) };
}

/** The device a VM got from this plugin (tests and tools). */
const devices = new WeakMap<Vmm, { device: WlDevice; sockets: WlSocketRegistry }>();
export function wlDeviceOf(vmm: Vmm): { device: WlDevice; sockets: WlSocketRegistry } | undefined {
  return devices.get(vmm);
}

const plugin: Plugin = {
  name: PLUGIN_NAME,
  apply(vmm: Vmm, input: unknown) {
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
};

export default plugin;
