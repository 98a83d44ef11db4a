/*
 * ref-vmm: a minimal C VMM that does what vmm's TypeScript VMM does for the
 * exit benchmark, as the "limit" to compare against.
 *
 *   ref-vmm GUEST.elf "CMDLINE"
 *
 * It sets up the VM exactly per the vmm boot contract (64-bit long mode at
 * e_entry, identity map of the first 4 GiB, GDT at 0x500, command line at
 * 0x20000), runs one vCPU in this thread and serves:
 *   - pio_port (PIO) and mmio_addr (MMIO): a trivial device that sums the
 *     values written;
 *   - notify_addr: a KVM ioeventfd, so those writes never reach userspace;
 *   - mark_port: CLOCK_MONOTONIC timestamps at phase start (value = phase)
 *     and end (value = 0x100 | phase);
 *   - COM1 (0x3f8..0x3ff): bytes written go to stdout, bytes read come from
 *     stdin (a tty is put in raw mode so the guest does the echo);
 *   - port 0xf4: a 32-bit status ends the run.
 * Port numbers and addresses come from the same command line the guest gets
 * (pio_port=, mmio_addr=, notify_addr=, mark_port=; pio=, mmio=, notify= are
 * the expected counts). At the end it prints one JSON line:
 *   {"pio":{"n":N,"seconds":S},"mmio":{"n":N,"seconds":S},
 *    "notify":{"n":N,"seconds":S,"eventfd_count":C}}
 * and exits non-zero if the guest failed, an exit was unexpected, or a count
 * does not match.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* Boot contract (keep in step with the TypeScript VMM's boot/layout). */
#define RAM_SIZE	(64ull << 20)
#define GDT_ADDR	0x500
#define IDT_ADDR	0x520
#define PML4_ADDR	0x9000
#define PDPT_ADDR	0xa000
#define PD_ADDR		0xb000		/* 4 PDs: 0xb000..0xefff */
#define BOOT_RSP	0x8ff0
#define CMDLINE_ADDR	0x20000
#define CMDLINE_MAX	4096		/* including the NUL */
#define LOW_MEM_END	0x100000	/* ELF segments must load above this */
#define EXIT_PORT	0xf4
#define I8042_PORT	0x64
#define I8042_CMD_RESET	0xfe

#define CR0_PE (1u << 0)
#define CR0_MP (1u << 1)
#define CR0_ET (1u << 4)
#define CR0_NE (1u << 5)
#define CR0_WP (1u << 16)
#define CR0_AM (1u << 18)
#define CR0_PG (1u << 31)
#define CR4_PAE (1u << 5)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_US (1ull << 2)
#define PTE_PS (1ull << 7)

/* COM1 registers (linux/serial_reg.h names). */
#define COM1_BASE	0x3f8
#define UART_RX		0
#define UART_TX		0
#define UART_IER	1
#define UART_IIR	2
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define UART_MSR	6
#define UART_SCR	7
#define UART_LCR_DLAB	0x80
#define UART_IIR_NO_INT	0x01
#define UART_LSR_DR	0x01
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40
#define UART_MSR_DCD_DSR_CTS 0xb0

#define MARK_END	0x100
#define NPHASES		3

struct phase {
	const char *name;
	uint64_t n;			/* expected count (from the command line) */
	uint64_t exits;			/* exits seen (pio/mmio only) */
	uint64_t sum;			/* the "device": sum of values written */
	struct timespec start, end;
	int started, ended;
};

struct vm {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	uint8_t *ram;
	uint64_t pio_port, mmio_addr, notify_addr, mark_port;
	struct phase phase[NPHASES];	/* pio, mmio, notify */
	int notify_fd;
	/* COM1 state: just enough for polled 8250 drivers. */
	uint8_t lcr, ier, mcr, scr, dll, dlm;
	int stdin_eof;
	int out_at_line_start;
};

