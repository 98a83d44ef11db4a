/**
 * Protocol constants of virtio-wl, in one block (see /work/shared/spec/virtio-wl.md; names as in
 * the ChromeOS kernel's include/uapi/linux/virtio_wl.h and crosvm's devices/src/virtio/wl.rs).
 */

// --- device (§1)
/** crosvm VIRTIO_ID_WL (the historical id was 30). */
export const VIRTIO_ID_WL = 63;
/** VIRTWL_VQ_IN: device → driver events. */
export const VIRTWL_VQ_IN = 0;
/** VIRTWL_VQ_OUT: driver → device commands. */
export const VIRTWL_VQ_OUT = 1;
export const VIRTWL_QUEUE_COUNT = 2;
/** Queue size offered (crosvm since 2021-06). */
export const VIRTWL_QUEUE_SIZE = 256;

// --- feature bits (§1.2)
export const VIRTIO_WL_F_TRANS_FLAGS = 1;
export const VIRTIO_WL_F_SEND_FENCES = 2;
export const VIRTIO_WL_F_USE_SHMEM = 3;

// --- message types (§2.2)
export const VIRTIO_WL_CMD_VFD_NEW = 0x100;
export const VIRTIO_WL_CMD_VFD_CLOSE = 0x101;
export const VIRTIO_WL_CMD_VFD_SEND = 0x102;
export const VIRTIO_WL_CMD_VFD_RECV = 0x103;
export const VIRTIO_WL_CMD_VFD_NEW_CTX = 0x104;
export const VIRTIO_WL_CMD_VFD_NEW_PIPE = 0x105;
export const VIRTIO_WL_CMD_VFD_HUP = 0x106;
export const VIRTIO_WL_CMD_VFD_NEW_DMABUF = 0x107;
export const VIRTIO_WL_CMD_VFD_DMABUF_SYNC = 0x108;
export const VIRTIO_WL_CMD_VFD_SEND_FOREIGN_ID = 0x109;
export const VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED = 0x10a;
export const VIRTIO_WL_RESP_OK = 0x1000;
export const VIRTIO_WL_RESP_VFD_NEW = 0x1001;
export const VIRTIO_WL_RESP_VFD_NEW_DMABUF = 0x1002;
export const VIRTIO_WL_RESP_ERR = 0x1100;
export const VIRTIO_WL_RESP_OUT_OF_MEMORY = 0x1101;
export const VIRTIO_WL_RESP_INVALID_ID = 0x1102;
export const VIRTIO_WL_RESP_INVALID_TYPE = 0x1103;
export const VIRTIO_WL_RESP_INVALID_FLAGS = 0x1104;
export const VIRTIO_WL_RESP_INVALID_CMD = 0x1105;

// --- VFD flags (§2.5)
export const VIRTIO_WL_VFD_WRITE = 0x1;
/** Legacy (TRANS_FLAGS not acked): fixed size, has a pfn mapping. */
export const VIRTIO_WL_VFD_MAP = 0x2;
/** Transition (TRANS_FLAGS acked): the guest may read. */
export const VIRTIO_WL_VFD_READ = 0x2;
/** Legacy: a context that can carry VFDs. */
export const VIRTIO_WL_VFD_CONTROL = 0x4;
export const VIRTIO_WL_VFD_FENCE = 0x8;

// --- structure sizes (§2.3)
export const CTRL_HDR_SIZE = 8;
/** ctrl_vfd: hdr + vfd_id (CLOSE, HUP, and the part of NEW_CTX that is read). */
export const CTRL_VFD_SIZE = 12;
/** crosvm's short ctrl_vfd_new: what RESP_VFD_NEW replies and in-queue VFD_NEW events are. */
export const CTRL_VFD_NEW_SIZE = 32;
/** The kernel's ctrl_vfd_new (the NEW family's request and reply buffers). */
export const CTRL_VFD_NEW_FULL_SIZE = 64;
/** ctrl_vfd_send / ctrl_vfd_recv fixed part. */
export const CTRL_VFD_SEND_SIZE = 16;
/** RESP_OK and the error replies: only the type word (§2.3 "Simple replies"). */
export const SIMPLE_RESP_SIZE = 4;
export const NAME_OFFSET = 28;
/** NEW_CTX_NAMED: name[32] at 28..59. */
export const NAME_LENGTH = 32;

