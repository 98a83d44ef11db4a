/* SPDX-License-Identifier: MIT */
/*
 * wl-relay: a transparent Wayland relay between guest Unix sockets and virtio_wl contexts
 * (README.md). Bytes and object ids pass unchanged; the relay frames whole messages, keeps an
 * object table fed by the protocol tables wayland-scanner generates, swaps the fds that the
 * other side could not use, and drops the globals it cannot translate.
 */
#ifndef WL_RELAY_H
#define WL_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "wayland-util.h"

/* Wire limits (libwayland 1.21 and virtio_wl). */
#define WL_HEADER 8
#define WL_MAX_MESSAGE 4096
#define MAX_FDS_PER_SEND 28		/* VIRTWL_SEND_MAX_ALLOCS, libwayland's MAX_FDS_OUT */
#define MAX_VIRTWL_SEND 3980		/* 4096 - 116, what sommelier sends at most */
#define MAX_FDS_PER_MESSAGE 4		/* the tables have at most 1 */
#define MAX_ARGS 24			/* WL_CLOSURE_MAX_ARGS is 20 */

/* Per-connection bounds: a client cannot grow the relay past them. */
#define MAX_CONNS 64
#define IN_CAP 8192			/* unparsed bytes of one side */
#define OUT_HIGH 65536			/* stop reading a side while the other's queue is above */
#define OUT_CAP (OUT_HIGH + IN_CAP)
#define IN_FD_CAP 64			/* fds received ahead of their messages */
#define OUT_FD_HIGH 128
#define OUT_FD_CAP (OUT_FD_HIGH + IN_FD_CAP)
#define MAX_CLIENT_IDS 32768
#define MAX_SERVER_IDS 32768
#define MAX_GLOBALS 512
#define MAX_POOLS 256
#define MAX_POOL_BYTES (64u << 20)	/* one wl_shm pool, headroom included */
#define MAX_CONN_SHM (256u << 20)	/* every pool of one client */
#define MAX_KEYMAP_BYTES (16u << 20)
#define MAX_XFERS 8			/* clipboard pipes being copied */
#define XFER_CHUNK 4096

enum mode { MODE_CLIENT, MODE_COMPOSITOR };
/* Which side a message comes from: the Wayland client's (requests) or the compositor's (events). */
enum dir { REQUEST = 0, EVENT = 1 };
/* side[] index: where requests come from and where events come from. */
enum { CLIENT_SIDE = 0, SERVER_SIDE = 1 };

enum obj_kind { OBJ_PLAIN, OBJ_POOL, OBJ_BUFFER, OBJ_SURFACE };

struct obj {
	const struct wl_interface *iface;	/* NULL: no such object */
	uint32_t version;
	uint8_t kind;
	uint8_t attached;		/* wl_surface: an attach since the last commit */
	uint32_t attached_buffer;	/* wl_surface: its id (0: none) */
	void *state;			/* OBJ_POOL: struct pool, OBJ_BUFFER: struct buffer */
};

struct objmap {
	struct obj *client;		/* ids 1.. */
	uint32_t nclient;
	struct obj *server;		/* ids 0xff000000.. */
	uint32_t nserver;
};

/* A client's wl_shm pool: its memfd mapped read-only, mirrored in a NEW_ALLOC VFD. */
struct pool {
	int refs;			/* the wl_shm_pool object and each of its buffers */
	int memfd;
	const uint8_t *cmap;
	size_t csize;			/* the pool's current size */
	int vfd;
	uint8_t *vmap;
	size_t vsize;			/* what was allocated: the pool may grow up to it */
};

struct buffer {
	struct pool *pool;
	size_t offset, length;		/* checked against the pool when created */
};

struct global {
	uint32_t name;
	const struct wl_interface *iface;
	uint32_t version;		/* capped to the table's */
};

/* A pipe whose host end writes: copied into a local fd until end of stream. */
struct xfer {
	int src, dst;			/* -1: unused */
	size_t len, off;
	uint8_t buf[XFER_CHUNK];
};

struct outfd {
	int fd;
	size_t start;			/* offset in out[] of the message it belongs to */
};

struct side {
	int fd;
	int virtwl;			/* a virtio_wl context, else a Unix socket */
	int eof;			/* nothing more will be read or written */
	size_t in_len;
	int in_nfds;
	size_t out_len;
	int out_nfds;
	int in_fds[IN_FD_CAP];
	struct outfd out_fds[OUT_FD_CAP];
	uint8_t in[IN_CAP];
	uint8_t out[OUT_CAP];
};

struct conn {
	unsigned id;
	enum mode mode;
	int closing;			/* a side hung up: flush the other, then close */
	char error[160];		/* set: disconnect now with this reason */
	struct side side[2];
	struct objmap objs;
	struct global globals[MAX_GLOBALS];
	int nglobals;
	int npools;
	size_t shm_bytes;
	struct xfer xfers[MAX_XFERS];
	int poll_xfer[MAX_XFERS];	/* the xfer of each pollfd after the two sides */
	int npoll_xfers;
};

/* A decoded argument. */
struct arg {
	char type;			/* i u f s o n a h */
	uint32_t u;			/* the word (i, u, f, o, n; length for s and a) */
	size_t off;			/* offset of the word in the message */
	const char *str;		/* s: the bytes (NUL-terminated when u > 0) */
	const struct wl_interface *iface;	/* n: the new object's interface */
	int fd;				/* h */
};

/* main.c */
extern int verbose;
extern int wl_device;			/* /dev/wl0, open for NEW */
void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int wl_new_ctx(const char *name);
int wl_new_alloc(size_t size);
int wl_new_pipe_read(int *send_fd);	/* the fd to read; *send_fd goes to the host */
extern const char *fake_device;	/* -d unix:PATH (development) */

/* conn.c */
struct conn *conn_new(enum mode mode, int client_fd, int client_virtwl, int server_fd, int server_virtwl);
void conn_fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int conn_queue(struct conn *c, int to, const uint8_t *msg, size_t size, const int *fds, int nfds);
struct pollfd;
int conn_pollfds(struct conn *c, struct pollfd *p);	/* at most CONN_POLLFDS entries */
#define CONN_POLLFDS (2 + MAX_XFERS)
/* Handles what poll said; 1 when the connection is over (freed, with a log line). */
int conn_handle(struct conn *c, const struct pollfd *p);
void conn_free(struct conn *c, const char *why);

/* wire.c */
extern const struct wl_interface *const relay_interfaces[];
const struct wl_interface *interface_by_name(const char *name);
int interface_hidden(const char *name);
struct obj *obj_get(struct objmap *m, uint32_t id);
void objmap_free(struct conn *c);
/* Frames and relays every whole message of side `from`; 0, or -1 with c->error set. */
int wire_process(struct conn *c, int from);

/* translate.c: fds and shm, by mode and direction */
int translate(struct conn *c, enum dir d, struct obj *sender, uint32_t opcode,
	      uint8_t *msg, struct arg *args, int nargs, int *drop);
void obj_release(struct conn *c, struct obj *o);
void xfers_close(struct conn *c);
void xfer_pump(struct xfer *x, short revents);
int xfer_start(struct conn *c, int dst);	/* the VFD to send, or -1 */
void translate_init(void);
int guarded_copy(void *dst, const void *src, size_t n);

#endif /* WL_RELAY_H */
