/*
 * Reference preload for the cost-when-off benchmark: starts one idle thread
 * and does nothing else. glibc's allocator takes its multi-threaded paths
 * once a process has a second thread, so this separates what the engine's
 * control thread costs by existing from what its interposed functions cost.
 */
#include <pthread.h>
#include <unistd.h>

static void *idle(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

__attribute__((constructor)) static void start_idle_thread(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, idle, NULL) == 0)
		pthread_detach(t);
}
