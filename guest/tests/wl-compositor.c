/* A minimal "compositor" inside the VM, for `vmm wl-proxy`
 * (test/plugins/virtio-wl/proxy.test.ts). It opens the notification context
 * (NEW_CTX_NAMED `notify=NAME`, default "wl-proxy"; retried until the proxy
 * serves it), reads lines `NAME\n`, opens NEW_CTX_NAMED NAME for each, and
 * serves that client: wl_display.get_registry gets three wl_registry.global
 * events (wl_compositor v4, wl_shm v1, vmm_test_global v1), wl_display.sync
 * gets wl_callback.done + wl_display.delete_id; every other request is
 * ignored. A client's hang-up closes its context. With `clients=N` the guest
 * exits 0 after N clients have come and gone.
 *
 * Serial: `wl: notify open`, `wl: client NAME`, `wl: registry`, `wl: sync`,
 * `wl: bye NAME`, `wl: error …`. */
#include "guest.h"
#include "virtio_wl.h"
#include "wayland.h"

#define MAX_CLIENTS 4

struct client {
	int vfd;	/* 0: slot free */
	char name[33];
	struct wl_stream s;
};

static struct client clients[MAX_CLIENTS];
static uint8_t reply[1024];
static char line[40];
static unsigned line_len;
static uint32_t serial_no = 1;

static const struct { const char *name; uint32_t version; } globals[] = {
	{ "wl_compositor", 4 },
	{ "wl_shm", 1 },
	{ "vmm_test_global", 1 },
};

static uint32_t put_string(uint8_t *p, const char *s)
{
	uint32_t n = (uint32_t)strlen(s) + 1, padded = (n + 3) & ~3u;
	wl_put32(p, n);
	memset(p + 4, 0, padded);
	memcpy(p + 4, s, n);
	return 4 + padded;
}

static void serve(struct client *c, const uint8_t *m, uint32_t size)
{
	uint32_t object = wl_get32(m), opcode = wl_get32(m + 4) & 0xffff;
	uint32_t n = 0;
	if (object == 1 && opcode == 1 && size >= 12) {	/* get_registry(new_id) */
		uint32_t registry = wl_get32(m + 8);
		serial_printf("wl: registry\n");
		for (unsigned g = 0; g < sizeof(globals) / sizeof(globals[0]); g++) {
			uint8_t *at = reply + n;
			uint32_t len = 8;
			wl_put32(at + len, g + 1);
			len += 4;
			len += put_string(at + len, globals[g].name);
			wl_put32(at + len, globals[g].version);
			len += 4;
			wl_put32(at, registry);
			wl_put32(at + 4, (len << 16) | 0);
			n += len;
		}
	} else if (object == 1 && opcode == 0 && size >= 12) {	/* sync(new_id callback) */
		uint32_t cb = wl_get32(m + 8), s = serial_no++;
		serial_printf("wl: sync\n");
		n = wl_msg(reply, cb, 0, &s, 1);		/* wl_callback.done */
		n += wl_msg(reply + n, 1, 1, &cb, 1);		/* wl_display.delete_id */
	}
	if (n > 0) {
		int r = wl_send((uint32_t)c->vfd, reply, n);
		if (r < 0) serial_printf("wl: error SEND to %s (%x)\n", c->name, (unsigned)-r);
	}
}

static void open_client(const char *name)
{
	struct client *c = 0;
	for (unsigned i = 0; i < MAX_CLIENTS; i++)
		if (!clients[i].vfd) { c = &clients[i]; break; }
	if (!c) {
		serial_printf("wl: error no slot for %s\n", name);
		return;
	}
	int vfd = wl_new_ctx(name);
	if (vfd < 0) {
		serial_printf("wl: error NEW_CTX_NAMED %s (%x)\n", name, (unsigned)-vfd);
		return;
	}
	c->vfd = vfd;
	c->s.len = 0;
	memcpy(c->name, name, sizeof(c->name) - 1);
	serial_printf("wl: client %s\n", c->name);
}

static void delay(void)
{
	for (volatile unsigned i = 0; i < 20000; i++) cpu_relax();
}

int guest_main(const char *cmdline, uint64_t ram_size)
{
	(void)ram_size;
	char notify_name[33] = "wl-proxy";
	cmdline_get_str(cmdline, "notify", notify_name, sizeof(notify_name));
	uint64_t want = cmdline_u64_or(cmdline, "clients", 0), done = 0;
	if (wl_init(cmdline) != 0) return 1;
	int notify;
	for (unsigned tries = 0; (notify = wl_new_ctx(notify_name)) < 0; tries++) {
		if (tries == 0) serial_printf("wl: waiting for %s\n", notify_name);
		delay();
	}
	serial_printf("wl: notify open\n");
	for (;;) {
		struct wl_event ev;
		wl_next_event(&ev);
		if (ev.vfd == (uint32_t)notify) {
			if (ev.type == VIRTIO_WL_CMD_VFD_HUP) {
				serial_printf("wl: notify closed\n");
				return want ? 1 : 0;
			}
			if (ev.type != VIRTIO_WL_CMD_VFD_RECV) continue;
			for (uint32_t i = 0; i < ev.len; i++) {
				char ch = (char)ev.data[i];
				if (ch == '\n') {
					line[line_len] = 0;
					line_len = 0;
					open_client(line);
				} else if (line_len < 32) {
					line[line_len++] = ch;
				}
			}
			continue;
		}
		struct client *c = 0;
		for (unsigned i = 0; i < MAX_CLIENTS; i++)
			if (clients[i].vfd && (uint32_t)clients[i].vfd == ev.vfd) c = &clients[i];
		if (!c) continue;
		if (ev.type == VIRTIO_WL_CMD_VFD_HUP) {
			wl_event_done();
			wl_close((uint32_t)c->vfd);
			serial_printf("wl: bye %s\n", c->name);
			c->vfd = 0;
			if (want && ++done >= want) return 0;
			continue;
		}
		if (ev.type != VIRTIO_WL_CMD_VFD_RECV) continue;
		for (uint32_t i = 0; i < ev.nids; i++) wl_close(ev.ids[i]);	/* no fds wanted */
		if (wl_stream_append(&c->s, ev.data, ev.len) != 0) {
			serial_printf("wl: error %s sent too much\n", c->name);
			c->s.len = 0;
			continue;
		}
		for (int size; (size = wl_stream_peek(&c->s)) != 0; wl_stream_consume(&c->s, (uint32_t)size)) {
			if (size < 0) {
				serial_printf("wl: error bad message from %s\n", c->name);
				c->s.len = 0;
				break;
			}
			serve(c, c->s.buf, (uint32_t)size);
		}
	}
}
