/* /proc/self/maps lookups with open/read only: no allocation, no libc lock,
 * so they are safe on the allocation path and in the fault handler. */
#ifndef UF_MAPS_H
#define UF_MAPS_H

#include <stddef.h>
#include <stdint.h>

struct uf_maps_line {
	uintptr_t start, end, off;
	int exec;
	const char *path;      /* points into the caller's copy, not NUL-terminated */
	size_t pathlen;
};

/* Find the mapping that holds addr. On success fills *ml (path copied,
 * NUL-terminated and truncated, into path/pathcap) and returns 1; 0 if no
 * mapping holds it or the file cannot be read. */
int uf_maps_find(uintptr_t addr, struct uf_maps_line *ml, char *path, size_t pathcap);

#endif
