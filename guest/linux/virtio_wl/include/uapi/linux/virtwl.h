/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * /dev/wl0 and its VFD files: the user-space ABI of the virtio_wl driver.
 *
 * Binary-compatible with ChromeOS's virtwl.h (same names, numbers and layouts; written for vmm
 * from shared/spec/virtio-wl.md section 4), so sommelier and other programs built against that
 * header run unchanged. The *_FLAGS ioctls at the end are vmm's extension (EXTENSION.md next
 * to the driver): SEND/RECV with a per-call flags word, as sendmsg(2)/recvmsg(2) take.
 */
#ifndef _UAPI_LINUX_VIRTWL_H
#define _UAPI_LINUX_VIRTWL_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Most VFDs one SEND or RECV carries (libwayland's MAX_FDS_OUT is the same 28). */
#define VIRTWL_SEND_MAX_ALLOCS 28

#define VIRTWL_IOCTL_BASE 'w'
#define VIRTWL_IO(nr) _IO(VIRTWL_IOCTL_BASE, nr)
#define VIRTWL_IOR(nr, type) _IOR(VIRTWL_IOCTL_BASE, nr, type)
#define VIRTWL_IOW(nr, type) _IOW(VIRTWL_IOCTL_BASE, nr, type)
#define VIRTWL_IOWR(nr, type) _IOWR(VIRTWL_IOCTL_BASE, nr, type)

/* virtwl_ioctl_new.type */
enum virtwl_ioctl_new_type {
	VIRTWL_IOCTL_NEW_CTX,		/* connection to the unnamed host socket */
	VIRTWL_IOCTL_NEW_ALLOC,		/* shared memory of .size bytes, mmap-able */
	VIRTWL_IOCTL_NEW_PIPE_READ,	/* a pipe the guest reads */
	VIRTWL_IOCTL_NEW_PIPE_WRITE,	/* a pipe the guest writes */
	VIRTWL_IOCTL_NEW_DMABUF,	/* a dmabuf (ENOTTY where the device has none) */
	VIRTWL_IOCTL_NEW_CTX_NAMED,	/* connection to the host socket called .name */
};

struct virtwl_ioctl_new {
	__u32 type;		/* enum virtwl_ioctl_new_type */
	int fd;			/* out: the new VFD */
	__u32 flags;		/* unused, 0 */
	union {
		__u32 size;	/* NEW_ALLOC: bytes (rounded up to pages) */
		struct {
			__u32 width;	/* in */
			__u32 height;	/* in */
			__u32 format;	/* in: DRM fourcc */
			__u32 stride0;	/* out */
			__u32 stride1;
			__u32 stride2;
			__u32 offset0;	/* out */
			__u32 offset1;
			__u32 offset2;
		} dmabuf;
		char name[32];	/* NEW_CTX_NAMED: need not be NUL-terminated */
	};
};

/* SEND and RECV: a 116-byte header, then the bytes. */
struct virtwl_ioctl_txn {
	int fds[VIRTWL_SEND_MAX_ALLOCS];	/* send: up to the first < 0; recv: -1 = unused */
	__u32 len;				/* send: bytes; recv: in capacity, out received */
	__u8 data[0];
};

struct virtwl_ioctl_dmabuf_sync {
	__u32 flags;	/* DMA_BUF_SYNC_* */
};

/*
 * The directions of SEND and RECV look swapped; they are what ChromeOS shipped, and the driver
 * matches the whole number, so they stay.
 */
#define VIRTWL_IOCTL_NEW VIRTWL_IOWR(0x00, struct virtwl_ioctl_new)		/* 0xc0307700 */
#define VIRTWL_IOCTL_SEND VIRTWL_IOR(0x01, struct virtwl_ioctl_txn)		/* 0x80747701 */
#define VIRTWL_IOCTL_RECV VIRTWL_IOW(0x02, struct virtwl_ioctl_txn)		/* 0x40747702 */
#define VIRTWL_IOCTL_DMABUF_SYNC VIRTWL_IOR(0x03, struct virtwl_ioctl_dmabuf_sync) /* 0x80047703 */
#define VIRTWL_IOCTL_MAXNR 3

/*
 * Extension: SEND and RECV with a flags word (EXTENSION.md). The flag values are Linux's
 * MSG_* values, so MSG_DONTWAIT etc. from <sys/socket.h> can be passed as they are.
 */
#define VIRTWL_MSG_CTRUNC 0x8			/* recv, out: fds were dropped */
#define VIRTWL_MSG_DONTWAIT 0x40		/* do not wait, whatever O_NONBLOCK says */
#define VIRTWL_MSG_NOSIGNAL 0x4000		/* send: no SIGPIPE when the peer is gone */
#define VIRTWL_MSG_CMSG_CLOEXEC 0x40000000	/* recv: received fds are close-on-exec */
#define VIRTWL_MSG_FLAGS_ALLOWED \
	(VIRTWL_MSG_DONTWAIT | VIRTWL_MSG_NOSIGNAL | VIRTWL_MSG_CMSG_CLOEXEC)

/* A 120-byte header, then the bytes. */
struct virtwl_ioctl_msg {
	int fds[VIRTWL_SEND_MAX_ALLOCS];	/* send: up to the first < 0; recv: -1 = unused */
	__u32 len;				/* send: bytes; recv: in capacity, out received */
	__u32 flags;				/* in: VIRTWL_MSG_*; recv out: VIRTWL_MSG_CTRUNC */
	__u8 data[0];
};

/* Both return the number of bytes sent or received. */
#define VIRTWL_IOCTL_SEND_FLAGS VIRTWL_IOW(0x10, struct virtwl_ioctl_msg)	/* 0x40787710 */
#define VIRTWL_IOCTL_RECV_FLAGS VIRTWL_IOWR(0x11, struct virtwl_ioctl_msg)	/* 0xc0787711 */

#endif /* _UAPI_LINUX_VIRTWL_H */
