/* SPDX-License-Identifier: MIT */
/*
 * wltest: the in-guest checks of the virtio_wl driver and libvirtwl, run by
 * test/linux-wl/virtio-wl.test.ts through the guest console against host peers it serves.
 *
 *     wltest <case>      ioctls | recv-wait | send-dontwait | fds | shm | poll | wayland | hostile
 *     wltest bench-rtt <size> <n>, wltest bench-bulk <bytes> <size>    figures for bench/wl
 *
 * Prints one line per check, "ok <name>" or "not ok <name>: <why>" (and "info ..." lines), and
 * exits 0 only if every check passed. The host peer is the host socket named "peer": a case
 * opens a context to it and sends the role the peer should play as the first line (the roles
 * are in test/linux-wl/peer.ts); the unnamed socket is a host weston.
 *
 * The initramfs recipe builds one source file per program, hence the library is included
 * here rather than linked (guest/linux/libvirtwl/Makefile builds the archive).
 */
#define _GNU_SOURCE
#include "../libvirtwl/libvirtwl.c"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "sha256.h"

#define PEER "peer"

static int failures;

static void report(int good, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (good) {
		printf("ok %s\n", name);
	} else {
		failures++;
		printf("not ok %s: ", name);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
	}
	fflush(stdout);
}

#define EXPECT(cond, name, ...) report(!!(cond), name, __VA_ARGS__)

/* `expr` fails with errno `err` (ioctl, read, ... return -1; mmap MAP_FAILED). */
#define EXPECT_ERRNO(expr, err, name)                                                          \
	do {                                                                                   \
		long r_;                                                                       \
		int e_;                                                                        \
		errno = 0;                                                                     \
		r_ = (long)(expr);                                                             \
		e_ = errno;                                                                    \
		report(r_ == -1 && e_ == (err), name, "returned %ld, errno %d (%s); wanted %s", \
		       r_, e_, strerror(e_), strerror(err));                                   \
	} while (0)

static void info(const char *fmt, ...)
{
	va_list ap;

	printf("info ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	printf("not ok setup: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" (errno %d, %s)\n", errno, strerror(errno));
	exit(2);
}

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void send_text(int fd, const char *text)
{
	size_t len = strlen(text);

	if (virtwl_send(fd, text, len, MSG_NOSIGNAL) != (ssize_t)len)
		die("sending '%s'", text);
}

/* A context to the host peer, playing `role` (printf format). */
static int peer(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int fd;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fd = virtwl_connect(PEER);
	if (fd < 0)
		die("connecting to the host socket '%s'", PEER);
	send_text(fd, line);
	return fd;
}

/* Lines (and the fds that came with them) read from a context. */
struct reader {
	int fd;
	char buf[4096];
	size_t len;
	int fds[64];
	int nfds;
};

static void reader_init(struct reader *r, int fd)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
}

/* One line without its newline; 0 at end of stream; dies on error. */
static int read_line(struct reader *r, char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		union {
			struct cmsghdr align;
			char bytes[CMSG_SPACE(VIRTWL_SEND_MAX_ALLOCS * sizeof(int))];
		} control;
		struct iovec iov;
		struct msghdr msg = { 0 };
		struct cmsghdr *c;
		ssize_t n;

		if (nl) {
			size_t len = (size_t)(nl - r->buf);

			if (len >= size)
				len = size - 1;
			memcpy(line, r->buf, len);
			line[len] = 0;
			r->len -= (size_t)(nl - r->buf) + 1;
			memmove(r->buf, nl + 1, r->len);
			return 1;
		}
		if (r->len == sizeof(r->buf))
			die("a line longer than %zu bytes", sizeof(r->buf));
		iov.iov_base = r->buf + r->len;
		iov.iov_len = sizeof(r->buf) - r->len;
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = control.bytes;
		msg.msg_controllen = sizeof(control.bytes);
		n = virtwl_recvmsg(r->fd, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0)
			die("reading a line");
		for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int), i;

			for (i = 0; i < count && r->nfds < 64; i++)
				memcpy(&r->fds[r->nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		}
		if (n == 0)
			return 0;
		r->len += (size_t)n;
	}
}

static void expect_line(struct reader *r, const char *wanted, const char *name)
{
	char line[512];

	if (!read_line(r, line, sizeof(line)))
		strcpy(line, "(end of stream)");
	EXPECT(!strcmp(line, wanted), name, "the peer said '%s', wanted '%s'", line, wanted);
}

/* Open fds of this process (one getdents: a system call costs milliseconds here). */
static int open_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *entry;
	int count = 0;

	if (!dir)
		die("opening /proc/self/fd");
	while ((entry = readdir(dir)))
		if (entry->d_name[0] != '.')
			count++;
	closedir(dir);
	return count - 1;	/* not the directory's own fd */
}

/* ChromeOS's raw SEND/RECV. */
struct txn {
	struct virtwl_ioctl_txn h;
	uint8_t data[4096];
};

struct msgbuf {
	struct virtwl_ioctl_msg h;
	uint8_t data[4096];
};

static void no_fds(int *fds)
{
	int i;

	for (i = 0; i < VIRTWL_SEND_MAX_ALLOCS; i++)
		fds[i] = -1;
}

