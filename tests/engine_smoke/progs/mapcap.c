/*
 * Under the mprotect fallback every live guarded object costs VMAs against
 * vm.max_map_count. A program with 40,000 live objects must still be able to
 * make mappings of its own (redis' jemalloc died here): the engine stops
 * guarding before the limit and hands the rest to the next allocator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(void)
{
	static void *objs[40000];
	for (int i = 0; i < 40000; i++) {
		objs[i] = malloc(64);
		if (!objs[i])
			return 2;
		memset(objs[i], 1, 64);
	}
	int fails = 0;
	for (int i = 0; i < 2000; i++) {
		void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED || mprotect(m, 4096, PROT_READ) != 0)
			fails++;
	}
	printf("own mappings failed: %d\n", fails);
	for (int i = 0; i < 40000; i++)
		free(objs[i]);
	return fails != 0;
}
