/* A bare-metal Wayland client over virtio-wl (test/plugins/virtio-wl/guest-client.test.ts):
 * NEW_CTX on the unnamed socket (the host compositor), one SEND with
 * wl_display.get_registry(new_id 2) and wl_display.sync(new_id 3), then every
 * wl_registry.global is printed as `wl: global NAME vVERSION`, and `wl: done` at
 * the callback. Exits 0, or 1 with `wl: error …`. */
#include "guest.h"
#include "virtio_wl.h"
#include "wayland.h"

static struct wl_stream stream;

static int fail(const char *what, int code)
{
	serial_printf("wl: error %s (%x)\n", what, (unsigned)-code);
	return 1;
}

int guest_main(const char *cmdline, uint64_t ram_size)
{
	(void)ram_size;
	if (wl_init(cmdline) != 0) return 1;
	int ctx = wl_new_ctx(NULL);
	if (ctx < 0) return fail("NEW_CTX", ctx);
	serial_printf("wl: connected (vfd %d)\n", ctx);
	uint8_t req[24];
	uint32_t a = 2, b = 3;
	uint32_t n = wl_msg(req, 1, 1, &a, 1);	/* get_registry */
	n += wl_msg(req + n, 1, 0, &b, 1);	/* sync */
	int r = wl_send((uint32_t)ctx, req, n);
	if (r < 0) return fail("SEND", r);
	for (;;) {
		struct wl_event ev;
		wl_next_event(&ev);
		if (ev.type == VIRTIO_WL_CMD_VFD_HUP && ev.vfd == (uint32_t)ctx) return fail("hang-up", 0);
		if (ev.type != VIRTIO_WL_CMD_VFD_RECV || ev.vfd != (uint32_t)ctx) continue;
		if (wl_stream_append(&stream, ev.data, ev.len) != 0) return fail("stream overflow", 0);
		for (int size; (size = wl_stream_peek(&stream)) != 0; wl_stream_consume(&stream, (uint32_t)size)) {
			if (size < 0) return fail("bad message size", 0);
			uint32_t object = wl_get32(stream.buf), opcode = wl_get32(stream.buf + 4) & 0xffff;
			const uint8_t *args = stream.buf + 8;
			if (object == 2 && opcode == 0 && size >= 20) {
				uint32_t slen = wl_get32(args + 4);
				uint32_t padded = (slen + 3) & ~3u;
				if (slen == 0 || 16 + padded + 4 > (uint32_t)size) return fail("bad global", 0);
				serial_printf("wl: global %s v%u\n", (const char *)(args + 8), wl_get32(args + 8 + padded));
			} else if (object == 3 && opcode == 0) {
				serial_printf("wl: done\n");
				wl_close((uint32_t)ctx);
				return 0;
			} else if (object == 1 && opcode == 0) {
				return fail("wl_display.error", (int)-wl_get32(args + 4));
			}
		}
	}
}
