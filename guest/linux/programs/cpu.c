/*
 * cpu: what the Linux tests and benchmarks run on the guest's CPU (test/linux, bench/linux).
 *
 *   cpu spin          print "spinning", then loop in user space without system calls until killed
 *   cpu segfault      print a line, then write through a null pointer (the kernel sends SIGSEGV)
 *   cpu syscalls N    make N getppid() system calls and print how long they took, e.g.
 *                     `100 getppid() in 18.2 ms, 0.182 ms each`
 *
 * On our CI hosts the guest kernel is emulated and user space is not: `syscalls` measures the
 * cost of entering the kernel, `spin` keeps the vCPU in guest user mode.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int usage(void)
{
	fprintf(stderr, "usage: cpu spin | cpu segfault | cpu syscalls COUNT (a positive number)\n");
	return 2;
}

static _Noreturn void spin(void)
{
	volatile unsigned long n = 0;
	puts("spinning");
	fflush(stdout);
	for (;;)
		n++;
}

static int segfault(void)
{
	volatile int *nowhere = NULL;
	puts("writing to address 0");
	fflush(stdout);
	*nowhere = 1;
	return 0;
}

static int syscalls(const char *arg)
{
	char *end;
	unsigned long count = strtoul(arg, &end, 10), i;
	double start, took;
	if (*end || end == arg || count == 0)
		return usage();
	start = now_ms();
	for (i = 0; i < count; i++)
		syscall(SYS_getppid); /* the raw system call: each one enters the kernel */
	took = now_ms() - start;
	printf("%lu getppid() in %.1f ms, %.3f ms each\n", count, took, took / count);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "spin"))
		spin();
	if (argc == 2 && !strcmp(argv[1], "segfault"))
		return segfault();
	if (argc == 3 && !strcmp(argv[1], "syscalls"))
		return syscalls(argv[2]);
	return usage();
}