static struct termios saved_termios;
static int termios_saved;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("ref-vmm: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void restore_tty(void)
{
	if (termios_saved)
		tcsetattr(0, TCSANOW, &saved_termios);
}

/* With stdin a tty, pass keys through at once and let the guest echo. */
static void raw_tty(void)
{
	struct termios t;

	if (!isatty(0) || tcgetattr(0, &saved_termios))
		return;
	termios_saved = 1;
	atexit(restore_tty);
	t = saved_termios;
	t.c_lflag &= ~(ICANON | ECHO);
	t.c_iflag &= ~ICRNL;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	tcsetattr(0, TCSANOW, &t);
}

/* --- command line ------------------------------------------------------ */

static int cmdline_u64(const char *cmdline, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			char *end;

			errno = 0;
			*out = strtoull(p + klen + 1, &end, 0);
			if (errno || end == p + klen + 1 || (*end && *end != ' ' && *end != '\t'))
				die("bad value for %s in the command line", key);
			return 1;
		}
		while (*p && *p != ' ' && *p != '\t')
			p++;
	}
	return 0;
}

static uint64_t cmdline_u64_or(const char *cmdline, const char *key, uint64_t dflt)
{
	uint64_t v;

	return cmdline_u64(cmdline, key, &v) ? v : dflt;
}

/* --- guest setup --------------------------------------------------------- */

static void load_elf(struct vm *v, const char *path, uint64_t *entry)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint8_t *img;
	Elf64_Ehdr *eh;
	int i, loads = 0;

	if (fd < 0 || fstat(fd, &st))
		die("open %s: %s", path, strerror(errno));
	img = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED)
		die("mmap %s: %s", path, strerror(errno));
	close(fd);

	eh = (Elf64_Ehdr *)img;
	if ((size_t)st.st_size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64 || eh->e_phentsize != sizeof(Elf64_Phdr) ||
	    eh->e_phoff > (uint64_t)st.st_size ||
	    (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > st.st_size - eh->e_phoff)
		die("%s: not a 64-bit x86-64 ELF", path);

	for (i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff) + i;

		if (ph->p_type != PT_LOAD)
			continue;
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > (uint64_t)st.st_size ||
		    ph->p_filesz > st.st_size - ph->p_offset)
			die("%s: PT_LOAD %d: bad sizes", path, i);
		if (ph->p_paddr < LOW_MEM_END || ph->p_paddr > RAM_SIZE ||
		    ph->p_memsz > RAM_SIZE - ph->p_paddr)
			die("%s: PT_LOAD %d at 0x%" PRIx64 "+0x%" PRIx64 " is outside RAM above 1 MiB",
			    path, i, (uint64_t)ph->p_paddr, (uint64_t)ph->p_memsz);
		memcpy(v->ram + ph->p_paddr, img + ph->p_offset, ph->p_filesz);
		memset(v->ram + ph->p_paddr + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
		loads++;
	}
	if (!loads)
		die("%s: no PT_LOAD segments", path);
	*entry = eh->e_entry;
	munmap(img, st.st_size);
}

