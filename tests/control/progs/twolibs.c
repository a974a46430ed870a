/*
 * Allocates objects of several sizes through two shared libraries (libfoo,
 * libbar) and directly, keeping a ring of them live, until killed.
 * argv[1] = microseconds between rounds.
 */
#include <stdlib.h>
#include <unistd.h>

void *foo_alloc(size_t n);
void *bar_alloc(size_t n);

static const size_t sizes[] = {8, 16, 24, 100, 200, 300, 1000};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define RING 42 /* a multiple of 3 * NSIZES: every (source, size) pair stays live */

int main(int argc, char **argv)
{
	long pause_us = argc > 1 ? atol(argv[1]) : 2000;
	void *live[RING] = {0};
	for (unsigned long i = 0;; i++) {
		size_t sz = sizes[i % NSIZES];
		unsigned src = (unsigned)(i / NSIZES) % 3;
		free(live[i % RING]);
		live[i % RING] = src == 0 ? foo_alloc(sz) : src == 1 ? bar_alloc(sz) : malloc(sz);
		if (i % NSIZES == NSIZES - 1 && pause_us)
			usleep((useconds_t)pause_us);
	}
}
