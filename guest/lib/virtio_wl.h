/* A minimal polled virtio-wl (virtio id 63) driver on top of virtio.h, enough
 * for test guests to open contexts, send bytes and read events:
 *
 *   if (wl_init(cmdline)) fail;          // device from the cmdline (or wl=0x…);
 *                                        // event_idx=0 refuses EVENT_IDX (default: on)
 *   int ctx = wl_new_ctx(NULL);          // NULL: the unnamed socket; else a name
 *   wl_send(ctx, bytes, n);
 *   struct wl_event ev;
 *   wl_next_event(&ev);                  // waits; RECV data is ev.data/ev.len
 *   wl_event_done();                     // give the buffer back to the device
 *
 * Commands are synchronous (one in flight). Negative returns are -(response
 * type), e.g. -0x1100 for RESP_ERR. */
#ifndef GUEST_VIRTIO_WL_H
#define GUEST_VIRTIO_WL_H

#include <stdint.h>

#define VIRTIO_ID_WL			63
#define VIRTIO_WL_F_TRANS_FLAGS		(1ull << 1)

#define VIRTIO_WL_CMD_VFD_NEW		0x100
#define VIRTIO_WL_CMD_VFD_CLOSE		0x101
#define VIRTIO_WL_CMD_VFD_SEND		0x102
#define VIRTIO_WL_CMD_VFD_RECV		0x103
#define VIRTIO_WL_CMD_VFD_NEW_CTX	0x104
#define VIRTIO_WL_CMD_VFD_HUP		0x106
#define VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED	0x10a
#define VIRTIO_WL_RESP_OK		0x1000
#define VIRTIO_WL_RESP_VFD_NEW		0x1001

/* Most payload bytes in one wl_send (two pages less the header). */
#define WL_SEND_MAX			(8192 - 16)

struct wl_event {
	uint32_t type;		/* VFD_RECV, VFD_HUP or VFD_NEW */
	uint32_t vfd;		/* the context it is about (VFD_NEW: the new id) */
	uint32_t nids;		/* RECV: VFD ids that came with the data */
	const uint32_t *ids;
	const uint8_t *data;	/* RECV payload */
	uint32_t len;
};

int wl_init(const char *cmdline);
/* A new context on the socket `name` (NULL or "": NEW_CTX). Returns its VFD id. */
int wl_new_ctx(const char *name);
int wl_send(uint32_t vfd, const void *data, uint32_t len);
int wl_close(uint32_t vfd);
/* Waits for the next in-queue event. Its memory stays valid until wl_event_done(). */
void wl_next_event(struct wl_event *ev);
/* Like wl_next_event, but returns 0 at once (and -1) when no event is waiting. */
int wl_try_event(struct wl_event *ev);
void wl_event_done(void);

#endif
