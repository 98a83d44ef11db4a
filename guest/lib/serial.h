/* Polled 8250/16550 UART on COM1. Ring 0 only (it uses port I/O). */
#ifndef GUEST_SERIAL_H
#define GUEST_SERIAL_H

#include <stdarg.h>

#define COM1_BASE 0x3f8

void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);
/* Waits (polling LSR, with `pause`) until a byte arrives. */
int serial_getc(void);
/* Returns the next byte, or -1 when none is waiting. */
int serial_trygetc(void);

/* printf-lite: %s %c %d %u %x %p %%, with an optional `l` on d/u/x
 * (%ld %lu %lx), a field width and a `0` pad flag (%08x, %16lx). */
void serial_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void serial_vprintf(const char *fmt, va_list ap);

#endif
