/*
 * bench/control/echo-server: the limit for bench/control. A minimal SOCK_SEQPACKET server in C
 * that answers every datagram with one fixed small JSON response, the shape of the control
 * channel's replies. One thread, epoll, non-blocking sockets; nothing is parsed.
 *
 *   echo-server PATH       prints "ready" on stdout once listening; SIGTERM/SIGINT end it
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define MAX_REQUEST 65536

static const char RESPONSE[] = "{\"version\":1,\"result\":{\"state\":\"running\",\"vcpus\":1}}";
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	static char buf[MAX_REQUEST];
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct epoll_event ev, events[MAX_EVENTS];
	struct sigaction sa = { .sa_handler = on_signal };
	int lfd, ep;

	if (argc != 2 || strlen(argv[1]) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "usage: echo-server PATH\n");
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	strcpy(addr.sun_path, argv[1]);
	unlink(argv[1]);
	lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("bind");
	if (listen(lfd, 128) < 0)
		die("listen");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");
	printf("ready\n");
	fflush(stdout);

	while (!stopping) {
		int n = epoll_wait(ep, events, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd == lfd) {
				int c;

				while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					ev.events = EPOLLIN | EPOLLRDHUP;
					ev.data.fd = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
						close(c);
				}
				continue;
			}
			for (;;) {
				/* recv, not read: a zero-length datagram is consumed too. */
				ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

				if (r < 0) {
					if (errno != EAGAIN)
						goto hangup;
					break;
				}
				if (r == 0 && (events[i].events & (EPOLLRDHUP | EPOLLHUP)))
					goto hangup;
				/* The benchmark client reads every reply before the next request, so the
				 * reply always fits; a full socket would just drop it here. */
				if (send(fd, RESPONSE, sizeof(RESPONSE) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
				    errno != EAGAIN)
					goto hangup;
			}
			continue;
hangup:
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			close(fd);
		}
	}
	close(lfd);
	unlink(argv[1]);
	return 0;
}