static void write_tables(struct vm *v)
{
	uint64_t *pml4 = (uint64_t *)(v->ram + PML4_ADDR);
	uint64_t *pdpt = (uint64_t *)(v->ram + PDPT_ADDR);
	uint64_t *pd = (uint64_t *)(v->ram + PD_ADDR);
	uint64_t *gdt = (uint64_t *)(v->ram + GDT_ADDR);
	int i;

	/* Identity map of the first 4 GiB with 2 MiB pages, all user-accessible. */
	pml4[0] = PDPT_ADDR | PTE_P | PTE_RW | PTE_US;
	for (i = 0; i < 4; i++)
		pdpt[i] = (PD_ADDR + i * 0x1000ull) | PTE_P | PTE_RW | PTE_US;
	for (i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS;

	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffull;	/* 0x08: 64-bit code */
	gdt[2] = 0x00cf93000000ffffull;	/* 0x10: data */
	gdt[3] = 0x008f8b000000ffffull;	/* 0x18: TSS placeholder (busy) */
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static void setup_vcpu(struct vm *v, uint64_t entry, uint64_t cmdline_gpa)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_cpuid2 *cpuid;
	int nent = 64;

	/* CPUID: what KVM supports, as the TypeScript VMM does. */
	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(cpuid->entries[0]));
		cpuid->nent = nent;
		if (!ioctl(v->kvm, KVM_GET_SUPPORTED_CPUID, cpuid))
			break;
		if (errno != E2BIG)
			die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(cpuid);
		nent *= 2;
	}
	if (ioctl(v->vcpu, KVM_SET_CPUID2, cpuid))
		die("KVM_SET_CPUID2: %s", strerror(errno));
	free(cpuid);

	if (ioctl(v->vcpu, KVM_GET_SREGS, &sregs))
		die("KVM_GET_SREGS: %s", strerror(errno));
	set_seg(&sregs.cs, 0x08, 0xb, 1);
	set_seg(&sregs.ds, 0x10, 0x3, 0);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.selector = 0x18;
	sregs.tr.limit = 0xffff;
	sregs.tr.type = 0xb;		/* 64-bit TSS, busy */
	sregs.tr.present = 1;
	sregs.gdt.base = GDT_ADDR;
	sregs.gdt.limit = 31;
	sregs.idt.base = IDT_ADDR;
	sregs.idt.limit = 0;
	/* 0x80050033: the contract's value, which includes AM (its list of
	 * flag names leaves AM out). */
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	sregs.cr3 = PML4_ADDR;
	sregs.cr4 = CR4_PAE;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(v->vcpu, KVM_SET_SREGS, &sregs))
		die("KVM_SET_SREGS: %s", strerror(errno));

	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rflags = 0x2;
	regs.rsp = BOOT_RSP;
	regs.rdi = cmdline_gpa;
	regs.rsi = RAM_SIZE;
	if (ioctl(v->vcpu, KVM_SET_REGS, &regs))
		die("KVM_SET_REGS: %s", strerror(errno));
}

static void create_vm(struct vm *v)
{
	struct kvm_userspace_memory_region region;
	struct kvm_ioeventfd ioev;
	int memfd, run_size;

	v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm < 0)
		die("open /dev/kvm: %s", strerror(errno));
	if (ioctl(v->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		die("unexpected KVM API version");
	v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0);
	if (v->vm < 0)
		die("KVM_CREATE_VM: %s", strerror(errno));
	if (ioctl(v->vm, KVM_CREATE_IRQCHIP, 0))
		die("KVM_CREATE_IRQCHIP: %s", strerror(errno));
	/* The same in-kernel PIT as vmm, so both VMs do the same work. */
	struct kvm_pit_config pit = { .flags = 0 };
	if (ioctl(v->vm, KVM_CREATE_PIT2, &pit))
		die("KVM_CREATE_PIT2: %s", strerror(errno));

	memfd = memfd_create("ref-vmm-ram", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, RAM_SIZE))
		die("memfd: %s", strerror(errno));
	v->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (v->ram == MAP_FAILED)
		die("mmap RAM: %s", strerror(errno));
	memset(&region, 0, sizeof(region));
	region.slot = 0;
	region.guest_phys_addr = 0;
	region.memory_size = RAM_SIZE;
	region.userspace_addr = (uintptr_t)v->ram;
	if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

	v->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->notify_fd < 0)
		die("eventfd: %s", strerror(errno));
	memset(&ioev, 0, sizeof(ioev));
	ioev.addr = v->notify_addr;
	ioev.len = 4;
	ioev.fd = v->notify_fd;
	if (ioctl(v->vm, KVM_IOEVENTFD, &ioev))
		die("KVM_IOEVENTFD: %s", strerror(errno));

	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	if (v->vcpu < 0)
		die("KVM_CREATE_VCPU: %s", strerror(errno));
	run_size = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		die("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	if (v->run == MAP_FAILED)
		die("mmap kvm_run: %s", strerror(errno));
}

