/* A library built without frame pointers, loaded with dlopen (dlwalk.c): its
 * stack frames are walked by its own .eh_frame, read with the checks a module
 * that can be unloaded needs. The uses of p after each call keep the calls
 * from becoming tail calls, so each function keeps its frame on the stack. */
#include <stdlib.h>

__attribute__((noinline)) char *dl_inner(size_t n)
{
	char *p = malloc(n);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

__attribute__((noinline)) char *dl_outer(size_t n)
{
	char *p = dl_inner(n + 1);
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}
