/* SPDX-License-Identifier: MIT */
/*
 * libvirtwl: sendmsg(2)/recvmsg(2) over virtio_wl, for guest programs that talk to a host
 * Wayland compositor (or any host Unix stream socket vmm's virtio-wl device offers).
 *
 * A program written for a Unix socket needs only the call names changed:
 *
 *     int fd = virtwl_connect(NULL);             // socket() + connect() to the compositor
 *     virtwl_sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
 *     virtwl_recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
 *     poll(), close() as before
 *
 * Return values and errno are those of the socket calls: the byte count or -1; EAGAIN when
 * MSG_DONTWAIT (or O_NONBLOCK) finds nothing to read or no room; EPIPE (and SIGPIPE unless
 * MSG_NOSIGNAL) once the host peer is gone; EINVAL for an unsupported flag, a malformed control
 * message or more than VIRTWL_SEND_MAX_ALLOCS (28) fds; 0 from recvmsg at end of stream.
 * Received fds come as one SCM_RIGHTS message; those that do not fit msg_control are closed
 * and MSG_CTRUNC is set in msg_flags.
 *
 * What differs from a socket: fds sent must be virtio_wl VFDs (contexts, virtwl_alloc() memory,
 * virtwl_pipe() pipes, or fds received from the host); any other fd gives EINVAL. Shared memory
 * for wl_shm is virtwl_alloc()'s, mapped with mmap(MAP_SHARED). Flags other than MSG_DONTWAIT,
 * MSG_NOSIGNAL and MSG_CMSG_CLOEXEC give EINVAL (no MSG_PEEK, MSG_WAITALL, ...).
 *
 * Needs the driver's SEND/RECV_FLAGS ioctls (guest/linux/virtio_wl/EXTENSION.md). A send with
 * MSG_DONTWAIT returns EAGAIN without sending anything when the host socket is full only if the
 * device offers VIRTIO_WL_F_SEND_DONTWAIT; otherwise it waits for the host as a blocking send.
 */
#ifndef LIBVIRTWL_H
#define LIBVIRTWL_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "../virtio_wl/include/uapi/linux/virtwl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The device node the driver registers. */
#define VIRTWL_DEVICE_PATH "/dev/wl0"

/*
 * A new connection to the host socket called `name` (NULL or "" for the unnamed one, by
 * convention the compositor; at most 32 bytes). Returns a close-on-exec fd, or -1 with errno:
 * ENOENT when /dev/wl0 is missing, ENODEV when the host has no such socket or cannot connect.
 */
int virtwl_connect(const char *name);

/* Shared memory of `size` bytes (rounded up to pages) to mmap and send. -1 and errno on error. */
int virtwl_alloc(size_t size);

/*
 * A pipe whose other end lives on the host: VIRTWL_PIPE_READ (the guest reads what the host
 * writes) or VIRTWL_PIPE_WRITE (the guest writes). Send the returned fd to a host peer over a
 * context to give it the other end (Wayland's data-offer pipes).
 */
enum virtwl_pipe_direction { VIRTWL_PIPE_READ, VIRTWL_PIPE_WRITE };
int virtwl_pipe(enum virtwl_pipe_direction direction);

ssize_t virtwl_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t virtwl_recvmsg(int fd, struct msghdr *msg, int flags);

/* send(2)/recv(2) without fds. */
ssize_t virtwl_send(int fd, const void *buf, size_t len, int flags);
ssize_t virtwl_recv(int fd, void *buf, size_t len, int flags);

#ifdef __cplusplus
}
#endif

#endif /* LIBVIRTWL_H */
