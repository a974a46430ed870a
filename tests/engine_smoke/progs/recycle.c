/* guard=uffd recycles a freed object's page into the next slot with
 * UFFDIO_MOVE. These are the ways that could go wrong in a real program:
 *
 *   fork      the child gets its own userfaultfd; objects shared with the
 *             parent (copy-on-write) cannot be moved and are dropped instead;
 *             a use-after-free is still caught in both, each reported once
 *   rawclone  a child made by clone() without glibc's fork handlers inherits a
 *             descriptor that acts on the PARENT's memory: the child's churn
 *             must not move a single parent page (the parent checks its live
 *             objects afterwards), and the child itself keeps working
 *   closeall  the program closes every descriptor (and with ours its
 *             registration): the engine goes on with plain guard regions
 *   wait      churn, print "ready" and wait for stdin to close (for stats)
 *   churn     many rounds of malloc/free of every size, contents checked:
 *             a recycled page never shows through in a live object's slack,
 *             and never one object's bytes in another live object
 *
 * Each mode ends with one deliberate use-after-free read ("uaf <pid>" is
 * printed first) and prints "done" when it survives; every other report is a
 * false positive. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 200

static void *objs[N];
static size_t sizes[N];

static unsigned char tag(int i, size_t k) { return (unsigned char)(i * 31 + k * 7 + 1); }

static void fill(int i, size_t sz)
{
	objs[i] = malloc(sz);
	sizes[i] = sz;
	for (size_t k = 0; k < sz; k++)
		((unsigned char *)objs[i])[k] = tag(i, k);
}

static int check(int i)
{
	for (size_t k = 0; k < sizes[i]; k++)
		if (((unsigned char *)objs[i])[k] != tag(i, k))
			return 0;
	return 1;
}

static int churn(int rounds, unsigned seed)
{
	for (int r = 0; r < rounds; r++) {
		int i = (int)(rand_r(&seed) % N);
		if (objs[i]) {
			if (!check(i))
				return 0;
			free(objs[i]);
		}
		fill(i, 1 + rand_r(&seed) % 4000);
	}
	for (int i = 0; i < N; i++)
		if (objs[i] && !check(i))
			return 0;
	return 1;
}

static void uaf(void)
{
	char *p = malloc(24);
	strcpy(p, "freed");
	free(p);
	printf("uaf %d\n", getpid());
	fflush(stdout);
	volatile char c = p[3];
	(void)c;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "churn";
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!churn(2000, 1)) {
		puts("CORRUPT before");
		return 1;
	}
	if (!strcmp(mode, "fork")) {
		pid_t c = fork();
		if (c == 0) {
			int ok = churn(2000, 2);
			for (int i = 0; i < N; i++)
				free(objs[i]), objs[i] = NULL;
			ok = ok && churn(500, 3);
			uaf();
			_exit(ok ? 0 : 3);
		}
		int st;
		waitpid(c, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			printf("child failed %d\n", st);
			return 1;
		}
	} else if (!strcmp(mode, "rawclone")) {
		long c = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
		if (c == 0) {
			int ok = churn(3000, 4);
			for (int i = 0; i < N; i++)
				free(objs[i]), objs[i] = NULL;
			syscall(SYS_exit_group, ok ? 0 : 3);
		}
		int st;
		waitpid((pid_t)c, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			printf("child failed %d\n", st);
			return 1;
		}
	} else if (!strcmp(mode, "wait")) {
		puts("ready");
		char b[16];
		while (read(0, b, sizeof b) > 0)
			;
		return 0;
	} else if (!strcmp(mode, "closeall")) {
		for (int fd = 3; fd < 4096; fd++)
			close(fd);
	}
	if (!churn(3000, 5)) {
		puts("CORRUPT after");
		return 1;
	}
	uaf();
	puts("done");
	return 0;
}
