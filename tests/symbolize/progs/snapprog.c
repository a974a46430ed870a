/*
 * Snapshot test program: keeps objects from two allocation sites alive,
 * prints "ready", then waits for a line on stdin before exiting.
 */
#include <stdio.h>
#include <stdlib.h>

#define NA 40
#define NB 12

__attribute__((noinline)) void *site_a(size_t n)
{
	return malloc(n); /* LINE:site_a */
}

__attribute__((noinline)) void *site_b(size_t n)
{
	return calloc(1, n); /* LINE:site_b */
}

int main(void)
{
	static void *keep_a[NA], *keep_b[NB];
	for (int i = 0; i < NA; i++)
		keep_a[i] = site_a(24);
	for (int i = 0; i < NB; i++)
		keep_b[i] = site_b(100);
	for (int i = 0; i < 100; i++)
		free(site_a(8)); /* short-lived traffic */
	printf("ready %d %d\n", NA, NB);
	fflush(stdout);
	char buf[8];
	if (!fgets(buf, sizeof buf, stdin))
		return 1;
	for (int i = 0; i < NA; i++)
		free(keep_a[i]);
	for (int i = 0; i < NB; i++)
		free(keep_b[i]);
	return 0;
}
