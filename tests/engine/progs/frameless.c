/*
 * Stacks through code built without frame pointers (this file is compiled
 * -O2 -fomit-frame-pointer, as distributions build their libraries): three
 * noinline levels allocate, a fourth frees, and the object is then read
 * after its free. Each level keeps a value live across its call so it needs
 * a frame of its own (a push, not a tail call). Every stack in the report
 * must name every level: the frame-pointer walk alone loses them.
 *
 * A C++ leg does the same through operator new (libstdc++, frameless): the
 * function that called new must follow it in "allocated by".
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOINLINE __attribute__((noipa))

static volatile long sink;

NOINLINE char *level3_alloc(size_t n)
{
	char *p = malloc(n);
	sink += (long)n;
	return p;
}

NOINLINE char *level2_alloc(size_t n)
{
	char *p = level3_alloc(n + 8);
	sink += (long)p;
	return p;
}

NOINLINE char *level1_alloc(size_t n)
{
	char *p = level2_alloc(n * 2);
	sink += (long)p;
	return p;
}

NOINLINE void level2_free(char *p)
{
	free(p);
	sink++;
}

NOINLINE void level1_free(char *p)
{
	level2_free(p);
	sink++;
}

NOINLINE long level2_read(const char *p)
{
	long v = ((volatile const char *)p)[0];
	sink += v;
	return v + 1;
}

NOINLINE long level1_read(const char *p)
{
	long v = level2_read(p);
	sink += v;
	return v;
}

int main(void)
{
	printf("pid=%d\n", (int)getpid());
	char *p = level1_alloc(12);   /* 32 bytes */
	printf("buf=%#lx\n", (unsigned long)p);
	fflush(stdout);
	level1_free(p);
	level1_read(p);
	puts("done");
	return 0;
}
