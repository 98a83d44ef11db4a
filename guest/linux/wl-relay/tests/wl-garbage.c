/* SPDX-License-Identifier: MIT */
/*
 * A hostile Wayland client for the relay's tests (test/linux-wl/relay-client.test.ts):
 * connects to $XDG_RUNTIME_DIR/wayland-0 (or $WAYLAND_DISPLAY), sends one kind of garbage and
 * reports whether the relay hung up on it within 20 s.
 *
 *   wl-garbage size     a header whose size is 6 (not a multiple of 4, under 8)
 *   wl-garbage object   a wl_display.sync on object 77, which does not exist
 *   wl-garbage big      a header saying 8192 bytes (more than a Wayland message may have)
 *
 * Prints "hung up" and exits 0 when the relay closed the connection, else exits 1.
 */
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *dir = getenv("XDG_RUNTIME_DIR"), *name = getenv("WAYLAND_DISPLAY");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	uint32_t msg[4] = { 1, 0, 0, 0 };
	struct pollfd p;
	char buf[4096];
	int fd;

	if (argc != 2 || !dir) {
		fprintf(stderr, "usage: XDG_RUNTIME_DIR=... wl-garbage size|object|big\n");
		return 2;
	}
	if (strcmp(argv[1], "size") == 0) {
		msg[1] = 6u << 16;
	} else if (strcmp(argv[1], "object") == 0) {
		msg[0] = 77, msg[1] = 12u << 16, msg[2] = 3;	/* sync(new_id 3) */
	} else if (strcmp(argv[1], "big") == 0) {
		msg[1] = 8192u << 16;
	} else {
		fprintf(stderr, "wl-garbage: unknown kind %s\n", argv[1]);
		return 2;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/%s", dir, name ? name : "wayland-0");
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		perror("wl-garbage: connect");
		return 1;
	}
	if (write(fd, msg, sizeof(msg)) != sizeof(msg)) {
		perror("wl-garbage: write");
		return 1;
	}
	p.fd = fd;
	p.events = POLLIN;
	for (;;) {
		ssize_t n;

		if (poll(&p, 1, 20000) <= 0) {
			printf("still connected after 20 s\n");
			return 1;
		}
		n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			printf("hung up\n");
			return 0;
		}
	}
}
