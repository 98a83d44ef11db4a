/* SPDX-License-Identifier: MIT */
/*
 * The wire: framing by the header's size, argument walking by the generated signatures, the
 * object table (new_id arguments, wl_registry.bind, delete_id) and registry filtering.
 */
#include "wl-relay.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SERVER_ID_BASE 0xff000000u

/*
 * Globals hidden even if their XML were added to the tables: they carry fds the relay cannot
 * translate (fences, dmabufs, DRM leases) or belong to weston's own clients.
 */
static const char *const hidden_globals[] = {
	"zwp_linux_explicit_synchronization_v1", "zwp_linux_dmabuf_v1", "wp_drm_lease_device_v1",
	"wl_drm", "weston_desktop_shell", "weston_screenshooter", "weston_debug_v1",
	"zwp_input_method_v1",	/* weston gives it to its own input method only */
	NULL,
};

extern const struct wl_interface wl_display_interface, wl_registry_interface;

const struct wl_interface *interface_by_name(const char *name)
{
	for (size_t i = 0; relay_interfaces[i]; i++)
		if (strcmp(relay_interfaces[i]->name, name) == 0)
			return relay_interfaces[i];
	return NULL;
}

int interface_hidden(const char *name)
{
	for (size_t i = 0; hidden_globals[i]; i++)
		if (strcmp(hidden_globals[i], name) == 0)
			return 1;
	return 0;
}

struct obj *obj_get(struct objmap *m, uint32_t id)
{
	struct obj *o = NULL;

	if (id >= SERVER_ID_BASE) {
		if (id - SERVER_ID_BASE < m->nserver)
			o = &m->server[id - SERVER_ID_BASE];
	} else if (id > 0 && id - 1 < m->nclient) {
		o = &m->client[id - 1];
	}
	return o && o->iface ? o : NULL;
}

/* The slot for a new object `id`, grown as needed; NULL past the bounds. */
static struct obj *obj_slot(struct objmap *m, uint32_t id)
{
	struct obj **table;
	uint32_t *count, index, limit, n;

	if (id >= SERVER_ID_BASE) {
		table = &m->server, count = &m->nserver, index = id - SERVER_ID_BASE, limit = MAX_SERVER_IDS;
	} else {
		if (id == 0)
			return NULL;
		table = &m->client, count = &m->nclient, index = id - 1, limit = MAX_CLIENT_IDS;
	}
	if (index >= limit)
		return NULL;
	if (index >= *count) {
		struct obj *grown;

		n = *count ? *count : 64;
		while (n <= index)
			n *= 2;
		if (n > limit)
			n = limit;
		grown = realloc(*table, n * sizeof(**table));
		if (!grown)
			return NULL;
		memset(grown + *count, 0, (n - *count) * sizeof(**table));
		*table = grown;
		*count = n;
	}
	return &(*table)[index];
}

/* Records object `id`; an id reused while its old object was a zombie replaces it. */
static int obj_create(struct conn *c, uint32_t id, const struct wl_interface *iface, uint32_t version)
{
	struct obj *o = obj_slot(&c->objs, id);

	if (!o) {
		conn_fail(c, "object id %u out of the relay's bounds", id);
		return -1;
	}
	if (o->iface)
		obj_release(c, o);
	memset(o, 0, sizeof(*o));
	o->iface = iface;
	o->version = version;
	return 0;
}

static void obj_delete(struct conn *c, uint32_t id)
{
	struct obj *o = obj_get(&c->objs, id);

	if (o) {
		obj_release(c, o);
		memset(o, 0, sizeof(*o));
	}
}

void objmap_free(struct conn *c)
{
	struct objmap *m = &c->objs;

	for (uint32_t i = 0; i < m->nclient; i++)
		if (m->client[i].iface)
			obj_release(c, &m->client[i]);
	for (uint32_t i = 0; i < m->nserver; i++)
		if (m->server[i].iface)
			obj_release(c, &m->server[i]);
	free(m->client);
	free(m->server);
	memset(m, 0, sizeof(*m));
}

static uint32_t word(const uint8_t *p)
{
	uint32_t w;

	memcpy(&w, p, 4);
	return w;
}

/*
 * Walks `m`'s signature over the message body; fills args (fds popped from `fds`, *nfds
 * left with what remains). -1 with c->error set when the bytes do not match.
 */