static int has_cloexec(int fd)
{
	return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

static int access_mode(int fd)
{
	return fcntl(fd, F_GETFL) & O_ACCMODE;
}

/* --- ioctls: every ioctl of ChromeOS's ABI and of the extension, replies checked ----------- */

static void case_ioctls(void)
{
	struct virtwl_ioctl_new n;
	struct txn t;
	struct msgbuf m;
	int wl0, ctx, shm, got, r, fd;
	uint8_t *p, *q;

	wl0 = open(VIRTWL_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (wl0 < 0)
		die("opening %s", VIRTWL_DEVICE_PATH);

	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_CTX;
	n.fd = -1;
	r = ioctl(wl0, VIRTWL_IOCTL_NEW, &n);
	EXPECT(r == 0 && n.fd >= 0, "new-ctx", "returned %d, fd %d, errno %s", r, n.fd, strerror(errno));
	EXPECT(has_cloexec(n.fd) && access_mode(n.fd) == O_RDWR, "new-ctx-mode",
	       "cloexec %d mode %d", has_cloexec(n.fd), access_mode(n.fd));
	close(n.fd);

	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_CTX_NAMED;
	strcpy(n.name, PEER);
	r = ioctl(wl0, VIRTWL_IOCTL_NEW, &n);
	EXPECT(r == 0 && n.fd >= 0, "new-ctx-named", "returned %d, errno %s", r, strerror(errno));
	ctx = n.fd;

	/* The 2017 header's 16-byte struct: the name field then holds 4 bytes, "peer" exactly. */
	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_CTX_NAMED;
	memcpy(n.name, PEER, 4);
	r = ioctl(wl0, _IOWR('w', 0, uint8_t[16]), &n);
	EXPECT(r == 0 && n.fd >= 0, "new-16-byte-struct", "returned %d, errno %s", r, strerror(errno));
	if (r == 0)
		close(n.fd);

	/* SEND / RECV, ChromeOS's: return 0; RECV fills len and all 28 fds. */
	send_text(ctx, "echo\n");
	no_fds(t.h.fds);
	t.h.len = 4;
	memcpy(t.data, "ping", 4);
	r = ioctl(ctx, VIRTWL_IOCTL_SEND, &t);
	EXPECT(r == 0, "send", "returned %d, errno %s", r, strerror(errno));
	memset(&t, 0x55, sizeof(t));
	t.h.len = sizeof(t.data);
	r = ioctl(ctx, VIRTWL_IOCTL_RECV, &t);
	EXPECT(r == 0 && t.h.len == 4 && !memcmp(t.data, "ping", 4) && t.h.fds[0] == -1 &&
	       t.h.fds[27] == -1, "recv", "returned %d, len %u, fds[0] %d", r, t.h.len, t.h.fds[0]);

	/* write(2) / read(2) on a context */
	r = (int)write(ctx, "rw", 2);
	EXPECT(r == 2, "write", "returned %d, errno %s", r, strerror(errno));
	memset(t.data, 0, 4);
	r = (int)read(ctx, t.data, sizeof(t.data));
	EXPECT(r == 2 && !memcmp(t.data, "rw", 2), "read", "returned %d", r);

	/* NEW_ALLOC: page-rounded, mmap-able up to the rounded size only. */
	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_ALLOC;
	n.size = 5000;
	r = ioctl(wl0, VIRTWL_IOCTL_NEW, &n);
	EXPECT(r == 0 && n.fd >= 0, "new-alloc", "returned %d, errno %s", r, strerror(errno));
	shm = n.fd;
	EXPECT(access_mode(shm) == O_RDWR, "new-alloc-mode", "mode %d", access_mode(shm));
	p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
	EXPECT(p != MAP_FAILED, "mmap-alloc", "errno %s", strerror(errno));
	EXPECT_ERRNO(mmap(NULL, 12288, PROT_READ, MAP_SHARED, shm, 0), EINVAL, "mmap-past-end");
	if (p == MAP_FAILED)
		die("mapping the allocation");
	memcpy(p, "shared pattern", 15);

	/* SEND_FLAGS / RECV_FLAGS: byte counts; the echoed memfd comes back as a host VFD. */
	no_fds(m.h.fds);
	m.h.fds[0] = shm;
	m.h.len = 4;
	m.h.flags = MSG_NOSIGNAL;
	memcpy(m.data, "shm!", 4);
	r = ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m);
	EXPECT(r == 4, "send-flags", "returned %d, errno %s", r, strerror(errno));
	memset(&m, 0x55, sizeof(m));
	m.h.len = sizeof(m.data);
	m.h.flags = MSG_CMSG_CLOEXEC;
	r = ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, &m);
	got = m.h.fds[0];
	EXPECT(r == 4 && m.h.len == 4 && !memcmp(m.data, "shm!", 4) && got >= 0 && m.h.fds[1] == -1 &&
	       m.h.flags == 0, "recv-flags", "returned %d, len %u, fds %d %d, flags %#x", r, m.h.len,
	       got, m.h.fds[1], m.h.flags);
	if (got >= 0) {
		EXPECT(has_cloexec(got), "recv-flags-cloexec", "no FD_CLOEXEC");
		q = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, got, 0);
		EXPECT(q != MAP_FAILED && !memcmp(q, "shared pattern", 15), "recv-host-shm",
		       "mapping the echoed memfd: %s", q == MAP_FAILED ? strerror(errno) : "other bytes");
		if (q != MAP_FAILED)
			munmap(q, 8192);
		close(got);
	}
	/* without MSG_CMSG_CLOEXEC: an fd without FD_CLOEXEC */
	no_fds(m.h.fds);
	m.h.fds[0] = shm;
	m.h.len = 1;
	m.h.flags = 0;
	ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m);
	m.h.len = sizeof(m.data);
	m.h.flags = 0;
	r = ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, &m);
	EXPECT(r == 1 && m.h.fds[0] >= 0 && !has_cloexec(m.h.fds[0]), "recv-flags-no-cloexec",
	       "returned %d fd %d cloexec %d", r, m.h.fds[0], m.h.fds[0] >= 0 ? has_cloexec(m.h.fds[0]) : -1);
	if (m.h.fds[0] >= 0)
		close(m.h.fds[0]);
	/* ChromeOS's RECV: received fds are always close-on-exec */
	no_fds(t.h.fds);
	t.h.fds[0] = shm;
	t.h.len = 1;
	ioctl(ctx, VIRTWL_IOCTL_SEND, &t);
	t.h.len = sizeof(t.data);
	r = ioctl(ctx, VIRTWL_IOCTL_RECV, &t);
	EXPECT(r == 0 && t.h.len == 1 && t.h.fds[0] >= 0 && has_cloexec(t.h.fds[0]), "recv-fd",
	       "returned %d len %u fd %d", r, t.h.len, t.h.fds[0]);
	if (t.h.fds[0] >= 0)
		close(t.h.fds[0]);

	/* a RECV smaller than what is queued: the rest comes next */
	send_text(ctx, "abcdef");
	m.h.len = 2;
	m.h.flags = 0;
	r = ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, &m);
	EXPECT(r == 2 && !memcmp(m.data, "ab", 2), "recv-partial", "returned %d", r);
	m.h.len = sizeof(m.data);
	r = ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, &m);
	EXPECT(r == 4 && !memcmp(m.data, "cdef", 4), "recv-rest", "returned %d", r);
	m.h.len = 0;
	r = ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, &m);
	EXPECT(r == 0, "recv-zero-length", "returned %d, errno %s", r, strerror(errno));
	/* nothing to send: success without a message */
	no_fds(m.h.fds);
	m.h.len = 0;
	r = ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m);
	EXPECT(r == 0, "send-nothing", "returned %d", r);

	/* pipes: the file mode is the direction */
	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_PIPE_READ;
	r = ioctl(wl0, VIRTWL_IOCTL_NEW, &n);
	EXPECT(r == 0 && access_mode(n.fd) == O_RDONLY, "new-pipe-read", "returned %d mode %d", r,
	       access_mode(n.fd));
	if (r == 0)
		close(n.fd);
	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_PIPE_WRITE;
	r = ioctl(wl0, VIRTWL_IOCTL_NEW, &n);
	EXPECT(r == 0 && access_mode(n.fd) == O_WRONLY, "new-pipe-write", "returned %d mode %d", r,
	       access_mode(n.fd));
	if (r == 0)
		close(n.fd);

	/* no dmabufs on this device: ENOTTY, which sommelier takes as "use shm" */
	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_DMABUF;
	n.dmabuf.width = 64;
	n.dmabuf.height = 64;
	n.dmabuf.format = 0x34325258;	/* XR24 */
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, &n), ENOTTY, "new-dmabuf");
	{
		struct virtwl_ioctl_dmabuf_sync sync = { .flags = 0 };

		EXPECT_ERRNO(ioctl(shm, VIRTWL_IOCTL_DMABUF_SYNC, &sync), ENOTTY, "dmabuf-sync");
		sync.flags = 8;
		EXPECT_ERRNO(ioctl(shm, VIRTWL_IOCTL_DMABUF_SYNC, &sync), EINVAL, "dmabuf-sync-flags");
	}

	/* libvirtwl's calls */
	fd = virtwl_connect(PEER);
	EXPECT(fd >= 0, "lib-connect-named", "errno %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	fd = virtwl_connect(NULL);
	EXPECT(fd >= 0, "lib-connect", "errno %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	EXPECT_ERRNO(virtwl_connect("no-such-socket"), ENODEV, "lib-connect-unknown");
	EXPECT_ERRNO(virtwl_connect("a-name-of-thirty-three-characters"), ENAMETOOLONG, "lib-connect-long-name");

	munmap(p, 8192);
	close(shm);
	close(ctx);
	close(wl0);
}

/* --- receive: MSG_DONTWAIT never waits, a blocking receive waits for the host ------------- */

static void case_recv_wait(void)
{
	int fd = peer("quiet");
	char buf[64] = { 0 };
	struct msgbuf m;
	double t0, dt;
	ssize_t r;

	t0 = now_ms();
	EXPECT_ERRNO(virtwl_recv(fd, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN, "dontwait-empty");
	dt = now_ms() - t0;
	EXPECT(dt < 100, "dontwait-at-once", "took %.1f ms", dt);
	info("dontwait receive on an empty context: %.2f ms", dt);

	/* the file's O_NONBLOCK counts too, for every kind of receive */
	fcntl(fd, F_SETFL, O_NONBLOCK | O_RDWR);
	EXPECT_ERRNO(virtwl_recv(fd, buf, sizeof(buf), 0), EAGAIN, "nonblock-file-recv-flags");
	EXPECT_ERRNO(read(fd, buf, sizeof(buf)), EAGAIN, "nonblock-file-read");
	m.h.len = 16;
	EXPECT_ERRNO(ioctl(fd, VIRTWL_IOCTL_RECV, &m), EAGAIN, "nonblock-file-recv");
	fcntl(fd, F_SETFL, O_RDWR);

	send_text(fd, "write-after 800 late-data\n");
	EXPECT_ERRNO(virtwl_recv(fd, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN, "dontwait-before-host");
	t0 = now_ms();
	r = virtwl_recv(fd, buf, sizeof(buf) - 1, 0);
	dt = now_ms() - t0;
	EXPECT(r == 9 && !memcmp(buf, "late-data", 9), "blocking-recv", "returned %zd '%s'", r, buf);
	EXPECT(dt >= 600, "blocking-recv-waited", "returned after %.0f ms (the host wrote after 800)", dt);
	info("blocking receive returned after %.0f ms", dt);
	close(fd);
}

/* --- send: MSG_DONTWAIT gives EAGAIN on a full host socket, nothing lost or repeated ------- */

#define SEND_TOTAL (4u << 20)
#define SEND_CHUNK (64u << 10)

static uint64_t prng = 0x9e3779b97f4a7c15ull;

static void fill(uint8_t *buf, size_t len)
{
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		prng ^= prng << 13;
		prng ^= prng >> 7;
		prng ^= prng << 17;
		memcpy(buf + i, &prng, 8);
	}
}

static void case_send_dontwait(void)
{
	static uint8_t chunk[SEND_CHUNK];
	struct reader rd;
	char line[256], hex[65], wanted[256];
	struct sha256 sha;
	struct pollfd pfd;
	size_t total = 0;
	int sink, ctl, id, eagains = 0, checked_blocked = 0;
	double t0, waited = 0, longest = 0, start = now_ms();
	ssize_t r;

	sink = peer("sink");
	reader_init(&rd, sink);
	if (!read_line(&rd, line, sizeof(line)) || sscanf(line, "sink %d", &id) != 1)
		die("the sink peer said '%s'", line);
	ctl = peer("ctl %d", id);
	sha256_init(&sha);
	fill(chunk, sizeof(chunk));

	while (total < SEND_TOTAL) {
		r = virtwl_send(sink, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r == (ssize_t)sizeof(chunk)) {
			sha256_update(&sha, chunk, sizeof(chunk));
			total += sizeof(chunk);
			fill(chunk, sizeof(chunk));
			continue;
		}
		if (r >= 0 || errno != EAGAIN) {
			report(0, "dontwait-send", "returned %zd, errno %s after %zu bytes", r, strerror(errno), total);
			return;
		}
		eagains++;
		if (!checked_blocked) {
			checked_blocked = 1;
			t0 = now_ms();
			EXPECT_ERRNO(virtwl_send(sink, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL),
				     EAGAIN, "dontwait-send-again");
			pfd.fd = sink;
			pfd.events = POLLOUT;
			pfd.revents = 0;
			EXPECT(poll(&pfd, 1, 0) == 0, "poll-not-writable", "revents %#x", pfd.revents);
			info("first EAGAIN after %zu bytes, %.2f ms for the next one", total, now_ms() - t0);
		}
		send_text(ctl, "drain\n");
		t0 = now_ms();
		pfd.fd = sink;
		pfd.events = POLLOUT;
		pfd.revents = 0;
		r = poll(&pfd, 1, 30000);
		if (r != 1 || !(pfd.revents & POLLOUT)) {
			report(0, "poll-writable", "poll returned %zd, revents %#x", r, pfd.revents);
			return;
		}
		waited += now_ms() - t0;
		if (now_ms() - t0 > longest)
			longest = now_ms() - t0;
	}
	EXPECT(eagains > 0, "dontwait-send-eagain", "never EAGAIN in %zu bytes", total);
	report(1, "poll-writable", "");
	info("%zu bytes in %.0f ms with MSG_DONTWAIT, %d EAGAIN, %.0f ms waiting for POLLOUT (longest %.0f)",
	     total, now_ms() - start, eagains, waited, longest);

	/* fill the host socket again, then a blocking send waits for the host and completes */
	while ((r = virtwl_send(sink, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL)) > 0) {
		sha256_update(&sha, chunk, sizeof(chunk));
		total += sizeof(chunk);
		fill(chunk, sizeof(chunk));
	}
	EXPECT(r < 0 && errno == EAGAIN, "dontwait-send-full", "returned %zd, errno %s", r, strerror(errno));
	send_text(ctl, "drain-later 1000\n");
	t0 = now_ms();
	r = virtwl_send(sink, chunk, sizeof(chunk), MSG_NOSIGNAL);
	EXPECT(r == (ssize_t)sizeof(chunk), "blocking-send", "returned %zd, errno %s", r, strerror(errno));
	EXPECT(now_ms() - t0 >= 700, "blocking-send-waited", "returned after %.0f ms (the host reads after 1000)",
	       now_ms() - t0);
	info("blocking send returned after %.0f ms", now_ms() - t0);
	if (r > 0) {
		sha256_update(&sha, chunk, sizeof(chunk));
		total += sizeof(chunk);
	}
	sha256_hex(&sha, hex);
	close(sink);	/* the sink's end of stream: it reports what it read */
	reader_init(&rd, ctl);
	send_text(ctl, "result\n");
	snprintf(wanted, sizeof(wanted), "result %zu %s", total, hex);
	expect_line(&rd, wanted, "dontwait-send-sha256");
	info("sent %zu bytes, sha256 %s", total, hex);
	close(ctl);
}

/* --- fds both ways --------------------------------------------------------------------------- */

static void case_fds(void)
{
	struct reader rd;
	char line[256], buf[256];
	int fd, i, shms[VIRTWL_SEND_MAX_ALLOCS + 1], before, r;
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE((VIRTWL_SEND_MAX_ALLOCS + 1) * sizeof(int))];
	} control;
	struct iovec iov;
	struct msghdr msg;
	struct cmsghdr *c;
	size_t len;
	double t0 = now_ms();

	/* a host pipe's read end, readable here */
	fd = peer("pipe-from-host");
	reader_init(&rd, fd);
	if (!read_line(&rd, line, sizeof(line)))
		die("pipe-from-host: no message");
	EXPECT(!strcmp(line, "pipe") && rd.nfds == 1, "host-pipe-received", "'%s' with %d fds", line, rd.nfds);
	if (rd.nfds == 1) {
		len = 0;
		while ((r = (int)read(rd.fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
			len += (size_t)r;
		buf[len] = 0;
		EXPECT(r == 0 && !strcmp(buf, "through a host pipe\n"), "host-pipe-readable",
		       "read %zu bytes '%s', last %d", len, buf, r);
		EXPECT(access_mode(rd.fds[0]) == O_RDONLY, "host-pipe-mode", "mode %d", access_mode(rd.fds[0]));
		close(rd.fds[0]);
	}
	close(fd);

	info("host pipe: %.0f ms", now_ms() - t0);
	t0 = now_ms();
	/* 28 host memfds in one message */
	fd = peer("memfds-from-host 28");
	reader_init(&rd, fd);
	if (!read_line(&rd, line, sizeof(line)))
		die("memfds-from-host: no message");
	EXPECT(!strcmp(line, "memfds 28") && rd.nfds == 28, "host-fds-28", "'%s' with %d fds", line, rd.nfds);
	for (i = 0; i < rd.nfds; i++) {
		char *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, rd.fds[i], 0);

		snprintf(buf, sizeof(buf), "memfd %d\n", i);
		if (p == MAP_FAILED || memcmp(p, buf, strlen(buf))) {
			report(0, "host-fds-28-content", "fd %d: %s", i, p == MAP_FAILED ? strerror(errno) : "other bytes");
			break;
		}
		munmap(p, 4096);
		if (i == rd.nfds - 1)
			report(1, "host-fds-28-content", "");
	}
	for (i = 0; i < rd.nfds; i++)
		close(rd.fds[i]);
	close(fd);

	info("28 host memfds: %.0f ms", now_ms() - t0);
	t0 = now_ms();
	/* a control buffer for 2 of 5 fds: MSG_CTRUNC, the other 3 closed */
	before = open_fd_count();
	fd = peer("memfds-from-host 5");
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = buf;
	iov.iov_len = sizeof(buf);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.bytes;
	msg.msg_controllen = CMSG_SPACE(2 * sizeof(int));
	r = (int)virtwl_recvmsg(fd, &msg, 0);
	c = CMSG_FIRSTHDR(&msg);
	EXPECT(r > 0 && (msg.msg_flags & MSG_CTRUNC) && c && c->cmsg_len == CMSG_LEN(2 * sizeof(int)),
	       "ctrunc", "returned %d, msg_flags %#x, cmsg_len %zu", r, msg.msg_flags, c ? (size_t)c->cmsg_len : 0);
	if (c && c->cmsg_len == CMSG_LEN(2 * sizeof(int))) {
		int kept[2];

		memcpy(kept, CMSG_DATA(c), sizeof(kept));
		close(kept[0]);
		close(kept[1]);
	}
	close(fd);
	EXPECT(open_fd_count() == before, "ctrunc-closes-the-rest", "%d fds open, %d before", open_fd_count(), before);

	info("MSG_CTRUNC: %.0f ms", now_ms() - t0);
	t0 = now_ms();
	/* a guest pipe's read end goes to the host; what the guest writes is read there */
	{
		int p = virtwl_pipe(VIRTWL_PIPE_WRITE);

		fd = peer("pipe-to-host");
		memset(&msg, 0, sizeof(msg));
		iov.iov_base = "pipe\n";
		iov.iov_len = 5;
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = control.bytes;
		msg.msg_controllen = CMSG_SPACE(sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &p, sizeof(int));
		r = (int)virtwl_sendmsg(fd, &msg, MSG_NOSIGNAL);
		EXPECT(r == 5, "guest-pipe-sent", "returned %d, errno %s", r, strerror(errno));
		r = (int)write(p, "guest pipe data", 15);
		EXPECT(r == 15, "guest-pipe-write", "returned %d, errno %s", r, strerror(errno));
		close(p);
		reader_init(&rd, fd);
		expect_line(&rd, "got guest pipe data", "guest-pipe-readable-on-host");
		close(fd);
	}

	info("guest pipe: %.0f ms", now_ms() - t0);
	t0 = now_ms();
	/* 28 guest VFDs in one message; 29 refused */
	for (i = 0; i <= VIRTWL_SEND_MAX_ALLOCS; i++) {
		char *p;

		shms[i] = virtwl_alloc(4096);
		if (shms[i] < 0)
			die("allocating shm %d", i);
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shms[i], 0);
		if (p == MAP_FAILED)
			die("mapping shm %d", i);
		snprintf(p, 64, "shm %d\n", i);
		munmap(p, 4096);
	}
	fd = peer("fds-to-host 28");
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = "fds\n";
	iov.iov_len = 4;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.bytes;
	msg.msg_controllen = CMSG_SPACE((VIRTWL_SEND_MAX_ALLOCS + 1) * sizeof(int));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN((VIRTWL_SEND_MAX_ALLOCS + 1) * sizeof(int));
	memcpy(CMSG_DATA(c), shms, sizeof(shms));
	EXPECT_ERRNO(virtwl_sendmsg(fd, &msg, MSG_NOSIGNAL), EINVAL, "guest-fds-29-refused");
	msg.msg_controllen = CMSG_SPACE(VIRTWL_SEND_MAX_ALLOCS * sizeof(int));
	c->cmsg_len = CMSG_LEN(VIRTWL_SEND_MAX_ALLOCS * sizeof(int));
	r = (int)virtwl_sendmsg(fd, &msg, MSG_NOSIGNAL);
	EXPECT(r == 4, "guest-fds-28-sent", "returned %d, errno %s", r, strerror(errno));
	reader_init(&rd, fd);
	expect_line(&rd, "fds 28 ok", "guest-fds-28-on-host");
	for (i = 0; i <= VIRTWL_SEND_MAX_ALLOCS; i++)
		close(shms[i]);
	close(fd);
	info("28 guest VFDs: %.0f ms", now_ms() - t0);
}

/* --- shared memory both ways ------------------------------------------------------------------ */

static void case_shm(void)
{
	const size_t size = 64 << 10;
	struct reader rd;
	struct msghdr msg = { 0 };
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(sizeof(int))];
	} control;
	struct iovec iov = { .iov_base = "shm\n", .iov_len = 4 };
	struct cmsghdr *c;
	uint8_t *p;
	size_t i;
	int shm, fd;

	shm = virtwl_alloc(size);
	if (shm < 0)
		die("allocating %zu bytes", size);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
	if (p == MAP_FAILED)
		die("mapping the allocation");
	for (i = 0; i < size; i++)
		p[i] = (uint8_t)(i * 7 + 1);
	fd = peer("shm-check %zu", size);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control.bytes;
	msg.msg_controllen = sizeof(control.bytes);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &shm, sizeof(int));
	if (virtwl_sendmsg(fd, &msg, MSG_NOSIGNAL) != 4)
		die("sending the allocation");
	reader_init(&rd, fd);
	expect_line(&rd, "shm ok", "shm-host-sees-guest-pattern");
	for (i = 0; i < size; i++)
		if (p[i] != (uint8_t)(i * 13 + 5))
			break;
	EXPECT(i == size, "shm-guest-sees-host-pattern", "byte %zu is %u", i, i < size ? p[i] : 0);
	munmap(p, size);
	close(shm);
	close(fd);
}

