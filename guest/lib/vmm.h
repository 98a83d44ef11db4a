/* Talking to the VMM itself (not to an emulated device). */
#ifndef GUEST_VMM_H
#define GUEST_VMM_H

#include <stdint.h>

/* Boot contract: a 32-bit write to this port ends the VM with that status. */
#define VMM_EXIT_PORT 0xf4
/* i8042 command port; command 0xfe pulses the CPU reset line. */
#define I8042_COMMAND_PORT 0x64
#define I8042_CMD_RESET 0xfe

/* Ends the VM with `status` (0 = clean power-off). Never returns. */
void vmm_exit(uint32_t status) __attribute__((noreturn));
/* Asks for a reset through the i8042. Never returns. */
void vmm_reset(void) __attribute__((noreturn));
/* cli; hlt forever. */
void halt_forever(void) __attribute__((noreturn));

#endif
