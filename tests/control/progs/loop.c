/*
 * Allocates in a loop, keeping a ring of live objects, until killed.
 * argv[1] = ring size (live objects), argv[2] = microseconds between allocations.
 * SIGUSR1 plants a bug: a one-byte write past a fresh 32-byte object, on the
 * next loop iteration (the handler only sets a flag: malloc is not async-signal-safe).
 * Each iteration's count is in a file given as argv[3] (optional), so a test
 * can see the program progressing.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t plant;

static void on_usr1(int sig)
{
	(void)sig;
	plant = 1;
}

__attribute__((noinline)) static void write_past(char *p, size_t n)
{
	volatile char *q = p;
	q[n] = 'x';  /* the planted bug: out-of-bounds write, 0B past the end */
}

int main(int argc, char **argv)
{
	long ring = argc > 1 ? atol(argv[1]) : 64;
	long pause_us = argc > 2 ? atol(argv[2]) : 1000;
	void **live = calloc((size_t)ring, sizeof(*live));
	if (!live)
		return 1;
	signal(SIGUSR1, on_usr1);
	for (unsigned long i = 0;; i++) {
		size_t sz = 16 + (i % 8) * 8;
		free(live[i % ring]);
		live[i % ring] = malloc(sz);
		if (live[i % ring])
			memset(live[i % ring], 0x5a, sz);
		if (plant) {
			plant = 0;
			char *p = malloc(32);
			write_past(p, 32);
			free(p);
			fprintf(stderr, "loop: planted\n");
		}
		if (pause_us)
			usleep((useconds_t)pause_us);
	}
}
