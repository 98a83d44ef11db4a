/* SPDX-License-Identifier: MIT */
/*
 * What the relay changes in messages: fds the receiving side could not use, and the pixels of
 * wl_shm buffers.
 *
 * Client mode (guest client → host compositor): a client's shm pool is a guest memfd the host
 * cannot map, so create_pool gets a NEW_ALLOC VFD in its place and the buffer's bytes are
 * copied into it before each commit that follows an attach; a data offer's receive pipe becomes
 * a NEW_PIPE_READ VFD copied into the client's pipe. Host fds (keymaps, data_source.send pipes)
 * are VFDs the client can use as they are.
 *
 * Compositor mode (host client → guest compositor): host fds arrive as VFDs the compositor maps
 * or writes as they are; the compositor's own memfds (keymaps) are copied into a NEW_ALLOC once,
 * its data_source.send pipes get a NEW_PIPE_READ VFD.
 */
#include "wl-relay.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

extern const struct wl_interface wl_shm_interface, wl_shm_pool_interface, wl_buffer_interface,
	wl_surface_interface, wl_data_offer_interface, wl_data_source_interface, wl_keyboard_interface,
	zwp_primary_selection_offer_v1_interface, zwp_primary_selection_source_v1_interface,
	zwp_input_method_context_v1_interface;

/* SIGBUS while reading a client's pool (the client truncated its memfd) ends that client only. */
static sigjmp_buf bus_jump;
static volatile sig_atomic_t bus_armed;

static void on_sigbus(int sig)
{
	if (bus_armed)
		siglongjmp(bus_jump, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

void translate_init(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigbus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}

int guarded_copy(void *dst, const void *src, size_t n)
{
	if (sigsetjmp(bus_jump, 1)) {
		bus_armed = 0;
		return -1;
	}
	bus_armed = 1;
	memcpy(dst, src, n);
	bus_armed = 0;
	return 0;
}

static void pool_unref(struct conn *c, struct pool *p)
{
	if (--p->refs > 0)
		return;
	munmap((void *)p->cmap, p->csize);
	munmap(p->vmap, p->vsize);
	close(p->memfd);
	close(p->vfd);		/* CLOSE to the device; the compositor keeps its own mapping */
	c->npools--;
	c->shm_bytes -= p->vsize;
	free(p);
}

void obj_release(struct conn *c, struct obj *o)
{
	if (o->kind == OBJ_POOL) {
		pool_unref(c, o->state);
	} else if (o->kind == OBJ_BUFFER) {
		struct buffer *b = o->state;

		pool_unref(c, b->pool);
		free(b);
	}
	o->kind = OBJ_PLAIN;
	o->state = NULL;
}

/* Room to grow: the relay cannot give the host a bigger pool later (no objects of its own). */
static size_t pool_allocation(size_t size)
{
	size_t headroom = size / 2 > (64u << 10) ? size / 2 : (64u << 10);
	size_t total = (size + headroom + 4095) & ~(size_t)4095;

	return total > MAX_POOL_BYTES ? ((size + 4095) & ~(size_t)4095) : total;
}

/* Checks that `fd` is a file of at least `size` bytes, as libwayland-server would need. */
static int check_shm_file(struct conn *c, int fd, size_t size, const char *what)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		conn_fail(c, "%s: the fd is not a shared memory file", what);
		return -1;
	}
	if ((uint64_t)st.st_size < size) {
		conn_fail(c, "%s: %zu bytes asked, the file holds %lld", what, size, (long long)st.st_size);
		return -1;
	}
	return 0;
}

