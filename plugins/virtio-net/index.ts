/**
 * virtio-net: a virtio network card backed by a host TAP device.
 *
 *   vmm run --plugin virtio-net='{"tap":"vmmtap0"}'
 *
 * Options:
 *   tap     interface name to open ('' or absent: the kernel picks a name, e.g. tap0)
 *   create  create the TAP if it does not exist (default true). TUNSETIFF creates a missing
 *           interface whenever the caller may (root / CAP_NET_ADMIN), so `false` is checked up
 *           front: a missing interface is then an error instead.
 *   fd      an already-open TAP fd (opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR), instead of
 *           `tap`; the device takes ownership and closes it when the VM stops
 *   mac     "52:54:00:12:34:56"; default: derived from a hash of the TAP name (or the fd and
 *           kernel), with the locally administered bit set, so it is stable across runs
 *   mtu     MTU offered to the guest (VIRTIO_NET_F_MTU), 68–65535; default: not offered
 *
 * The device is added in `createDevices` (so `virtio_mmio.device=…` reaches the kernel command
 * line) and released when the VM stops.
 */
import { createHash } from 'crypto';
import { native } from '../../native';
import type { Plugin, Vmm } from '../../plugin-api';
import { VirtioNetDevice } from './device';
import { openTap, type TapOptions } from './tap';

export const PLUGIN_NAME = 'virtio-net';

export interface VirtioNetOptions extends TapOptions {
  mac?: string;
  mtu?: number;
}

const OPTION_NAMES = ['tap', 'create', 'fd', 'mac', 'mtu'];
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
/** IFNAMSIZ - 1 */
const IFNAME_MAX = 15;

export function parseOptions(input: unknown): VirtioNetOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new Error('options must be an object like {"tap":"vmmtap0"}');
  const given = input as Record<string, unknown>;
  const unknown = Object.keys(given).filter((k) => !OPTION_NAMES.includes(k));
  if (unknown.length > 0) throw new Error(`unknown option '${unknown[0]}'; the options are ${OPTION_NAMES.join(', ')}`);
  const out: VirtioNetOptions = {};
  if (given.tap !== undefined) {
    if (typeof given.tap !== 'string' || given.tap.length > IFNAME_MAX || /[\s/:]/.test(given.tap)) {
      throw new Error(`option 'tap' must be an interface name of at most ${IFNAME_MAX} characters without spaces, '/' or ':'; got ${JSON.stringify(given.tap)}`);
    }
    out.tap = given.tap;
  }
  if (given.create !== undefined) {
    if (typeof given.create !== 'boolean') throw new Error(`option 'create' must be true or false; got ${JSON.stringify(given.create)}`);
    out.create = given.create;
  }
  if (given.fd !== undefined) {
    if (typeof given.fd !== 'number' || !Number.isInteger(given.fd) || given.fd < 0) throw new Error(`option 'fd' must be an open file descriptor number; got ${JSON.stringify(given.fd)}`);
    if (out.tap !== undefined) throw new Error(`option 'fd' and option 'tap' exclude each other`);
    out.fd = given.fd;
  }
  if (given.mac !== undefined) {
    if (typeof given.mac !== 'string' || !MAC_RE.test(given.mac)) throw new Error(`option 'mac' must look like "52:54:00:12:34:56"; got ${JSON.stringify(given.mac)}`);
    if (parseInt(given.mac.slice(0, 2), 16) & 1) throw new Error(`option 'mac' ${given.mac} is a multicast address; a card needs a unicast one`);
    out.mac = given.mac;
  }
  if (given.mtu !== undefined) {
    if (typeof given.mtu !== 'number' || !Number.isInteger(given.mtu) || given.mtu < 68 || given.mtu > 65535) throw new Error(`option 'mtu' must be a whole number from 68 to 65535; got ${JSON.stringify(given.mtu)}`);
    out.mtu = given.mtu;
  }
  return out;
}

export function parseMac(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(':').map((h) => parseInt(h, 16)));
}

/** A stable, locally administered unicast MAC derived from `seed`. */
export function defaultMac(seed: string): Uint8Array {
  const mac = Uint8Array.from(createHash('sha256').update(`vmm virtio-net ${seed}`).digest().subarray(0, 6));
  mac[0] = (mac[0] & 0xfe) | 0x02;
  return mac;
}

export function formatMac(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}

const plugin: Plugin<unknown> = {
  name: PLUGIN_NAME,
  apply(vmm: Vmm, input: unknown) {
    const options = parseOptions(input);
    const log = vmm.logger(PLUGIN_NAME);
    vmm.hooks.createDevices.tapPromise(PLUGIN_NAME, async () => {
      const tap = openTap(options);
      let device: VirtioNetDevice | undefined;
      try {
        const seed = options.fd !== undefined ? `fd ${options.fd} ${vmm.config.kernel ?? ''}` : tap.name;
        const mac = options.mac ? parseMac(options.mac) : defaultMac(seed);
        device = new VirtioNetDevice(tap, { mac, mtu: options.mtu }, log);
        const { base, irq } = vmm.addVirtioDevice(device, { name: `virtio-net ${tap.name || `fd ${tap.fd}`}` });
        log('%s: mac %s at 0x%s irq %d', tap.name, formatMac(mac), base.toString(16), irq);
      } catch (error) {
        if (device) device.shutdown();
        else native.close(tap.fd);
        throw error;
      }
    });
  },
};

export default plugin;
