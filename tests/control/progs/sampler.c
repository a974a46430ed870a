/*
 * A program that allocates steadily, single-threaded until told otherwise:
 * for sampling without a control thread.
 *   sampler DIR [fork|busy]
 * Every millisecond one malloc/free pair (with "busy": as fast as it can);
 * the number made so far is written to DIR/count-<pid> every 100 pairs
 * (busy: every 100,000). When DIR/thread appears it starts a
 * thread of its own (which only sleeps, so every allocation stays on the
 * main thread) and writes DIR/threaded-<pid>; when DIR/timer appears it
 * arms a SIGEV_THREAD timer instead, whose thread glibc creates itself, and
 * writes DIR/timed-<pid>. It stops when DIR/stop appears. With "fork" it
 * forks once first, and both processes run it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sleeper.h"

static int exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static void put(const char *p, long v)
{
	char tmp[4200], buf[32];
	snprintf(tmp, sizeof tmp, "%s.tmp", p);
	int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0)
		return;
	int n = snprintf(buf, sizeof buf, "%ld\n", v);
	if (write(fd, buf, (size_t)n) != n)
		n = -1;
	close(fd);
	if (n > 0)
		rename(tmp, p);
}

static void tick(union sigval v)
{
	(void)v;
}

static int arm_timer(void)
{
	struct sigevent ev;
	memset(&ev, 0, sizeof ev);
	ev.sigev_notify = SIGEV_THREAD;
	ev.sigev_notify_function = tick;
	timer_t t;
	if (timer_create(CLOCK_MONOTONIC, &ev, &t))
		return -1;
	struct itimerspec its = {{0, 100000000}, {0, 100000000}};
	return timer_settime(t, 0, &its, NULL);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	const char *dir = argv[1];
	pid_t child = argc > 2 && strcmp(argv[2], "fork") == 0 ? fork() : -1;
	int busy = argc > 2 && strcmp(argv[2], "busy") == 0;
	long every = busy ? 100000 : 100;
	char stop[4096], want_thread[4096], count[4096], threaded[4096], want_timer[4096], timed[4096];
	int me = getpid();
	snprintf(stop, sizeof stop, "%s/stop", dir);
	snprintf(want_thread, sizeof want_thread, "%s/thread", dir);
	snprintf(count, sizeof count, "%s/count-%d", dir, me);
	snprintf(threaded, sizeof threaded, "%s/threaded-%d", dir, me);
	snprintf(want_timer, sizeof want_timer, "%s/timer", dir);
	snprintf(timed, sizeof timed, "%s/timed-%d", dir, me);
	int have_thread = 0, have_timer = 0;
	for (long n = 1;; n++) {
		void *volatile q = malloc(48);
		free(q);
		if (n % every == 0) {
			put(count, n);
			if (exists(stop))
				break;
			if (!have_thread && exists(want_thread)) {
				if (start_sleeper() != 0)
					return 3;
				have_thread = 1;
				put(threaded, 1);
			}
			if (!have_timer && exists(want_timer)) {
				if (arm_timer())
					return 4;
				have_timer = 1;
				put(timed, 1);
			}
		}
		if (!busy)
			usleep(1000);
	}
	if (child > 0)
		waitpid(child, NULL, 0);
	return 0;
}