static int create_pool(struct conn *c, struct arg *args)
{
	int32_t size = (int32_t)args[2].u;
	int fd = args[1].fd, send_fd;
	struct pool *p;
	struct obj *po;
	size_t vsize;

	if (size <= 0 || (uint32_t)size > MAX_POOL_BYTES) {
		conn_fail(c, "wl_shm.create_pool of %d bytes (the relay allows 1 to %u)", size, MAX_POOL_BYTES);
		return -1;
	}
	if (c->npools == MAX_POOLS) {
		conn_fail(c, "more than %d shm pools", MAX_POOLS);
		return -1;
	}
	if (check_shm_file(c, fd, (size_t)size, "wl_shm.create_pool") < 0)
		return -1;
	vsize = pool_allocation((size_t)size);
	if (c->shm_bytes + vsize > MAX_CONN_SHM) {
		conn_fail(c, "shm pools over %u bytes in all", MAX_CONN_SHM);
		return -1;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		conn_fail(c, "out of memory");
		return -1;
	}
	p->memfd = fd;
	p->csize = (size_t)size;
	p->vsize = vsize;
	p->vfd = -1;
	p->cmap = mmap(NULL, p->csize, PROT_READ, MAP_SHARED, fd, 0);
	if (p->cmap == MAP_FAILED) {
		conn_fail(c, "wl_shm.create_pool: cannot map the client's pool: %s", strerror(errno));
		goto fail;
	}
	p->vfd = wl_new_alloc(vsize);
	if (p->vfd < 0) {
		conn_fail(c, "wl_shm.create_pool: virtio_wl NEW_ALLOC of %zu bytes failed: %s", vsize, strerror(errno));
		goto fail;
	}
	p->vmap = mmap(NULL, vsize, PROT_READ | PROT_WRITE, MAP_SHARED, p->vfd, 0);
	if (p->vmap == MAP_FAILED) {
		conn_fail(c, "wl_shm.create_pool: cannot map host memory: %s", strerror(errno));
		goto fail;
	}
	send_fd = fcntl(p->vfd, F_DUPFD_CLOEXEC, 0);
	if (send_fd < 0) {
		conn_fail(c, "dup: %s", strerror(errno));
		goto fail;
	}
	po = obj_get(&c->objs, args[0].u);
	po->kind = OBJ_POOL;
	po->state = p;
	p->refs = 1;
	c->npools++;
	c->shm_bytes += vsize;
	args[1].fd = send_fd;	/* the pool owns the client's fd now */
	return 0;
fail:
	if (p->vmap && p->vmap != MAP_FAILED)
		munmap(p->vmap, vsize);
	if (p->vfd >= 0)
		close(p->vfd);
	if (p->cmap && p->cmap != MAP_FAILED)
		munmap((void *)p->cmap, p->csize);
	free(p);
	return -1;		/* the client's fd is still in args: closed by the caller */
}

static int resize_pool(struct conn *c, struct pool *p, int32_t size)
{
	const uint8_t *map;

	if (size <= 0 || (size_t)size <= p->csize)
		return 0;	/* shrinking: the compositor answers it */
	if ((size_t)size > p->vsize) {
		conn_fail(c, "wl_shm_pool.resize to %d bytes: beyond the %zu bytes of host memory the relay "
			  "allocated for this pool (a relay that keeps ids cannot make a bigger one)", size, p->vsize);
		return -1;
	}
	if (check_shm_file(c, p->memfd, (size_t)size, "wl_shm_pool.resize") < 0)
		return -1;
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, p->memfd, 0);
	if (map == MAP_FAILED) {
		conn_fail(c, "wl_shm_pool.resize: cannot map the client's pool: %s", strerror(errno));
		return -1;
	}
	munmap((void *)p->cmap, p->csize);
	p->cmap = map;
	p->csize = (size_t)size;
	return 0;
}

static int create_buffer(struct conn *c, struct pool *p, struct arg *args)
{
	int32_t offset = (int32_t)args[1].u, width = (int32_t)args[2].u;
	int32_t height = (int32_t)args[3].u, stride = (int32_t)args[4].u;
	struct obj *bo = obj_get(&c->objs, args[0].u);
	struct buffer *b;

	/* A buffer outside its pool is never copied; the compositor rejects it anyway. */
	if (!p || offset < 0 || width <= 0 || height <= 0 || stride <= 0 ||
	    (uint64_t)offset + (uint64_t)stride * (uint64_t)height > p->csize)
		return 0;
	b = malloc(sizeof(*b));
	if (!b) {
		conn_fail(c, "out of memory");
		return -1;
	}
	b->pool = p;
	b->offset = (size_t)offset;
	b->length = (size_t)stride * (size_t)height;
	p->refs++;
	bo->kind = OBJ_BUFFER;
	bo->state = b;
	return 0;
}

