/*
 * Exit while many threads allocate: `exit_threads main` calls exit() from
 * main, `exit_threads worker` from one of the workers, while 16 threads keep
 * allocating, reallocating and freeing (guarded objects included). The
 * engine's exit checks must not crash, hang or report.
 */
#include "ufpool.h"

#include <pthread.h>

#define THREADS 16

static int from_worker;

static void *worker(void *arg)
{
	long id = (long)arg;
	void *keep[8] = {0};
	for (unsigned long i = 0;; i++) {
		unsigned k = (unsigned)(i % 8);
		keep[k] = realloc(keep[k], 8 + (i * 13 + (unsigned long)id) % 500);
		memset(keep[k], (int)i, 8);
		free(malloc(16 + i % 300));
		if (from_worker && id == 3 && i == 500)
			exit(0);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	from_worker = argc > 1 && strcmp(argv[1], "worker") == 0;
	ufpool_require();
	pthread_t t;
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t, NULL, worker, (void *)i);
	usleep(from_worker ? 30000000 : 30000);
	if (from_worker) {
		printf("worker never exited\n");
		return UFP_EXIT_CHECK;
	}
	exit(0);
}
