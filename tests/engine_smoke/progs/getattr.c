/*
 * A program that asks glibc for its threads' stack bounds, as mariadbd does
 * (my_get_stack_bounds). pthread_getattr_np reallocs a cpuset while it holds
 * the thread's lock; if that realloc is guarded, the engine's stack capture
 * must not call pthread_getattr_np itself (it would wait on the same lock).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *ask_bounds(void *arg)
{
	(void)arg;
	for (int i = 0; i < 50; i++) {
		pthread_attr_t at;
		void *lo;
		size_t sz;
		if (pthread_getattr_np(pthread_self(), &at) != 0)
			abort();
		if (pthread_attr_getstack(&at, &lo, &sz) != 0 || sz == 0)
			abort();
		pthread_attr_destroy(&at);
	}
	return NULL;
}

int main(void)
{
	for (int round = 0; round < 20; round++) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			if (pthread_create(&t[i], NULL, ask_bounds, NULL))
				abort();
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
	}
	ask_bounds(NULL);
	puts("done");
	return 0;
}
