/* SPDX-License-Identifier: MIT */
/*
 * wl-relay: unmodified Wayland programs across the VM boundary over virtio_wl (README.md).
 *
 *   wl-relay client [-d DEVICE] [-s SOCKET] [-c CONTEXT] [-v]
 *   wl-relay compositor [-d DEVICE] [-n NOTIFY] [-s DISPLAY] [-v]
 *   wl-relay interfaces
 *
 * One process, one poll(2) loop, one virtio_wl context per Wayland connection.
 */
#include "wl-relay.h"
#include "../libvirtwl/libvirtwl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_DISPLAY "wayland-0"
#define DEFAULT_NOTIFY "wl-proxy"
#define NOTIFY_RETRY_MS 1000
#define MAX_NAME 32			/* virtio_wl context names */

int verbose;
int wl_device = -1;
const char *fake_device;

static const char usage[] =
	"usage: wl-relay client [-d DEVICE] [-s SOCKET] [-c CONTEXT] [-v]\n"
	"       wl-relay compositor [-d DEVICE] [-n NOTIFY] [-s DISPLAY] [-v]\n"
	"       wl-relay interfaces\n";

void logf_(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: lines from one process never interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static int wl_new(struct virtwl_ioctl_new *request)
{
	request->fd = -1;
	if (ioctl(wl_device, VIRTWL_IOCTL_NEW, request) < 0)
		return -1;
	fcntl(request->fd, F_SETFD, FD_CLOEXEC);
	return request->fd;
}

/*
 * `-d unix:DIR`, a development aid: a context named NAME is a connection to the Unix socket
 * DIR/NAME (the unnamed one DIR/wayland-0), shared memory is memfds and pipes are pipes, so the
 * relay's logic runs on a host without virtio_wl (README.md, "Developing"). Tests use the device.
 */
static int fake_connect(const char *name)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", fake_device, name && *name ? name : "wayland-0");
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int wl_new_ctx(const char *name)
{
	struct virtwl_ioctl_new request = { .type = VIRTWL_IOCTL_NEW_CTX };

	if (fake_device)
		return fake_connect(name);
	if (name && *name) {
		size_t length = strlen(name);

		if (length > sizeof(request.name)) {
			errno = ENAMETOOLONG;
			return -1;
		}
		request.type = VIRTWL_IOCTL_NEW_CTX_NAMED;
		memcpy(request.name, name, length);
	}
	return wl_new(&request);
}

int wl_new_alloc(size_t size)
{
	struct virtwl_ioctl_new request = { .type = VIRTWL_IOCTL_NEW_ALLOC, .size = (uint32_t)size };

	if (size == 0 || size > UINT32_MAX - 4095) {
		errno = EINVAL;
		return -1;
	}
	if (fake_device) {
		int fd = memfd_create("wl-relay", MFD_CLOEXEC);

		if (fd >= 0 && ftruncate(fd, (off_t)((size + 4095) & ~(size_t)4095)) < 0) {
			close(fd);
			return -1;
		}
		return fd;
	}
	return wl_new(&request);
}

int wl_new_pipe_read(int *send_fd)
{
	struct virtwl_ioctl_new request = { .type = VIRTWL_IOCTL_NEW_PIPE_READ };
	int fd;

	if (fake_device) {
		int p[2];

		if (pipe2(p, O_CLOEXEC) < 0)
			return -1;
		*send_fd = p[1];
		return p[0];
	}
	fd = wl_new(&request);
	if (fd < 0)
		return -1;
	/* The VFD itself goes to the host; the relay keeps reading its own copy. */
	*send_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (*send_fd < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void die_usage(const char *why)
{
	fprintf(stderr, "wl-relay: %s\n%s", why, usage);
	exit(2);
}

/* A name without '/' lives in $XDG_RUNTIME_DIR, as libwayland resolves WAYLAND_DISPLAY. */
static char *socket_path(const char *name)
{
	const char *dir = getenv("XDG_RUNTIME_DIR");
	struct sockaddr_un sun;
	char *path;

	if (strchr(name, '/')) {
		path = strdup(name);
	} else {
		if (!dir || !*dir) {
			fprintf(stderr, "wl-relay: XDG_RUNTIME_DIR is not set; give -s an absolute path\n");
			exit(1);
		}
		if (asprintf(&path, "%s/%s", dir, name) < 0)
			path = NULL;
	}
	if (!path || strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "wl-relay: socket path too long: %s\n", path ? path : name);
		exit(1);
	}
	return path;
}

static struct conn *conns[MAX_CONNS];
static int nconns;
static char *listen_path, *lock_path;

static void add_conn(struct conn *c)
{
	conns[nconns++] = c;
	if (verbose)
		logf_("wl-relay: client %u: connected", c->id);
}

/* Client mode: a guest client connected; its own context to the host compositor. */
static void accept_client(int listen_fd, const char *context)
{
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), ctx;
	struct conn *c;

	if (fd < 0)
		return;
	if (nconns == MAX_CONNS) {
		logf_("wl-relay: refusing a client: %d clients are connected already", MAX_CONNS);
		close(fd);
		return;
	}
	ctx = wl_new_ctx(context);
	if (ctx < 0) {
		logf_("wl-relay: refusing a client: cannot open a virtio_wl context%s%s: %s",
		      context ? " named " : "", context ? context : "", strerror(errno));
		close(fd);
		return;
	}
	c = conn_new(MODE_CLIENT, fd, 0, ctx, 1);
	if (!c) {
		logf_("wl-relay: refusing a client: out of memory");
		close(fd);
		close(ctx);
		return;
	}
	add_conn(c);
}

/* Compositor mode: the host accepted a client under `name`; connect it to the guest compositor. */
static void open_named(const char *name, const char *display)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int ctx, fd;
	struct conn *c;

	if (nconns == MAX_CONNS) {
		logf_("wl-relay: refusing %s: %d clients are connected already", name, MAX_CONNS);
		return;		/* never opened: the VMM forgets the name when the host client goes */
	}
	ctx = wl_new_ctx(name);
	if (ctx < 0) {
		logf_("wl-relay: cannot open context %s: %s", name, strerror(errno));
		return;
	}
	strcpy(sun.sun_path, display);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		logf_("wl-relay: %s: cannot connect to the compositor at %s: %s", name, display, strerror(errno));
		if (fd >= 0)
			close(fd);
		close(ctx);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c = conn_new(MODE_COMPOSITOR, ctx, 1, fd, 0);
	if (!c) {
		logf_("wl-relay: %s: out of memory", name);
		close(fd);
		close(ctx);
		return;
	}
	add_conn(c);
	if (verbose)
		logf_("wl-relay: client %u is %s", c->id, name);
}

