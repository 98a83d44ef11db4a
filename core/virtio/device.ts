/**
 * The interface every virtio device plugin implements, and the transport handle it gets. The
 * types are part of the public plugin contract (plugin-api.d.ts); this module re-exports them
 * for core code and adds the feature bits every device gets from the transport.
 */
import type { VirtioActivation, VirtioDevice, VirtioQueue, VirtioTransport } from '../../plugin-api';
import { VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1 } from './constants';

export type { VirtioActivation, VirtioDevice, VirtioQueue, VirtioTransport };

/** What the transport and queue implementation support, offered in addition to the device's features. */
export const TRANSPORT_FEATURES = (1n << BigInt(VIRTIO_F_VERSION_1))
  | (1n << BigInt(VIRTIO_F_RING_EVENT_IDX))
  | (1n << BigInt(VIRTIO_F_INDIRECT_DESC));

export function hasFeature(features: bigint, bit: number): boolean {
  return (features & (1n << BigInt(bit))) !== 0n;
}
