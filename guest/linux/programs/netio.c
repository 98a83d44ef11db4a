/*
 * netio: the guest side of the Linux network tests and benchmarks (test/linux, bench/linux).
 *
 *   netio send HOST PORT BYTES [SEED]   connect over TCP, send BYTES of pseudo-random data
 *   netio recv HOST PORT                connect over TCP, read until the peer closes
 *   netio udp-echo PORT COUNT           answer COUNT UDP datagrams with their own payload
 *   netio udp-send HOST PORT COUNT SIZE send COUNT datagrams of SIZE bytes (numbered pattern)
 *   netio offload IFACE [on|off]        show, or switch together, the checksum, scatter-gather,
 *                                       TSO and GSO offloads of an interface (what `ethtool -K`
 *                                       does, through the same SIOCETHTOOL ioctls)
 *
 * The data commands print one line: what it moved, the SHA-256 of the bytes, and the time it took, e.g.
 * `sent 8388608 bytes sha256 <hex> in 1234 ms`. Data moves in large blocks: a system call costs
 * about 0.2 ms in the emulated guest kernel of our CI hosts, so small writes would measure that.
 * Exit status 0 on success, 1 with a message on standard error otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../include/sha256.h"

#define BLOCK (256 * 1024)
#define UDP_MAX 65507

/* --- helpers --- */

static void die(const char *what)
{
	fprintf(stderr, "netio: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: netio send HOST PORT BYTES [SEED]\n"
		"       netio recv HOST PORT\n"
		"       netio udp-echo PORT COUNT\n"
		"       netio udp-send HOST PORT COUNT SIZE\n"
		"       netio offload IFACE [on|off]\n");
	exit(2);
}

static unsigned long number(const char *text, const char *name, unsigned long max)
{
	char *end;
	unsigned long n;
	errno = 0;
	n = strtoul(text, &end, 10);
	if (errno || *end || end == text || n > max) {
		fprintf(stderr, "netio: %s must be a number up to %lu; got '%s'\n", name, max, text);
		exit(2);
	}
	return n;
}

