/*
 * A malloc-heavy program for the cost-when-off benchmark: argv[1] rounds of
 * malloc/free (sizes 8..520 from a fixed LCG, a ring of 1024 live objects,
 * some calloc), so almost all of its instructions are in the allocator and
 * any cost the engine adds to the fast path shows up undiluted.
 * argv[2] = "use": fill every object once, as a program initialising what it
 * allocates does (the second, less extreme workload of the benchmark).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 1024

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 1000000;
	int use = argc > 2 && strcmp(argv[2], "use") == 0;
	static void *live[RING];
	uint32_t x = 12345;
	uintptr_t sum = 0;
	for (long i = 0; i < rounds; i++) {
		x = x * 1664525u + 1013904223u;
		size_t sz = 8 + (x >> 16) % 513;
		unsigned slot = (x >> 8) % RING;
		free(live[slot]);
		live[slot] = (x & 7) == 0 ? calloc(1, sz) : malloc(sz);
		if (live[slot] && use)
			memset(live[slot], (int)i, sz);
		if (live[slot])
			*(volatile char *)live[slot] = (char)i; /* touch it: the object is used, not optimised out */
		sum += (uintptr_t)live[slot] & 0xff;
	}
	for (unsigned s = 0; s < RING; s++)
		free(live[s]);
	printf("%lu\n", (unsigned long)(sum & 0xffff));
	return 0;
}
