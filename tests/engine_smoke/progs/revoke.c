/* revoke_batch=N keeps freed pages mapped (all canary) until N frees have
 * collected, then drops them with one process_madvise, but only while
 * frees come from more than one CPU. What must hold:
 *
 *   late-write  a write into a freed object inside the window is reported
 *               when its batch is revoked: memory corruption, after free,
 *               with the free's stack as the report's own ("late_write")
 *   late-exit   the same, exiting at once: the exit check revokes the batch
 *   aged        a batch that stops short is revoked by the control thread
 *               within ~100 ms: a write 400 ms after the free faults
 *   churn T     T threads replace objects of every size, contents checked:
 *               a page on its way out never shows through in a live object
 *   fork        churn, fork, churn in both (the child inherits a half-full
 *               batch of its own copies), then a late write in each
 *   wait        churn 2, print "ready", wait for stdin to close (for stats)
 *   switch      churn 2, "round 1", wait for a line, churn 2, "round 2", wait
 *
 * The late frees are made while a thread on a second CPU frees too, so the
 * engine batches. Prints "done" when it survives, "late <pid>" /
 * "uaf <pid>" before each deliberate bug, "skip" with only one CPU. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 256

struct set {
	unsigned char *obj[N];
	size_t size[N];
	unsigned seed;
};

static int cpus[2];

static unsigned char tag(const void *p, size_t k) { return (unsigned char)(((uintptr_t)p >> 4) + k * 7 + 1); }

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof s, &s);
}

static int churn(struct set *s, int rounds)
{
	for (int r = 0; r < rounds; r++) {
		int i = (int)(rand_r(&s->seed) % N);
		if (s->obj[i]) {
			for (size_t k = 0; k < s->size[i]; k++)
				if (s->obj[i][k] != tag(s->obj[i], k))
					return 0;
			free(s->obj[i]);
		}
		size_t sz = 1 + rand_r(&s->seed) % 4000;
		s->obj[i] = malloc(sz);
		s->size[i] = sz;
		for (size_t k = 0; k < sz; k++)
			s->obj[i][k] = tag(s->obj[i], k);
	}
	return 1;
}

static void *worker(void *arg)
{
	struct set *s = arg;
	pin(cpus[s->seed & 1]);
	return churn(s, 20000) ? s : NULL;
}

static int churn_threads(int nt)
{
	static struct set sets[8];
	pthread_t t[8];
	for (int i = 0; i < nt && i < 8; i++) {
		memset(&sets[i], 0, sizeof sets[i]);
		sets[i].seed = (unsigned)i + 1;
		pthread_create(&t[i], NULL, worker, &sets[i]);
	}
	int ok = 1;
	for (int i = 0; i < nt && i < 8; i++) {
		void *r;
		pthread_join(t[i], &r);
		ok &= r != NULL;
	}
	return ok;
}

static volatile int others_stop;
static pthread_t others;

static void *other_cpu_frees(void *arg)
{
	(void)arg;
	pin(cpus[1]);
	while (!others_stop)
		free(malloc(32));
	return NULL;
}

/* a thread freeing on the second CPU all along, so frees here are batched */
static void others_start(void)
{
	pin(cpus[0]);
	others_stop = 0;
	pthread_create(&others, NULL, other_cpu_frees, NULL);
	for (int i = 0; i < 100; i++)
		free(malloc(16));      /* the other thread has begun: its CPU is in the mask */
	usleep(2000);
}

static void others_end(void)
{
	others_stop = 1;
	pthread_join(others, NULL);
}

/* The write follows the free at once: the batch it joined is still pending
 * unless this very free filled it (1 in 64), in which case the write faults
 * as without batching. */
__attribute__((noinline)) static void late_write(int then_frees)
{
	char *p = malloc(40);
	strcpy(p, "freed");
	printf("late %d\n", getpid());
	fflush(stdout);
	others_start();
	free(p);
	((volatile char *)p)[3] = 'X';
	others_end();
	for (int i = 0; i < then_frees; i++)
		free(malloc(16));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "churn";
	cpu_set_t all;
	sched_getaffinity(0, sizeof all, &all);
	for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
		if (CPU_ISSET(c, &all))
			cpus[k++] = c;
	if (CPU_COUNT(&all) < 2) {
		printf("skip\n");
		return 0;
	}
	if (!strcmp(mode, "late-write")) {
		late_write(300);               /* more frees than any batch */
	} else if (!strcmp(mode, "late-exit")) {
		late_write(0);                 /* only the exit check revokes it */
	} else if (!strcmp(mode, "aged")) {
		/* revoked by age: the write faults; still pending: it would be
		 * found only at exit, as a corruption */
		char *p = malloc(24);
		others_start();
		free(p);
		others_end();
		usleep(400000);
		printf("uaf %d\n", getpid());
		fflush(stdout);
		((volatile char *)p)[0] = 'X';
	} else if (!strcmp(mode, "churn") || !strcmp(mode, "wait")) {
		if (!churn_threads(argc > 2 ? atoi(argv[2]) : 2)) {
			printf("contents wrong\n");
			return 1;
		}
		if (!strcmp(mode, "wait")) {
			printf("ready\n");
			fflush(stdout);
			while (getchar() != EOF)
				;
		}
	} else if (!strcmp(mode, "switch")) {
		/* churn, "round 1", wait for a line (the test changes settings),
		 * churn again, "round 2", wait for stdin to close */
		for (int round = 1; round <= 2; round++) {
			if (!churn_threads(2)) {
				printf("contents wrong\n");
				return 1;
			}
			printf("round %d\n", round);
			fflush(stdout);
			int ch;
			while ((ch = getchar()) != EOF && ch != '\n')
				;
		}
	} else if (!strcmp(mode, "fork")) {
		if (!churn_threads(2))
			return 1;
		pid_t c = fork();
		if (!churn_threads(2)) {
			printf("contents wrong in %s\n", c ? "parent" : "child");
			return 1;
		}
		late_write(300);
		if (c == 0)
			exit(0);        /* not _exit: the exit check revokes what is pending */
		int st;
		waitpid(c, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			return 1;
	}
	printf("done\n");
	return 0;
}
