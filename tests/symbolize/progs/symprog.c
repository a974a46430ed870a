/*
 * Symbolization test program. Comments "LINE:name" mark the lines the tests
 * expect; the tests find them by text, never by number.
 * Run with no arguments it prints the load bias and a return address, so
 * a test can symbolize an address taken from a live process.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static inline __attribute__((always_inline)) int inl_helper(volatile int *p, int i)
{
	return p[i] * 3 + (p[i] >> 2); /* LINE:inl_body */
}

__attribute__((noinline)) int compute(volatile int *p, int n)
{
	int s = 0;
	for (int i = 0; i < n; i++)
		s += inl_helper(p, i); /* LINE:inl_call */
	return s;
}

static __attribute__((noinline)) int local_only(int x)
{
	return x * 7 + 1;
}

__attribute__((noinline)) uintptr_t where_called(void)
{
	return (uintptr_t)__builtin_return_address(0);
}

int main(int argc, char **argv)
{
	(void)argv;
	volatile int *p = malloc(16 * sizeof(int));
	for (int i = 0; i < 16; i++)
		p[i] = i + argc;
	uintptr_t ra = where_called(); /* LINE:ra_call */
	int r = compute(p, 16) + local_only(argc);
	printf("main=%p ra=%p r=%d\n", (void *)main, (void *)ra, r);
	free((void *)p);
	return 0;
}
