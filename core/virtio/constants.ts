/**
 * Spec-named virtio constants. Register offsets are those of linux/virtio_mmio.h; everything
 * else quotes the virtio 1.2 specification (OASIS, 2022) section it comes from.
 */

// --- virtio-mmio registers (linux/virtio_mmio.h; virtio 1.2 §4.2.2, table "MMIO Device Register Layout")
/** "virt" in little-endian (virtio_mmio.h VIRTIO_MMIO_MAGIC_VALUE register, value per §4.2.2) */
export const VIRTIO_MMIO_MAGIC = 0x74726976;
/** Non-legacy virtio-mmio device version (§4.2.2: "0x2") */
export const VIRTIO_MMIO_VERSION_2 = 2;
/** virtio_mmio.h: Magic value ("virt" string) - Read Only */
export const VIRTIO_MMIO_MAGIC_VALUE = 0x000;
/** virtio_mmio.h: Virtio device version - Read Only */
export const VIRTIO_MMIO_VERSION = 0x004;
/** virtio_mmio.h: Virtio device ID - Read Only */
export const VIRTIO_MMIO_DEVICE_ID = 0x008;
/** virtio_mmio.h: Virtio vendor ID - Read Only */
export const VIRTIO_MMIO_VENDOR_ID = 0x00c;
/** virtio_mmio.h: Bitmask of the features supported by the device (host), 32 bits per set - Read Only */
export const VIRTIO_MMIO_DEVICE_FEATURES = 0x010;
/** virtio_mmio.h: Device (host) features set selector - Write Only */
export const VIRTIO_MMIO_DEVICE_FEATURES_SEL = 0x014;
/** virtio_mmio.h: Bitmask of features activated by the driver (guest), 32 bits per set - Write Only */
export const VIRTIO_MMIO_DRIVER_FEATURES = 0x020;
/** virtio_mmio.h: Activated features set selector - Write Only */
export const VIRTIO_MMIO_DRIVER_FEATURES_SEL = 0x024;
/** virtio_mmio.h: Queue selector - Write Only */
export const VIRTIO_MMIO_QUEUE_SEL = 0x030;
/** virtio_mmio.h: Maximum size of the currently selected queue - Read Only */
export const VIRTIO_MMIO_QUEUE_NUM_MAX = 0x034;
/** virtio_mmio.h: Queue size for the currently selected queue - Write Only */
export const VIRTIO_MMIO_QUEUE_NUM = 0x038;
/** virtio_mmio.h: Ready bit for the currently selected queue - Read Write */
export const VIRTIO_MMIO_QUEUE_READY = 0x044;
/** virtio_mmio.h: Queue notifier - Write Only */
export const VIRTIO_MMIO_QUEUE_NOTIFY = 0x050;
/** virtio_mmio.h: Interrupt status - Read Only */
export const VIRTIO_MMIO_INTERRUPT_STATUS = 0x060;
/** virtio_mmio.h: Interrupt acknowledge - Write Only */
export const VIRTIO_MMIO_INTERRUPT_ACK = 0x064;
/** virtio_mmio.h: Device status register - Read Write */
export const VIRTIO_MMIO_STATUS = 0x070;
/** virtio_mmio.h: Selected queue's Descriptor Table address, 64 bits in two halves */
export const VIRTIO_MMIO_QUEUE_DESC_LOW = 0x080;
export const VIRTIO_MMIO_QUEUE_DESC_HIGH = 0x084;
/** virtio_mmio.h: Selected queue's Available Ring address, 64 bits in two halves */
export const VIRTIO_MMIO_QUEUE_AVAIL_LOW = 0x090;
export const VIRTIO_MMIO_QUEUE_AVAIL_HIGH = 0x094;
/** virtio_mmio.h: Selected queue's Used Ring address, 64 bits in two halves */
export const VIRTIO_MMIO_QUEUE_USED_LOW = 0x0a0;
export const VIRTIO_MMIO_QUEUE_USED_HIGH = 0x0a4;
/** virtio_mmio.h: Shared memory region id */
export const VIRTIO_MMIO_SHM_SEL = 0x0ac;
/** virtio_mmio.h: Shared memory region length, 64 bits in two halves */
export const VIRTIO_MMIO_SHM_LEN_LOW = 0x0b0;
export const VIRTIO_MMIO_SHM_LEN_HIGH = 0x0b4;
/** virtio_mmio.h: Shared memory region base address, 64 bits in two halves */
export const VIRTIO_MMIO_SHM_BASE_LOW = 0x0b8;
export const VIRTIO_MMIO_SHM_BASE_HIGH = 0x0bc;
/** virtio_mmio.h: Configuration atomicity value */
export const VIRTIO_MMIO_CONFIG_GENERATION = 0x0fc;
/** virtio_mmio.h: The config space is defined by each driver as the per-driver configuration space - Read Write */
export const VIRTIO_MMIO_CONFIG = 0x100;
/** virtio_mmio.h: Interrupt flags (re: interrupt status & acknowledge registers): used buffer notification */
export const VIRTIO_MMIO_INT_VRING = 1 << 0;
/** virtio_mmio.h: configuration change notification */
export const VIRTIO_MMIO_INT_CONFIG = 1 << 1;
/** Size of one virtio-mmio device window (the kernel command line says `4K@…`). */
export const VMM_VIRTIO_MMIO_SIZE = 0x1000;
/**
 * vmm's default VendorID register value: the bytes "VMM\0" read as a little-endian u32 (QEMU's
 * is "QEMU" the same way). A device may set its own (VirtioDevice.vendorId).
 */
