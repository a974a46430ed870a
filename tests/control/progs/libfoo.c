/* A shared library whose allocations a caller filter can select. */
#include <stdlib.h>

__attribute__((noinline)) void *foo_alloc(size_t n)
{
	void *p = malloc(n);
	__asm__ volatile("" ::: "memory");  /* keep malloc a call, not a tail call */
	return p;
}
