/* Exit-cost benchmark guest. Parameters (command line, all optional):
 *
 *   pio=N mmio=N notify=N pio_port=0x510 mmio_addr=0xd0000000
 *   notify_addr=0xd0001000 mark_port=0x511 mmio_ring=3
 *
 * Phase 1: N `outl` to pio_port (ring 0: ring 3 cannot do port I/O).
 * Phase 2: N 32-bit MMIO writes to mmio_addr, from ring 3.
 * Phase 3: N 32-bit MMIO writes to notify_addr (an ioeventfd), from ring 3.
 * Each phase is bracketed by outl(mark_port, phase) and
 * outl(mark_port, 0x100 | phase) so the VMM can timestamp it.
 *
 * The MMIO loops run in ring 3 because ring 3 runs natively on the nested
 * host while ring 0 is emulated. mmio_ring=0 runs them in ring 0 instead, for
 * comparison: there an MMIO exit measured cheaper despite the emulated loop. */
#include "guest.h"

#define MARK_END 0x100
#define EXIT_WRONG_RING 1
/* Every write stores 1, so a VMM whose device sums the values can check
 * that the sum equals N. */
#define WRITE_VALUE 1

struct mmio_args {
	uintptr_t addr;
	uint64_t n;
	uint64_t cs;	/* CS the loop ran with, checked afterwards */
};

/* Ring 3 (ring 0 with mmio_ring=0). The loop is the store, the counter and
 * the branch. */
static uint64_t mmio_loop(void *p)
{
	struct mmio_args *a = p;
	volatile uint32_t *reg = (volatile uint32_t *)a->addr;
	uint64_t n;
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	a->cs = cs;
	for (n = a->n; n; n--)
		*reg = WRITE_VALUE;
	return 0;
}

/* Ring 0, where every instruction is emulated (~0.7 us each), so the loop
 * is written out: out, dec, jnz. */
static void pio_loop(uint16_t port, uint64_t n)
{
	if (n)
		__asm__ volatile("1:\toutl %%eax, %%dx\n\t"
				 "decq %%rcx\n\t"
				 "jnz 1b"
				 : "+c"(n) : "a"(WRITE_VALUE), "d"(port) : "memory");
}

/* Runs one MMIO phase in `ring` (3, or 0 for comparison) and checks that
 * it really ran there. */
static int mmio_phase(uint16_t mark_port, unsigned phase, unsigned ring,
		      uintptr_t addr, uint64_t n)
{
	struct mmio_args a = { addr, n, 0 };

	outl(mark_port, phase);
	if (ring == 0)
		mmio_loop(&a);
	else
		run_in_ring3(mmio_loop, &a, ring3_default_stack_top());
	outl(mark_port, MARK_END | phase);
	if ((a.cs & 3) != ring) {
		serial_printf("bench-exits: phase %u ran with cs=0x%lx, not in ring %u\r\n",
			      phase, a.cs, ring);
		return -1;
	}
	return 0;
}

int guest_main(const char *cmdline, uint64_t ram_size)
{
	uint64_t pio = cmdline_u64_or(cmdline, "pio", 0);
	uint64_t mmio = cmdline_u64_or(cmdline, "mmio", 0);
	uint64_t notify = cmdline_u64_or(cmdline, "notify", 0);
	uint16_t pio_port = (uint16_t)cmdline_u64_or(cmdline, "pio_port", 0x510);
	uintptr_t mmio_addr = cmdline_u64_or(cmdline, "mmio_addr", 0xd0000000);
	uintptr_t notify_addr = cmdline_u64_or(cmdline, "notify_addr", 0xd0001000);
	uint16_t mark_port = (uint16_t)cmdline_u64_or(cmdline, "mark_port", 0x511);
	unsigned ring = cmdline_u64_or(cmdline, "mmio_ring", 3) == 0 ? 0 : 3;

	(void)ram_size;
	serial_printf("bench-exits: pio=%lu mmio=%lu notify=%lu mmio_ring=%u\r\n",
		      pio, mmio, notify, ring);

	outl(mark_port, 1);
	pio_loop(pio_port, pio);
	outl(mark_port, MARK_END | 1);

	if (mmio_phase(mark_port, 2, ring, mmio_addr, mmio) ||
	    mmio_phase(mark_port, 3, ring, notify_addr, notify))
		return EXIT_WRONG_RING;
	return 0;
}