export const VMM_VIRTIO_VENDOR_ID = 0x004d4d56;

// --- device status (virtio 1.2 §2.1; linux/virtio_config.h)
/** virtio_config.h: We have seen device and processed generic fields (VIRTIO_CONFIG_FLAG_ACK) */
export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
/** virtio_config.h: We have found a driver for the device. */
export const VIRTIO_CONFIG_S_DRIVER = 2;
/** virtio_config.h: Driver has used its parts of the config, and is happy */
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
/** virtio_config.h: Driver has finished configuring features */
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
/** virtio_config.h: Device entered invalid state, driver must reset it */
export const VIRTIO_CONFIG_S_NEEDS_RESET = 0x40;
/** virtio_config.h: We've given up on this device. */
export const VIRTIO_CONFIG_S_FAILED = 0x80;

// --- reserved feature bits (virtio 1.2 §6)
/** §6: the driver can use descriptors with VIRTQ_DESC_F_INDIRECT (§2.7.5.3) */
export const VIRTIO_F_INDIRECT_DESC = 28;
/** §6: enables the used_event and avail_event fields (§2.7.7, §2.7.10) */
export const VIRTIO_F_RING_EVENT_IDX = 29;
/** §6: compliance with this specification (non-legacy) */
export const VIRTIO_F_VERSION_1 = 32;

// --- split virtqueue (virtio 1.2 §2.7; linux/virtio_ring.h)
/** virtio_ring.h: This marks a buffer as continuing via the next field. */
export const VIRTQ_DESC_F_NEXT = 1;
/** virtio_ring.h: This marks a buffer as write-only (otherwise read-only). */
export const VIRTQ_DESC_F_WRITE = 2;
/** virtio_ring.h: This means the buffer contains a list of buffer descriptors. */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** virtio_ring.h: the driver asks the device not to interrupt when it consumes a buffer (§2.7.7) */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** virtio_ring.h: the device asks the driver not to kick when it adds a buffer (§2.7.10) */
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** §2.7.5: struct virtq_desc is 16 bytes (addr u64, len u32, flags u16, next u16) */
export const VIRTQ_DESC_SIZE = 16;
/** §2.7.8: struct virtq_used_elem is 8 bytes (id u32, len u32) */
export const VIRTQ_USED_ELEM_SIZE = 8;
/** §2.7: "Queue Size ... maximum Queue Size value is 32768" */
export const VIRTQ_MAX_SIZE = 32768;
/** §2.7 table "Virtqueue Part Alignment": descriptor table 16, available ring 2, used ring 4 */
export const VIRTQ_DESC_ALIGN = 16;
export const VIRTQ_AVAIL_ALIGN = 2;
export const VIRTQ_USED_ALIGN = 4;
/**
 * Most entries in one indirect table. The spec allows 2^16 (a 1 MiB table walked per chain);
 * QEMU stops a chain at VIRTQUEUE_MAX_SIZE (1024) buffers, and Linux never builds a longer
 * table than it has scatter-gather entries (virtio-net: MAX_SKB_FRAGS + 2).
 */
export const VMM_VIRTQ_INDIRECT_MAX = 1024;
/**
 * Descriptors a queue walks between yields to the event loop: pop() then returns null once and
 * the device is notified again on the next turn. About a millisecond of walking, so a guest that
 * fills every chain with the largest tables cannot hold the loop (control, other devices,
 * signals); one extra turn per 4096 descriptors costs a benign guest nothing measurable.
 */
export const VMM_VIRTQ_DESCRIPTORS_PER_TURN = 4096;

// --- device ids (virtio 1.2 §5)
/** §5: network card */
export const VIRTIO_ID_NET = 1;
/** §5: block device */
export const VIRTIO_ID_BLOCK = 2;
/** §5: console */
export const VIRTIO_ID_CONSOLE = 3;
/** §5: entropy source */
export const VIRTIO_ID_RNG = 4;
/** §5: memory ballooning (traditional) */
export const VIRTIO_ID_BALLOON = 5;
/** §5: virtio vsock transport */
export const VIRTIO_ID_VSOCK = 19;
/** crosvm devices/src/virtio/mod.rs: TYPE_WL (not in the OASIS list) */
export const VIRTIO_ID_WL = 63;