static int decode(struct conn *c, const struct wl_message *m, const uint8_t *msg, size_t size,
		  struct arg *args, int *nargs, int *fds, int *nfds, int *used_fds)
{
	const char *sig = m->signature;
	size_t pos = WL_HEADER;
	int n = 0, type_index = 0, nullable = 0;

	*used_fds = 0;
	for (; *sig; sig++) {
		struct arg *a;

		if (*sig >= '0' && *sig <= '9')
			continue;
		if (*sig == '?') {
			nullable = 1;
			continue;
		}
		if (n == MAX_ARGS) {
			conn_fail(c, "%s has too many arguments", m->name);
			return -1;
		}
		a = &args[n];
		memset(a, 0, sizeof(*a));
		a->type = *sig;
		a->fd = -1;
		a->iface = m->types ? m->types[type_index] : NULL;
		type_index++;
		if (*sig == 'h') {
			if (*used_fds == *nfds) {
				conn_fail(c, "%s: file descriptor expected, none came with the message", m->name);
				return -1;
			}
			if (*used_fds == MAX_FDS_PER_MESSAGE) {
				conn_fail(c, "%s carries too many fds", m->name);
				return -1;
			}
			a->fd = fds[(*used_fds)++];
			n++;
			nullable = 0;
			continue;
		}
		if (pos + 4 > size) {
			conn_fail(c, "%s: message too short for its arguments", m->name);
			return -1;
		}
		a->off = pos;
		a->u = word(msg + pos);
		pos += 4;
		if (*sig == 's' || *sig == 'a') {
			size_t padded = ((size_t)a->u + 3) & ~(size_t)3;

			if (padded > size - pos || padded < a->u) {
				conn_fail(c, "%s: %s longer than the message", m->name, *sig == 's' ? "string" : "array");
				return -1;
			}
			if (*sig == 's') {
				if (a->u == 0 && !nullable) {
					conn_fail(c, "%s: null string where one is required", m->name);
					return -1;
				}
				if (a->u > 0 && (msg[pos + a->u - 1] != '\0' || memchr(msg + pos, 0, a->u) != msg + pos + a->u - 1)) {
					conn_fail(c, "%s: string not terminated", m->name);
					return -1;
				}
				a->str = (const char *)msg + pos;
			}
			pos += padded;
		} else if (*sig == 'n' && a->u == 0) {
			conn_fail(c, "%s: new object id 0", m->name);
			return -1;
		}
		nullable = 0;
		n++;
	}
	if (pos != size) {
		conn_fail(c, "%s: %zu bytes past its arguments", m->name, size - pos);
		return -1;
	}
	/* The fds that came with this message leave the FIFO (args own them now). */
	memmove(fds, fds + *used_fds, (size_t)(*nfds - *used_fds) * sizeof(int));
	*nfds -= *used_fds;
	*nargs = n;
	return 0;
}

static struct global *global_find(struct conn *c, uint32_t name)
{
	for (int i = 0; i < c->nglobals; i++)
		if (c->globals[i].name == name)
			return &c->globals[i];
	return NULL;
}

/* wl_registry.global and global_remove: what the relay cannot translate is never seen. */
static int filter_registry_event(struct conn *c, uint32_t opcode, uint8_t *msg, struct arg *args, int *drop)
{
	struct global *g;

	if (opcode == 0) {		/* global(name, interface, version) */
		const struct wl_interface *iface;
		uint32_t version = args[2].u;

		iface = interface_hidden(args[1].str) ? NULL : interface_by_name(args[1].str);
		if (!iface) {
			*drop = 1;
			return 0;
		}
		if (version > (uint32_t)iface->version) {
			version = (uint32_t)iface->version;
			memcpy(msg + args[2].off, &version, 4);
		}
		g = global_find(c, args[0].u);
		if (!g) {
			if (c->nglobals == MAX_GLOBALS) {
				conn_fail(c, "the compositor offers more than %d globals", MAX_GLOBALS);
				return -1;
			}
			g = &c->globals[c->nglobals++];
		}
		g->name = args[0].u;
		g->iface = iface;
		g->version = version;
	} else if (opcode == 1) {	/* global_remove(name) */
		g = global_find(c, args[0].u);
		if (!g) {
			*drop = 1;
			return 0;
		}
		*g = c->globals[--c->nglobals];
	}
	return 0;
}