/* At commit: the attached buffer's bytes into host memory, before the commit leaves. */
static int copy_attached(struct conn *c, struct obj *surface)
{
	struct obj *bo;
	struct buffer *b;

	if (!surface->attached)
		return 0;
	surface->attached = 0;
	bo = surface->attached_buffer ? obj_get(&c->objs, surface->attached_buffer) : NULL;
	if (!bo || bo->kind != OBJ_BUFFER)
		return 0;
	b = bo->state;
	if (guarded_copy(b->pool->vmap + b->offset, b->pool->cmap + b->offset, b->length) < 0) {
		conn_fail(c, "wl_surface.commit: the client's shm pool is smaller than it said (SIGBUS)");
		return -1;
	}
	return 0;
}

int xfer_start(struct conn *c, int dst)
{
	struct xfer *x = NULL;
	int vfd, send_fd;

	for (int i = 0; i < MAX_XFERS; i++)
		if (c->xfers[i].src < 0) {
			x = &c->xfers[i];
			break;
		}
	if (!x) {
		conn_fail(c, "more than %d clipboard transfers at once", MAX_XFERS);
		return -1;
	}
	vfd = wl_new_pipe_read(&send_fd);
	if (vfd < 0) {
		conn_fail(c, "virtio_wl NEW_PIPE_READ failed: %s", strerror(errno));
		return -1;
	}
	fcntl(vfd, F_SETFL, fcntl(vfd, F_GETFL) | O_NONBLOCK);
	fcntl(dst, F_SETFL, fcntl(dst, F_GETFL) | O_NONBLOCK);
	x->src = vfd;
	x->dst = dst;
	x->len = x->off = 0;
	return send_fd;
}

void xfers_close(struct conn *c)
{
	for (int i = 0; i < MAX_XFERS; i++)
		if (c->xfers[i].src >= 0) {
			close(c->xfers[i].src);
			close(c->xfers[i].dst);
			c->xfers[i].src = c->xfers[i].dst = -1;
		}
}

