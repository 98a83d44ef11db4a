/* Guest entry. Per the vmm boot contract the vCPU starts here in 64-bit long
 * mode with interrupts off, the boot identity map of the first 4 GiB (user
 * accessible), rdi = command line address (or 0), rsi = RAM size, and a tiny
 * boot stack at 0x8ff0 that we leave at once: nothing below 1 MiB is ours. */

#define BOOT_STACK_SIZE 65536

	.section .text.start, "ax"
	.globl _start
_start:
	movq $boot_stack_top, %rsp
	xorl %ebp, %ebp
	cld
	movq %rdi, %r12		/* callee-saved across the init calls */
	movq %rsi, %r13
	call serial_init
	call cpu_init
	movq %r12, %rdi
	movq %r13, %rsi
	call guest_main		/* int guest_main(const char *cmdline, uint64_t ram_size) */
	movl %eax, %edi
	call vmm_exit		/* does not return */

	.bss
	.balign 16
boot_stack:
	.skip BOOT_STACK_SIZE
boot_stack_top:

	.section .note.GNU-stack, "", @progbits
