/* A test guest that runs a script of guest actions from its command line, so integration tests
 * can make a real guest touch ports and addresses, fault, or wait, and read what it saw on
 * serial. Actions are space-separated:
 *
 *   inb:PORT inw:PORT inl:PORT          print "probe: inl 0x7e0 = 0x..."
 *   outb:PORT:VAL outw:PORT:VAL outl:PORT:VAL
 *   rd8:ADDR rd32:ADDR rd64:ADDR        MMIO reads, printed like port reads
 *   wr8:ADDR:VAL wr32:ADDR:VAL wr64:ADDR:VAL
 *   cpuid:LEAF                          print "probe: cpuid 0x1 = eax ebx ecx edx" (subleaf 0)
 *   echo                                read a line from serial and print "probe: got <line>"
 *   wait                                wait forever (until the VMM stops the VM)
 *   triple                              triple-fault the CPU
 *   reset                               reset through the i8042
 *   exit:N                              end the VM with status N
 *
 * After the last action the guest exits with status 0. */
#include "guest.h"

static uint64_t parse(const char *s, const char **end)
{
	uint64_t v = 0;
	int base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++) {
		int d;
		if (*s >= '0' && *s <= '9') d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
		else break;
		v = v * base + d;
	}
	*end = s;
	return v;
}

static int starts(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++) return 0;
	return 1;
}

static void triple_fault(void)
{
	/* With an empty IDT every exception escalates: #UD → #DF → shutdown. */
	struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr = { 0, 0 };
	__asm__ volatile("lidt %0; ud2" : : "m"(idtr));
}

static void echo_line(void)
{
	char line[129];
	unsigned n = 0;
	for (;;) {
		int c = serial_getc();
		if (c == '\r' || c == '\n') break;
		if (n < sizeof(line) - 1) line[n++] = (char)c;
	}
	line[n] = 0;
	serial_printf("probe: got %s\n", line);
}

static const char *run_action(const char *p)
{
	const char *q;
	uint64_t a = 0, v = 0;
	const char *colon = p;
	while (*colon && *colon != ':' && *colon != ' ') colon++;
	if (*colon == ':') {
		a = parse(colon + 1, &q);
		if (*q == ':') v = parse(q + 1, &q);
	} else {
		q = colon;
	}

	if (starts(p, "inb:")) serial_printf("probe: inb 0x%lx = 0x%x\n", a, inb((uint16_t)a));
	else if (starts(p, "inw:")) serial_printf("probe: inw 0x%lx = 0x%x\n", a, inw((uint16_t)a));
	else if (starts(p, "inl:")) serial_printf("probe: inl 0x%lx = 0x%x\n", a, inl((uint16_t)a));
	else if (starts(p, "outb:")) outb((uint16_t)a, (uint8_t)v);
	else if (starts(p, "outw:")) outw((uint16_t)a, (uint16_t)v);
	else if (starts(p, "outl:")) outl((uint16_t)a, (uint32_t)v);
	else if (starts(p, "rd8:")) serial_printf("probe: rd8 0x%lx = 0x%x\n", a, mmio_read8(a));
	else if (starts(p, "rd32:")) serial_printf("probe: rd32 0x%lx = 0x%x\n", a, mmio_read32(a));
	else if (starts(p, "rd64:")) serial_printf("probe: rd64 0x%lx = 0x%lx\n", a, mmio_read64(a));
	else if (starts(p, "wr8:")) mmio_write8(a, (uint8_t)v);
	else if (starts(p, "wr32:")) mmio_write32(a, (uint32_t)v);
	else if (starts(p, "wr64:")) mmio_write64(a, v);
	else if (starts(p, "cpuid:")) {
		uint32_t eax = (uint32_t)a, ebx, ecx = 0, edx;
		__asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
		serial_printf("probe: cpuid 0x%lx = 0x%x 0x%x 0x%x 0x%x\n", a, eax, ebx, ecx, edx);
	}
	else if (starts(p, "echo")) echo_line();
	else if (starts(p, "wait")) halt_forever();
	else if (starts(p, "triple")) triple_fault();
	else if (starts(p, "reset")) vmm_reset();
	else if (starts(p, "exit:")) vmm_exit((uint32_t)a);
	else {
		serial_printf("probe: unknown action at '%s'\n", p);
		vmm_exit(0x7e);
	}
	while (*q && *q != ' ') q++;
	return q;
}

int guest_main(const char *cmdline, uint64_t ram_size)
{
	(void)ram_size;
	serial_printf("probe: start\n");
	for (const char *p = cmdline; p && *p;) {
		while (*p == ' ') p++;
		if (*p) p = run_action(p);
	}
	serial_printf("probe: done\n");
	return 0;
}
