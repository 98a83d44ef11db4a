/**
 * The host side of virtio-net: a TAP device opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR and a
 * 12-byte virtio_net_hdr_v1 (TUNSETVNETHDRSZ), non-blocking. The offloads the device may offer
 * are the ones TUNSETOFFLOAD accepts here.
 */
import * as fs from 'fs';
import { native } from '../../native';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, VIRTIO_NET_HDR_SIZE } from './constants';

export interface TapOptions {
  /** Interface name ('' lets the kernel choose). */
  tap?: string;
  /** Create the interface if missing (TUNSETIFF creates it when we may). */
  create?: boolean;
  /** An already-open TAP fd (opened with IFF_VNET_HDR); the device takes ownership. */
  fd?: number;
}

export interface Tap {
  fd: number;
  /** Interface name ('' when given as an fd). */
  name: string;
  /** TUNSETOFFLOAD flags the kernel accepted (the most we can offer). */
  offloads: number;
}

export function openTap(options: TapOptions): Tap {
  let fd: number;
  let name = '';
  if (options.fd !== undefined) {
    fd = options.fd;
    native.setNonBlocking(fd, true);
  } else {
    const wanted = options.tap ?? '';
    if (options.create === false && wanted !== '' && !fs.existsSync(`/sys/class/net/${wanted}`)) {
      throw new Error(`option 'tap': interface '${wanted}' does not exist and 'create' is false`);
    }
    const opened = native.tapOpen(wanted);
    fd = opened.fd;
    name = opened.name;
  }
  try {
    native.tapSetVnetHdrSize(fd, VIRTIO_NET_HDR_SIZE);
    const offloads = probeOffloads(fd);
    setOffloads(fd, 0);
    return { fd, name, offloads };
  } catch (error) {
    native.close(fd);
    throw error;
  }
}

/** The largest set of offloads this TAP accepts, from most to least. */
function probeOffloads(fd: number): number {
  for (const flags of [TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM]) {
    try {
      native.tapSetOffload(fd, flags);
      return flags;
    } catch {
      // EINVAL: this kernel or TAP refuses that combination; try a smaller one.
    }
  }
  return 0;
}

export function setOffloads(fd: number, flags: number): void {
  native.tapSetOffload(fd, flags);
}