/* --- exits ----------------------------------------------------------------- */

static void dump_vcpu(struct vm *v)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->vcpu, KVM_GET_REGS, &r) || ioctl(v->vcpu, KVM_GET_SREGS, &s)) {
		fprintf(stderr, "ref-vmm: cannot read vCPU registers: %s\n", strerror(errno));
		return;
	}
	fprintf(stderr,
		"  rip=%016llx rsp=%016llx rflags=%016llx\n"
		"  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
		"  rsi=%016llx rdi=%016llx rbp=%016llx\n"
		"  cs=%04x ss=%04x cr0=%llx cr2=%llx cr3=%llx cr4=%llx efer=%llx\n",
		r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp,
		s.cs.selector, s.ss.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
}

static void guest_output(struct vm *v, uint8_t c)
{
	if (write(1, &c, 1) != 1)
		die("write stdout: %s", strerror(errno));
	v->out_at_line_start = c == '\n';
}

static int stdin_ready(struct vm *v)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };

	return !v->stdin_eof && poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLHUP));
}

static uint8_t com1_read(struct vm *v, unsigned reg)
{
	uint8_t c;

	switch (reg) {
	case UART_RX:
		if (v->lcr & UART_LCR_DLAB)
			return v->dll;
		if (!stdin_ready(v))
			return 0;
		if (read(0, &c, 1) != 1) {
			v->stdin_eof = 1;	/* a UART has no EOF: just no more data */
			return 0;
		}
		return c;
	case UART_IER:
		return v->lcr & UART_LCR_DLAB ? v->dlm : v->ier;
	case UART_IIR:
		return UART_IIR_NO_INT;
	case UART_LCR:
		return v->lcr;
	case UART_MCR:
		return v->mcr;
	case UART_LSR:
		return UART_LSR_THRE | UART_LSR_TEMT | (stdin_ready(v) ? UART_LSR_DR : 0);
	case UART_MSR:
		return UART_MSR_DCD_DSR_CTS;
	default:
		return v->scr;
	}
}

static void com1_write(struct vm *v, unsigned reg, uint8_t val)
{
	switch (reg) {
	case UART_TX:
		if (v->lcr & UART_LCR_DLAB)
			v->dll = val;
		else
			guest_output(v, val);
		break;
	case UART_IER:
		if (v->lcr & UART_LCR_DLAB)
			v->dlm = val;
		else
			v->ier = val;
		break;
	case UART_LCR:
		v->lcr = val;
		break;
	case UART_MCR:
		v->mcr = val;
		break;
	case UART_SCR:
		v->scr = val;
		break;
	default:	/* FCR, LSR, MSR: ignored */
		break;
	}
}

static void mark(struct vm *v, uint32_t val)
{
	unsigned i = (val & 0xff) - 1;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (i >= NPHASES || (val & ~(MARK_END | 0xff)))
		die("bad mark value 0x%x", val);
	if (val & MARK_END) {
		v->phase[i].end = now;
		v->phase[i].ended = 1;
	} else {
		v->phase[i].start = now;
		v->phase[i].started = 1;
	}
}

static uint64_t io_value(const uint8_t *data, unsigned size)
{
	uint64_t val = 0;

	memcpy(&val, data, size);	/* little-endian host */
	return val;
}

/* Returns 1 while the vCPU should keep running, 0 once the guest exited
 * through port 0xf4 (status in *status). */
