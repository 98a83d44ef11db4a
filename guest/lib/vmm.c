#include "vmm.h"
#include "io.h"

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" ::: "memory");
}

void vmm_exit(uint32_t status)
{
	outl(VMM_EXIT_PORT, status);
	/* Only reached if the VMM ignored the exit port. */
	halt_forever();
}

void vmm_reset(void)
{
	outb(I8042_COMMAND_PORT, I8042_CMD_RESET);
	halt_forever();
}