/* A memfd of the compositor's (a keymap) as host memory: it is immutable, one copy is enough. */
static int copy_to_alloc(struct conn *c, struct arg *a, const char *what)
{
	struct stat st;
	uint8_t *map;
	size_t done = 0;
	int vfd;

	if (fstat(a->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > MAX_KEYMAP_BYTES) {
		conn_fail(c, "%s: the compositor's fd is not a file of 1 to %u bytes", what, MAX_KEYMAP_BYTES);
		return -1;
	}
	vfd = wl_new_alloc((size_t)st.st_size);
	if (vfd < 0) {
		conn_fail(c, "%s: virtio_wl NEW_ALLOC failed: %s", what, strerror(errno));
		return -1;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, vfd, 0);
	if (map == MAP_FAILED) {
		close(vfd);
		conn_fail(c, "%s: cannot map host memory: %s", what, strerror(errno));
		return -1;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = pread(a->fd, map + done, (size_t)st.st_size - done, (off_t)done);

		if (n <= 0)
			break;
		done += (size_t)n;
	}
	munmap(map, (size_t)st.st_size);
	if (done < (size_t)st.st_size) {
		close(vfd);
		conn_fail(c, "%s: cannot read the compositor's file", what);
		return -1;
	}
	close(a->fd);
	a->fd = vfd;
	return 0;
}

static int swap_pipe(struct conn *c, struct arg *a)
{
	int vfd = xfer_start(c, a->fd);

	if (vfd < 0)
		return -1;
	a->fd = vfd;	/* the transfer owns the local fd now */
	return 0;
}

static struct arg *fd_arg(struct arg *args, int nargs)
{
	for (int i = 0; i < nargs; i++)
		if (args[i].type == 'h')
			return &args[i];
	return NULL;
}

static int client_request(struct conn *c, struct obj *o, const char *name, struct arg *args, int nargs)
{
	const struct wl_interface *i = o->iface;
	struct arg *fd = fd_arg(args, nargs);

	if (i == &wl_surface_interface) {
		if (strcmp(name, "attach") == 0) {
			o->attached = 1;
			o->attached_buffer = args[0].u;
		} else if (strcmp(name, "commit") == 0) {
			return copy_attached(c, o);
		}
	} else if (i == &wl_shm_interface && strcmp(name, "create_pool") == 0) {
		return create_pool(c, args);
	} else if (i == &wl_shm_pool_interface) {
		if (strcmp(name, "create_buffer") == 0)
			return create_buffer(c, o->kind == OBJ_POOL ? o->state : NULL, args);
		if (strcmp(name, "resize") == 0)
			return o->kind == OBJ_POOL ? resize_pool(c, o->state, (int32_t)args[0].u) : 0;
		if (strcmp(name, "destroy") == 0)
			obj_release(c, o);	/* its buffers keep the memory */
	} else if (i == &wl_buffer_interface && strcmp(name, "destroy") == 0) {
		obj_release(c, o);
	} else if ((i == &wl_data_offer_interface || i == &zwp_primary_selection_offer_v1_interface) &&
		   strcmp(name, "receive") == 0) {
		return swap_pipe(c, fd);
	}
	if (fd) {
		conn_fail(c, "%s.%s carries an fd the relay cannot translate", i->name, name);
		return -1;
	}
	return 0;
}

static int compositor_event(struct conn *c, struct obj *o, const char *name, struct arg *args, int nargs)
{
	const struct wl_interface *i = o->iface;
	struct arg *fd = fd_arg(args, nargs);

	if (!fd)
		return 0;
	if ((i == &wl_keyboard_interface || i == &zwp_input_method_context_v1_interface) && strcmp(name, "keymap") == 0)
		return copy_to_alloc(c, fd, "wl_keyboard.keymap");
	if ((i == &wl_data_source_interface || i == &zwp_primary_selection_source_v1_interface) && strcmp(name, "send") == 0)
		return swap_pipe(c, fd);
	conn_fail(c, "the compositor's %s.%s carries an fd the relay cannot translate", i->name, name);
	return -1;
}

int translate(struct conn *c, enum dir d, struct obj *o, uint32_t opcode, uint8_t *msg,
	      struct arg *args, int nargs, int *drop)
{
	const struct wl_message *m = d == REQUEST ? &o->iface->methods[opcode] : &o->iface->events[opcode];

	(void)msg;
	(void)drop;
	if (c->mode == MODE_CLIENT && d == REQUEST)
		return client_request(c, o, m->name, args, nargs);
	if (c->mode == MODE_COMPOSITOR && d == EVENT)
		return compositor_event(c, o, m->name, args, nargs);
	return 0;	/* host fds are VFDs: usable in the guest as they are */
}

static void xfer_end(struct xfer *x)
{
	close(x->src);
	close(x->dst);
	x->src = x->dst = -1;
	x->len = x->off = 0;
}

/* Host pipe → local fd, a chunk at a time, until end of stream or the reader goes away. */
void xfer_pump(struct xfer *x, short revents)
{
	ssize_t n;

	if (x->len == 0) {
		n = read(x->src, x->buf, sizeof(x->buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			xfer_end(x);
			return;
		}
		x->len = (size_t)n;
		x->off = 0;
	} else if (!(revents & (POLLOUT | POLLERR | POLLHUP))) {
		return;
	}
	n = write(x->dst, x->buf + x->off, x->len - x->off);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		xfer_end(x);
		return;
	}
	x->off += (size_t)n;
	if (x->off == x->len)
		x->len = x->off = 0;
}
