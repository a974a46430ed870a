/*
 * The overflow happens inside libc (memcpy / memset), the common case in
 * real programs: the faulting pc is in a leaf function without a frame of
 * its own, and the report must still name the program's function that
 * called it (KFENCE shows the whole stack from the fault).
 */
#include "ufpool.h"

static char *right_object(size_t size)
{
	for (;;) {
		char *p = malloc(size);
		if (in_pool(p) && (((uintptr_t)p + size) & (ufp.page - 1)) == 0)
			return p;
		free(p);
	}
}

__attribute__((noinline)) void copy_too_much(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
}

__attribute__((noinline)) void clear_too_much(char *dst, size_t n)
{
	memset(dst, 0, n);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	static char src[256];
	char *p = right_object(64);
	printf("buf=%#lx size=64\n", (unsigned long)(uintptr_t)p);
	fflush(stdout);
	if (strcmp(argv[1], "memcpy") == 0)
		copy_too_much(p, src, 65);
	else
		clear_too_much(p, 65);
	free(p);
	printf("done\n");
	return 0;
}
