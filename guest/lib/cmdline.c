#include "cmdline.h"

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Finds `key` as a whole token name; returns its value and length. */
static const char *find_value(const char *p, const char *key, size_t *len)
{
	if (!p)
		return NULL;
	for (;;) {
		const char *k = key;

		while (is_space(*p))
			p++;
		if (!*p)
			return NULL;
		while (*k && *p == *k)
			p++, k++;
		if (!*k && (*p == '=' || is_space(*p) || !*p)) {
			const char *v = *p == '=' ? p + 1 : p;
			const char *e = v;

			while (*e && !is_space(*e))
				e++;
			*len = (size_t)(e - v);
			return v;
		}
		while (*p && !is_space(*p))	/* not this token: skip it */
			p++;
	}
}

int cmdline_get_str(const char *cmdline, const char *key, char *buf, size_t size)
{
	size_t len, i;
	const char *v = find_value(cmdline, key, &len);

	if (!v)
		return -1;
	for (i = 0; size && i < len && i < size - 1; i++)
		buf[i] = v[i];
	if (size)
		buf[i] = '\0';
	return (int)len;
}

int cmdline_get_u64(const char *cmdline, const char *key, uint64_t *out)
{
	size_t len;
	const char *v = find_value(cmdline, key, &len);
	unsigned base = 10;
	uint64_t n = 0;

	if (!v || !len)
		return -1;
	if (len > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X'))
		base = 16, v += 2, len -= 2;
	for (; len; len--, v++) {
		unsigned d;

		if (*v >= '0' && *v <= '9')
			d = (unsigned)(*v - '0');
		else if (base == 16 && *v >= 'a' && *v <= 'f')
			d = (unsigned)(*v - 'a' + 10);
		else if (base == 16 && *v >= 'A' && *v <= 'F')
			d = (unsigned)(*v - 'A' + 10);
		else
			return -1;
		n = n * base + d;
	}
	*out = n;
	return 0;
}

uint64_t cmdline_u64_or(const char *cmdline, const char *key, uint64_t dflt)
{
	uint64_t v;

	return cmdline_get_u64(cmdline, key, &v) ? dflt : v;
}