/* --- poll: data, hang-up, and what SEND does after a hang-up --------------------------------- */

static int sigpipes;

static void on_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static void case_poll(void)
{
	struct pollfd pfd;
	char buf[64] = { 0 };
	struct txn t;
	double t0, dt;
	int fd, r;

	fd = peer("quiet");
	pfd.fd = fd;
	pfd.events = POLLIN | POLLOUT;
	pfd.revents = 0;
	r = poll(&pfd, 1, 0);
	EXPECT(r == 1 && pfd.revents == POLLOUT, "poll-idle", "returned %d revents %#x", r, pfd.revents);
	send_text(fd, "write-after 500 wake\n");
	pfd.events = POLLIN;
	t0 = now_ms();
	r = poll(&pfd, 1, 10000);
	dt = now_ms() - t0;
	EXPECT(r == 1 && (pfd.revents & POLLIN) && dt >= 300, "poll-data", "returned %d revents %#x after %.0f ms",
	       r, pfd.revents, dt);
	r = (int)virtwl_recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	EXPECT(r == 4 && !memcmp(buf, "wake", 4), "poll-data-read", "returned %d", r);
	close(fd);

	fd = peer("hangup-after 500");
	pfd.fd = fd;
	pfd.events = POLLIN;
	t0 = now_ms();
	r = poll(&pfd, 1, 10000);
	dt = now_ms() - t0;
	EXPECT(r == 1 && (pfd.revents & POLLHUP), "poll-hangup", "returned %d revents %#x after %.0f ms", r,
	       pfd.revents, dt);
	EXPECT(read(fd, buf, sizeof(buf)) == 0, "hangup-read-eof", "errno %s", strerror(errno));
	EXPECT(virtwl_recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == 0, "hangup-recv-eof", "errno %s", strerror(errno));
	EXPECT_ERRNO(virtwl_send(fd, "x", 1, MSG_NOSIGNAL), EPIPE, "hangup-send-epipe");
	EXPECT(sigpipes == 0, "hangup-nosignal", "%d SIGPIPE", sigpipes);
	signal(SIGPIPE, on_sigpipe);
	EXPECT_ERRNO(virtwl_send(fd, "x", 1, 0), EPIPE, "hangup-send-sigpipe-epipe");
	EXPECT(sigpipes == 1, "hangup-sigpipe", "%d SIGPIPE", sigpipes);
	signal(SIGPIPE, SIG_DFL);
	/* ChromeOS's SEND: the device answers INVALID_TYPE for a hung-up context */
	no_fds(t.h.fds);
	t.h.len = 1;
	t.data[0] = 'x';
	EXPECT_ERRNO(ioctl(fd, VIRTWL_IOCTL_SEND, &t), EINVAL, "hangup-send-legacy");
	close(fd);
}

