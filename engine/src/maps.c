/*
 * /proc/self/maps scanning shared by the symbolizer (modules dlopen'ed since
 * the last table refresh) and the stack walker (a thread's stack bounds).
 * Only open/read/close: glibc's pthread_getattr_np would allocate and take
 * the thread's lock, which deadlocks when the program itself is inside
 * pthread_getattr_np and its realloc is the one being guarded.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "maps.h"

static uintptr_t parse_hex(const char **p, const char *e)
{
	uintptr_t v = 0;
	for (; *p < e; (*p)++) {
		char c = **p;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			break;
		v = v * 16 + (uintptr_t)d;
	}
	return v;
}

static const char *skip_field(const char *p, const char *e)
{
	while (p < e && *p == ' ')
		p++;
	while (p < e && *p != ' ')
		p++;
	return p;
}

static int parse_line(const char *l, size_t n, struct uf_maps_line *ml)
{
	const char *p = l, *e = l + n;
	ml->start = parse_hex(&p, e);
	if (p >= e || *p++ != '-')
		return -1;
	ml->end = parse_hex(&p, e);
	while (p < e && *p == ' ')
		p++;
	ml->exec = p + 2 < e && p[2] == 'x';
	p = skip_field(p, e);                 /* perms */
	while (p < e && *p == ' ')
		p++;
	ml->off = parse_hex(&p, e);
	p = skip_field(skip_field(p, e), e);  /* dev, inode */
	while (p < e && *p == ' ')
		p++;
	ml->path = p;
	ml->pathlen = (size_t)(e - p);
	return 0;
}

int uf_maps_find(uintptr_t addr, struct uf_maps_line *out, char *path, size_t pathcap)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[4096];
	size_t have = 0;
	int found = 0;
	while (!found) {
		ssize_t r = read(fd, buf + have, sizeof buf - have);
		if (r <= 0)
			break;
		have += (size_t)r;
		size_t pos = 0;
		for (;;) {
			char *nl = memchr(buf + pos, '\n', have - pos);
			if (!nl)
				break;
			size_t n = (size_t)(nl - (buf + pos));
			struct uf_maps_line ml;
			if (parse_line(buf + pos, n, &ml) == 0 && addr >= ml.start && addr < ml.end) {
				*out = ml;
				size_t c = ml.pathlen < pathcap - 1 ? ml.pathlen : pathcap - 1;
				memcpy(path, ml.path, c);
				path[c] = 0;
				out->path = path;
				out->pathlen = c;
				found = 1;
				break;
			}
			pos += n + 1;
		}
		if (found)
			break;
		memmove(buf, buf + pos, have - pos);
		have -= pos;
		if (have == sizeof buf)
			have = 0;         /* an absurd line: drop it */
	}
	close(fd);
	return found;
}