// --- ids and limits
/** VFD_ID_HOST_MASK / NEXT_VFD_ID_BASE: host-allocated ids have bit 30 set (§2.7). */
export const VFD_ID_HOST_MASK = 0x40000000;
export const NEXT_VFD_ID_BASE = 0x40000000;
/** VIRTWL_SEND_MAX_ALLOCS: most VFDs in one SEND or RECV. */
export const VIRTWL_SEND_MAX_ALLOCS = 28;
/** VIRTWL_IN_BUFFER_SIZE: the driver's in-queue buffers. */
export const VIRTWL_IN_BUFFER_SIZE = 4096;
/** crosvm IN_BUFFER_LEN: most bytes read from a host fd at once, so header + 28 ids + data fit a page. */
export const IN_BUFFER_LEN = VIRTWL_IN_BUFFER_SIZE - CTRL_VFD_SEND_SIZE - 4 * VIRTWL_SEND_MAX_ALLOCS;
/** VIRTWL_PFN_SHIFT */
export const VIRTWL_PFN_SHIFT = 12;
export const PAGE_SIZE = 1 << VIRTWL_PFN_SHIFT;

// --- how much of a chain the device reads (issue 10, item 2)
/**
 * Most payload bytes one VFD_SEND may carry: 4 MiB, KMALLOC_MAX_SIZE on x86-64, the largest
 * buffer ChromeOS's driver can kzalloc for a whole SEND (header, ids and data in one piece), so
 * no SEND that driver can build is refused. Wayland messages are at most 4096 bytes; only bulk
 * writes (clipboard pipes) come near this. A SEND that must wait holds a copy of at most this.
 */
export const MAX_SEND_PAYLOAD = 4 * 1024 * 1024;
/** Most readable bytes of a SEND chain: the fixed part, 28 ids and the largest payload. */
export const MAX_SEND_CHAIN_BYTES = CTRL_VFD_SEND_SIZE + 4 * VIRTWL_SEND_MAX_ALLOCS + MAX_SEND_PAYLOAD;
/** What is read of any other command: its largest struct (the kernel's 64-byte ctrl_vfd_new). */
export const MAX_COMMAND_BYTES = CTRL_VFD_NEW_FULL_SIZE;

// --- work per event-loop turn (issue 10, item 3): each command may make host syscalls
/** Out-queue commands executed before the device yields to the event loop (setImmediate). */
export const OUT_COMMANDS_PER_TURN = 256;
/** …or readable bytes of those commands, whichever comes first. */
export const OUT_BYTES_PER_TURN = 16 * 1024 * 1024;

// --- vmm's per-call flags extension (guest/linux/virtio_wl/EXTENSION.md)
/**
 * VIRTIO_WL_F_SEND_DONTWAIT: a VFD_SEND may carry VIRTIO_WL_CTRL_FLAG_DONTWAIT; the device then
 * answers RESP_WOULD_BLOCK (nothing sent) instead of waiting for the host fd, and sends
 * VFD_WRITABLE once it can take data again. The top device-specific bit: crosvm allocates from
 * the bottom (1..3).
 */
export const VIRTIO_WL_F_SEND_DONTWAIT = 23;
/** ctrl_hdr.flags of a VFD_SEND: take all of it now or none of it. */
export const VIRTIO_WL_CTRL_FLAG_DONTWAIT = 0x1;
/** Reply to a DONTWAIT VFD_SEND the host could not take at once: none of it was sent. */
export const VIRTIO_WL_RESP_WOULD_BLOCK = 0x1080;
/** In-queue event (ctrl_vfd): a VFD that was answered WOULD_BLOCK can take data again. */
export const VIRTIO_WL_CMD_VFD_WRITABLE = 0x180;
/**
 * Most bytes of accepted DONTWAIT sends the device holds, all VFDs together, while their host
 * fds are full (a send the host took part of is accepted, and its rest kept). A DONTWAIT send
 * that could pass it is answered WOULD_BLOCK before anything is written.
 */
export const MAX_HELD_SEND_BYTES = 16 * 1024 * 1024;