/* --- a Wayland round trip to the host compositor --------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void case_wayland(void)
{
	enum { DISPLAY = 1, REGISTRY = 2, CALLBACK = 3 };
	static uint8_t in[65536];
	uint8_t out[24];
	size_t have = 0;
	int fd, globals = 0, done = 0;
	ssize_t r;

	fd = virtwl_connect(NULL);
	if (fd < 0)
		die("connecting to the compositor");
	/* wl_display.get_registry(new_id 2), wl_display.sync(new_id 3) */
	put32(out, DISPLAY);
	put32(out + 4, 12u << 16 | 1);
	put32(out + 8, REGISTRY);
	put32(out + 12, DISPLAY);
	put32(out + 16, 12u << 16 | 0);
	put32(out + 20, CALLBACK);
	r = virtwl_send(fd, out, sizeof(out), MSG_NOSIGNAL | MSG_DONTWAIT);
	EXPECT(r == 24, "wayland-send", "returned %zd, errno %s", r, strerror(errno));
	while (!done) {
		size_t off = 0;

		r = virtwl_recv(fd, in + have, sizeof(in) - have, MSG_CMSG_CLOEXEC);
		if (r <= 0) {
			report(0, "wayland-roundtrip", "receive returned %zd, errno %s", r, strerror(errno));
			close(fd);
			return;
		}
		have += (size_t)r;
		while (have - off >= 8) {
			uint32_t object = get32(in + off), word = get32(in + off + 4);
			uint32_t size = word >> 16, opcode = word & 0xffff;

			if (size < 8 || size > have - off)
				break;
			if (object == REGISTRY && opcode == 0) {
				uint32_t name = get32(in + off + 8), len = get32(in + off + 12);
				const char *interface = (const char *)in + off + 16;
				uint32_t version = get32(in + off + 16 + ((len + 3) & ~3u));

				printf("global %s %u\n", interface, version);
				(void)name;
				globals++;
			} else if (object == CALLBACK && opcode == 0) {
				done = 1;
			} else if (object == DISPLAY && opcode == 0) {
				report(0, "wayland-roundtrip", "wl_display.error code %u", get32(in + off + 12));
				close(fd);
				return;
			}
			off += size;
		}
		memmove(in, in + off, have - off);
		have -= off;
	}
	EXPECT(globals > 0, "wayland-roundtrip", "no globals");
	info("wayland: %d globals", globals);
	close(fd);
}

