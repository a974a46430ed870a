/* revoke_batch=N keeps freed pages mapped (all canary) until N frees have
 * collected, then drops them with one process_madvise. What must hold:
 *
 *   late-write  a write into a freed object inside the window is reported
 *               when its batch is revoked: memory corruption, after free,
 *               with the free's stack as the report's own ("late_write")
 *   aged        a batch that stops short is revoked by the control thread
 *               within ~100 ms: a read 400 ms after the free faults
 *   churn T     T threads replace objects of every size, contents checked:
 *               a page on its way out never shows through in a live object
 *   fork        churn, fork, churn in both (the child inherits a half-full
 *               batch of its own copies), then a late write in each
 *
 * Prints "done" when it survives; "late <pid>" before each deliberate bug. */
#define _GNU_SOURCE
#include <pthread.h>
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

static unsigned char tag(const void *p, size_t k) { return (unsigned char)(((uintptr_t)p >> 4) + k * 7 + 1); }

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
	return churn(s, 20000) ? s : NULL;
}

__attribute__((noinline)) static void late_write(void)
{
	char *p = malloc(40);
	strcpy(p, "freed");
	free(p);
	printf("late %d\n", getpid());
	fflush(stdout);
	((volatile char *)p)[3] = 'X';
	for (int i = 0; i < 300; i++)          /* more frees than any batch */
		free(malloc(16));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "churn";
	if (!strcmp(mode, "late-write")) {
		late_write();
	} else if (!strcmp(mode, "aged")) {
		char *p = malloc(24);
		free(p);
		usleep(400000);
		printf("uaf %d\n", getpid());
		fflush(stdout);
		volatile char c = p[0];
		(void)c;
	} else if (!strcmp(mode, "churn")) {
		int nt = argc > 2 ? atoi(argv[2]) : 2;
		static struct set sets[8];
		pthread_t t[8];
		for (int i = 0; i < nt && i < 8; i++) {
			sets[i].seed = (unsigned)i + 1;
			pthread_create(&t[i], NULL, worker, &sets[i]);
		}
		for (int i = 0; i < nt && i < 8; i++) {
			void *r;
			pthread_join(t[i], &r);
			if (!r) {
				printf("contents wrong in thread %d\n", i);
				return 1;
			}
		}
	} else if (!strcmp(mode, "fork")) {
		static struct set s = {.seed = 7};
		if (!churn(&s, 3000) || (free(malloc(8)), 0))
			return 1;
		pid_t c = fork();
		if (!churn(&s, 3000)) {
			printf("contents wrong in %s\n", c ? "parent" : "child");
			return 1;
		}
		late_write();
		if (c == 0)
			_exit(0);
		int st;
		waitpid(c, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			return 1;
	}
	printf("done\n");
	return 0;
}