/* The notification stream: `NAME\n` lines (plugins/virtio-wl/proxy.ts). */
struct notify {
	int fd;
	const char *name;
	size_t len;
	int overlong;		/* discarding a line longer than a name can be */
	char line[MAX_NAME + 1];
};

static void notify_read(struct notify *n, const char *display)
{
	char buf[512];
	ssize_t r = fake_device ? recv(n->fd, buf, sizeof(buf), MSG_DONTWAIT) : virtwl_recv(n->fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		logf_("wl-relay: the notification context %s closed%s%s; reopening it every %d ms", n->name,
		      r < 0 ? ": " : "", r < 0 ? strerror(errno) : "", NOTIFY_RETRY_MS);
		close(n->fd);
		n->fd = -1;
		n->len = 0;
		n->overlong = 0;
		return;
	}
	for (ssize_t i = 0; i < r; i++) {
		if (buf[i] != '\n') {
			if (n->len == MAX_NAME || buf[i] == '\0')
				n->overlong = 1;
			else
				n->line[n->len++] = buf[i];
			continue;
		}
		n->line[n->len] = '\0';
		if (n->overlong || n->len == 0)
			logf_("wl-relay: ignoring a bad notification line (names are 1 to %d bytes)", MAX_NAME);
		else
			open_named(n->line, display);
		n->len = 0;
		n->overlong = 0;
	}
}

static int listen_on(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int lock, fd;

	if (asprintf(&lock_path, "%s.lock", path) < 0) {
		fprintf(stderr, "wl-relay: out of memory\n");
		exit(1);
	}
	lock = open(lock_path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "wl-relay: %s is in use by another compositor or relay (%s: %s)\n", path, lock_path,
			strerror(errno));
		exit(1);
	}
	/* Held for the process's life: the lock is what says the socket is ours. */
	unlink(path);
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 128) < 0) {
		fprintf(stderr, "wl-relay: cannot listen on %s: %s\n", path, strerror(errno));
		exit(1);
	}
	listen_path = strdup(path);
	return fd;
}

static int list_interfaces(void)
{
	for (size_t i = 0; relay_interfaces[i]; i++)
		if (!interface_hidden(relay_interfaces[i]->name))
			printf("%s %d\n", relay_interfaces[i]->name, relay_interfaces[i]->version);
	return 0;
}

