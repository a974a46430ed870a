/*
 * Async-signal-safe formatting: the fault handler and the reports must not
 * call printf or allocate, so everything is appended into caller buffers.
 * A full buffer silently truncates (a cut report beats a crash).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "uf.h"

void uf_putn(struct uf_buf *b, const char *s, size_t n)
{
	size_t room = b->cap > b->len ? b->cap - b->len - 1 : 0;
	if (n > room)
		n = room;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	if (b->cap)
		b->p[b->len] = 0;
}

void uf_put(struct uf_buf *b, const char *s)
{
	uf_putn(b, s, strlen(s));
}

void uf_putc(struct uf_buf *b, char c)
{
	uf_putn(b, &c, 1);
}

void uf_put_dec(struct uf_buf *b, uint64_t v)
{
	char t[24];
	int i = sizeof t;
	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	uf_putn(b, t + i, sizeof t - (size_t)i);
}

void uf_put_sdec(struct uf_buf *b, int64_t v)
{
	if (v < 0) {
		uf_putc(b, '-');
		uf_put_dec(b, (uint64_t)0 - (uint64_t)v);
	} else {
		uf_put_dec(b, (uint64_t)v);
	}
}

void uf_put_hex(struct uf_buf *b, uint64_t v)
{
	char t[18];
	int i = sizeof t;
	do {
		t[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	t[--i] = 'x';
	t[--i] = '0';
	uf_putn(b, t + i, sizeof t - (size_t)i);
}

void uf_put_hex2(struct uf_buf *b, unsigned v)
{
	char t[4] = {'0', 'x', "0123456789abcdef"[(v >> 4) & 15], "0123456789abcdef"[v & 15]};
	uf_putn(b, t, 4);
}

void uf_put_secs(struct uf_buf *b, uint64_t ns)
{
	uint64_t us = ns / 1000;
	char t[8];
	uf_put_dec(b, us / 1000000);
	uf_putc(b, '.');
	uint64_t f = us % 1000000;
	for (int i = 5; i >= 0; i--) {
		t[i] = (char)('0' + f % 10);
		f /= 10;
	}
	uf_putn(b, t, 6);
}

void uf_put_json_str(struct uf_buf *b, const char *s)
{
	uf_putc(b, '"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			uf_putc(b, '\\');
			uf_putc(b, (char)c);
		} else if (c < 0x20 || c == 0x7f) {
			char t[6] = {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
			uf_putn(b, t, 6);
		} else {
			uf_putc(b, (char)c);
		}
	}
	uf_putc(b, '"');
}

void uf_write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

size_t uf_strlcpy(char *dst, const char *src, size_t n)
{
	size_t l = strlen(src);
	if (n) {
		size_t c = l < n - 1 ? l : n - 1;
		memcpy(dst, src, c);
		dst[c] = 0;
	}
	return l;
}

int uf_streq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

const char *uf_basename(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}