static struct sockaddr_in address(const char *host, const char *port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)number(port, "PORT", 65535));
	if (host && inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		fprintf(stderr, "netio: HOST must be an IPv4 address; got '%s'\n", host);
		exit(2);
	}
	if (!host)
		a.sin_addr.s_addr = htonl(INADDR_ANY);
	return a;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int tcp_connect(const char *host, const char *port)
{
	struct sockaddr_in a = address(host, port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	return fd;
}

/* xorshift64*: the same SEED always gives the same bytes. */
static void fill(uint8_t *buf, size_t n, uint64_t *state)
{
	size_t i;
	for (i = 0; i < n; i += 8) {
		uint64_t x = *state;
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		*state = x;
		x *= 0x2545f4914f6cdd1dULL;
		memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
	}
}

static uint8_t buffer[BLOCK];

static int cmd_send(int argc, char **argv)
{
	struct sha256 s;
	char hex[65];
	uint64_t state;
	unsigned long total, left;
	double start;
	int fd;
	if (argc != 4 && argc != 5)
		usage();
	total = number(argv[3], "BYTES", 1UL << 40);
	state = argc == 5 ? number(argv[4], "SEED", ~0UL) : 1;
	state = state * 0x9e3779b97f4a7c15ULL + 1;
	sha256_init(&s);
	start = now_ms();
	fd = tcp_connect(argv[1], argv[2]);
	for (left = total; left > 0;) {
		size_t n = left < BLOCK ? left : BLOCK, off = 0;
		fill(buffer, n, &state);
		sha256_update(&s, buffer, n);
		while (off < n) {
			ssize_t w = write(fd, buffer + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				die("write");
			off += (size_t)w;
		}
		left -= n;
	}
	if (shutdown(fd, SHUT_WR) < 0)
		die("shutdown");
	/* Wait for the peer to close: then everything sent was received. */
	while (read(fd, buffer, sizeof buffer) > 0)
		;
	close(fd);
	sha256_hex(&s, hex);
	printf("sent %lu bytes sha256 %s in %.0f ms\n", total, hex, now_ms() - start);
	return 0;
}

static int cmd_recv(int argc, char **argv)
{
	struct sha256 s;
	char hex[65];
	unsigned long total = 0;
	double start;
	int fd;
	if (argc != 3)
		usage();
	sha256_init(&s);
	start = now_ms();
	fd = tcp_connect(argv[1], argv[2]);
	for (;;) {
		ssize_t r = read(fd, buffer, sizeof buffer);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read");
		if (r == 0)
			break;
		sha256_update(&s, buffer, (size_t)r);
		total += (unsigned long)r;
	}
	close(fd);
	sha256_hex(&s, hex);
	printf("received %lu bytes sha256 %s in %.0f ms\n", total, hex, now_ms() - start);
	return 0;
}

static int udp_socket(const char *port)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket");
	if (port) {
		struct sockaddr_in a = address(NULL, port);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
			die("bind");
	}
	return fd;
}

static int cmd_udp_echo(int argc, char **argv)
{
	struct sha256 s;
	char hex[65];
	unsigned long count, i, bytes = 0;
	double start;
	int fd;
	if (argc != 3)
		usage();
	count = number(argv[2], "COUNT", 1UL << 32);
	fd = udp_socket(argv[1]);
	sha256_init(&s);
	/* Ready: the peer may start sending. */
	printf("udp-echo listening on port %s\n", argv[1]);
	fflush(stdout);
	start = now_ms();
	for (i = 0; i < count; i++) {
		struct sockaddr_in from;
		socklen_t len = sizeof from;
		ssize_t r = recvfrom(fd, buffer, UDP_MAX, 0, (struct sockaddr *)&from, &len);
		if (r < 0 && errno == EINTR) {
			i--;
			continue;
		}
		if (r < 0)
			die("recvfrom");
		sha256_update(&s, buffer, (size_t)r);
		bytes += (unsigned long)r;
		if (sendto(fd, buffer, (size_t)r, 0, (struct sockaddr *)&from, len) != r)
			die("sendto");
	}
	sha256_hex(&s, hex);
	printf("echoed %lu datagrams %lu bytes sha256 %s in %.0f ms\n", count, bytes, hex, now_ms() - start);
	return 0;
}

static int cmd_udp_send(int argc, char **argv)
{
	struct sockaddr_in to;
	struct sha256 s;
	char hex[65];
	unsigned long count, size, i, j;
	double start;
	int fd;
	if (argc != 5)
		usage();
	to = address(argv[1], argv[2]);
	count = number(argv[3], "COUNT", 1UL << 32);
	size = number(argv[4], "SIZE", UDP_MAX);
	if (size < 4) {
		fprintf(stderr, "netio: SIZE must be at least 4 (the datagram's number)\n");
		exit(2);
	}
	fd = udp_socket(NULL);
	sha256_init(&s);
	start = now_ms();
	for (i = 0; i < count; i++) {
		/* A 4-byte big-endian number, then bytes that depend on it. */
		buffer[0] = (uint8_t)(i >> 24);
		buffer[1] = (uint8_t)(i >> 16);
		buffer[2] = (uint8_t)(i >> 8);
		buffer[3] = (uint8_t)i;
		for (j = 4; j < size; j++)
			buffer[j] = (uint8_t)(i + j);
		sha256_update(&s, buffer, size);
		if (sendto(fd, buffer, size, 0, (struct sockaddr *)&to, sizeof to) != (ssize_t)size)
			die("sendto");
	}
	sha256_hex(&s, hex);
	printf("sent %lu datagrams %lu bytes sha256 %s in %.0f ms\n", count, count * size, hex, now_ms() - start);
	return 0;
}

/* The legacy ethtool get/set pairs, in the order they can be switched on (off: reversed). */
static const struct offload {
	const char *name;
	__u32 get, set;
} offloads[] = {
	{ "tx-checksumming", ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM },
	{ "scatter-gather", ETHTOOL_GSG, ETHTOOL_SSG },
	{ "tcp-segmentation-offload", ETHTOOL_GTSO, ETHTOOL_STSO },
	{ "generic-segmentation-offload", ETHTOOL_GGSO, ETHTOOL_SGSO },
};
#define OFFLOADS (sizeof offloads / sizeof offloads[0])

static void ethtool(int fd, const char *iface, struct ethtool_value *value, const char *what)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", iface);
	ifr.ifr_data = (char *)value;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0) {
		fprintf(stderr, "netio: %s %s: %s\n", what, iface, strerror(errno));
		exit(1);
	}
}

static int cmd_offload(int argc, char **argv)
{
	size_t i;
	int fd, on;
	if (argc != 2 && argc != 3)
		usage();
	if (strlen(argv[1]) >= IFNAMSIZ) {
		fprintf(stderr, "netio: '%s' is too long for an interface name\n", argv[1]);
		exit(2);
	}
	on = argc == 3 && !strcmp(argv[2], "on");
	if (argc == 3 && !on && strcmp(argv[2], "off"))
		usage();
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket");
	for (i = 0; argc == 3 && i < OFFLOADS; i++) {
		const struct offload *o = &offloads[on ? i : OFFLOADS - 1 - i];
		struct ethtool_value v = { .cmd = o->set, .data = (__u32)on };
		ethtool(fd, argv[1], &v, o->name);
	}
	for (i = 0; i < OFFLOADS; i++) {
		struct ethtool_value v = { .cmd = offloads[i].get };
		ethtool(fd, argv[1], &v, offloads[i].name);
		printf("%s: %s\n", offloads[i].name, v.data ? "on" : "off");
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "send"))
		return cmd_send(argc - 1, argv + 1);
	if (!strcmp(argv[1], "recv"))
		return cmd_recv(argc - 1, argv + 1);
	if (!strcmp(argv[1], "udp-echo"))
		return cmd_udp_echo(argc - 1, argv + 1);
	if (!strcmp(argv[1], "udp-send"))
		return cmd_udp_send(argc - 1, argv + 1);
	if (!strcmp(argv[1], "offload"))
		return cmd_offload(argc - 1, argv + 1);
	usage();
	return 2;
}
