/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * virtio-wl ("virtio wayland") wire protocol: what travels on the device's two virtqueues.
 *
 * Written for vmm from its protocol notes (shared/spec/virtio-wl.md, sections 1-3); the values
 * are those crosvm and ChromeOS's driver use, so either side can be swapped for theirs. The
 * DONTWAIT extension at the end is vmm's own: see guest/linux/virtio_wl/EXTENSION.md.
 * All multi-byte fields are little-endian.
 */
#ifndef _UAPI_LINUX_VIRTIO_WL_H
#define _UAPI_LINUX_VIRTIO_WL_H

#include <linux/types.h>
#include <linux/virtio_types.h>

/* crosvm's device id (2019 kernels used 30, since taken by virtio-video). */
#define VIRTIO_ID_WL 63

#define VIRTWL_IN_BUFFER_SIZE 4096
#define VIRTWL_OUT_BUFFER_SIZE 4096
#define VIRTWL_VQ_IN 0
#define VIRTWL_VQ_OUT 1
#define VIRTWL_QUEUE_COUNT 2
/* Guest-allocated VFD ids are 1 .. VIRTWL_MAX_ALLOC - 1. */
#define VIRTWL_MAX_ALLOC 0x800
#define VIRTWL_PFN_SHIFT 12

/* Device feature bits. */
#define VIRTIO_WL_F_TRANS_FLAGS 1	/* VFD flags have their "transition" meaning */
#define VIRTIO_WL_F_SEND_FENCES 2	/* crosvm: 16-byte foreign-id entries (not used here) */
#define VIRTIO_WL_F_USE_SHMEM 3		/* crosvm: pfns are shm-region offsets (not used here) */
/*
 * vmm extension: a VFD_SEND may carry VIRTIO_WL_CTRL_FLAG_DONTWAIT; the device then answers
 * VIRTIO_WL_RESP_WOULD_BLOCK instead of waiting, and later VIRTIO_WL_CMD_VFD_WRITABLE.
 * Taken from the top of the device-specific range (0-23): crosvm allocates from the bottom.
 */
#define VIRTIO_WL_F_SEND_DONTWAIT 23

/* virtio_wl_ctrl_hdr.type */
enum virtio_wl_ctrl_type {
	VIRTIO_WL_CMD_VFD_NEW = 0x100,		/* guest: allocate shm; in-queue: host VFD */
	VIRTIO_WL_CMD_VFD_CLOSE,		/* 0x101 */
	VIRTIO_WL_CMD_VFD_SEND,			/* 0x102 */
	VIRTIO_WL_CMD_VFD_RECV,			/* 0x103, in-queue only */
	VIRTIO_WL_CMD_VFD_NEW_CTX,		/* 0x104 */
	VIRTIO_WL_CMD_VFD_NEW_PIPE,		/* 0x105 */
	VIRTIO_WL_CMD_VFD_HUP,			/* 0x106, in-queue only */
	VIRTIO_WL_CMD_VFD_NEW_DMABUF,		/* 0x107 */
	VIRTIO_WL_CMD_VFD_DMABUF_SYNC,		/* 0x108 */
	VIRTIO_WL_CMD_VFD_SEND_FOREIGN_ID,	/* 0x109 */
	VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED,	/* 0x10a */

	/* extension, in-queue only: a VFD that answered WOULD_BLOCK can take data again */
	VIRTIO_WL_CMD_VFD_WRITABLE = 0x180,

	VIRTIO_WL_RESP_OK = 0x1000,
	VIRTIO_WL_RESP_VFD_NEW = 0x1001,
	VIRTIO_WL_RESP_VFD_NEW_DMABUF = 0x1002,
	/* extension: a DONTWAIT send the host could not take at once; none of it was sent */
	VIRTIO_WL_RESP_WOULD_BLOCK = 0x1080,

	VIRTIO_WL_RESP_ERR = 0x1100,
	VIRTIO_WL_RESP_OUT_OF_MEMORY,		/* 0x1101 */
	VIRTIO_WL_RESP_INVALID_ID,		/* 0x1102 */
	VIRTIO_WL_RESP_INVALID_TYPE,		/* 0x1103 */
	VIRTIO_WL_RESP_INVALID_FLAGS,		/* 0x1104 */
	VIRTIO_WL_RESP_INVALID_CMD,		/* 0x1105 */
};

/* virtio_wl_ctrl_hdr.flags of a VFD_SEND (extension; 0 everywhere else) */
#define VIRTIO_WL_CTRL_FLAG_DONTWAIT 0x1

struct virtio_wl_ctrl_hdr {
	__le32 type;
	__le32 flags;
};

/* VFD flags, transition meaning (TRANS_FLAGS negotiated) */
#define VIRTIO_WL_VFD_WRITE 0x1
#define VIRTIO_WL_VFD_READ 0x2
#define VIRTIO_WL_VFD_FENCE 0x8
/* VFD flags, legacy meaning */
#define VIRTIO_WL_VFD_MAP 0x2
#define VIRTIO_WL_VFD_CONTROL 0x4

/* Host-allocated ids have this bit; bit 31 is never valid. */
#define VIRTIO_WL_VFD_ID_HOST_MASK 0x40000000
#define VIRTIO_WL_VFD_ID_ILLEGAL_MASK 0x80000000

/* CLOSE, HUP, WRITABLE */
struct virtio_wl_ctrl_vfd {
	struct virtio_wl_ctrl_hdr hdr;
	__le32 vfd_id;
};

/* The NEW family's requests and replies, and the in-queue VFD_NEW (64 bytes). */
struct virtio_wl_ctrl_vfd_new {
	struct virtio_wl_ctrl_hdr hdr;
	__le32 vfd_id;
	__le32 flags;
	__le64 pfn;
	__le32 size;
	union {
		struct {
			__le32 width;
			__le32 height;
			__le32 format;
			__le32 stride0;
			__le32 stride1;
			__le32 stride2;
			__le32 offset0;
			__le32 offset1;
			__le32 offset2;
		} dmabuf;
		__u8 name[32];		/* NEW_CTX_NAMED: no terminator needed */
	};
};

/* What devices write for RESP_VFD_NEW and the in-queue VFD_NEW (crosvm's short form). */
#define VIRTIO_WL_CTRL_VFD_NEW_SHORT_SIZE 32

/* VFD_SEND and VFD_RECV: this, then vfd_count __le32 ids, then the payload. */
struct virtio_wl_ctrl_vfd_send {
	struct virtio_wl_ctrl_hdr hdr;
	__le32 vfd_id;
	__le32 vfd_count;
};
#define virtio_wl_ctrl_vfd_recv virtio_wl_ctrl_vfd_send

struct virtio_wl_ctrl_vfd_dmabuf_sync {
	struct virtio_wl_ctrl_hdr hdr;
	__le32 vfd_id;
	__le32 flags;
};

#endif /* _UAPI_LINUX_VIRTIO_WL_H */