/* --- hostile callers -------------------------------------------------------------------------- */

static void case_hostile(void)
{
	struct virtwl_ioctl_new n;
	struct txn t;
	struct msgbuf m;
	int wl0, ctx, shm, rpipe, wpipe, before = open_fd_count();
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *pages;

	wl0 = open(VIRTWL_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (wl0 < 0)
		die("opening %s", VIRTWL_DEVICE_PATH);
	ctx = peer("echo");
	shm = virtwl_alloc(4096);
	rpipe = virtwl_pipe(VIRTWL_PIPE_READ);
	wpipe = virtwl_pipe(VIRTWL_PIPE_WRITE);
	if (shm < 0 || rpipe < 0 || wpipe < 0)
		die("making VFDs");
	/* a read-write page, a read-only one and an inaccessible one */
	pages = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pages == MAP_FAILED)
		die("mapping test pages");
	mprotect(pages + page, page, PROT_READ);
	mprotect(pages + 2 * page, page, PROT_NONE);

	/* /dev/wl0 */
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, NULL), EFAULT, "new-null");
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, pages + 2 * page), EFAULT, "new-unmapped");
	/* the read-only page holds zeros: a NEW_CTX whose fd cannot be written back */
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, pages + page), EFAULT, "new-read-only");
	memset(&n, 0, sizeof(n));
	n.type = 99;
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, &n), EINVAL, "new-unknown-type");
	n.type = VIRTWL_IOCTL_NEW_ALLOC;
	n.size = 0;
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, &n), EINVAL, "new-alloc-zero");
	n.size = 0xffffffffu;
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, &n), EINVAL, "new-alloc-too-big");
	n.type = VIRTWL_IOCTL_NEW_DMABUF;
	EXPECT_ERRNO(ioctl(wl0, _IOWR('w', 0, uint8_t[16]), &n), EINVAL, "new-dmabuf-short-struct");
	memset(&n, 0, sizeof(n));
	n.type = VIRTWL_IOCTL_NEW_CTX_NAMED;
	strcpy(n.name, "no-such-socket");
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, &n), ENODEV, "new-ctx-unknown-name");
	memset(n.name, 'x', sizeof(n.name));	/* 32 bytes, no terminator: a name, just unknown */
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_NEW, &n), ENODEV, "new-ctx-unterminated-name");
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_SEND, &t), ENOTTY, "dev-send");
	EXPECT_ERRNO(ioctl(wl0, VIRTWL_IOCTL_RECV_FLAGS, &m), ENOTTY, "dev-recv-flags");
	EXPECT_ERRNO(ioctl(wl0, _IO('x', 7)), ENOTTY, "dev-other-ioctl");
	EXPECT_ERRNO(read(wl0, t.data, 4), EINVAL, "dev-read");
	EXPECT_ERRNO(mmap(NULL, 4096, PROT_READ, MAP_SHARED, wl0, 0), ENODEV, "dev-mmap");

	/* bad pointers on a VFD */
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND, NULL), EFAULT, "send-null");
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, (void *)1), EFAULT, "recv-bad-pointer");
	/*
	 * Headers in the read-only page: one at its end, whose data runs into the inaccessible
	 * page, and one at its start, which can be read but cannot take a receive's reply.
	 */
	{
		struct virtwl_ioctl_msg h;

		no_fds(h.fds);
		h.len = 100;
		h.flags = 0;
		mprotect(pages + page, page, PROT_READ | PROT_WRITE);
		memcpy(pages + 2 * page - sizeof(h), &h, sizeof(h));
		memcpy(pages + page, &h, sizeof(h));
		mprotect(pages + page, page, PROT_READ);
		EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, pages + 2 * page - sizeof(h)), EFAULT,
			     "send-data-unmapped");
		EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, pages + page), EFAULT, "recv-read-only-header");
		/* bytes waiting, a buffer that cannot take them: EFAULT, and they stay queued */
		{
			struct pollfd pfd = { .fd = ctx, .events = POLLIN };
			char buf[16] = { 0 };

			send_text(ctx, "0123456789abcdef");
			poll(&pfd, 1, 10000);
			EXPECT_ERRNO(read(ctx, pages + page, 16), EFAULT, "read-into-read-only");
			EXPECT(read(ctx, buf, 16) == 16 && !memcmp(buf, "0123456789abcdef", 16),
			       "read-after-efault", "got '%.16s'", buf);
		}
		EXPECT_ERRNO(write(ctx, pages + 2 * page, 16), EFAULT, "write-from-unmapped");
	}

	/* bad sizes */
	{
		struct virtwl_ioctl_msg h;

		no_fds(h.fds);
		h.len = (4u << 20) + 1;
		h.flags = 0;
		EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &h), EMSGSIZE, "send-too-big");
		h.len = 0xffffffffu;
		EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND, &h), EMSGSIZE, "send-legacy-too-big");
	}

	/* bad fds */
	no_fds(t.h.fds);
	t.h.fds[0] = 1000;
	t.h.len = 1;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND, &t), EBADFD, "send-closed-fd-legacy");
	no_fds(m.h.fds);
	m.h.fds[0] = 1000;
	m.h.len = 1;
	m.h.flags = 0;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m), EBADF, "send-closed-fd");
	m.h.fds[0] = wl0;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m), EINVAL, "send-not-a-vfd");
	m.h.fds[0] = 1;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m), EINVAL, "send-console-fd");
	m.h.fds[0] = shm;
	m.h.fds[1] = 1000;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m), EBADF, "send-second-fd-closed");
	EXPECT_ERRNO(ioctl(1, VIRTWL_IOCTL_SEND_FLAGS, &m), ENOTTY, "send-on-console");

	/* unknown flags */
	no_fds(m.h.fds);
	m.h.len = 1;
	m.h.flags = MSG_OOB;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m), EINVAL, "send-unknown-flag");
	m.h.flags = 0x80000000u;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_SEND_FLAGS, &m), EINVAL, "send-high-flag");
	m.h.flags = MSG_PEEK;
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_RECV_FLAGS, &m), EINVAL, "recv-unknown-flag");
	EXPECT_ERRNO(virtwl_recv(ctx, t.data, 4, MSG_WAITALL), EINVAL, "lib-recv-waitall");
	EXPECT_ERRNO(virtwl_send(ctx, t.data, 4, MSG_MORE), EINVAL, "lib-send-more");

	/* a VFD of another type */
	no_fds(m.h.fds);
	m.h.len = 1;
	m.h.flags = MSG_DONTWAIT;
	EXPECT_ERRNO(ioctl(shm, VIRTWL_IOCTL_SEND_FLAGS, &m), EINVAL, "send-on-shm");
	EXPECT_ERRNO(ioctl(shm, VIRTWL_IOCTL_RECV_FLAGS, &m), EINVAL, "recv-on-shm");
	EXPECT_ERRNO(read(shm, t.data, 4), EINVAL, "read-shm");
	EXPECT_ERRNO(mmap(NULL, 4096, PROT_READ, MAP_SHARED, ctx, 0), EACCES, "mmap-ctx");
	EXPECT_ERRNO(mmap(NULL, 4096, PROT_READ, MAP_SHARED, shm, 4096), EINVAL, "mmap-shm-offset");
	EXPECT_ERRNO(write(rpipe, "x", 1), EBADF, "write-read-pipe");
	EXPECT_ERRNO(read(wpipe, t.data, 1), EBADF, "read-write-pipe");
	EXPECT_ERRNO(ioctl(ctx, VIRTWL_IOCTL_NEW, &n), ENOTTY, "new-on-vfd");
	EXPECT_ERRNO(ioctl(ctx, _IO('w', 9)), ENOTTY, "vfd-other-ioctl");
	/* a read pipe cannot be written to through the device either */
	EXPECT_ERRNO(ioctl(rpipe, VIRTWL_IOCTL_SEND_FLAGS, &m), EINVAL, "send-on-read-pipe");
	/* the DONTWAIT receive on a pipe nobody writes */
	EXPECT_ERRNO(ioctl(rpipe, VIRTWL_IOCTL_RECV_FLAGS, &m), EAGAIN, "recv-empty-pipe");

	/* libvirtwl: malformed control messages */
	{
		union {
			struct cmsghdr align;
			char bytes[CMSG_SPACE(sizeof(int))];
		} control;
		struct iovec iov = { .iov_base = "x", .iov_len = 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.bytes,
				      .msg_controllen = sizeof(control.bytes) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_CREDENTIALS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		EXPECT_ERRNO(virtwl_sendmsg(ctx, &msg, 0), EINVAL, "lib-send-credentials");
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(64);
		EXPECT_ERRNO(virtwl_sendmsg(ctx, &msg, 0), EINVAL, "lib-send-cmsg-too-long");
		EXPECT_ERRNO(virtwl_sendmsg(ctx, NULL, 0), EFAULT, "lib-send-null");
	}

	/* still alive: the context echoes */
	send_text(ctx, "alive");
	{
		char buf[8] = { 0 };

		EXPECT(virtwl_recv(ctx, buf, 5, 0) == 5 && !memcmp(buf, "alive", 5), "still-works", "got '%s'", buf);
	}
	munmap(pages, 3 * page);
	close(rpipe);
	close(wpipe);
	close(shm);
	close(ctx);
	close(wl0);
	EXPECT(open_fd_count() == before, "no-fds-left", "%d fds open, %d before", open_fd_count(), before);
}