int main(int argc, char **argv)
{
	const char *device = VIRTWL_DEVICE_PATH, *socket_name = DEFAULT_DISPLAY, *context = NULL;
	struct notify notify = { .fd = -1, .name = DEFAULT_NOTIFY };
	struct pollfd pfds[2 + MAX_CONNS * CONN_POLLFDS];
	enum mode mode;
	char *path;
	int listen_fd = -1, sig_fd, opt;
	sigset_t mask;

	if (argc < 2)
		die_usage("a mode is needed: client, compositor or interfaces");
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	if (strcmp(argv[1], "interfaces") == 0)
		return argc == 2 ? list_interfaces() : (die_usage("interfaces takes no options"), 2);
	if (strcmp(argv[1], "client") == 0)
		mode = MODE_CLIENT;
	else if (strcmp(argv[1], "compositor") == 0)
		mode = MODE_COMPOSITOR;
	else
		die_usage("unknown mode");
	optind = 2;
	while ((opt = getopt(argc, argv, mode == MODE_CLIENT ? "d:s:c:v" : "d:s:n:v")) != -1) {
		switch (opt) {
		case 'd': device = optarg; break;
		case 's': socket_name = optarg; break;
		case 'c': context = optarg; break;
		case 'n': notify.name = optarg; break;
		case 'v': verbose = 1; break;
		default: die_usage("bad option");
		}
	}
	if (optind != argc)
		die_usage("unexpected argument");
	if ((context && strlen(context) > MAX_NAME) || strlen(notify.name) > MAX_NAME || !*notify.name)
		die_usage("context names are 1 to 32 bytes");
	path = socket_path(socket_name);

	if (strncmp(device, "unix:", 5) == 0)
		fake_device = device + 5;
	else
		wl_device = open(device, O_RDWR | O_CLOEXEC);
	if (!fake_device && wl_device < 0) {
		fprintf(stderr, "wl-relay: cannot open %s: %s\n", device, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	translate_init();
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

	if (mode == MODE_CLIENT) {
		listen_fd = listen_on(path);
		logf_("wl-relay: listening on %s", path);
	} else {
		notify.fd = wl_new_ctx(notify.name);
		if (notify.fd < 0) {
			fprintf(stderr, "wl-relay: cannot open the notification context %s: %s (is vmm wl-proxy "
				"running, and the virtio-wl plugin's sockets naming it?)\n", notify.name, strerror(errno));
			return 1;
		}
		logf_("wl-relay: serving %s -> %s", notify.name, path);
	}

	for (;;) {
		int n = 0, timeout = -1;

		pfds[n++] = (struct pollfd){ .fd = sig_fd, .events = POLLIN };
		if (mode == MODE_CLIENT)
			pfds[n++] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
		else
			pfds[n++] = (struct pollfd){ .fd = notify.fd, .events = POLLIN };
		if (mode == MODE_COMPOSITOR && notify.fd < 0)
			timeout = NOTIFY_RETRY_MS;
		/* A block of CONN_POLLFDS per connection; unused entries are -1, which poll ignores. */
		for (int i = 0; i < nconns; i++)
			for (int k = conn_pollfds(conns[i], &pfds[n + i * CONN_POLLFDS]); k < CONN_POLLFDS; k++)
				pfds[n + i * CONN_POLLFDS + k] = (struct pollfd){ .fd = -1 };
		if (poll(pfds, 2 + (nfds_t)nconns * CONN_POLLFDS, timeout) < 0 && errno != EINTR) {
			logf_("wl-relay: poll: %s", strerror(errno));
			return 1;
		}
		if (pfds[0].revents)
			break;
		for (int i = 0; i < nconns;) {
			if (conn_handle(conns[i], &pfds[2 + i * CONN_POLLFDS])) {
				/* Keep the order: the pollfd blocks of later connections move with them. */
				memmove(&conns[i], &conns[i + 1], (size_t)(nconns - i - 1) * sizeof(conns[0]));
				memmove(&pfds[2 + i * CONN_POLLFDS], &pfds[2 + (i + 1) * CONN_POLLFDS],
					(size_t)(nconns - i - 1) * CONN_POLLFDS * sizeof(pfds[0]));
				nconns--;
				continue;
			}
			i++;
		}
		if (mode == MODE_CLIENT) {
			if (pfds[1].revents & POLLIN)
				for (int k = 0; k < 16 && nconns <= MAX_CONNS; k++) {
					int before = nconns;

					accept_client(listen_fd, context);
					if (nconns == before)
						break;
				}
		} else if (notify.fd < 0) {
			notify.fd = wl_new_ctx(notify.name);
			if (notify.fd >= 0)
				logf_("wl-relay: the notification context %s is open again", notify.name);
		} else if (pfds[1].revents) {
			notify_read(&notify, path);
		}
	}
	/* SIGTERM or SIGINT: every connection closed, the socket and its lock removed. */
	while (nconns > 0)
		conn_free(conns[--nconns], NULL);
	if (listen_path) {
		unlink(listen_path);
		unlink(lock_path);
	}
	if (verbose)
		logf_("wl-relay: exiting");
	return 0;
}
