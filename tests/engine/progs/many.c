/*
 * More than 100,000 live guarded objects in one process (Electric Fence and
 * DUMA die near 32k: one VMA per guard page against vm.max_map_count).
 * `many N SIZE` keeps N objects live, checks each is in the pool and
 * writable, reads the engine's own count, then frees everything.
 */
#include "ufpool.h"

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 120000;
	size_t size = argc > 2 ? (size_t)atol(argv[2]) : 16;
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	char **objs = malloc((size_t)n * sizeof *objs); /* larger than a page: not guarded */
	if (!objs)
		return UFP_EXIT_CHECK;
	long guarded = 0;
	for (long i = 0; i < n; i++) {
		objs[i] = malloc(size);
		if (!objs[i]) {
			printf("malloc %ld failed\n", i);
			return UFP_EXIT_CHECK;
		}
		memset(objs[i], (int)i, size);
		guarded += in_pool(objs[i]);
	}
	long distinct_pages = 0;
	uintptr_t prev = 0;
	for (long i = 0; i < n; i++) { /* every object is still intact */
		for (size_t j = 0; j < size; j++)
			if (objs[i][j] != (char)i) {
				printf("object %ld corrupted\n", i);
				return UFP_EXIT_CHECK;
			}
		uintptr_t pg = (uintptr_t)objs[i] & ~(ufp.page - 1);
		distinct_pages += pg != prev;
		prev = pg;
	}
	printf("guarded=%ld live=%lu allocs=%lu mech=%lu distinct_pages=%ld pool_slots=%lu skipped_capacity=%lu\n", guarded,
	       (unsigned long)ufstat(UF_STAT_currently_allocated), (unsigned long)ufstat(UF_STAT_total_allocations),
	       (unsigned long)ufstat(UF_STAT_guard_mechanism), distinct_pages,
	       (unsigned long)ufstat(UF_STAT_pool_slots), (unsigned long)ufstat(UF_STAT_skipped_capacity));
	fflush(stdout);
	for (long i = 0; i < n; i++)
		free(objs[i]);
	free(objs);
	printf("after_free_live=%lu\n", (unsigned long)ufstat(UF_STAT_currently_allocated));
	printf("done\n");
	return 0;
}
