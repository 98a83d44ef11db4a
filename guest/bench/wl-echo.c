/* bench/wl's guest: for each message size (64 B, then 4 KiB) it opens a new
 * context on the unnamed socket (bench/wl's echo peer on the host) and does
 * `n=N` (default 200) round trips: one VFD_SEND of SIZE bytes, then VFD_RECV
 * events until SIZE bytes came back. The host peer times each connection.
 * Prints `bench: size S done`, exits 0 (1 on any error). */
#include "guest.h"
#include "virtio_wl.h"

static uint8_t msg[4096];

static int round_trips(uint32_t size, uint64_t n)
{
	int ctx = wl_new_ctx(NULL);
	if (ctx < 0) {
		serial_printf("bench: error NEW_CTX (%x)\n", (unsigned)-ctx);
		return 1;
	}
	for (uint64_t i = 0; i < n; i++) {
		int r = wl_send((uint32_t)ctx, msg, size);
		if (r < 0) {
			serial_printf("bench: error SEND (%x)\n", (unsigned)-r);
			return 1;
		}
		for (uint32_t got = 0; got < size;) {
			struct wl_event ev;
			wl_next_event(&ev);
			if (ev.vfd != (uint32_t)ctx) continue;
			if (ev.type == VIRTIO_WL_CMD_VFD_HUP) {
				serial_printf("bench: error hang-up\n");
				return 1;
			}
			if (ev.type == VIRTIO_WL_CMD_VFD_RECV) got += ev.len;
		}
	}
	wl_event_done();
	wl_close((uint32_t)ctx);
	serial_printf("bench: size %u done\n", size);
	return 0;
}

int guest_main(const char *cmdline, uint64_t ram_size)
{
	(void)ram_size;
	uint64_t n = cmdline_u64_or(cmdline, "n", 200);
	for (unsigned i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)i;
	if (wl_init(cmdline) != 0) return 1;
	if (round_trips(64, n) || round_trips(4096, n)) return 1;
	return 0;
}
