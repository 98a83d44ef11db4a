/* The built-in demo guest: greets, reads one line from COM1 with echo,
 * repeats it back and powers off. */
#include "guest.h"

#define LINE_MAX 128
#define ASCII_BS  0x08
#define ASCII_DEL 0x7f

/* Reads up to LINE_MAX characters until CR or LF, echoing as the user types
 * and honouring backspace. Returns the length. */
static int read_line(char *buf)
{
	int len = 0;

	for (;;) {
		int c = serial_getc();

		if (c == '\r' || c == '\n')
			break;
		if (c == ASCII_BS || c == ASCII_DEL) {
			if (len > 0) {
				len--;
				serial_puts("\b \b");
			}
			continue;
		}
		if (c < ' ' || len == LINE_MAX)	/* other controls; full line */
			continue;
		buf[len++] = (char)c;
		serial_putc((char)c);
	}
	buf[len] = '\0';
	serial_puts("\r\n");
	return len;
}

int guest_main(const char *cmdline, uint64_t ram_size)
{
	char line[LINE_MAX + 1];

	(void)cmdline;
	(void)ram_size;
	serial_puts("vmm demo guest: hello from a KVM guest\r\n");
	serial_puts("type a line and press Enter: ");
	read_line(line);
	serial_printf("you typed: %s\r\n", line);
	serial_puts("powering off\r\n");
	vmm_exit(0);
}
