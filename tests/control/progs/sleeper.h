/*
 * A thread of the program's own that only sleeps: it makes the process
 * multi-threaded without making an allocation of its own. Shared by the
 * control tests' programs.
 */
#ifndef SLEEPER_H
#define SLEEPER_H
#include <pthread.h>
#include <unistd.h>

static void *sleeper_main(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/* 0 on success */
static int start_sleeper(void)
{
	pthread_t t;
	return pthread_create(&t, NULL, sleeper_main, NULL);
}
#endif
