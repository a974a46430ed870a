/*
 * A program that allocates only when told: for the thread-less off mode.
 *   gated DIR [fork|thread]
 * With "fork" it forks once first and both processes run the same steps;
 * with "thread" it first starts a thread that only sleeps. The steps:
 * each writes DIR/ready-<pid>, waits (without allocating) for DIR/go-<pid>,
 * makes 2000 malloc/free pairs, writes DIR/done-<pid>, and waits for
 * DIR/stop. stat() and usleep() do not allocate, so until "go" the engine
 * sees no allocation at all.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sleeper.h"

static void path(char *out, size_t n, const char *dir, const char *what, int pid)
{
	snprintf(out, n, "%s/%s-%d", dir, what, pid);
}

static void touch(const char *p)
{
	int fd = open(p, O_CREAT | O_WRONLY, 0600);
	if (fd >= 0)
		close(fd);
}

static void wait_file(const char *p)
{
	struct stat st;
	while (stat(p, &st))
		usleep(10000);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *dir = argv[1];
	pid_t child = argc > 2 && strcmp(argv[2], "fork") == 0 ? fork() : -1;
	if (argc > 2 && strcmp(argv[2], "thread") == 0 && start_sleeper() != 0)
		return 3;
	char p[4096], stop[4096];
	int me = getpid();
	snprintf(stop, sizeof stop, "%s/stop", dir);
	path(p, sizeof p, dir, "ready", me);
	touch(p);
	path(p, sizeof p, dir, "go", me);
	wait_file(p);
	for (int i = 0; i < 2000; i++) {
		void *volatile q = malloc(64);
		free(q);
	}
	path(p, sizeof p, dir, "done", me);
	touch(p);
	wait_file(stop);
	if (child > 0)
		waitpid(child, NULL, 0);
	return 0;
}
