/* SPDX-License-Identifier: MIT */
/*
 * One relayed connection: two sides (a Unix socket, a virtio_wl context), each with its
 * unparsed input and its output queue of (bytes, fds). Nothing here waits: reads and writes are
 * MSG_DONTWAIT, and a side is read only while the other side's queue is under OUT_HIGH.
 */
#include "wl-relay.h"
#include "../libvirtwl/libvirtwl.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static unsigned next_conn_id = 1;

struct conn *conn_new(enum mode mode, int client_fd, int client_virtwl, int server_fd, int server_virtwl)
{
	struct conn *c = calloc(1, sizeof(*c));
	extern const struct wl_interface wl_display_interface;
	struct obj *display;

	if (!c)
		return NULL;
	c->id = next_conn_id++;
	c->mode = mode;
	c->side[CLIENT_SIDE].fd = client_fd;
	c->side[CLIENT_SIDE].virtwl = client_virtwl;
	c->side[SERVER_SIDE].fd = server_fd;
	c->side[SERVER_SIDE].virtwl = server_virtwl;
	for (int i = 0; i < MAX_XFERS; i++)
		c->xfers[i].src = c->xfers[i].dst = -1;
	/* wl_display is object 1 from the start; obj_get finds it once it has a slot. */
	c->objs.client = calloc(64, sizeof(struct obj));
	if (!c->objs.client) {
		free(c);
		return NULL;
	}
	c->objs.nclient = 64;
	display = &c->objs.client[0];
	display->iface = &wl_display_interface;
	display->version = 1;
	return c;
}

void conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->error[0])
		return;		/* the first reason is the one that counts */
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	if (!c->error[0])
		strcpy(c->error, "protocol error");
}

static void close_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

int conn_queue(struct conn *c, int to, const uint8_t *msg, size_t size, const int *fds, int nfds)
{
	struct side *s = &c->side[to];

	if (s->eof) {
		close_fds(fds, nfds);	/* that side is gone: nothing to deliver to */
		return 0;
	}
	if (s->out_len + size > OUT_CAP || s->out_nfds + nfds > OUT_FD_CAP) {
		close_fds(fds, nfds);
		conn_fail(c, "output queue full (relay bug: backpressure should have stopped reading)");
		return -1;
	}
	memcpy(s->out + s->out_len, msg, size);
	for (int i = 0; i < nfds; i++) {
		s->out_fds[s->out_nfds].fd = fds[i];
		s->out_fds[s->out_nfds].start = s->out_len;
		s->out_nfds++;
	}
	s->out_len += size;
	return 0;
}

static void side_drop_output(struct side *s)
{
	for (int i = 0; i < s->out_nfds; i++)
		close(s->out_fds[i].fd);
	s->out_nfds = 0;
	s->out_len = 0;
}

/* The side is gone: it is neither read nor written again, and the connection winds down. */
static void side_hung_up(struct conn *c, struct side *s)
{
	s->eof = 1;
	side_drop_output(s);
	c->closing = 1;
}

/*
 * Writes what is queued. An fd goes with the first send that holds a byte of its message (so
 * never after its message's last byte), at most 28 per send; a context send carries at most
 * MAX_VIRTWL_SEND bytes and is all-or-nothing.
 */
static void side_flush(struct conn *c, struct side *s)
{
	while (s->out_len > 0 && !s->eof) {
		size_t n = s->out_len;
		int k, fds[MAX_FDS_PER_SEND];
		union {
			char buf[CMSG_SPACE(sizeof(fds))];
			struct cmsghdr align;
		} control;
		struct iovec iov;
		struct msghdr mh;
		ssize_t r;

		if (s->virtwl && n > MAX_VIRTWL_SEND)
			n = MAX_VIRTWL_SEND;
		for (k = 0; k < s->out_nfds && s->out_fds[k].start < n; k++) {
			if (k == MAX_FDS_PER_SEND) {
				n = s->out_fds[k].start;	/* the 29th fd's message waits for the next send */
				break;
			}
			fds[k] = s->out_fds[k].fd;
		}
		memset(&mh, 0, sizeof(mh));
		iov.iov_base = s->out;
		iov.iov_len = n;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (k > 0) {
			struct cmsghdr *cm;

			memset(&control, 0, sizeof(control));
			mh.msg_control = control.buf;
			mh.msg_controllen = CMSG_SPACE(k * sizeof(int));
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(k * sizeof(int));
			memcpy(CMSG_DATA(cm), fds, k * sizeof(int));
		}
		r = s->virtwl && !fake_device ? virtwl_sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL)
			      : sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			if (verbose)
				logf_("wl-relay: client %u: %s side: send failed: %s", c->id,
				      s == &c->side[CLIENT_SIDE] ? "client" : "compositor", strerror(errno));
			side_hung_up(c, s);
			return;
		}
		/* The kernel and the device hold their own references now. */
		close_fds(fds, k);
		memmove(s->out_fds, s->out_fds + k, (size_t)(s->out_nfds - k) * sizeof(s->out_fds[0]));
		s->out_nfds -= k;
		for (int i = 0; i < s->out_nfds; i++)
			s->out_fds[i].start = s->out_fds[i].start > (size_t)r ? s->out_fds[i].start - (size_t)r : 0;
		memmove(s->out, s->out + r, s->out_len - (size_t)r);
		s->out_len -= (size_t)r;
	}
}

