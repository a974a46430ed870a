/*
 * Interval sampling, as KFENCE's gate: "idle" allocates once and sleeps (the
 * control thread must not wake every interval for nothing); "busy" allocates
 * for 1 s (about one guarded object per interval). Prints "ready" when done
 * and then stays alive so the test can read its state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "busy") == 0) {
		double end = now() + 1.0;
		while (now() < end) {
			void *p = malloc(64);
			memset(p, 1, 64);
			free(p);
		}
	} else {
		free(malloc(16));
	}
	printf("ready\n");
	fflush(stdout);
	sleep(3);
	return 0;
}
