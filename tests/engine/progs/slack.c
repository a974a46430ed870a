/*
 * Stray writes into the canary around guarded objects, near (the byte just
 * past the object on its slack side) or far (1000 bytes out into the slack),
 * to tell the short canary (the cache lines around the object, Anolis
 * KFENCE's full mode) from the whole page.
 *
 *   slack near|far N [SET-COMMAND...]
 *   slack realloc N        (under --pool 4: stdout's buffer takes one slot)
 *
 * N objects of 24 bytes, each written once on its slack side, then freed
 * (the canary check). With a SET-COMMAND (e.g. `python3 -m ufence set`),
 * "PID canary=page" is appended and run after that, and N clean objects are
 * allocated and freed: the pages the first round left stray bytes on must
 * not blame them.
 *
 * realloc: an object grown in place (the pool is full, so realloc cannot move
 * it) on a page whose earlier object left its bytes where the grown object's
 * canary lines now are: the growth must put canary there, or its free would
 * report a corruption nobody made. Tries N times, counts the cases met.
 */
#include "ufpool.h"

#define SIZE 24

__attribute__((noinline)) void stray_write(char *p, long off)
{
	((volatile char *)p)[off] = 'x';
}

__attribute__((noinline)) void release(char *p)
{
	free(p);
}

static int left_placed(const void *p)
{
	return ((uintptr_t)p & (ufp.page - 1)) == 0;
}

static int grow_in_place(int tries)
{
	int met = 0;
	for (int t = 0; t < tries; t++) {
		char *a = malloc(240), *k = malloc(8);
		if (!in_pool(a) || !in_pool(k)) {
			printf("not guarded: pool of 4 expected\n");
			return -1;
		}
		memset(a, 'c', 240);
		int a_left = left_placed(a);
		free(a);
		/* b takes the slot a's page moved to; c the last free one */
		char *b = malloc(24), *c = malloc(8);
		/* a's bytes still where b's grown canary lines will be? (a peek
		 * into b's own slack, which the engine does not check on a read) */
		if (a_left && left_placed(b) && ((volatile char *)b)[200] == 'c') {
			char *r = realloc(b, 200);
			if (r != b) {
				printf("realloc moved %p -> %p\n", (void *)b, (void *)r);
				return -1;
			}
			memset(r, 'd', 200);
			b = r;
			met++;
		}
		free(b);
		free(c);
		free(k);
	}
	return met;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	if (strcmp(argv[1], "realloc") == 0) {
		ufpool_require();
		ufpool_describe();
		int met = grow_in_place(atoi(argv[2]));
		printf("grown_in_place=%d\n", met);
		return met < 0 ? UFP_EXIT_CHECK : 0;
	}
	int far = strcmp(argv[1], "far") == 0;
	int n = atoi(argv[2]);
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	int guarded = 0;
	for (int i = 0; i < n; i++) {
		char *p = malloc(SIZE);
		if (!in_pool(p)) {
			free(p);
			continue;
		}
		guarded++;
		/* left-placed: the slack is to the right; right-placed, to the left */
		int left = ((uintptr_t)p & (ufp.page - 1)) == 0;
		long off = left ? SIZE + (far ? 1000 : 0) : -1 - (far ? 1000 : 0);
		stray_write(p, off);
		printf("stray=%#lx\n", (unsigned long)((uintptr_t)p + off));
		release(p);
	}
	printf("guarded=%d\n", guarded);
	if (argc > 3) {
		char cmd[4096];
		size_t k = 0;
		for (int a = 3; a < argc && k < sizeof cmd - 64; a++)
			k += (size_t)snprintf(cmd + k, sizeof cmd - k, "%s ", argv[a]);
		snprintf(cmd + k, sizeof cmd - k, "%d canary=page >/dev/null", (int)getpid());
		fflush(stdout);
		printf("set_rc=%d\n", system(cmd));
		int clean = 0;
		for (int i = 0; i < n; i++) {
			char *p = malloc(SIZE);
			clean += in_pool(p);
			memset(p, 'c', SIZE);
			release(p);
		}
		printf("clean=%d\n", clean);
	}
	return 0;
}
