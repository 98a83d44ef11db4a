/* SPDX-License-Identifier: MIT */
/*
 * libvirtwl: sendmsg/recvmsg semantics on top of the virtio_wl driver's SEND_FLAGS and
 * RECV_FLAGS ioctls (guest/linux/virtio_wl/EXTENSION.md). See libvirtwl.h for the contract.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* IOV_MAX */
#endif
#include "libvirtwl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

/* The driver's limit for one SEND (VIRTWL_MAX_SEND_BYTES): larger sends go in pieces. */
#define MAX_SEND_PIECE (4u << 20)
/* Most bytes asked for in one RECV: a stream read may return less than asked anyway. */
#define MAX_RECV (256u << 10)
/* Messages up to this size are built on the stack (Wayland's are at most 4096 bytes). */
#define STACK_BUFFER 8192

/* One NEW on a /dev/wl0 opened for the purpose; the new VFD (close-on-exec) or -1. */
static int new_vfd(struct virtwl_ioctl_new *request)
{
	int wl0 = open(VIRTWL_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	int saved;

	if (wl0 < 0)
		return -1;
	request->fd = -1;
	if (ioctl(wl0, VIRTWL_IOCTL_NEW, request) < 0) {
		saved = errno;
		close(wl0);
		errno = saved;
		return -1;
	}
	close(wl0);
	return request->fd;
}

int virtwl_connect(const char *name)
{
	struct virtwl_ioctl_new request = { .type = VIRTWL_IOCTL_NEW_CTX };
	size_t length = name ? strlen(name) : 0;

	if (length > sizeof(request.name)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (length) {
		request.type = VIRTWL_IOCTL_NEW_CTX_NAMED;
		memcpy(request.name, name, length);	/* a 32-byte name needs no terminator */
	}
	return new_vfd(&request);
}

int virtwl_alloc(size_t size)
{
	struct virtwl_ioctl_new request = { .type = VIRTWL_IOCTL_NEW_ALLOC };

	if (size == 0 || size > UINT32_MAX - 4095) {
		errno = EINVAL;
		return -1;
	}
	request.size = (uint32_t)size;
	return new_vfd(&request);
}

int virtwl_pipe(enum virtwl_pipe_direction direction)
{
	struct virtwl_ioctl_new request = { .type = VIRTWL_IOCTL_NEW_PIPE_READ };

	if (direction != VIRTWL_PIPE_READ && direction != VIRTWL_PIPE_WRITE) {
		errno = EINVAL;
		return -1;
	}
	if (direction == VIRTWL_PIPE_WRITE)
		request.type = VIRTWL_IOCTL_NEW_PIPE_WRITE;
	return new_vfd(&request);
}

/* Bytes of the iovecs, or -1 with errno as sendmsg/recvmsg would set it. */
static ssize_t iov_total(const struct msghdr *msg)
{
	size_t total = 0, i;

	if (msg->msg_iovlen > IOV_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	if (msg->msg_iovlen && !msg->msg_iov) {
		errno = EFAULT;
		return -1;
	}
	for (i = 0; i < msg->msg_iovlen; i++) {
		if (msg->msg_iov[i].iov_len > (size_t)SSIZE_MAX - total) {
			errno = EINVAL;
			return -1;
		}
		total += msg->msg_iov[i].iov_len;
	}
	return (ssize_t)total;
}

/* Copy `len` bytes starting `offset` bytes into the iovecs out to `out`. */
static void gather(const struct msghdr *msg, size_t offset, uint8_t *out, size_t len)
{
	size_t i;

	for (i = 0; i < msg->msg_iovlen && len; i++) {
		const struct iovec *v = &msg->msg_iov[i];
		size_t n;

		if (offset >= v->iov_len) {
			offset -= v->iov_len;
			continue;
		}
		n = v->iov_len - offset;
		if (n > len)
			n = len;
		memcpy(out, (const uint8_t *)v->iov_base + offset, n);
		out += n;
		len -= n;
		offset = 0;
	}
}

static void scatter(struct msghdr *msg, const uint8_t *in, size_t len)
{
	size_t i;

	for (i = 0; i < msg->msg_iovlen && len; i++) {
		size_t n = msg->msg_iov[i].iov_len < len ? msg->msg_iov[i].iov_len : len;

		memcpy(msg->msg_iov[i].iov_base, in, n);
		in += n;
		len -= n;
	}
}

/* The SCM_RIGHTS fds of a message to send; their count, or -1 with errno. */
static int collect_fds(const struct msghdr *msg, int fds[VIRTWL_SEND_MAX_ALLOCS])
{
	struct cmsghdr *c;
	int count = 0;

	if (msg->msg_controllen && !msg->msg_control) {
		errno = EFAULT;
		return -1;
	}
	for (c = CMSG_FIRSTHDR((struct msghdr *)msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		size_t n, i;

		if (c->cmsg_len < CMSG_LEN(0) ||
		    c->cmsg_len > msg->msg_controllen - ((uint8_t *)c - (uint8_t *)msg->msg_control)) {
			errno = EINVAL;
			return -1;
		}
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			errno = EINVAL;		/* no credentials or security labels here */
			return -1;
		}
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		if (n > (size_t)(VIRTWL_SEND_MAX_ALLOCS - count)) {
			errno = EINVAL;		/* the device carries at most 28 per message */
			return -1;
		}
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (fd < 0) {
				errno = EBADF;
				return -1;
			}
			fds[count++] = fd;
		}
	}
	return count;
}

ssize_t virtwl_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	union {
		struct virtwl_ioctl_msg header;
		uint8_t bytes[STACK_BUFFER];
	} stack;
	int fds[VIRTWL_SEND_MAX_ALLOCS];
	struct virtwl_ioctl_msg *m = &stack.header;
	size_t sent = 0, capacity = sizeof(stack) - sizeof(*m);
	ssize_t total;
	int nfds, i;

	if (!msg) {
		errno = EFAULT;
		return -1;
	}
	if (msg->msg_name || msg->msg_namelen) {
		errno = EISCONN;	/* a context is connected already */
		return -1;
	}
	total = iov_total(msg);
	if (total < 0)
		return -1;
	nfds = collect_fds(msg, fds);
	if (nfds < 0)
		return -1;
	if (total == 0 && nfds == 0)
		return 0;
	if ((size_t)total > capacity) {
		capacity = (size_t)total < MAX_SEND_PIECE ? (size_t)total : MAX_SEND_PIECE;
		m = malloc(sizeof(*m) + capacity);
		if (!m) {
			errno = ENOMEM;
			return -1;
		}
	}
	/* The fds travel with the first piece, as a socket attaches them to the first byte. */
	do {
		size_t piece = (size_t)total - sent < capacity ? (size_t)total - sent : capacity;
		int r;

		for (i = 0; i < VIRTWL_SEND_MAX_ALLOCS; i++)
			m->fds[i] = sent == 0 && i < nfds ? fds[i] : -1;
		m->len = (uint32_t)piece;
		m->flags = (uint32_t)flags;
		gather(msg, sent, m->data, piece);
		r = ioctl(fd, VIRTWL_IOCTL_SEND_FLAGS, m);
		if (r < 0) {
			if (sent == 0)
				goto fail;
			break;		/* a stream send may be partial: report what went */
		}
		sent += (size_t)r;
	} while (sent < (size_t)total);
	if (m != &stack.header)
		free(m);
	return (ssize_t)sent;
fail:
	if (m != &stack.header) {
		int saved = errno;

		free(m);
		errno = saved;
	}
	return -1;
}

ssize_t virtwl_recvmsg(int fd, struct msghdr *msg, int flags)
{
	union {
		struct virtwl_ioctl_msg header;
		uint8_t bytes[STACK_BUFFER];
	} stack;
	struct virtwl_ioctl_msg *m = &stack.header;
	size_t capacity = sizeof(stack) - sizeof(*m), room = 0;
	int received[VIRTWL_SEND_MAX_ALLOCS];
	int count = 0, kept, i, r;
	ssize_t total;
	int truncated;

	if (!msg) {
		errno = EFAULT;
		return -1;
	}
	total = iov_total(msg);
	if (total < 0)
		return -1;
	if (msg->msg_controllen && !msg->msg_control) {
		errno = EFAULT;
		return -1;
	}
	if ((size_t)total > capacity) {
		capacity = (size_t)total < MAX_RECV ? (size_t)total : MAX_RECV;
		m = malloc(sizeof(*m) + capacity);
		if (!m) {
			errno = ENOMEM;
			return -1;
		}
	}
	m->len = (uint32_t)((size_t)total < capacity ? (size_t)total : capacity);
	m->flags = (uint32_t)flags;
	r = ioctl(fd, VIRTWL_IOCTL_RECV_FLAGS, m);
	if (r < 0) {
		int saved = errno;

		if (m != &stack.header)
			free(m);
		errno = saved;
		return -1;
	}
	scatter(msg, m->data, (size_t)r);
	truncated = (m->flags & VIRTWL_MSG_CTRUNC) != 0;
	for (i = 0; i < VIRTWL_SEND_MAX_ALLOCS; i++)
		if (m->fds[i] >= 0)
			received[count++] = m->fds[i];
	if (m != &stack.header)
		free(m);

	/* As the kernel's scm_detach_fds: what does not fit is closed, and MSG_CTRUNC says so. */
	if (msg->msg_controllen >= CMSG_LEN(0))
		room = (msg->msg_controllen - CMSG_LEN(0)) / sizeof(int);
	kept = (size_t)count < room ? count : (int)room;
	for (i = kept; i < count; i++)
		close(received[i]);
	if (kept < count)
		truncated = 1;
	if (kept > 0) {
		struct cmsghdr *c = (struct cmsghdr *)msg->msg_control;
		size_t space = CMSG_SPACE(kept * sizeof(int));

		c->cmsg_len = CMSG_LEN(kept * sizeof(int));
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		memcpy(CMSG_DATA(c), received, kept * sizeof(int));
		msg->msg_controllen = space < msg->msg_controllen ? space : msg->msg_controllen;
	} else {
		msg->msg_controllen = 0;
	}
	msg->msg_namelen = 0;
	msg->msg_flags = truncated ? MSG_CTRUNC : 0;
	return r;
}

ssize_t virtwl_send(int fd, const void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	return virtwl_sendmsg(fd, &msg, flags);
}

ssize_t virtwl_recv(int fd, void *buf, size_t len, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	return virtwl_recvmsg(fd, &msg, flags);
}