/* --- bench/wl: round trips and bulk through libvirtwl (not checks: figures) ------------------- */

/* `n` round trips of `size` bytes with the echo peer: "rtt <size> <n> <ms>". */
static int bench_rtt(size_t size, long n)
{
	static uint8_t out[65536], in[65536];
	int fd = peer("echo");
	double t0 = 0;
	long i;

	if (size == 0 || size > sizeof(out) || n < 1)
		die("bench-rtt: size 1..%zu, n >= 1", sizeof(out));
	memset(out, 0x5a, size);
	for (i = -10; i < n; i++) {	/* 10 to warm up */
		size_t got = 0;

		if (i == 0)
			t0 = now_ms();
		if (virtwl_send(fd, out, size, MSG_NOSIGNAL) != (ssize_t)size)
			die("bench-rtt: send");
		while (got < size) {
			ssize_t r = virtwl_recv(fd, in + got, size - got, 0);

			if (r <= 0)
				die("bench-rtt: receive");
			got += (size_t)r;
		}
	}
	printf("rtt %zu %ld %.3f\n", size, n, now_ms() - t0);
	close(fd);
	return 0;
}

/* `total` bytes in `size`-byte sends to a peer that counts them: "bulk <total> <size> <ms>". */
static int bench_bulk(size_t total, size_t size)
{
	static uint8_t out[1 << 20];
	struct reader rd;
	char line[128], wanted[128];
	size_t sent = 0;
	double t0;
	int fd;

	if (size == 0 || size > sizeof(out))
		die("bench-bulk: size 1..%zu", sizeof(out));
	fd = peer("count %zu", total);
	memset(out, 0xa5, size);
	t0 = now_ms();
	while (sent < total) {
		size_t n = total - sent < size ? total - sent : size;

		if (virtwl_send(fd, out, n, MSG_NOSIGNAL) != (ssize_t)n)
			die("bench-bulk: send");
		sent += n;
	}
	reader_init(&rd, fd);
	snprintf(wanted, sizeof(wanted), "counted %zu", total);
	if (!read_line(&rd, line, sizeof(line)) || strcmp(line, wanted))
		die("bench-bulk: the peer said '%s'", line);
	printf("bulk %zu %zu %.3f\n", total, size, now_ms() - t0);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*run)(void);
	} cases[] = {
		{ "ioctls", case_ioctls },
		{ "recv-wait", case_recv_wait },
		{ "send-dontwait", case_send_dontwait },
		{ "fds", case_fds },
		{ "shm", case_shm },
		{ "poll", case_poll },
		{ "wayland", case_wayland },
		{ "hostile", case_hostile },
	};
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && !strcmp(argv[1], "bench-rtt"))
		return bench_rtt(strtoul(argv[2], NULL, 0), strtol(argv[3], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "bench-bulk"))
		return bench_bulk(strtoul(argv[2], NULL, 0), strtoul(argv[3], NULL, 0));
	for (i = 0; argc == 2 && i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!strcmp(argv[1], cases[i].name)) {
			cases[i].run();
			printf("%s: %s\n", argv[1], failures ? "FAILED" : "passed");
			return failures ? 1 : 0;
		}
	}
	fprintf(stderr, "usage: wltest ioctls|recv-wait|send-dontwait|fds|shm|poll|wayland|hostile\n"
			"       wltest bench-rtt SIZE N | bench-bulk BYTES SIZE\n");
	return 2;
}
