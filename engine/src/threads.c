/*
 * pthread_create: the moment a program stops being single-threaded.
 *
 * A sampling engine in a single-threaded program runs no control thread
 * (sample.c, control.c). Once the program has a thread of its own, glibc's
 * locked paths are paid anyway and the thread is the cheaper way to keep
 * the interval clock and answer the CLI: it is started here, right after the
 * program's pthread_create returned, not from an allocation that may be
 * running inside glibc's own thread-creation code (its DTV calloc). Threads
 * glibc creates for itself (SIGEV_THREAD timers) do not come through here:
 * for those the allocation path notices and starts it (sample.c).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include "uf.h"

typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static create_fn _Atomic real_create;

UF_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *), void *arg)
{
	create_fn real = atomic_load_explicit(&real_create, memory_order_acquire);
	if (!real) {
		real = (create_fn)dlsym(RTLD_NEXT, "pthread_create");
		if (!real)
			return EAGAIN;
		atomic_store_explicit(&real_create, real, memory_order_release);
	}
	int rc = real(thread, attr, start, arg);
	if (rc == 0 && uf_sampler_polled && !uf_tls.in_engine)
		uf_control_adopt();
	return rc;
}
