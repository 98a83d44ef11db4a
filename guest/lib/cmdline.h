/* The boot command line: space-separated `key=value` tokens (rdi at entry). */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stddef.h>
#include <stdint.h>

/* Copies the value of `key` into buf (NUL-terminated, truncated to size-1).
 * Returns the value's full length, or -1 when the key is absent. A bare
 * `key` with no '=' has the empty value. */
int cmdline_get_str(const char *cmdline, const char *key, char *buf, size_t size);

/* Parses the value of `key` as a decimal or 0x-prefixed hex u64.
 * Returns 0 and sets *out on success, -1 when absent or not a number. */
int cmdline_get_u64(const char *cmdline, const char *key, uint64_t *out);

/* cmdline_get_u64, falling back to `dflt` when absent or invalid. */
uint64_t cmdline_u64_or(const char *cmdline, const char *key, uint64_t dflt);

#endif
