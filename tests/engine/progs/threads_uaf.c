/*
 * Allocated by one thread, freed by another, used after free by a third:
 * the report's tracks must name each thread (KFENCE's "by task N").
 */
#include "ufpool.h"

#include <pthread.h>
#include <sys/syscall.h>

static char *obj;
static volatile char sink;

static int tid(void)
{
	return (int)syscall(SYS_gettid);
}

__attribute__((noinline)) void *allocator_thread(void *arg)
{
	(void)arg;
	for (;;) {
		obj = malloc(48);
		if (in_pool(obj))
			break;
		free(obj);
	}
	printf("alloc_tid=%d buf=%#lx size=48\n", tid(), (unsigned long)(uintptr_t)obj);
	return NULL;
}

__attribute__((noinline)) void *freeing_thread(void *arg)
{
	(void)arg;
	printf("free_tid=%d\n", tid());
	free(obj);
	return NULL;
}

__attribute__((noinline)) void *using_thread(void *arg)
{
	(void)arg;
	printf("use_tid=%d\n", tid());
	fflush(stdout);
	sink = obj[47];
	return NULL;
}

int main(void)
{
	ufpool_require();
	printf("pid=%d\n", (int)getpid());
	ufpool_describe();
	void *(*steps[])(void *) = {allocator_thread, freeing_thread, using_thread};
	for (int i = 0; i < 3; i++) {
		pthread_t t;
		pthread_create(&t, NULL, steps[i], NULL);
		pthread_join(t, NULL);
	}
	printf("done\n");
	return 0;
}
