/* Everything a vmm test guest needs. A guest provides
 *
 *     int guest_main(const char *cmdline, uint64_t ram_size);
 *
 * start.S calls it after serial_init() and cpu_init(); its return value is
 * the VM's exit status. cmdline is NULL when the VMM passed none. */
#ifndef GUEST_H
#define GUEST_H

#include <stdint.h>
#include "io.h"
#include "string.h"
#include "serial.h"
#include "cmdline.h"
#include "vmm.h"
#include "ring3.h"

int guest_main(const char *cmdline, uint64_t ram_size);

#endif
