/*
 * One byte past a 13-byte allocation (GWP-ASan misses this in about half of
 * its runs). `thirteen free` frees the object afterwards (canary check at
 * free), `thirteen leak` never frees it (canary check at exit).
 */
#include "ufpool.h"

__attribute__((noinline)) void write_past(char *p, size_t n)
{
	((volatile char *)p)[n] = 'x';
}

__attribute__((noinline)) void release(char *p)
{
	free(p);
}

int main(int argc, char **argv)
{
	int leak = argc > 1 && strcmp(argv[1], "leak") == 0;
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	char *p = malloc(13);
	memcpy(p, "hello, world", 13);
	printf("buf=%#lx size=13 guarded=%d\n", (unsigned long)(uintptr_t)p, in_pool(p));
	fflush(stdout);
	write_past(p, 13);
	if (!leak)
		release(p);
	printf("done\n");
	return 0;
}
