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
import type { FromSchema, OptionsSchema, Plugin, Vmm } from '../../plugin-api';
import { checkOptions } from '../../core/plugins/options';
import { VirtioNetDevice } from './device';
import { openTap, type TapOptions } from './tap';

export const PLUGIN_NAME = 'virtio-net';

export interface VirtioNetOptions extends TapOptions {
  mac?: string;
  mtu?: number;
}

/** IFNAMSIZ - 1 */
const IFNAME_MAX = 15;

/** The options, checked by vmm before the plugin is applied (core/plugins/options.ts). */
export const OPTIONS_SCHEMA = {
  type: 'object',
  properties: {
    tap: {
      type: 'string',
      maxLength: IFNAME_MAX,
      pattern: '^[^\\s/:]*$',
      description: `an interface name of at most ${IFNAME_MAX} characters without spaces, '/' or ':' ('' or absent: the kernel picks one)`,
    },
    create: { type: 'boolean', description: 'true or false: create the TAP if it does not exist (default true)' },
    fd: { type: 'integer', minimum: 0, description: 'an open TAP file descriptor number, used instead of opening one' },
    mac: {
      type: 'string',
      // Unicast: the low bit of the first byte (the group bit) is clear.
      pattern: '^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5}$',
      description: 'a unicast MAC address like "52:54:00:12:34:56" (not a multicast one: the first byte even)',
    },
    mtu: { type: 'integer', minimum: 68, maximum: 65535, description: 'a whole number from 68 to 65535: the MTU offered to the guest' },
  },
  additionalProperties: false,
  // `fd` replaces opening `tap`.
  not: { type: 'object', required: ['fd', 'tap'] },
} as const satisfies OptionsSchema;

/** Check the user's options (the schema above, through the same checker vmm uses); throws an Error naming the option. */
export function parseOptions(input: unknown): VirtioNetOptions {
  return checkOptions<FromSchema<typeof OPTIONS_SCHEMA>>(OPTIONS_SCHEMA, input);
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

// `satisfies`, not a type annotation: apply takes anything (it checks), so tests can hand it bad options.
const plugin = {
  name: PLUGIN_NAME,
  schema: OPTIONS_SCHEMA,
  apply(vmm: Vmm, input: unknown) {
    // Checked already when vmm applies the plugin; again for callers that apply it directly.
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
} satisfies Plugin<typeof OPTIONS_SCHEMA>;

export default plugin;