static int handle_io(struct vm *v, uint32_t *status)
{
	struct kvm_run *r = v->run;
	uint8_t *data = (uint8_t *)r + r->io.data_offset;
	unsigned port = r->io.port, size = r->io.size;
	int out = r->io.direction == KVM_EXIT_IO_OUT;
	uint32_t k;

	for (k = 0; k < r->io.count; k++, data += size) {
		if (port == v->pio_port && out) {
			v->phase[0].exits++;
			v->phase[0].sum += io_value(data, size);
		} else if (port == v->mark_port && out && size == 4) {
			mark(v, (uint32_t)io_value(data, size));
		} else if (port == EXIT_PORT && out && size == 4) {
			*status = (uint32_t)io_value(data, size);
			return 0;
		} else if (port >= COM1_BASE && port < COM1_BASE + 8 && size == 1) {
			if (out)
				com1_write(v, port - COM1_BASE, *data);
			else
				*data = com1_read(v, port - COM1_BASE);
		} else if (port == I8042_PORT && out && *data == I8042_CMD_RESET) {
			die("guest asked for a reset (i8042 0xfe)");
		} else {
			fprintf(stderr, "ref-vmm: unexpected port I/O: %s port 0x%x size %u\n",
				out ? "out" : "in", port, size);
			dump_vcpu(v);
			exit(1);
		}
	}
	return 1;
}

static void handle_mmio(struct vm *v)
{
	struct kvm_run *r = v->run;
	uint64_t addr = r->mmio.phys_addr;
	unsigned len = r->mmio.len;

	if (addr == v->mmio_addr && len == 4) {
		if (r->mmio.is_write) {
			v->phase[1].exits++;
			v->phase[1].sum += io_value(r->mmio.data, len);
		} else {
			memcpy(r->mmio.data, &v->phase[1].exits, len);
		}
		return;
	}
	fprintf(stderr, "ref-vmm: unexpected MMIO %s at 0x%" PRIx64 " len %u\n",
		r->mmio.is_write ? "write" : "read", addr, len);
	dump_vcpu(v);
	exit(1);
}

