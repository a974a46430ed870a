/*
 * Holds argv[1] live objects allocated from a few call sites (so thousands of
 * objects share each depot stack, as in a real leak), frees every argv[2]-th
 * one again (freed slots keep a free stack), writes "ready" to stdout and then
 * either sleeps or, with argv[3] = "churn", keeps replacing objects so a
 * reader meets slots that change under it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every call site has sizes of its own (site_a 16..48, site_b 56, site_c 72, deeper
 * 96 + 8 * depth), so a reader's object whose stack and size disagree was torn. */
__attribute__((noinline)) static void *site_a(size_t n) { return malloc(n); }
__attribute__((noinline)) static void *site_b(size_t n) { return malloc(n + 8); }
__attribute__((noinline)) static void *site_c(size_t n) { return calloc(1, n + 24); }
__attribute__((noinline)) static void *deeper(size_t n, int d)
{
	void *p = d ? deeper(n + 8, d - 1) : site_a(n);
	__asm__ volatile("" ::: "memory");  /* not a tail call: each level keeps its frame */
	return p;
}

static void *one(unsigned long i)
{
	switch (i % 4) {
	case 0: return site_a(16 + i % 5 * 8);
	case 1: return site_b(48);
	case 2: return site_c(48);
	default: return deeper(96, (int)(i % 3));
	}
}

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 0) : 1000;
	unsigned long free_every = argc > 2 ? strtoul(argv[2], NULL, 0) : 0;
	int churn = argc > 3 && strcmp(argv[3], "churn") == 0;
	void **live = calloc(n, sizeof(*live));
	if (!live)
		return 1;
	for (unsigned long i = 0; i < n; i++)
		live[i] = one(i);
	for (unsigned long i = 0; free_every && i < n; i += free_every) {
		free(live[i]);
		live[i] = NULL;
	}
	printf("ready\n");
	fflush(stdout);
	for (unsigned long i = 0;; i++) {
		if (!churn) {
			pause();
			continue;
		}
		unsigned long k = (i * 7919) % n;
		free(live[k]);
		live[k] = one(i);
	}
}
