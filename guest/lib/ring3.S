/* Trap entry stubs and the ring 0 <-> ring 3 switch. See ring3.h. */

#define GDT_KERNEL_DS 0x10
#define GDT_USER_DS   (0x18 | 3)
#define GDT_USER_CS   (0x20 | 3)
#define VEC_UD 6

	.text

/* One 16-byte stub per vector so the IDT can compute addresses. Vectors
 * where the CPU pushes an error code skip the dummy 0. */
	.balign 16
	.globl trap_stubs
trap_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if vec == VEC_UD
	jmp ud_entry
	.else
	.if !(vec == 8 || vec == 10 || vec == 11 || vec == 12 || vec == 13 || vec == 14 || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	pushq $0
	.endif
	pushq $vec
	jmp trap_common
	.endif
	.set vec, vec + 1
	.endr

/* Save the registers into a struct trap_frame and call trap_dispatch.
 * The CPU aligned rsp to 16 before its 5-word push; with error, vector and
 * 15 registers the frame is 22 words, so the call below is aligned too. */
trap_common:
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	cld
	call trap_dispatch
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	addq $16, %rsp		/* vector and error */
	iretq

/* #UD: the ud2 at ring3_exit_ud2, hit from ring 3, means fn returned. Check
 * it here in a handful of instructions rather than through trap_common,
 * because every ring-0 instruction is emulated and this is on the benchmark's
 * path. Stack: rip, cs, rflags, rsp, ss. */
ud_entry:
	cmpq $ring3_exit_ud2, (%rsp)
	jne 1f
	testb $3, 8(%rsp)
	jnz ring3_return
1:	pushq $0
	pushq $VEC_UD
	jmp trap_common

/* uint64_t run_in_ring3(fn %rdi, arg %rsi, user_stack_top %rdx) */
	.globl run_in_ring3
run_in_ring3:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	pushfq			/* the trap back clears IF; restore it after */
	movq %rsp, ring0_rsp(%rip)
	/* iretq frame for ring 3: ss, rsp, rflags (the caller's), cs, rip */
	pushq $GDT_USER_DS
	pushq %rdx
	pushq 16(%rsp)		/* the pushfq value above */
	pushq $GDT_USER_CS
	pushq $ring3_trampoline
	movq %rdi, %rax
	movq %rsi, %rdi
	iretq

/* Runs in ring 3. rsp is the 16-byte aligned stack top, so fn sees the
 * usual alignment after the call. */
ring3_trampoline:
	call *%rax
ring3_exit_ud2:
	ud2

/* Back in ring 0 from ud_entry, with fn's result still in rax. Drop the
 * trap frame by going back to the rsp saved at entry. */
ring3_return:
	movq ring0_rsp(%rip), %rsp
	movl $GDT_KERNEL_DS, %ecx	/* the trap from ring 3 left SS null */
	movl %ecx, %ss
	movl %ecx, %ds
	movl %ecx, %es
	popfq
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret

	.bss
	.balign 8
ring0_rsp:
	.skip 8

	.section .note.GNU-stack, "", @progbits
