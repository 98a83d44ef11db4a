/* Minimal polled virtio-wl driver; see virtio_wl.h. */
#include "virtio_wl.h"
#include "virtio.h"
#include "cmdline.h"
#include "io.h"
#include "serial.h"
#include "string.h"

#define IN_BUF_SIZE 4096
#define Q_IN 0
#define Q_OUT 1

static struct virtio_dev wl_dev __attribute__((aligned(4096)));
static uint8_t in_bufs[VIRTQ_SIZE][IN_BUF_SIZE] __attribute__((aligned(4096)));
static uint8_t out_buf[8192] __attribute__((aligned(64)));
static uint8_t resp_buf[64] __attribute__((aligned(64)));
static uint32_t next_vfd = 1;
static int held = -1;	/* the in-queue buffer handed out by wl_next_event */

static void post_in(unsigned i)
{
	struct virtq_buf b = { in_bufs[i], IN_BUF_SIZE, 1 };
	virtq_add(&wl_dev.q[Q_IN], &b, 1);
}

int wl_init(const char *cmdline)
{
	uint64_t base = 0;
	if (cmdline_get_u64(cmdline, "wl", &base) != 0) base = virtio_find(cmdline, VIRTIO_ID_WL);
	if (!base) {
		serial_printf("wl: no virtio-wl device on the command line\n");
		return -1;
	}
	/* event_idx=0 refuses VIRTIO_F_RING_EVENT_IDX; by default it is negotiated
	 * when offered, as Linux's virtio_ring does. */
	uint64_t wanted = VIRTIO_WL_F_TRANS_FLAGS;
	if (cmdline_u64_or(cmdline, "event_idx", 1)) wanted |= VIRTIO_F_RING_EVENT_IDX;
	if (virtio_init(&wl_dev, (uintptr_t)base, wanted, 2) != 0) return -1;
	serial_printf("wl: event_idx %s\n", (wl_dev.features & VIRTIO_F_RING_EVENT_IDX) ? "on" : "off");
	for (unsigned i = 0; i < VIRTQ_SIZE; i++) post_in(i);
	virtq_kick(&wl_dev, Q_IN);
	return 0;
}

/* Submit out_buf[0..len) plus a reply buffer; wait for the reply's type. */
static uint32_t command(uint32_t len, uint32_t reply_len)
{
	struct virtq_buf b[2] = { { out_buf, len, 0 }, { resp_buf, reply_len, 1 } };
	memset(resp_buf, 0, sizeof(resp_buf));
	int head = virtq_add(&wl_dev.q[Q_OUT], b, 2);
	if (head < 0) return 0;
	virtq_kick(&wl_dev, Q_OUT);
	while (virtq_poll(&wl_dev.q[Q_OUT], 0) != head) cpu_relax();
	return *(volatile uint32_t *)resp_buf;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

int wl_new_ctx(const char *name)
{
	uint32_t id = next_vfd++;
	memset(out_buf, 0, 64);
	int named = name && name[0];
	put32(out_buf, named ? VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED : VIRTIO_WL_CMD_VFD_NEW_CTX);
	put32(out_buf + 8, id);
	put32(out_buf + 12, 3); /* WRITE|READ, as the Linux driver sets */
	if (named) {
		size_t n = strlen(name);
		memcpy(out_buf + 28, name, n > 32 ? 32 : n);
	}
	uint32_t r = command(64, 64);
	return r == VIRTIO_WL_RESP_VFD_NEW ? (int)id : -(int)r;
}

int wl_send(uint32_t vfd, const void *data, uint32_t len)
{
	if (len > WL_SEND_MAX) return -1;
	put32(out_buf, VIRTIO_WL_CMD_VFD_SEND);
	put32(out_buf + 4, 0);
	put32(out_buf + 8, vfd);
	put32(out_buf + 12, 0);
	memcpy(out_buf + 16, data, len);
	uint32_t r = command(16 + len, 8);
	return r == VIRTIO_WL_RESP_OK ? 0 : -(int)r;
}

int wl_close(uint32_t vfd)
{
	put32(out_buf, VIRTIO_WL_CMD_VFD_CLOSE);
	put32(out_buf + 4, 0);
	put32(out_buf + 8, vfd);
	uint32_t r = command(12, 8);
	return r == VIRTIO_WL_RESP_OK ? 0 : -(int)r;
}

int wl_try_event(struct wl_event *ev)
{
	uint32_t len;
	if (held >= 0) wl_event_done();
	int head = virtq_poll(&wl_dev.q[Q_IN], &len);
	if (head < 0) return -1;
	/* Which buffer: from the descriptor's address (descriptor i need not be buffer i). */
	held = (int)((wl_dev.q[Q_IN].desc[head].addr - (uintptr_t)in_bufs[0]) / IN_BUF_SIZE);
	const uint8_t *b = in_bufs[held];
	memset(ev, 0, sizeof(*ev));
	memcpy(&ev->type, b, 4);
	memcpy(&ev->vfd, b + 8, 4);
	if (ev->type == VIRTIO_WL_CMD_VFD_RECV && len >= 16) {
		memcpy(&ev->nids, b + 12, 4);
		ev->ids = (const uint32_t *)(b + 16);
		uint32_t skip = 16 + 4 * ev->nids;
		ev->data = b + skip;
		ev->len = len > skip ? len - skip : 0;
	}
	return 0;
}

void wl_next_event(struct wl_event *ev)
{
	while (wl_try_event(ev) != 0) cpu_relax();
}

void wl_event_done(void)
{
	if (held < 0) return;
	post_in((unsigned)held);
	held = -1;
	virtq_kick(&wl_dev, Q_IN);
}
