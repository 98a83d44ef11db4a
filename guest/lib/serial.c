#include <stdint.h>
#include "serial.h"
#include "io.h"
#include "ring3.h"

/* 8250 register offsets from COM1_BASE (names from linux/serial_reg.h). */
#define UART_RX  0 /* receive buffer (read, DLAB=0) */
#define UART_TX  0 /* transmit holding (write, DLAB=0) */
#define UART_DLL 0 /* divisor latch low (DLAB=1) */
#define UART_IER 1 /* interrupt enable (DLAB=0) */
#define UART_DLM 1 /* divisor latch high (DLAB=1) */
#define UART_FCR 2 /* FIFO control (write) */
#define UART_LCR 3 /* line control */
#define UART_MCR 4 /* modem control */
#define UART_LSR 5 /* line status */

#define UART_LCR_DLAB  0x80
#define UART_LCR_WLEN8 0x03
#define UART_MCR_DTR_RTS_OUT2 0x0b
#define UART_FCR_ENABLE_CLEAR 0x07
#define UART_LSR_DR   0x01 /* receive data ready */
#define UART_LSR_THRE 0x20 /* transmit holding register empty */

/* A real UART drains eventually; a VMM that does not model LSR must not
 * hang us, so give up waiting after this many polls (like Linux's early
 * serial console). */
#define TX_POLL_LIMIT 10000

void serial_init(void)
{
	outb(COM1_BASE + UART_IER, 0x00);		/* polled: no interrupts */
	outb(COM1_BASE + UART_LCR, UART_LCR_DLAB);
	outb(COM1_BASE + UART_DLL, 0x01);		/* 115200 baud */
	outb(COM1_BASE + UART_DLM, 0x00);
	outb(COM1_BASE + UART_LCR, UART_LCR_WLEN8);	/* 8N1, DLAB off */
	outb(COM1_BASE + UART_FCR, UART_FCR_ENABLE_CLEAR);
	outb(COM1_BASE + UART_MCR, UART_MCR_DTR_RTS_OUT2);
}

void serial_putc(char c)
{
	int n = TX_POLL_LIMIT;

	while (!(inb(COM1_BASE + UART_LSR) & UART_LSR_THRE) && --n)
		cpu_relax();
	outb(COM1_BASE + UART_TX, (uint8_t)c);
}

void serial_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}

int serial_trygetc(void)
{
	if (!(inb(COM1_BASE + UART_LSR) & UART_LSR_DR))
		return -1;
	return inb(COM1_BASE + UART_RX);
}

/* 8259 PIC ports and the vector we route COM1's IRQ 4 to (above the
 * 32 exception vectors). */
#define PIC1_CMD  0x20
#define PIC1_DATA 0x21
#define PIC2_CMD  0xa0
#define PIC2_DATA 0xa1
#define PIC_EOI   0x20
#define COM1_IRQ  4
#define IRQ_BASE  0x20
#define UART_IER_RDI 0x01

static void com1_irq(struct trap_frame *f)
{
	(void)f;
	outb(PIC1_CMD, PIC_EOI);
}

/* Waiting with `hlt` instead of polling LSR: every poll is a VM exit, and a
 * guest that spins on them while it waits for a person to type keeps a host
 * core busy for nothing. */
static void enable_rx_interrupt(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	trap_set_handler(IRQ_BASE + COM1_IRQ, com1_irq);
	outb(PIC1_CMD, 0x11);			/* ICW1: edge, cascade, ICW4 */
	outb(PIC1_DATA, IRQ_BASE);		/* ICW2: vectors 0x20-0x27 */
	outb(PIC1_DATA, 0x04);			/* ICW3: slave on IRQ 2 */
	outb(PIC1_DATA, 0x01);			/* ICW4: 8086 mode */
	outb(PIC2_CMD, 0x11);
	outb(PIC2_DATA, IRQ_BASE + 8);
	outb(PIC2_DATA, 0x02);
	outb(PIC2_DATA, 0x01);
	outb(PIC2_DATA, 0xff);			/* slave: all masked */
	outb(PIC1_DATA, (uint8_t)~(1 << COM1_IRQ));
	outb(COM1_BASE + UART_IER, UART_IER_RDI);
}

int serial_getc(void)
{
	int c;

	enable_rx_interrupt();
	while ((c = serial_trygetc()) < 0) {
		/* sti's one-instruction shadow makes "sti; hlt" atomic: an
		 * interrupt that arrives after the check still wakes the hlt. */
		__asm__ volatile("cli");
		if (!(inb(COM1_BASE + UART_LSR) & UART_LSR_DR))
			__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
	return c;
}

static void put_padded(const char *s, int len, int width, char pad)
{
	for (; width > len; width--)
		serial_putc(pad);
	while (len--)
		serial_putc(*s++);
}

static void put_number(uint64_t v, unsigned base, int negative, int width, char pad)
{
	char buf[24];
	int i = sizeof(buf);

	do {
		buf[--i] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (negative) {
		if (pad == '0') {	/* "-0042", not "00-42" */
			serial_putc('-');
			width--;
		} else {
			buf[--i] = '-';
		}
	}
	put_padded(buf + i, (int)sizeof(buf) - i, width, pad);
}

void serial_vprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		int width = 0, is_long = 0;
		char pad = ' ';

		if (*fmt != '%') {
			serial_putc(*fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		if (*fmt == 'l')
			is_long = 1, fmt++;

		switch (*fmt) {
		case 'd': {
			int64_t v = is_long ? va_arg(ap, long) : va_arg(ap, int);
			put_number(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, v < 0, width, pad);
			break;
		}
		case 'u':
			put_number(is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned),
				   10, 0, width, pad);
			break;
		case 'x':
			put_number(is_long ? va_arg(ap, unsigned long) : va_arg(ap, unsigned),
				   16, 0, width, pad);
			break;
		case 'p':
			serial_puts("0x");
			put_number((uintptr_t)va_arg(ap, void *), 16, 0, width, pad);
			break;
		case 'c':
			serial_putc((char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			int len = 0;

			if (!s)
				s = "(null)";
			while (s[len])
				len++;
			put_padded(s, len, width, ' ');
			break;
		}
		case '%':
			serial_putc('%');
			break;
		case '\0':	/* lone '%' at the end */
			return;
		default:	/* unknown: print it as written */
			serial_putc('%');
			serial_putc(*fmt);
			break;
		}
	}
}

void serial_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	serial_vprintf(fmt, ap);
	va_end(ap);
}
