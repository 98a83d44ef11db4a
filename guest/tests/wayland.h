/* Wayland wire helpers shared by the virtio-wl test guests (header-only).
 * A message: u32 object id, u32 (size << 16 | opcode), arguments; strings are
 * u32 length (with the NUL) then the bytes padded to 4. */
#ifndef TESTS_WAYLAND_H
#define TESTS_WAYLAND_H

#include "guest.h"

static inline uint32_t wl_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline void wl_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Byte stream → whole messages: append RECV data, then take messages. */
struct wl_stream {
	uint8_t buf[8192];
	uint32_t len;
};

static inline int wl_stream_append(struct wl_stream *s, const uint8_t *data, uint32_t n)
{
	if (n > sizeof(s->buf) - s->len) return -1;
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	return 0;
}

/* The size of the first whole message, or 0 when none is complete (-1: bad size). */
static inline int wl_stream_peek(const struct wl_stream *s)
{
	if (s->len < 8) return 0;
	uint32_t size = wl_get32(s->buf + 4) >> 16;
	if (size < 8 || (size & 3)) return -1;
	return size <= s->len ? (int)size : 0;
}

static inline void wl_stream_consume(struct wl_stream *s, uint32_t n)
{
	memmove(s->buf, s->buf + n, s->len - n);
	s->len -= n;
}

/* Build a message in out; returns its size. args are u32 words. */
static inline uint32_t wl_msg(uint8_t *out, uint32_t object, uint32_t opcode, const uint32_t *args, unsigned nargs)
{
	uint32_t size = 8 + 4 * nargs;
	wl_put32(out, object);
	wl_put32(out + 4, (size << 16) | opcode);
	for (unsigned i = 0; i < nargs; i++) wl_put32(out + 8 + 4 * i, args[i]);
	return size;
}

#endif
