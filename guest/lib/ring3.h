/* CPU tables (GDT, TSS, IDT), exception reporting, and running a function
 * in ring 3.
 *
 * Why ring 3 at all: on this host guest ring 0 is emulated (~1 M
 * instructions/s) while ring 3 runs natively, so loops that must not measure
 * the emulator belong in ring 3. Ring 3 cannot do port I/O (#GP even with
 * IOPL=3), cannot `syscall` (lands at LSTAR still in ring 3) and `int $n`
 * gives #UD, so the way back to ring 0 is a deliberate `ud2` (see
 * run_in_ring3). */
#ifndef GUEST_RING3_H
#define GUEST_RING3_H

#include <stdint.h>

/* Our GDT. Kernel selectors match the boot GDT; the user pair is in the
 * order `sysret` would expect, though nothing here uses syscall. */
#define GDT_KERNEL_CS 0x08
#define GDT_KERNEL_DS 0x10
#define GDT_USER_DS   (0x18 | 3)
#define GDT_USER_CS   (0x20 | 3)
#define GDT_TSS       0x28

/* Exception vectors (Intel SDM vol. 3, table 6-1). */
#define VEC_DE 0
#define VEC_DB 1
#define VEC_BP 3
#define VEC_UD 6
#define VEC_DF 8
#define VEC_GP 13
#define VEC_PF 14

/* What the trap stubs leave on the stack; a handler may edit it (rip, rax…)
 * and the changes take effect when it returns. */
struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;		/* error is 0 for vectors without one */
	uint64_t rip, cs, rflags, rsp, ss;	/* pushed by the CPU */
};

typedef void (*trap_handler_t)(struct trap_frame *f);

/* Loads our GDT (with a TSS) and an IDT with all 256 vectors routed to
 * trap_dispatch. start.S calls this before guest_main. */
void cpu_init(void);

/* Installs a handler for one vector (NULL restores the default, which prints
 * the fault on serial and exits the VM with status 0x7f). For IRQ vectors the
 * handler sends the EOI itself. */
void trap_set_handler(unsigned vector, trap_handler_t handler);

typedef uint64_t (*ring3_fn_t)(void *arg);

/* Calls fn(arg) in ring 3 on the given stack (16-byte aligned top) and
 * returns its result in ring 0. fn and everything it touches must be
 * user-accessible (the boot identity map is) and fn must not do port I/O.
 * RFLAGS.IF in ring 3 is the caller's. Not reentrant. */
uint64_t run_in_ring3(ring3_fn_t fn, void *arg, void *user_stack_top);

/* A 16 KiB stack for run_in_ring3 callers that don't bring their own. */
void *ring3_default_stack_top(void);

#endif