/* One read of whatever is there; the messages it completes go to the other side's queue. */
static void side_read(struct conn *c, int which)
{
	struct side *s = &c->side[which];
	union {
		char buf[CMSG_SPACE(MAX_FDS_PER_SEND * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = s->in + s->in_len, .iov_len = IN_CAP - s->in_len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *cm;
	ssize_t r;

	r = s->virtwl && !fake_device ? virtwl_recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)
		      : recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	for (cm = r >= 0 ? CMSG_FIRSTHDR(&mh) : NULL; cm; cm = CMSG_NXTHDR(&mh, cm)) {
		int n, *data;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		data = (int *)CMSG_DATA(cm);
		for (int i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, data + i, sizeof(fd));
			if (s->in_nfds == IN_FD_CAP) {
				close(fd);
				conn_fail(c, "more than %d fds ahead of their messages", IN_FD_CAP);
				continue;
			}
			s->in_fds[s->in_nfds++] = fd;
		}
	}
	if (r >= 0 && (mh.msg_flags & MSG_CTRUNC)) {
		conn_fail(c, "more fds in one send than the relay takes (MSG_CTRUNC)");
		return;
	}
	if (r <= 0) {
		if (verbose)
			logf_("wl-relay: client %u: %s hung up%s%s", c->id,
			      which == CLIENT_SIDE ? "the client" : "the compositor",
			      r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
		side_hung_up(c, s);
		return;
	}
	s->in_len += (size_t)r;
	if (c->error[0])
		return;
	wire_process(c, which);
}

static int want_read(struct conn *c, int which)
{
	struct side *s = &c->side[which], *other = &c->side[1 - which];

	return !c->closing && !s->eof && s->in_len < IN_CAP &&
	       other->out_len < OUT_HIGH && other->out_nfds < OUT_FD_HIGH;
}

int conn_pollfds(struct conn *c, struct pollfd *p)
{
	int n = 2;

	for (int i = 0; i < 2; i++) {
		struct side *s = &c->side[i];
		short events = (want_read(c, i) ? POLLIN : 0) | (s->out_len && !s->eof ? POLLOUT : 0);

		/* An fd polled for nothing would still report POLLHUP, again and again. */
		p[i].fd = events ? s->fd : -1;
		p[i].events = events;
		p[i].revents = 0;
	}
	c->npoll_xfers = 0;
	for (int i = 0; i < MAX_XFERS; i++) {
		struct xfer *x = &c->xfers[i];

		if (x->src < 0)
			continue;
		p[n].fd = x->len ? x->dst : x->src;
		p[n].events = x->len ? POLLOUT : POLLIN;
		p[n].revents = 0;
		c->poll_xfer[c->npoll_xfers++] = i;
		n++;
	}
	return n;
}

void conn_free(struct conn *c, const char *why)
{
	if (why)
		logf_("wl-relay: client %u: %s", c->id, why);
	else if (verbose)
		logf_("wl-relay: client %u: closed", c->id);
	for (int i = 0; i < 2; i++) {
		struct side *s = &c->side[i];

		side_drop_output(s);
		close_fds(s->in_fds, s->in_nfds);
		close(s->fd);
	}
	xfers_close(c);
	objmap_free(c);
	free(c);
}

int conn_handle(struct conn *c, const struct pollfd *p)
{
	for (int k = 0; k < c->npoll_xfers; k++)
		if (p[2 + k].revents)
			xfer_pump(&c->xfers[c->poll_xfer[k]], p[2 + k].revents);
	for (int i = 0; i < 2 && !c->error[0]; i++)
		if (p[i].revents & (POLLOUT | POLLHUP | POLLERR))
			side_flush(c, &c->side[i]);
	for (int i = 0; i < 2 && !c->error[0]; i++) {
		if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) && want_read(c, i)) {
			side_read(c, i);
			/* What the read produced may go out at once. */
			if (!c->error[0])
				side_flush(c, &c->side[1 - i]);
		}
	}
	if (c->error[0]) {
		conn_free(c, c->error);
		return 1;
	}
	/* A hang-up closes the other side once what was read from the first has gone out. */
	if (c->closing) {
		for (int i = 0; i < 2; i++)
			if (!c->side[i].eof && c->side[i].out_len > 0)
				return 0;
		conn_free(c, NULL);
		return 1;
	}
	return 0;
}
