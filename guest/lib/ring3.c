#include <stdint.h>
#include "ring3.h"
#include "io.h"
#include "serial.h"
#include "vmm.h"

/* Exit status for an unexpected trap. */
#define TRAP_EXIT_STATUS 0x7f

/* Descriptor bits (Intel SDM vol. 3, 3.4.5 and 7.2.3). */
#define GDT_KERNEL_CODE64 0x00af9b000000ffffull /* P, DPL0, code r/x, L */
#define GDT_KERNEL_DATA   0x00cf93000000ffffull /* P, DPL0, data r/w */
#define GDT_USER_DATA     0x00cff3000000ffffull /* P, DPL3, data r/w */
#define GDT_USER_CODE64   0x00affb000000ffffull /* P, DPL3, code r/x, L */
#define GDT_TSS_AVAIL64   0x89ull		 /* P, DPL0, 64-bit TSS (available) */
#define IDT_INTERRUPT_GATE 0x8e			 /* P, DPL0, 64-bit interrupt gate */

/* 64-bit TSS (SDM vol. 3, 8.7). Only rsp0 matters: it is the stack the CPU
 * switches to when a trap arrives from ring 3. */
struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iopb_offset;	/* = sizeof(struct tss): no I/O bitmap */
} __attribute__((packed));

struct idt_gate {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

struct table_pointer {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* In ring3.S: 256 stubs of 16 bytes each, stub n for vector n. */
extern char trap_stubs[];
#define TRAP_STUB_SIZE 16

static uint64_t gdt[7] __attribute__((aligned(16)));	/* TSS takes 2 slots */
static struct tss tss __attribute__((aligned(16)));
static struct idt_gate idt[256] __attribute__((aligned(16)));
static trap_handler_t handlers[256];
static uint8_t trap_stack[16384] __attribute__((aligned(16)));
static uint8_t user_stack[16384] __attribute__((aligned(16)));

static const char *const exception_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "?09", "#TS", "#NP", "#SS", "#GP", "#PF", "?15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "?22", "?23",
	"?24", "?25", "?26", "?27", "#HV", "#VC", "#SX", "?31",
};

static void load_gdt_and_tss(void)
{
	uint64_t base = (uint64_t)&tss;
	struct table_pointer gdtr = { sizeof(gdt) - 1, (uint64_t)gdt };

	gdt[0] = 0;
	gdt[GDT_KERNEL_CS >> 3] = GDT_KERNEL_CODE64;
	gdt[GDT_KERNEL_DS >> 3] = GDT_KERNEL_DATA;
	gdt[GDT_USER_DS >> 3] = GDT_USER_DATA;
	gdt[GDT_USER_CS >> 3] = GDT_USER_CODE64;
	gdt[GDT_TSS >> 3] = (sizeof(tss) - 1) | (base & 0xffffff) << 16 |
			    GDT_TSS_AVAIL64 << 40 | (base >> 24 & 0xff) << 56;
	gdt[(GDT_TSS >> 3) + 1] = base >> 32;

	tss.rsp[0] = (uint64_t)(trap_stack + sizeof(trap_stack));
	tss.iopb_offset = sizeof(tss);

	/* Reload every segment register so no stale cache from the boot GDT
	 * remains; CS needs a far return. */
	__asm__ volatile("lgdt %0\n\t"
			 "pushq %1\n\t"
			 "pushq $1f\n\t"
			 "lretq\n"
			 "1:\tmovl %2, %%eax\n\t"
			 "movl %%eax, %%ds\n\t"
			 "movl %%eax, %%es\n\t"
			 "movl %%eax, %%ss\n\t"
			 "movl %%eax, %%fs\n\t"
			 "movl %%eax, %%gs\n\t"
			 "ltr %w3"
			 : : "m"(gdtr), "i"(GDT_KERNEL_CS), "i"(GDT_KERNEL_DS),
			   "r"(GDT_TSS)
			 : "rax", "memory");
}

static void load_idt(void)
{
	struct table_pointer idtr = { sizeof(idt) - 1, (uint64_t)idt };
	unsigned i;

	for (i = 0; i < 256; i++) {
		uint64_t a = (uint64_t)trap_stubs + i * TRAP_STUB_SIZE;

		idt[i].offset_low = (uint16_t)a;
		idt[i].selector = GDT_KERNEL_CS;
		idt[i].type_attr = IDT_INTERRUPT_GATE;
		idt[i].offset_mid = (uint16_t)(a >> 16);
		idt[i].offset_high = (uint32_t)(a >> 32);
	}
	__asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
}

/* The 8259s come out of reset with every line unmasked, so the PIT's first
 * tick would sit pending while interrupts are off and KVM would ask for an
 * interrupt window on every VM entry. Mask both until a driver wants a line
 * (serial.c unmasks IRQ 4). */
static void mask_legacy_pic(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

void cpu_init(void)
{
	load_gdt_and_tss();
	load_idt();
	mask_legacy_pic();
}

void trap_set_handler(unsigned vector, trap_handler_t handler)
{
	if (vector < 256)
		handlers[vector] = handler;
}

void *ring3_default_stack_top(void)
{
	return user_stack + sizeof(user_stack);
}

static void report_trap(const struct trap_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	serial_printf("\r\nguest: unexpected trap %u (%s) in ring %u: rip=0x%lx error=0x%lx\r\n",
		      (unsigned)f->vector,
		      f->vector < 32 ? exception_names[f->vector] : "irq",
		      (unsigned)(f->cs & 3), f->rip, f->error);
	serial_printf("guest: cs=0x%lx rsp=0x%lx rflags=0x%lx cr2=0x%lx rax=0x%lx rdi=0x%lx\r\n",
		      f->cs, f->rsp, f->rflags, cr2, f->rax, f->rdi);
}

/* Called by trap_common in ring3.S with interrupts off, on the trap stack
 * when the trap came from ring 3. */
void trap_dispatch(struct trap_frame *f)
{
	trap_handler_t h = handlers[f->vector & 0xff];

	if (h) {
		h(f);
		return;
	}
	report_trap(f);
	vmm_exit(TRAP_EXIT_STATUS);
}
