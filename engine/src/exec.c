/*
 * exec: the new image either loads the engine again (follow_exec=1: it then
 * makes its own <pid>.shm) or runs bare; either way this image's file must
 * not outlive it. So the file is unlinked just before exec and, if exec
 * fails and returns, published again from the still-open descriptor.
 *
 * glibc's exec* functions call execve internally (not through the PLT), so
 * each public one is wrapped.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

#include "uf.h"

extern char **environ;

typedef int (*execve_fn)(const char *, char *const[], char *const[]);
typedef int (*execv_fn)(const char *, char *const[]);
typedef int (*fexecve_fn)(int, char *const[], char *const[]);

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

static void before(void)
{
	uf_shm_remove();
}

static void after_failure(void)
{
	int e = errno;
	uf_shm_republish();
	errno = e;
}

UF_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	execve_fn f = (execve_fn)next("execve");
	before();
	int rc = f(path, argv, envp);
	after_failure();
	return rc;
}

UF_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	execve_fn f = (execve_fn)next("execvpe");
	before();
	int rc = f(file, argv, envp);
	after_failure();
	return rc;
}

UF_EXPORT int execv(const char *path, char *const argv[])
{
	execv_fn f = (execv_fn)next("execv");
	before();
	int rc = f(path, argv);
	after_failure();
	return rc;
}

UF_EXPORT int execvp(const char *file, char *const argv[])
{
	execv_fn f = (execv_fn)next("execvp");
	before();
	int rc = f(file, argv);
	after_failure();
	return rc;
}

UF_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	fexecve_fn f = (fexecve_fn)next("fexecve");
	before();
	int rc = f(fd, argv, envp);
	after_failure();
	return rc;
}

/* the variadic ones: collect the arguments on the stack */
#define MAX_ARGS 4096
#define COLLECT(first, ap, argv, n)                                          \
	do {                                                                 \
		argv[0] = (char *)(first);                                   \
		for (n = 1; argv[n - 1] && n < MAX_ARGS; n++)                \
			argv[n] = va_arg(ap, char *);                        \
		if (argv[n - 1]) {                                           \
			va_end(ap);                                          \
			errno = E2BIG;                                       \
			return -1;                                           \
		}                                                            \
	} while (0)

UF_EXPORT int execl(const char *path, const char *arg, ...)
{
	char *argv[MAX_ARGS];
	int n;
	va_list ap;
	va_start(ap, arg);
	COLLECT(arg, ap, argv, n);
	va_end(ap);
	return execve(path, argv, environ);
}

UF_EXPORT int execlp(const char *file, const char *arg, ...)
{
	char *argv[MAX_ARGS];
	int n;
	va_list ap;
	va_start(ap, arg);
	COLLECT(arg, ap, argv, n);
	va_end(ap);
	return execvp(file, argv);
}

UF_EXPORT int execle(const char *path, const char *arg, ...)
{
	char *argv[MAX_ARGS];
	int n;
	va_list ap;
	va_start(ap, arg);
	COLLECT(arg, ap, argv, n);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}