static uint32_t run_vcpu(struct vm *v)
{
	uint32_t status = 0;

	for (;;) {
		if (ioctl(v->vcpu, KVM_RUN, 0)) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN: %s", strerror(errno));
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			if (!handle_io(v, &status))
				return status;
			break;
		case KVM_EXIT_MMIO:
			handle_mmio(v);
			break;
		case KVM_EXIT_SHUTDOWN:
			fprintf(stderr, "ref-vmm: guest shut down (triple fault)\n");
			dump_vcpu(v);
			exit(1);
		case KVM_EXIT_INTERNAL_ERROR: {
			unsigned i;

			fprintf(stderr, "ref-vmm: KVM internal error, suberror %u, data:",
				v->run->internal.suberror);
			for (i = 0; i < v->run->internal.ndata && i < 16; i++)
				fprintf(stderr, " %llx", (unsigned long long)v->run->internal.data[i]);
			fputc('\n', stderr);
			dump_vcpu(v);
			exit(1);
		}
		case KVM_EXIT_FAIL_ENTRY:
			fprintf(stderr, "ref-vmm: VM entry failed, reason 0x%llx\n",
				(unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
			dump_vcpu(v);
			exit(1);
		default:
			fprintf(stderr, "ref-vmm: unexpected exit reason %u\n", v->run->exit_reason);
			dump_vcpu(v);
			exit(1);
		}
	}
}

/* --- the device thread ----------------------------------------------------- */

/* A real device consumes its queue notifications while the guest runs (vmm does, on its main
 * event loop), so the reference does too: a thread that waits on the eventfd and reads it,
 * like Firecracker's device event loop. */
static volatile int notify_stop;
static uint64_t notify_events;

static void *notify_thread(void *arg)
{
	struct vm *v = arg;
	struct pollfd pfd = { .fd = v->notify_fd, .events = POLLIN };

	while (!notify_stop) {
		uint64_t n;

		if (poll(&pfd, 1, 20) > 0 && read(v->notify_fd, &n, sizeof(n)) == sizeof(n))
			notify_events += n;
	}
	return NULL;
}

/* --- report ------------------------------------------------------------ */

static double phase_seconds(const struct phase *p)
{
	if (!p->started || !p->ended)
		return 0;
	return (double)(p->end.tv_sec - p->start.tv_sec) +
	       (double)(p->end.tv_nsec - p->start.tv_nsec) / 1e9;
}

/* Prints the JSON line; returns 0 if every count matches. */
static int report(struct vm *v)
{
	struct phase *pio = &v->phase[0], *mmio = &v->phase[1], *notify = &v->phase[2];
	uint64_t events = 0;
	int ok = 1, i;

	if (read(v->notify_fd, &events, sizeof(events)) != sizeof(events) && errno != EAGAIN)
		die("read eventfd: %s", strerror(errno));
	events += notify_events;

	if (!v->out_at_line_start)
		putchar('\n');
	printf("{\"pio\":{\"n\":%" PRIu64 ",\"seconds\":%.9f},"
	       "\"mmio\":{\"n\":%" PRIu64 ",\"seconds\":%.9f},"
	       "\"notify\":{\"n\":%" PRIu64 ",\"seconds\":%.9f,\"eventfd_count\":%" PRIu64 "}}\n",
	       pio->n, phase_seconds(pio), mmio->n, phase_seconds(mmio),
	       notify->n, phase_seconds(notify), events);
	fflush(stdout);

	for (i = 0; i < 2; i++) {
		struct phase *p = &v->phase[i];

		if (p->exits != p->n || p->sum != p->n) {
			fprintf(stderr, "ref-vmm: %s: expected %" PRIu64 " writes of 1, saw %" PRIu64
				" exits summing to %" PRIu64 "\n", p->name, p->n, p->exits, p->sum);
			ok = 0;
		}
	}
	if (events != notify->n) {
		fprintf(stderr, "ref-vmm: notify: eventfd count %" PRIu64 ", expected %" PRIu64 "\n",
			events, notify->n);
		ok = 0;
	}
	for (i = 0; i < NPHASES; i++) {
		/* Guests other than the benchmark (the demo) have no phases. */
		if (v->phase[i].n && (!v->phase[i].started || !v->phase[i].ended)) {
			fprintf(stderr, "ref-vmm: %s: phase marks missing\n", v->phase[i].name);
			ok = 0;
		}
	}
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	static struct vm v;
	const char *cmdline = argc > 2 ? argv[2] : "";
	uint64_t entry, cmdline_gpa = 0;
	size_t cmdline_len = strlen(cmdline);
	uint32_t status;
	int bad;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "Usage: ref-vmm GUEST.elf [\"CMDLINE\"]\n");
		return 2;
	}
	if (cmdline_len >= CMDLINE_MAX)
		die("command line longer than %d bytes", CMDLINE_MAX - 1);

	v.pio_port = cmdline_u64_or(cmdline, "pio_port", 0x510);
	v.mmio_addr = cmdline_u64_or(cmdline, "mmio_addr", 0xd0000000);
	v.notify_addr = cmdline_u64_or(cmdline, "notify_addr", 0xd0001000);
	v.mark_port = cmdline_u64_or(cmdline, "mark_port", 0x511);
	v.phase[0] = (struct phase){ .name = "pio", .n = cmdline_u64_or(cmdline, "pio", 0) };
	v.phase[1] = (struct phase){ .name = "mmio", .n = cmdline_u64_or(cmdline, "mmio", 0) };
	v.phase[2] = (struct phase){ .name = "notify", .n = cmdline_u64_or(cmdline, "notify", 0) };
	v.out_at_line_start = 1;

	create_vm(&v);
	load_elf(&v, argv[1], &entry);
	write_tables(&v);
	if (argc > 2) {
		memcpy(v.ram + CMDLINE_ADDR, cmdline, cmdline_len + 1);
		cmdline_gpa = CMDLINE_ADDR;
	}
	setup_vcpu(&v, entry, cmdline_gpa);
	raw_tty();

	pthread_t notifier;
	if (pthread_create(&notifier, NULL, notify_thread, &v))
		die("pthread_create failed");
	status = run_vcpu(&v);
	notify_stop = 1;
	pthread_join(notifier, NULL);
	bad = report(&v);
	if (status) {
		fprintf(stderr, "ref-vmm: guest exited with status 0x%x\n", status);
		return 1;
	}
	return bad;
}