/* wl_registry.bind(name, interface, version, id): only to what was advertised, at most its version. */
static int check_bind(struct conn *c, struct arg *args)
{
	struct global *g = global_find(c, args[0].u);

	if (!g || !args[1].str || strcmp(args[1].str, g->iface->name) != 0) {
		conn_fail(c, "wl_registry.bind to global %u (%s) that was not advertised", args[0].u,
			  args[1].str ? args[1].str : "null");
		return -1;
	}
	if (args[2].u == 0 || args[2].u > g->version) {
		conn_fail(c, "wl_registry.bind of %s version %u (offered: %u)", g->iface->name, args[2].u, g->version);
		return -1;
	}
	return 0;
}

static void close_args(struct arg *args, int nargs)
{
	for (int i = 0; i < nargs; i++)
		if (args[i].type == 'h' && args[i].fd >= 0) {
			close(args[i].fd);
			args[i].fd = -1;
		}
}

/* One whole message from side `from`: checked, tracked, translated, queued to the other side. */
static int relay_message(struct conn *c, int from, uint8_t *msg, size_t size)
{
	enum dir d = from == CLIENT_SIDE ? REQUEST : EVENT;
	struct side *s = &c->side[from];
	uint32_t id = word(msg), opcode = word(msg + 4) & 0xffff;
	struct arg args[MAX_ARGS];
	int nargs = 0, used = 0, drop = 0, fds[MAX_FDS_PER_MESSAGE], nfds = 0;
	const struct wl_message *m;
	struct obj *o = obj_get(&c->objs, id);

	if (!o) {
		conn_fail(c, "%s for unknown object %u", d == REQUEST ? "request" : "event", id);
		return -1;
	}
	if ((int)opcode >= (d == REQUEST ? o->iface->method_count : o->iface->event_count)) {
		conn_fail(c, "unknown %s opcode %u on %s", d == REQUEST ? "request" : "event", opcode, o->iface->name);
		return -1;
	}
	m = d == REQUEST ? &o->iface->methods[opcode] : &o->iface->events[opcode];
	if (decode(c, m, msg, size, args, &nargs, s->in_fds, &s->in_nfds, &used) < 0)
		return -1;

	/* New objects: typed new_ids inherit the creator's version; bind names its own. */
	for (int i = 0; i < nargs; i++) {
		const struct wl_interface *iface = args[i].iface;
		uint32_t version = o->version;

		if (args[i].type != 'n')
			continue;
		if (!iface) {		/* untyped: preceded by (interface, version) */
			if (o->iface != &wl_registry_interface || i != 3) {
				conn_fail(c, "%s.%s: untyped new_id", o->iface->name, m->name);
				goto fail;
			}
			if (check_bind(c, args) < 0)
				goto fail;
			iface = global_find(c, args[0].u)->iface;
			version = args[2].u;
		}
		if (obj_create(c, args[i].u, iface, version) < 0)
			goto fail;
	}
	if (d == EVENT && o->iface == &wl_registry_interface && filter_registry_event(c, opcode, msg, args, &drop) < 0)
		goto fail;
	if (translate(c, d, o, opcode, msg, args, nargs, &drop) < 0)
		goto fail;
	/* delete_id after translate: the released state may be what translate looked at. */
	if (d == EVENT && o->iface == &wl_display_interface && opcode == 1)
		obj_delete(c, args[0].u);
	if (drop) {
		close_args(args, nargs);
		return 0;
	}
	for (int i = 0; i < nargs; i++)
		if (args[i].type == 'h')
			fds[nfds++] = args[i].fd;
	if (conn_queue(c, 1 - from, msg, size, fds, nfds) < 0)
		return -1;	/* conn_queue closed them */
	return 0;
fail:
	close_args(args, nargs);
	return -1;
}

int wire_process(struct conn *c, int from)
{
	struct side *s = &c->side[from];
	size_t pos = 0;

	while (s->in_len - pos >= WL_HEADER) {
		uint32_t size = word(s->in + pos + 4) >> 16;

		if (size < WL_HEADER || size % 4 || size > WL_MAX_MESSAGE) {
			conn_fail(c, "bad message size %u (object %u)", size, word(s->in + pos));
			return -1;
		}
		if (s->in_len - pos < size)
			break;
		if (relay_message(c, from, s->in + pos, size) < 0)
			return -1;
		pos += size;
	}
	memmove(s->in, s->in + pos, s->in_len - pos);
	s->in_len -= pos;
	return 0;
}
