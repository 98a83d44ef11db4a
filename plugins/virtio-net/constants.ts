/** virtio-net constants: virtio 1.2 §5.1 and linux/virtio_net.h, linux/if_tun.h. */

// Feature bits (virtio 1.2 §5.1.3)
/** §5.1.3: Device handles packets with partial checksum (guest → device offload). */
export const VIRTIO_NET_F_CSUM = 0;
/** §5.1.3: Driver handles packets with partial checksum. */
export const VIRTIO_NET_F_GUEST_CSUM = 1;
/** §5.1.3: Device maximum MTU reporting is supported (config `mtu`). */
export const VIRTIO_NET_F_MTU = 3;
/** §5.1.3: Device has given MAC address (config `mac`). */
export const VIRTIO_NET_F_MAC = 5;
/** §5.1.3: Driver can receive TSOv4. */
export const VIRTIO_NET_F_GUEST_TSO4 = 7;
/** §5.1.3: Driver can receive TSOv6. */
export const VIRTIO_NET_F_GUEST_TSO6 = 8;
/** §5.1.3: Driver can receive TSO with ECN. */
export const VIRTIO_NET_F_GUEST_ECN = 9;
/** §5.1.3: Device can receive TSOv4. */
export const VIRTIO_NET_F_HOST_TSO4 = 11;
/** §5.1.3: Device can receive TSOv6. */
export const VIRTIO_NET_F_HOST_TSO6 = 12;
/** §5.1.3: Device can receive TSO with ECN. */
export const VIRTIO_NET_F_HOST_ECN = 13;
/** §5.1.3: Driver can merge receive buffers. */
export const VIRTIO_NET_F_MRG_RXBUF = 15;
/** §5.1.3: Configuration status field is available. */
export const VIRTIO_NET_F_STATUS = 16;

/** §5.1.4: config `status` bit: the link is up. */
export const VIRTIO_NET_S_LINK_UP = 1;

// Config layout (§5.1.4, struct virtio_net_config)
export const VIRTIO_NET_CONFIG_MAC = 0;
export const VIRTIO_NET_CONFIG_STATUS = 6;
export const VIRTIO_NET_CONFIG_MAX_VQ_PAIRS = 8;
export const VIRTIO_NET_CONFIG_MTU = 10;
export const VIRTIO_NET_CONFIG_SIZE = 12;

/** §5.1.6: struct virtio_net_hdr_v1 (with num_buffers) is 12 bytes once VERSION_1 is negotiated. */
export const VIRTIO_NET_HDR_SIZE = 12;
/** §5.1.6: offset of num_buffers in the header. */
export const VIRTIO_NET_HDR_NUM_BUFFERS = 10;
/** §5.1.6 header `flags` (byte 0): the checksum is partial (csum_start/csum_offset say where). */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
/** §5.1.6 header `flags`: the checksum was already validated. */
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** §5.1.6 header `gso_type` (byte 1). */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
/** §5.1.6: flag in gso_type: the TCP segments carry ECN (needs GUEST_ECN). */
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** §5.1.2: receiveq1 is queue 0, transmitq1 queue 1. */
export const RX_QUEUE = 0;
export const TX_QUEUE = 1;
/** Our queue size (Firecracker and crosvm use 256). */
export const VMM_NET_QUEUE_SIZE = 256;

// linux/if_tun.h TUNSETOFFLOAD flags: what the reader of the TAP (us) can take from the kernel
/** if_tun.h: I can handle unchecksummed packets */
export const TUN_F_CSUM = 0x01;
/** if_tun.h: I can handle TSO for IPv4 packets */
export const TUN_F_TSO4 = 0x02;
/** if_tun.h: I can handle TSO for IPv6 packets */
export const TUN_F_TSO6 = 0x04;
/** if_tun.h: I can handle TSO with ECN bits. */
export const TUN_F_TSO_ECN = 0x08;

/** The largest IP packet: IPv4's total length and IPv6's payload length are 16 bits (GSO packets included). */
const IP_MAX_PACKET = 65535;
/** Ethernet header (destination, source, EtherType). */
const ETH_HLEN = 14;
/** One 802.1Q tag: a VLAN device in the guest (or on the host bridge) tags frames in software. */
const VLAN_HLEN = 4;
/**
 * The largest frame in either direction, our header included: what a TAP can hand out (a 64 KiB
 * GSO packet with Ethernet and VLAN headers), and the most a tx chain may hold. A tx chain can
 * claim up to 4 GiB of readable bytes (descriptors may overlap) whatever the guest's RAM, so its
 * length is checked against this before anything is read or allocated.
 */
export const VMM_NET_MAX_FRAME = VIRTIO_NET_HDR_SIZE + IP_MAX_PACKET + ETH_HLEN + VLAN_HLEN;
/** Frames (rx) or chains (tx) handled per event-loop turn, so one busy queue cannot starve the loop. */
export const VMM_NET_BUDGET = 256;
/**
 * TUNSETOFFLOAD takes the host-wide rtnl lock, and a guest can reset and re-activate the device in
 * a loop: the TAP's offloads change at most once per this interval (a change that comes sooner
 * is applied when it ends, with the latest wanted value), so at most 10 ioctls a second.
 * A benign driver's changes (boot, module reload, reboot) are further apart and never wait.
 */
export const VMM_NET_OFFLOAD_INTERVAL_MS = 100;
